// JetStream benchmark: ringbus beside nats.js in the same run, rounds alternating.
// Needs a JetStream server (default nats://127.0.0.1:4222, or RINGBUS_NATS_URL).
// Usage: node bench/jetstream.js [--events N --rounds R]
'use strict'

const os = require('node:os')
const { connect } = require('@nats-io/transport-node')
const { jetstream, jetstreamManager } = require('@nats-io/jetstream')
const { EventBus } = require('..')

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`)
  return i > 0 ? Number(process.argv[i + 1]) : dflt
}
const N = arg('events', 200_000)
const ROUNDS = arg('rounds', 3)
const URL = process.env.RINGBUS_NATS_URL ?? 'nats://127.0.0.1:4222'
const WINDOW = 1000
const makeEvent = (i) => ({ id: i, type: 'order.created', customer: `c-${i % 1000}`, amount: i % 997, ok: true, tag: 'bench' })
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const now = () => Number(process.hrtime.bigint()) / 1e9
let streamNo = 0
const streamName = (who) => `bench_${who}_${process.pid}_${streamNo++}`

async function withManager(fn) {
  const nc = await connect({ servers: URL })
  try {
    return await fn(await jetstreamManager(nc), nc)
  } finally {
    await nc.close()
  }
}

async function ringbusWrite() {
  const stream = streamName('rb')
  const bus = await EventBus.create({ adapter: { type: 'jetstream', servers: URL, stream } })
  const t0 = now()
  for (let i = 0; i < N; i++) {
    try {
      bus.ingest(makeEvent(i))
    } catch (e) {
      if (e.code !== 'ERR_BACKPRESSURE') throw e
      await sleep(1)
      i--
    }
  }
  await bus.flush()
  const secs = now() - t0
  const s = bus.stats()
  if (s.stored !== N || s.dropped !== 0) throw new Error(`ringbus stored ${s.stored}, dropped ${s.dropped}`)
  return { rate: N / secs, stream, bus }
}

async function natsWrite() {
  const stream = streamName('njs')
  return withManager(async (jsm, nc) => {
    await jsm.streams.add({ name: stream, subjects: [`${stream}.*`] })
    const js = jetstream(nc)
    const t0 = now()
    const inflight = []
    for (let i = 0; i < N; i++) {
      inflight.push(js.publish(`${stream}.0`, JSON.stringify(makeEvent(i)), { msgID: `m-${i}` }))
      if (inflight.length >= WINDOW) await inflight.shift()
    }
    await Promise.all(inflight)
    const secs = now() - t0
    const info = await jsm.streams.info(stream)
    if (info.state.messages !== N) throw new Error(`nats.js stored ${info.state.messages}`)
    return { rate: N / secs, stream }
  })
}

async function ringbusRead(bus) {
  const t0 = now()
  let n = 0
  let cursor
  for (;;) {
    const page = await bus.poll({ limit: 1000, cursor })
    n += page.events.length
    cursor = page.cursor
    if (!page.hasMore) break
  }
  const secs = now() - t0
  if (n !== N) throw new Error(`ringbus read ${n}`)
  return N / secs
}

async function natsRead(stream) {
  const nc = await connect({ servers: URL })
  try {
    const js = jetstream(nc)
    const c = await js.consumers.get(stream) // ordered consumer
    const t0 = now()
    let n = 0
    const iter = await c.consume({ max_messages: 1000 })
    for await (const m of iter) {
      JSON.parse(m.string())
      if (++n === N) break
    }
    const secs = now() - t0
    return N / secs
  } finally {
    await nc.close()
  }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const fmt = (n) => Math.round(n).toLocaleString('en-US')
const summary = (xs) => `${fmt(median(xs))} (${fmt(Math.min(...xs))}–${fmt(Math.max(...xs))})`

async function main() {
  const version = await withManager(async (_, nc) => nc.info?.version ?? 'unknown')
  console.log(
    `ringbus JetStream bench: ${fmt(N)} events x ${ROUNDS} rounds; node ${process.version}; nats-server ${version}; ${os.cpus().length} x ${os.cpus()[0]?.model}`,
  )
  const res = { rbW: [], njsW: [], rbR: [], njsR: [] }
  const cleanup = []
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? ['rb', 'njs'] : ['njs', 'rb']
    for (const who of order) {
      if (who === 'rb') {
        const w = await ringbusWrite()
        res.rbW.push(w.rate)
        res.rbR.push(await ringbusRead(w.bus))
        await w.bus.shutdown()
        cleanup.push(w.stream)
      } else {
        const w = await natsWrite()
        res.njsW.push(w.rate)
        res.njsR.push(await natsRead(w.stream))
        cleanup.push(w.stream)
      }
    }
  }
  await withManager(async (jsm) => {
    for (const s of cleanup) await jsm.streams.delete(s).catch(() => undefined)
  })
  const ratios = (a, b) => a.map((x, i) => (x / b[i]).toFixed(2)).join(' ')
  const rows = [
    {
      scenario: `ingest -> stored in JetStream (${fmt(N)})`,
      'ringbus ev/s': summary(res.rbW),
      peer: `nats.js publish, ${WINDOW} in flight, msgID each`,
      'peer ev/s': summary(res.njsW),
      'ratio per round': ratios(res.rbW, res.njsW),
    },
    {
      scenario: `read back ${fmt(N)} from JetStream`,
      'ringbus ev/s': summary(res.rbR),
      peer: 'nats.js ordered consumer',
      'peer ev/s': summary(res.njsR),
      'ratio per round': ratios(res.rbR, res.njsR),
    },
  ]
  for (const r of rows) console.log(`${r.scenario}: ringbus ${r['ringbus ev/s']} ev/s; ${r.peer} ${r['peer ev/s']}; ratios ${r['ratio per round']}`)
  console.table(rows)
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
