// Consumer-group benchmark: `bus.process()` with a no-op handler over events already
// stored, beside BullMQ and ioredis XREADGROUP (Redis) and a nats.js durable pull consumer
// (JetStream), in the same run, rounds alternating; and the raw consumer() loop (for await,
// ack each) beside process(). Each side's events are written before its clock starts; the
// clock stops when the handler has run for (or the loop acked) the last one.
// Part of `npm run bench` (bench/run.js); alone: node bench/groups.js [--events N --rounds R]
'use strict'

const { Redis } = require('ioredis')
const { Queue, Worker } = require('bullmq')
const { connect } = require('@nats-io/transport-node')
const { jetstream, jetstreamManager, AckPolicy } = require('@nats-io/jetstream')
const { EventBus } = require('..')

const { makeEvent, now, fmt, alternate, standalone, busOptions, sleep } = require('./common')

let N = 200_000
const REDIS = process.env.RINGBUS_REDIS_URL ?? 'redis://127.0.0.1:6379'
const NATS = process.env.RINGBUS_NATS_URL ?? 'nats://127.0.0.1:4222'
const CONCURRENCY = 50
const KEYS = 1000
let nameNo = 0
const uniq = (who) => `benchg_${who}_${process.pid}_${nameNo++}`

/** Stores N keyed events through a ringbus bus (untimed), then times process() over them
 * (or, with `raw`, a consumer() loop: for await, ack each). */
async function ringbusGroup(adapter, telemetry = false, raw = false) {
  const bus = await EventBus.create(busOptions({ shards: 4, adapter, telemetry }))
  for (let i = 0; i < N; i++) {
    try {
      bus.ingest(makeEvent(i), { key: `c-${i % KEYS}` })
    } catch (e) {
      if (e.code !== 'ERR_BACKPRESSURE') throw e
      await sleep(1)
      i--
    }
  }
  await bus.flush()
  if (raw) return consumerLoop(bus)
  let handled = 0
  let done
  const finished = new Promise((r) => (done = r))
  const t0 = now()
  const worker = bus.process(
    'bench',
    (ev) => {
      if (ev.raw.length > 0 && ++handled === N) done()
    },
    { concurrency: CONCURRENCY, maxInFlight: 10_000 },
  )
  await finished
  const secs = now() - t0
  await worker.close()
  const s = worker.stats()
  if (s.handled !== N || s.consumer.acked !== N) throw new Error(`ringbus handled ${s.handled}, acked ${s.consumer.acked}`)
  await bus.shutdown()
  return N / secs
}

async function consumerLoop(bus) {
  const consumer = await bus.consumer({ group: 'bench', maxInFlight: 10_000 })
  let handled = 0
  const t0 = now()
  for await (const ev of consumer) {
    if (ev.raw.length > 0) consumer.ack(ev)
    if (++handled === N) break
  }
  const secs = now() - t0
  const s = consumer.stats()
  await consumer.close()
  if (s.acked !== N) throw new Error(`ringbus consumer acked ${s.acked} of ${N}`)
  await bus.shutdown()
  return N / secs
}

async function fillStream(client, key) {
  for (let i = 0; i < N; i += 1000) {
    const pipe = client.pipeline()
    for (let j = i; j < Math.min(N, i + 1000); j++) pipe.xadd(key, '*', 'd', JSON.stringify(makeEvent(j)))
    await pipe.exec()
  }
}

/** ioredis: XREADGROUP COUNT 1000, the handler per entry, one XACK per batch. */
async function ioredisGroup(client) {
  const key = uniq('ior')
  await fillStream(client, key)
  await client.xgroup('CREATE', key, 'g', '0')
  const handler = (raw) => raw.length > 0
  const t0 = now()
  let n = 0
  for (;;) {
    const reply = await client.xreadgroup('GROUP', 'g', 'c1', 'COUNT', 1000, 'STREAMS', key, '>')
    if (!reply) break
    const entries = reply[0][1]
    if (entries.length === 0) break
    const ids = []
    for (const [id, fields] of entries) {
      if (handler(fields[1])) n++
      ids.push(id)
    }
    await client.xack(key, 'g', ...ids)
    if (n === N) break
  }
  const secs = now() - t0
  await client.del(key)
  if (n !== N) throw new Error(`ioredis handled ${n}`)
  return N / secs
}

