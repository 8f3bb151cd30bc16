// Redis Streams benchmark: ringbus beside ioredis in the same run, rounds alternating.
// Needs a Redis server (default redis://127.0.0.1:6379, or RINGBUS_REDIS_URL).
// Part of `npm run bench` (bench/run.js); alone: node bench/redis.js [--events N --rounds R]
'use strict'

const { Redis } = require('ioredis')
const { EventBus } = require('..')

const { makeEvent, now, fmt, ringbusIngest, ringbusRead, alternate, standalone, busOptions } = require('./common')

let N = 200_000
const URL = process.env.RINGBUS_REDIS_URL ?? 'redis://127.0.0.1:6379'
const PIPELINE = 1000
// Both sides trim with `MAXLEN ~`; the limit is above N, so nothing is trimmed away.
const MAXLEN = 1_000_000
let prefixNo = 0
const prefixName = (who) => `bench_${who}_${process.pid}_${prefixNo++}`

async function ringbusWrite() {
  const keyPrefix = prefixName('rb')
  const bus = await EventBus.create(busOptions({ adapter: { type: 'redis', url: URL, keyPrefix, maxLen: MAXLEN } }))
  return { rate: await ringbusIngest(bus, N), keyPrefix, bus }
}

async function ioredisWrite(client) {
  const key = prefixName('ior')
  const t0 = now()
  for (let i = 0; i < N; i += PIPELINE) {
    const pipe = client.pipeline()
    for (let j = i; j < Math.min(N, i + PIPELINE); j++) pipe.xadd(key, 'MAXLEN', '~', MAXLEN, '*', 'd', JSON.stringify(makeEvent(j)))
    await pipe.exec()
  }
  const secs = now() - t0
  const len = await client.xlen(key)
  if (len !== N) throw new Error(`ioredis stored ${len}`)
  return { rate: N / secs, key }
}


async function ioredisRead(client, key) {
  const t0 = now()
  let n = 0
  let start = '-'
  for (;;) {
    const entries = await client.xrange(key, start, '+', 'COUNT', 1000)
    // The same shape ringbus returns: id and the payload text.
    for (const [id, fields] of entries) if ({ id, raw: fields[1] }.raw) n++
    if (entries.length < 1000) break
    start = '(' + entries[entries.length - 1][0]
  }
  const secs = now() - t0
  if (n !== N) throw new Error(`ioredis read ${n}`)
  return N / secs
}


async function dropPrefix(client, prefix) {
  const keys = await client.keys(`{${prefix}:*`)
  if (keys.length) await client.del(...keys)
}

/** Write and read-back rounds, ringbus and the peer alternating who goes first. */
async function run({ events = 200_000, rounds = 3 } = {}) {
  N = events
  const ROUNDS = rounds
  const client = new Redis(URL)
  const version = /redis_version:(\S+)/.exec(await client.info('server'))?.[1] ?? 'unknown'
  const res = { rbW: [], iorW: [], rbR: [], iorR: [] }
  try {
    await alternate(
      ROUNDS,
      async () => {
        const w = await ringbusWrite()
        res.rbW.push(w.rate)
        res.rbR.push(await ringbusRead(w.bus, N))
        await w.bus.shutdown()
        await dropPrefix(client, w.keyPrefix)
      },
      async () => {
        const w = await ioredisWrite(client)
        res.iorW.push(w.rate)
        res.iorR.push(await ioredisRead(client, w.key))
        await client.del(w.key)
      },
    )
  } finally {
    client.disconnect()
  }
  return {
    title: `Redis: ${fmt(N)} events x ${ROUNDS} rounds`,
    versions: { redis: version },
    rows: [
      { key: 'redisWrite', scenario: `ingest -> stored in Redis (${fmt(N)})`, rb: res.rbW, peer: `ioredis pipelines of ${PIPELINE} XADD MAXLEN ~`, peerRates: res.iorW, unit: 'ev/s' },
      { key: 'redisRead', scenario: `read back ${fmt(N)} from Redis (poll pages of 1,000)`, rb: res.rbR, peer: 'ioredis XRANGE pages of 1,000', peerRates: res.iorR, unit: 'ev/s' },
    ],
  }
}

module.exports = { run }

if (require.main === module) standalone(run, { events: 200_000, rounds: 3 })
