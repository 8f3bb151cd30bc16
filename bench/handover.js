// Hand-over benchmark: a rolling restart of a group's three members while 2,000 events/s
// arrive. As in a deploy, a new member (new name) joins, then an old one closes, three
// times; each step moves shards between members. Measured from the members' own records
// ("took shard", "handed shard … over", "released shard … on leaving"): for every release,
// the time until another member took the shard. leaseMs is 30 s, so a move that waited for
// the renewal timer would show seconds. Each member has its own bus (memory: one bus, as a
// memory group lives in it). No peer: the goal is absolute.
// Part of `npm run bench` (bench/run.js); alone: node bench/handover.js [--rounds R]
'use strict'

const { connect } = require('@nats-io/transport-node')
const { jetstreamManager } = require('@nats-io/jetstream')
const { Redis } = require('ioredis')
const { EventBus, setLogger } = require('..')
const { sleep, busOptions } = require('./common')

const REDIS = process.env.RINGBUS_REDIS_URL ?? 'redis://127.0.0.1:6379'
const NATS = process.env.RINGBUS_NATS_URL ?? 'nats://127.0.0.1:4222'
const SHARDS = 6
let nameNo = 0
const uniq = () => `benchho_${process.pid}_${nameNo++}`

/** Ownership records of every member, from the log. */
function recorder() {
  const own = []
  const kinds = [[/^took shard/, 'took'], [/^handed shard/, 'handed'], [/^released shard/, 'released']]
  setLogger(
    (r) => {
      const kind = kinds.find(([re]) => re.test(r.message))
      if (kind) own.push({ what: kind[1], member: r.fields.member, group: r.fields.group, shard: Number(r.fields.shard), t: performance.now() })
    },
    { level: 'info' },
  )
  return own
}

function gaps(own) {
  const out = []
  const freed = new Map()
  for (const o of own) {
    if (o.what === 'took') {
      if (freed.has(o.shard)) out.push(o.t - freed.get(o.shard))
      freed.delete(o.shard)
    } else freed.set(o.shard, o.t)
  }
  return out
}

function settled(own, live) {
  const now = new Map()
  for (const o of own) {
    if (o.what === 'took') now.set(o.shard, o.member)
    else if (now.get(o.shard) === o.member) now.delete(o.shard)
  }
  const held = [...now.values()]
  const share = Math.floor(SHARDS / live.size)
  return now.size === SHARDS && held.every((m) => live.has(m)) && [...live.keys()].every((m) => held.filter((o) => o === m).length >= share)
}

async function until(cond, ms = 60_000) {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`hand-over bench: members did not settle within ${ms} ms`)
    await sleep(2)
  }
}

/** One rolling restart; returns the hand-over gaps (ms) during it. */
async function rollingRestart(adapter, shared) {
  const group = uniq()
  const own = recorder()
  const mine = () => own.filter((o) => o.group === group)
  const producer = await EventBus.create(busOptions({ shards: SHARDS, adapter }))
  const live = new Map()
  const start = async (member) => {
    const bus = shared ? producer : await EventBus.create(busOptions({ shards: SHARDS, adapter }))
    live.set(member, { bus, worker: bus.process(group, () => {}, { member, leaseMs: 30_000 }) })
  }
  const stop = async (member) => {
    const m = live.get(member)
    live.delete(member)
    await m.worker.close()
    if (m.bus !== producer) await m.bus.shutdown()
  }
  for (const m of ['m0', 'm1', 'm2']) await start(m)
  await until(() => settled(mine(), live))
  let n = 0
  const feed = setInterval(() => {
    for (let k = 0; k < 20; k++, n++) producer.ingest({ i: n, key: `k${n % 50}` }, { key: `k${n % 50}` })
  }, 10)
  const before = gaps(mine()).length
  try {
    for (let k = 0; k < 3; k++) {
      await sleep(300)
      await start(`n${k}`)
      await until(() => settled(mine(), live))
      await sleep(300)
      await stop(`m${k}`)
      await until(() => settled(mine(), live))
    }
  } finally {
    clearInterval(feed)
  }
  const out = gaps(mine()).slice(before)
  for (const m of [...live.keys()]) await stop(m)
  await producer.shutdown()
  setLogger(null)
  return out
}

const q = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(p * s.length))]
}

async function run({ rounds = 3 } = {}) {
  const streams = []
  const backends = [
    { key: 'handoverMemory', name: 'memory', adapter: () => ({ type: 'memory' }), shared: true },
    {
      key: 'handoverJetStream',
      name: 'JetStream',
      adapter: () => {
        const stream = uniq()
        streams.push(stream)
        return { type: 'jetstream', servers: NATS, stream }
      },
    },
    { key: 'handoverRedis', name: 'Redis', adapter: () => ({ type: 'redis', url: REDIS, keyPrefix: uniq() }) },
  ]
  const rows = []
  try {
    for (const b of backends) {
      const all = []
      for (let r = 0; r < rounds; r++) all.push(...(await rollingRestart(b.adapter(), b.shared)))
      const stats = { p50: q(all, 0.5), p99: q(all, 0.99), max: Math.max(...all), n: all.length }
      rows.push({
        key: b.key,
        scenario: `hand-over: rolling restart of 3 members (join, then leave, x3) under 2,000 ev/s, ${SHARDS} shards, leaseMs 30,000, ${b.name}: time a shard has no owner`,
        rb: [stats.p50],
        stats,
        text: `p50 ${stats.p50.toFixed(1)} ms, p99 ${stats.p99.toFixed(1)} ms, max ${stats.max.toFixed(1)} ms (${stats.n} hand-overs)`,
        unit: 'ms',
      })
    }
  } finally {
    const redis = new Redis(REDIS)
    const keys = await redis.keys('*benchho_*')
    if (keys.length) await redis.del(...keys)
    redis.disconnect()
    const nc = await connect({ servers: NATS })
    const jsm = await jetstreamManager(nc)
    for (const s of streams) {
      await jsm.streams.delete(s).catch(() => undefined)
      await jsm.streams.delete(`KV_rbg_${s}`).catch(() => undefined)
    }
    await nc.close()
  }
  return { title: `hand-over: ${rounds} rolling restarts per backend`, rows }
}

module.exports = { run }

if (require.main === module) {
  const { arg, report } = require('./common')
  run({ rounds: arg('rounds', 3) })
    .then((r) => {
      for (const row of r.rows) console.log(`${row.scenario}: ${row.text}`)
      report(r.rows)
    })
    .catch((e) => {
      console.error(e)
      process.exit(1)
    })
}