/** BullMQ: Queue.addBulk (untimed), a Worker with the same concurrency and a no-op. */
async function bullmqGroup() {
  const name = uniq('bull')
  const url = new URL(REDIS)
  const connection = { host: url.hostname, port: Number(url.port || 6379) }
  const queue = new Queue(name, { connection })
  for (let i = 0; i < N; i += 1000) {
    const jobs = []
    for (let j = i; j < Math.min(N, i + 1000); j++) jobs.push({ name: 'e', data: makeEvent(j), opts: { removeOnComplete: true } })
    await queue.addBulk(jobs)
  }
  let n = 0
  let done
  const finished = new Promise((r) => (done = r))
  const t0 = now()
  const worker = new Worker(
    name,
    async (job) => {
      if (job.data && ++n === N) done()
    },
    { connection, concurrency: CONCURRENCY },
  )
  await finished
  const secs = now() - t0
  await worker.close()
  await queue.obliterate({ force: true })
  await queue.close()
  return N / secs
}

/** nats.js: a durable pull consumer with explicit acks, `ack()` per message. */
async function natsGroup() {
  const stream = uniq('njs')
  const nc = await connect({ servers: NATS })
  try {
    const jsm = await jetstreamManager(nc)
    await jsm.streams.add({ name: stream, subjects: [`${stream}.*`] })
    const js = jetstream(nc)
    const inflight = []
    for (let i = 0; i < N; i++) {
      inflight.push(js.publish(`${stream}.${i % 4}`, JSON.stringify(makeEvent(i))))
      if (inflight.length >= 1000) await inflight.shift()
    }
    await Promise.all(inflight)
    await jsm.consumers.add(stream, { durable_name: 'g', ack_policy: AckPolicy.Explicit, max_ack_pending: 10_000 })
    const c = await js.consumers.get(stream, 'g')
    const t0 = now()
    let n = 0
    const iter = await c.consume({ max_messages: 1000 })
    for await (const m of iter) {
      if (m.string().length > 0) n++
      m.ack()
      if (n === N) break
    }
    const secs = now() - t0
    await jsm.streams.delete(stream)
    return N / secs
  } finally {
    await nc.close()
  }
}

/** A tracer provider as a traced service has one: a span per handler, batched to an exporter. */
function tracing() {
  const { BasicTracerProvider, BatchSpanProcessor } = require('@opentelemetry/sdk-trace-base')
  // Discards what it is given: the cost measured is ringbus's and the SDK's, not a network's.
  const exporter = { export: (_spans, done) => done({ code: 0 }), shutdown: async () => {} }
  return new BasicTracerProvider({ spanProcessors: [new BatchSpanProcessor(exporter, { maxQueueSize: 65_536, maxExportBatchSize: 4096 })] })
}

