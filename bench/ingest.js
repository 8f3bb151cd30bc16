// Ingest benchmark: ringbus against a baseline in the same process, rounds alternating so
// machine drift hits both. Prints medians (min–max) and the per-round ratio.
// Usage: npm run bench [-- --events N --rounds R]
'use strict'

const os = require('node:os')
const { EventBus } = require('..')

const { arg, makeEvent, median, fmt } = require('./common')

const N = arg('events', 1_000_000)
const ROUNDS = arg('rounds', 5)
const BATCH = 1000


/** The peer: what a service would do without ringbus: serialise and keep it in a JS ring. */
class JsRing {
  constructor(slots) {
    this.slots = new Array(slots)
    this.mask = slots - 1
    this.head = 0
  }
  push(s) {
    this.slots[this.head & this.mask] = s
    this.head++
  }
}

function newBus() {
  return new EventBus({ adapter: { type: 'noop' }, ringCapacity: 1 << 16 })
}

/** Runs `body(bus)` for N events; returns events/s, checking every event was accepted. */
async function timeBus(body) {
  const bus = newBus()
  const t0 = process.hrtime.bigint()
  const accepted = await body(bus)
  const t1 = process.hrtime.bigint()
  await bus.flush()
  const s = await bus.shutdown()
  if (accepted !== N || s.stored !== N || s.dropped !== 0) {
    throw new Error(`count mismatch: accepted ${accepted}, stored ${s.stored}, dropped ${s.dropped} of ${N}`)
  }
  return N / (Number(t1 - t0) / 1e9)
}

/** ingest with a retry when the ring is full (counts the waits). */
async function ingestAll(bus, make) {
  let accepted = 0
  for (let i = 0; i < N; i++) {
    try {
      bus.ingest(make(i))
      accepted++
    } catch (e) {
      if (e.code !== 'ERR_BACKPRESSURE') throw e
      await bus.flush()
      i--
    }
  }
  return accepted
}

const scenarios = [
  {
    name: 'ingest(object), noop adapter',
    ringbus: () => timeBus((bus) => ingestAll(bus, makeEvent)),
    peerName: 'JSON.stringify + JS ring (65,536 slots)',
    peer: async () => {
      const ring = new JsRing(65536)
      const t0 = process.hrtime.bigint()
      for (let i = 0; i < N; i++) ring.push(JSON.stringify(makeEvent(i)))
      const t1 = process.hrtime.bigint()
      if (ring.head !== N) throw new Error('ring count mismatch')
      return N / (Number(t1 - t0) / 1e9)
    },
  },
  {
    name: 'ingest(prebuilt Buffer)',
    ringbus: () => {
      const buf = Buffer.from(JSON.stringify(makeEvent(1)))
      return timeBus((bus) => ingestAll(bus, () => buf))
    },
  },
  {
    name: 'ingest(prebuilt JSON string), validated',
    ringbus: () => {
      const str = JSON.stringify(makeEvent(1))
      return timeBus((bus) => ingestAll(bus, () => str))
    },
  },
  {
    name: `ingestBatch(${BATCH} prebuilt strings)`,
    ringbus: () => {
      const batch = Array.from({ length: BATCH }, (_, i) => JSON.stringify(makeEvent(i)))
      return timeBus(async (bus) => {
        let accepted = 0
        while (accepted < N) {
          const n = Math.min(BATCH, N - accepted)
          try {
            accepted += bus.ingestBatch(n === BATCH ? batch : batch.slice(0, n))
          } catch (e) {
            if (e.code !== 'ERR_BACKPRESSURE') throw e
            await bus.flush()
          }
        }
        return accepted
      })
    },
  },
]


async function main() {
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU'
  console.log(`ringbus ingest bench: ${fmt(N)} events x ${ROUNDS} rounds; node ${process.version}; ${os.cpus().length} x ${cpu}`)
  const rows = []
  for (const sc of scenarios) {
    const ours = []
    const peers = []
    for (let r = 0; r < ROUNDS; r++) {
      // Alternate who goes first so drift does not favour either.
      if (sc.peer && r % 2 === 1) peers.push(await sc.peer())
      ours.push(await sc.ringbus())
      if (sc.peer && r % 2 === 0) peers.push(await sc.peer())
    }
    const row = {
      scenario: sc.name,
      'ringbus ev/s median (min–max)': `${fmt(median(ours))} (${fmt(Math.min(...ours))}–${fmt(Math.max(...ours))})`,
      peer: sc.peerName ?? '—',
      'peer ev/s median (min–max)': sc.peer ? `${fmt(median(peers))} (${fmt(Math.min(...peers))}–${fmt(Math.max(...peers))})` : '—',
      'ratio per round': sc.peer ? ours.map((o, i) => (o / peers[i]).toFixed(2)).join(' ') : '—',
    }
    rows.push(row)
    console.log(`${row.scenario}: ${row['ringbus ev/s median (min–max)']} ev/s` + (sc.peer ? `; peer ${row['peer ev/s median (min–max)']}; ratios ${row['ratio per round']}` : ''))
  }
  console.log()
  console.table(rows)
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
