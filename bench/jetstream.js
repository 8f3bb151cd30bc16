// JetStream benchmark: ringbus beside nats.js in the same run, rounds alternating.
// Needs a JetStream server (default nats://127.0.0.1:4222, or RINGBUS_NATS_URL).
// Part of `npm run bench` (bench/run.js); alone: node bench/jetstream.js [--events N --rounds R]
'use strict'

const { connect } = require('@nats-io/transport-node')
const { jetstream, jetstreamManager } = require('@nats-io/jetstream')
const { EventBus } = require('..')

const { makeEvent, now, fmt, ringbusIngest, ringbusRead, alternate, standalone, busOptions } = require('./common')

let N = 200_000
const URL = process.env.RINGBUS_NATS_URL ?? 'nats://127.0.0.1:4222'
const WINDOW = 1000
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
  const bus = await EventBus.create(busOptions({ adapter: { type: 'jetstream', servers: URL, stream } }))
  return { rate: await ringbusIngest(bus, N), stream, bus }
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


/** Write and read-back rounds, ringbus and the peer alternating who goes first. */
async function run({ events = 200_000, rounds = 3 } = {}) {
  N = events
  const ROUNDS = rounds
  const version = await withManager(async (_, nc) => nc.info?.version ?? 'unknown')
  const res = { rbW: [], njsW: [], rbR: [], njsR: [] }
  const cleanup = []
  await alternate(
    ROUNDS,
    async () => {
      const w = await ringbusWrite()
      res.rbW.push(w.rate)
      res.rbR.push(await ringbusRead(w.bus, N))
      await w.bus.shutdown()
      cleanup.push(w.stream)
    },
    async () => {
      const w = await natsWrite()
      res.njsW.push(w.rate)
      res.njsR.push(await natsRead(w.stream))
      cleanup.push(w.stream)
    },
  )
  await withManager(async (jsm) => {
    for (const s of cleanup) await jsm.streams.delete(s).catch(() => undefined)
  })
  return {
    title: `JetStream: ${fmt(N)} events x ${ROUNDS} rounds`,
    versions: { 'nats-server': version },
    rows: [
      { key: 'jsWrite', scenario: `ingest -> stored in JetStream (${fmt(N)})`, rb: res.rbW, peer: `nats.js publish, ${WINDOW} in flight, msgID each`, peerRates: res.njsW, unit: 'ev/s' },
      { key: 'jsRead', scenario: `read back ${fmt(N)} from JetStream (poll pages of 1,000)`, rb: res.rbR, peer: 'nats.js ordered consumer', peerRates: res.njsR, unit: 'ev/s' },
    ],
  }
}

module.exports = { run }

if (require.main === module) standalone(run, { events: 200_000, rounds: 3 })
