// Latency benchmark: the time from just before `ingest` to the event's arrival at a
// `subscribe({ from: 'latest' })` reader in the same process, at a steady rate, beside each
// peer's publish -> consume in the same run. Part of `npm run bench` (bench/run.js); alone:
// node bench/latency.js [--seconds S --rounds R]
'use strict'

const { connect } = require('@nats-io/transport-node')
const { jetstream, jetstreamManager } = require('@nats-io/jetstream')
const { Redis } = require('ioredis')
const { EventBus } = require('..')

const { arg, sleep, median, fmt, alternate, busOptions } = require('./common')

const NATS_URL = process.env.RINGBUS_NATS_URL ?? 'nats://127.0.0.1:4222'
const REDIS_URL = process.env.RINGBUS_REDIS_URL ?? 'redis://127.0.0.1:6379'
// Events sent (and awaited) before measuring: connections, consumers and JIT warm up.
const WARMUP = 200
const KEYS = 100
let runNo = 0
const name = (who) => `lat_${who}_${process.pid}_${runNo++}`

const hrNow = () => Number(process.hrtime.bigint())
const event = (i) => ({ i, t: hrNow(), type: 'order.created', customer: `c-${i % 1000}`, ok: true })

/**
 * Sends `count` events at `rate` per second through `send(i)`, spread over 1 ms timer ticks
 * (each tick sends what is due by then), never spinning the event loop.
 */
async function pace(count, rate, send) {
  const t0 = hrNow()
  let sent = 0
  while (sent < count) {
    const due = Math.min(count, Math.floor(((hrNow() - t0) / 1e9) * rate) + 1)
    while (sent < due) send(sent++)
    if (sent < count) await sleep(1)
  }
}

/**
 * One measured run: `start()` resolves once the reader is ready and returns
 * `{ send(i), received: Promise<number[]> (latencies in ns, measured ones only), close() }`.
 */
async function measure(rate, seconds, start) {
  const count = Math.max(1, Math.round(rate * seconds))
  const side = await start(WARMUP + count)
  await pace(WARMUP, Math.min(rate, 5000), side.send)
  await side.warm
  await pace(count, rate, (i) => side.send(WARMUP + i))
  const lat = await side.received
  await side.close()
  if (lat.length !== count) throw new Error(`received ${lat.length} of ${count} measured events`)
  lat.sort((a, b) => a - b)
  const q = (p) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] / 1e6
  return { p50: q(0.5), p99: q(0.99), max: lat[lat.length - 1] / 1e6 }
}

/** Collects latencies from parsed events; `warm` resolves after the warm-up events. */
function collector(total) {
  const lat = []
  let got = 0
  let warmed
  let done
  const warm = new Promise((r) => (warmed = r))
  const received = new Promise((r) => (done = r))
  const take = (ev) => {
    const ns = hrNow() - ev.t
    got++
    if (ev.i >= WARMUP) lat.push(ns)
    if (got === WARMUP) warmed()
    if (got === total) done(lat)
    return got === total
  }
  return { take, warm, received }
}

async function ringbusSide(adapter, total, cleanup) {
  const bus = await EventBus.create(busOptions({ adapter }))
  const c = collector(total)
  const sub = bus.subscribe({ from: 'latest' })
  // The first next() fixes where 'latest' is; wait for it before anything is sent.
  const first = sub.next()
  await sleep(100)
  const reading = (async () => {
    let step = await first
    while (!step.done) {
      if (c.take(JSON.parse(step.value.raw))) break
      step = await sub.next()
    }
    await sub.return()
  })()
  return {
    send: (i) => bus.ingest(event(i), { key: `k-${i % KEYS}` }),
    warm: c.warm,
    received: c.received,
    close: async () => {
      await reading
      await bus.shutdown()
      if (cleanup) await cleanup()
    },
  }
}

const memory = (total) => ringbusSide({ type: 'memory' }, total)

/** The same, to the start of a `process()` handler of a new group from 'latest'. */
async function ringbusGroupSide(adapter, total, cleanup) {
  const bus = await EventBus.create(busOptions({ adapter }))
  const c = collector(total)
  let finished
  const done = new Promise((r) => (finished = r))
  const worker = bus.process(
    'latency',
    (ev) => {
      if (c.take(JSON.parse(ev.raw))) finished()
    },
    { from: 'latest', concurrency: 50 },
  )
  // The member has joined once it owns every shard of the bus.
  while (worker.stats().consumer.shards.length < bus.numShards) await sleep(5)
  return {
    send: (i) => bus.ingest(event(i), { key: `k-${i % KEYS}` }),
    warm: c.warm,
    received: c.received,
    close: async () => {
      await done
      await worker.close()
      await bus.shutdown()
      if (cleanup) await cleanup()
    },
  }
}

const groupMemory = (total) => ringbusGroupSide({ type: 'memory' }, total)

function groupJetStream(total) {
  const stream = name('rbg')
  return ringbusGroupSide({ type: 'jetstream', servers: NATS_URL, stream }, total, async () => {
    await dropStream(stream)
    await dropStream(`KV_rbg_${stream}`)
  })
}

function groupRedis(total) {
  const keyPrefix = name('rbg')
  return ringbusGroupSide({ type: 'redis', url: REDIS_URL, keyPrefix }, total, async () => {
    const r = new Redis(REDIS_URL)
    const keys = await r.keys(`{${keyPrefix}*`)
    if (keys.length) await r.del(...keys)
    await r.quit()
  })
}

async function dropStream(stream) {
  const nc = await connect({ servers: NATS_URL })
  try {
    await (await jetstreamManager(nc)).streams.delete(stream).catch(() => undefined)
  } finally {
    await nc.close()
  }
}