async function run({ events = 200_000, rounds = 3 } = {}) {
  N = events
  const client = new Redis(REDIS)
  const res = { mem: [], rbRedis: [], ior: [], bull: [], rbJs: [], njs: [], rbRedis2: [], traced: [], untraced: [], rawMem: [], rawRedis: [], rawJs: [] }
  const cleanupStreams = []
  try {
    await alternate(
      rounds,
      async () => res.mem.push(await ringbusGroup({ type: 'memory' })),
      async () => res.rawMem.push(await ringbusGroup({ type: 'memory' }, false, true)),
    )
    const tracerProvider = tracing()
    await alternate(
      rounds,
      async () => res.traced.push(await ringbusGroup({ type: 'memory' }, { tracerProvider })),
      async () => res.untraced.push(await ringbusGroup({ type: 'memory' })),
    )
    await tracerProvider.shutdown()
    await alternate(
      rounds,
      async () => res.rbRedis.push(await ringbusGroup({ type: 'redis', url: REDIS, keyPrefix: uniq('rb') })),
      async () => res.ior.push(await ioredisGroup(client)),
    )
    await alternate(
      rounds,
      async () => res.rbRedis2.push(await ringbusGroup({ type: 'redis', url: REDIS, keyPrefix: uniq('rb') })),
      async () => res.bull.push(await bullmqGroup()),
    )
    for (let r = 0; r < rounds; r++) {
      res.rawRedis.push(await ringbusGroup({ type: 'redis', url: REDIS, keyPrefix: uniq('rb') }, false, true))
      const stream = uniq('rbjs')
      cleanupStreams.push(stream)
      res.rawJs.push(await ringbusGroup({ type: 'jetstream', servers: NATS, stream }, false, true))
    }
    await alternate(
      rounds,
      async () => {
        const stream = uniq('rbjs')
        cleanupStreams.push(stream)
        res.rbJs.push(await ringbusGroup({ type: 'jetstream', servers: NATS, stream }))
      },
      async () => res.njs.push(await natsGroup()),
    )
  } finally {
    const keys = await client.keys('*benchg_rb_*')
    if (keys.length) await client.del(...keys)
    client.disconnect()
    const nc = await connect({ servers: NATS })
    const jsm = await jetstreamManager(nc)
    for (const s of cleanupStreams) {
      await jsm.streams.delete(s).catch(() => undefined)
      await jsm.streams.delete(`KV_rbg_${s}`).catch(() => undefined)
    }
    await nc.close()
  }
  const scenario = (where) => `process() no-op, concurrency ${CONCURRENCY}, ${fmt(N)} stored in ${where}`
  const raw = (where) => `consumer() loop (for await, ack each), maxInFlight 10,000, ${fmt(N)} stored in ${where}`
  return {
    title: `groups: ${fmt(N)} events x ${rounds} rounds`,
    rows: [
      { key: 'groupMemory', scenario: scenario('memory'), rb: res.mem, unit: 'ev/s' },
      { key: 'groupMemoryTraced', scenario: `${scenario('memory')}, OpenTelemetry tracing on (a process span per event, batch span processor)`, rb: res.traced, peer: 'the same without tracing', peerRates: res.untraced, unit: 'ev/s' },
      { key: 'groupRedis', scenario: scenario('Redis'), rb: res.rbRedis, peer: 'ioredis XREADGROUP COUNT 1000 + XACK per batch (one consumer, no key order)', peerRates: res.ior, unit: 'ev/s' },
      { key: 'groupBullmq', scenario: scenario('Redis'), rb: res.rbRedis2, peer: `BullMQ Worker, concurrency ${CONCURRENCY} (jobs from Queue.addBulk)`, peerRates: res.bull, unit: 'ev/s' },
      { key: 'groupJetStream', scenario: scenario('JetStream'), rb: res.rbJs, peer: 'nats.js durable pull consumer, ack() each', peerRates: res.njs, unit: 'ev/s' },
      { key: 'consumerMemory', scenario: raw('memory'), rb: res.rawMem, peer: 'process() no-op on memory, rounds alternating', peerRates: res.mem, unit: 'ev/s' },
      { key: 'consumerRedis', scenario: raw('Redis'), rb: res.rawRedis, peer: 'process() no-op on Redis (the groupRedis rounds)', peerRates: res.rbRedis, unit: 'ev/s' },
      { key: 'consumerJetStream', scenario: raw('JetStream'), rb: res.rawJs, peer: 'process() no-op on JetStream (the groupJetStream rounds)', peerRates: res.rbJs, unit: 'ev/s' },
    ],
  }
}

module.exports = { run }

if (require.main === module) standalone(run, { events: 200_000, rounds: 3 })
