// JetStream benchmark: ringbus beside nats.js in the same run, rounds alternating.
// Needs a JetStream server (default nats://127.0.0.1:4222, or RINGBUS_NATS_URL).
// Part of `npm run bench` (bench/run.js); alone: node bench/jetstream.js [--events N --rounds R]
'use strict'

const { connect } = require('@nats-io/transport-node')
const { jetstream, jetstreamManager } = require('@nats-io/jetstream')
const { EventBus } = require('..')

const { makeEvent, now, fmt, ringbusIngest, ringbusRead, alternate, standalone, busOptions, sleep } = require('./common')

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


/**
 * A stream written by a producer that scales 4 → 8 → 6 shards (at 20% and 55% of the
 * events), the shape that made per-shard readers slow: the subjects of shards 6 and 7 are
 * sparse in it.
 */
async function scaledStream(n) {
  const stream = streamName('ts')
  const bus = await EventBus.create(busOptions({ shards: 4, adapter: { type: 'jetstream', servers: URL, stream } }))
  for (let i = 0; i < n; i++) {
    if (i === Math.floor(n * 0.2)) await bus.scaleUp(4)
    if (i === Math.floor(n * 0.55)) await bus.scaleDown(2)
    try {
      bus.ingest(makeEvent(i), { key: `k${i % 100}` })
    } catch (e) {
      if (e.code !== 'ERR_BACKPRESSURE') throw e
      await sleep(1)
      i--
    }
  }
  await bus.flush()
  await bus.shutdown()
  return stream
}

/** Every page of 1,000 in `ordering` by a new 2-shard reader bus (nothing read before); ev/s. */
async function readOrdered(stream, n, ordering) {
  const bus = await EventBus.create({ shards: 2, adapter: { type: 'jetstream', servers: URL, stream } })
  try {
    const t0 = now()
    let got = 0
    let cursor
    for (;;) {
      const page = await bus.poll({ limit: 1000, cursor, ordering })
      got += page.events.length
      cursor = page.cursor
      if (!page.hasMore) break
    }
    const secs = now() - t0
    if (got !== n) throw new Error(`ringbus read ${got} in ${ordering} order`)
    return n / secs
  } finally {
    await bus.shutdown()
  }
}

/** Write and read-back rounds, ringbus and the peer alternating who goes first. */
async function run({ events = 200_000, rounds = 3 } = {}) {
  N = events
  const ROUNDS = rounds
  const version = await withManager(async (_, nc) => nc.info?.version ?? 'unknown')
  const res = { rbW: [], njsW: [], rbR: [], njsR: [], tsR: [], shardR: [] }
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
  // Timestamp order against the default order, on one scaled stream per round.
  const scaledN = Math.ceil(N / 2)
  for (let r = 0; r < ROUNDS; r++) {
    const stream = await scaledStream(scaledN)
    cleanup.push(stream)
    const timestamp = async () => res.tsR.push(await readOrdered(stream, scaledN, 'timestamp'))
    const shard = async () => res.shardR.push(await readOrdered(stream, scaledN, 'shard'))
    if (r % 2 === 0) {
      await timestamp()
      await shard()
    } else {
      await shard()
      await timestamp()
    }
  }
  await withManager(async (jsm) => {
    for (const s of cleanup) await jsm.streams.delete(s).catch(() => undefined)
  })
  return {
    title: `JetStream: ${fmt(N)} events x ${ROUNDS} rounds`,
    versions: { 'nats-server': version },
    rows: [
      { key: 'jsWrite', scenario: `ingest -> stored in JetStream (${fmt(N)})`, rb: res.rbW, peer: `nats.js publish, ${WINDOW} in flight, msgID each`, peerRates: res.njsW, unit: 'ev/s' },
      { key: 'jsRead', scenario: `read back ${fmt(N)} from JetStream (poll pages of 1,000)`, rb: res.rbR, peer: 'nats.js ordered consumer', peerRates: res.njsR, unit: 'ev/s' },
      {
        key: 'jsReadTimestamp',
        scenario: `read back ${fmt(scaledN)} in timestamp order from a JetStream stream written 4 → 8 → 6 shards (a new 2-shard reader, poll pages of 1,000)`,
        rb: res.tsR,
        peer: 'the default (shard) order on the same stream, a new reader',
        peerRates: res.shardR,
        unit: 'ev/s',
      },
    ],
  }
}

module.exports = { run }

if (require.main === module) standalone(run, { events: 200_000, rounds: 3 })