function ringbusJetStream(total) {
  const stream = name('rb')
  return ringbusSide({ type: 'jetstream', servers: NATS_URL, stream }, total, () => dropStream(stream))
}

async function natsJetStream(total) {
  const stream = name('njs')
  const nc = await connect({ servers: NATS_URL })
  const jsm = await jetstreamManager(nc)
  await jsm.streams.add({ name: stream, subjects: [`${stream}.*`] })
  const js = jetstream(nc)
  const consumer = await js.consumers.get(stream) // ordered consumer
  const messages = await consumer.consume()
  const c = collector(total)
  const reading = (async () => {
    for await (const m of messages) if (c.take(JSON.parse(m.string()))) break
  })()
  const pending = []
  return {
    send: (i) => pending.push(js.publish(`${stream}.${i % 4}`, JSON.stringify(event(i)))),
    warm: c.warm,
    received: c.received,
    close: async () => {
      await reading
      await Promise.all(pending)
      await jsm.streams.delete(stream)
      await nc.close()
    },
  }
}

function ringbusRedis(total) {
  const keyPrefix = name('rb')
  return ringbusSide({ type: 'redis', url: REDIS_URL, keyPrefix }, total, async () => {
    const r = new Redis(REDIS_URL)
    const keys = await r.keys(`{${keyPrefix}:*`)
    if (keys.length) await r.del(...keys)
    await r.quit()
  })
}

async function ioredisStreams(total) {
  const key = name('ior')
  const writer = new Redis(REDIS_URL)
  const reader = new Redis(REDIS_URL)
  const c = collector(total)
  const reading = (async () => {
    let last = '$'
    for (;;) {
      const res = await reader.xread('BLOCK', 0, 'STREAMS', key, last)
      for (const [id, fields] of res[0][1]) {
        last = id
        if (c.take(JSON.parse(fields[1]))) return
      }
    }
  })()
  await sleep(100)
  return {
    send: (i) => writer.xadd(key, '*', 'd', JSON.stringify(event(i))),
    warm: c.warm,
    received: c.received,
    close: async () => {
      await reading
      await writer.del(key)
      await writer.quit()
      await reader.quit()
    },
  }
}

const ms = (x) => (x >= 10 ? x.toFixed(1) : x.toPrecision(2))
const show = (runs) => {
  const pick = (k) => runs.map((r) => r[k])
  const m = (k) => median(pick(k))
  return `p50 ${ms(m('p50'))} / p99 ${ms(m('p99'))} / max ${ms(m('max'))} ms (p50 ${ms(Math.min(...pick('p50')))}–${ms(Math.max(...pick('p50')))})`
}
const med = (runs, k) => median(runs.map((r) => r[k]))

/** Every latency scenario, `rounds` times, ringbus and its peer alternating who goes first. */
async function run({ seconds = 3, rounds = 3, only, rates = [5_000, 50_000] } = {}) {
  const rows = []
  for (const rate of rates) {
    const load = rate === 5_000 ? '' : ' under load'
    const scenarios = [
      { key: `latMemory${rate}`, backend: 'memory', ours: memory },
      { key: `latJetStream${rate}`, backend: 'JetStream', ours: ringbusJetStream, peer: natsJetStream, peerName: 'nats.js publish -> ordered consumer' },
      { key: `latRedis${rate}`, backend: 'Redis', ours: ringbusRedis, peer: ioredisStreams, peerName: 'ioredis XADD -> XREAD BLOCK' },
    ]
    if (rate === 5_000) {
      scenarios.push(
        { key: 'latGroupMemory5000', backend: 'memory', ours: groupMemory, to: 'process() handler' },
        { key: 'latGroupJetStream5000', backend: 'JetStream', ours: groupJetStream, peer: natsJetStream, peerName: 'nats.js publish -> ordered consumer', to: 'process() handler' },
        { key: 'latGroupRedis5000', backend: 'Redis', ours: groupRedis, peer: ioredisStreams, peerName: 'ioredis XADD -> XREAD BLOCK', to: 'process() handler' },
      )
    }
    for (const sc of scenarios.filter((s) => !only || s.backend.toLowerCase() === only)) {
      const rb = []
      const peer = []
      await alternate(
        rounds,
        async () => rb.push(await measure(rate, seconds, sc.ours)),
        sc.peer && (async () => peer.push(await measure(rate, seconds, sc.peer))),
      )
      rows.push({
        key: sc.key,
        scenario: `latency${load} ingest -> ${sc.to ?? 'subscriber'} at ${fmt(rate)} ev/s, ${sc.backend}, default options`,
        rb: rb.map((r) => r.p50),
        text: show(rb),
        peer: sc.peerName,
        peerRates: sc.peer ? peer.map((r) => r.p50) : null,
        peerText: sc.peer ? show(peer) : null,
        stats: { p50: med(rb, 'p50'), p99: med(rb, 'p99') },
        peerStats: sc.peer ? { p50: med(peer, 'p50'), p99: med(peer, 'p99') } : null,
        unit: 'ms',
      })
    }
  }
  return { title: `latency: ${seconds} s per run x ${rounds} rounds`, rows }
}

module.exports = { run }

if (require.main === module) {
  const { report } = require('./common')
  const i = process.argv.indexOf('--backend')
  const only = i > 0 ? process.argv[i + 1].toLowerCase() : undefined
  const rate = arg('rate', 0)
  run({ seconds: arg('seconds', 3), rounds: arg('rounds', 3), only, rates: rate ? [rate] : undefined })
    .then((r) => {
      for (const row of r.rows) console.log(`${row.scenario}: ringbus ${row.text}${row.peerText ? `; ${row.peer}: ${row.peerText}` : ''}`)
      report(r.rows.map((row) => ({ ...row })))
    })
    .catch((e) => {
      console.error(e)
      process.exit(1)
    })
}
