// Redis Streams benchmark: ringbus beside ioredis in the same run, rounds alternating.
// Needs a Redis server (default redis://127.0.0.1:6379, or RINGBUS_REDIS_URL).
// Usage: node bench/redis.js [--events N --rounds R]
'use strict'

const os = require('node:os')
const { Redis } = require('ioredis')
const { EventBus } = require('..')

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`)
  return i > 0 ? Number(process.argv[i + 1]) : dflt
}
const N = arg('events', 200_000)
const ROUNDS = arg('rounds', 3)
const URL = process.env.RINGBUS_REDIS_URL ?? 'redis://127.0.0.1:6379'
const PIPELINE = 1000
// Both sides trim with `MAXLEN ~`; the limit is above N, so nothing is trimmed away.
const MAXLEN = 1_000_000
const makeEvent = (i) => ({ id: i, type: 'order.created', customer: `c-${i % 1000}`, amount: i % 997, ok: true, tag: 'bench' })
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const now = () => Number(process.hrtime.bigint()) / 1e9
let prefixNo = 0
const prefixName = (who) => `bench_${who}_${process.pid}_${prefixNo++}`

async function ringbusWrite() {
  const keyPrefix = prefixName('rb')
  const bus = await EventBus.create({ adapter: { type: 'redis', url: URL, keyPrefix, maxLen: MAXLEN } })
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
  return { rate: N / secs, keyPrefix, bus }
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

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const fmt = (n) => Math.round(n).toLocaleString('en-US')
const summary = (xs) => `${fmt(median(xs))} (${fmt(Math.min(...xs))}–${fmt(Math.max(...xs))})`

async function dropPrefix(client, prefix) {
  const keys = await client.keys(`{${prefix}:*`)
  if (keys.length) await client.del(...keys)
}

async function main() {
  const client = new Redis(URL)
  const version = /redis_version:(\S+)/.exec(await client.info('server'))?.[1] ?? 'unknown'
  console.log(
    `ringbus Redis bench: ${fmt(N)} events x ${ROUNDS} rounds; node ${process.version}; redis ${version}; ${os.cpus().length} x ${os.cpus()[0]?.model}`,
  )
  const res = { rbW: [], iorW: [], rbR: [], iorR: [] }
  try {
    for (let r = 0; r < ROUNDS; r++) {
      const order = r % 2 === 0 ? ['rb', 'ior'] : ['ior', 'rb']
      for (const who of order) {
        if (who === 'rb') {
          const w = await ringbusWrite()
          res.rbW.push(w.rate)
          res.rbR.push(await ringbusRead(w.bus))
          await w.bus.shutdown()
          await dropPrefix(client, w.keyPrefix)
        } else {
          const w = await ioredisWrite(client)
          res.iorW.push(w.rate)
          res.iorR.push(await ioredisRead(client, w.key))
          await client.del(w.key)
        }
      }
    }
  } finally {
    client.disconnect()
  }
  const ratios = (a, b) => a.map((x, i) => (x / b[i]).toFixed(2)).join(' ')
  const rows = [
    {
      scenario: `ingest -> stored in Redis (${fmt(N)})`,
      'ringbus ev/s': summary(res.rbW),
      peer: `ioredis pipelines of ${PIPELINE} XADD MAXLEN ~`,
      'peer ev/s': summary(res.iorW),
      'ratio per round': ratios(res.rbW, res.iorW),
    },
    {
      scenario: `read back ${fmt(N)} from Redis`,
      'ringbus ev/s': summary(res.rbR),
      peer: `ioredis XRANGE pages of 1000`,
      'peer ev/s': summary(res.iorR),
      'ratio per round': ratios(res.rbR, res.iorR),
    },
  ]
  for (const r of rows) console.log(`${r.scenario}: ringbus ${r['ringbus ev/s']} ev/s; ${r.peer} ${r['peer ev/s']}; ratios ${r['ratio per round']}`)
  console.table(rows)
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
