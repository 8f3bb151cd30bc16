// A backend that stays away for 30 s under steady ingest (10,000 events/s from a child
// process, so RSS is the producer's own). The private server is SIGKILLed and started again
// on the same port and data. Checked with nats.js / ioredis, not through ringbus:
// - 'reject': no ERR_BACKPRESSURE while the server is up; once it is down, rejections begin
//   only with a full ring (each message says so); RSS stays within what the rings may hold;
//   after the restart every accepted event is stored exactly once.
// - 'dropOldest': every event is accepted; the events missing from the store are exactly as
//   many as `droppedOldest` counts, and nothing is stored twice.
import { fork } from 'node:child_process'
import path from 'node:path'
import type { EventBusOptions } from '../index'
import { privateNats, privateRedis, uniqueName, type PrivateServer } from './support/servers'
import { measured } from './support/measured'

// eslint-disable-next-line @typescript-eslint/no-require-imports
const stored = require('../scripts/support/stored.js')

jest.setTimeout(180_000)

const SHARDS = 4
const RING = 4096
const RATE = 10_000
const BEFORE_MS = 4_000
const OUTAGE_MS = 30_000
const AFTER_MS = 6_000
/** Per queued event beyond its payload and key: the event struct, its Bytes, the ring slot. */
const OVERHEAD = 256
/** The producer's heap and allocator may grow by this much without any event held. */
const SLACK = 48 << 20

type Report = {
  done?: boolean
  error?: string
  attempted: number
  accepted: number
  acceptedMap: string
  rejected: { before: number; down: number; up: number }
  rss: { before: number; down: number; up: number }
  firstRejectMs: number
  notFull: string
  stats: { ingested: number; stored: number; dropped: number; pending: number; droppedOldest: number; droppedNewest: number }
  logs: { retries: number; disconnects: number; drops: number; other: string[] }
}

type Backend = {
  name: string
  start: () => Promise<PrivateServer>
  adapter: (s: PrivateServer, name: string) => EventBusOptions['adapter']
  read: (s: PrivateServer, name: string, run: string, size: number) => Promise<{ counts: Uint16Array; foreign: number; unreadable: number }>
}

const backends: Backend[] = [
  {
    name: 'jetstream',
    start: () => privateNats(),
    adapter: (s, stream) => ({ type: 'jetstream', servers: `nats://127.0.0.1:${s.port}`, stream }),
    read: (s, stream, run, size) => stored.jetstreamRecords({ servers: `nats://127.0.0.1:${s.port}`, stream, run, size }),
  },
  {
    name: 'redis',
    start: () => privateRedis(),
    adapter: (s, keyPrefix) => ({ type: 'redis', url: `redis://127.0.0.1:${s.port}`, keyPrefix }),
    read: (s, prefix, run, size) => stored.redisRecords({ url: `redis://127.0.0.1:${s.port}`, prefix, span: SHARDS, run, size }),
  },
]

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Runs the producer through before → down (server killed) → up (restarted) → stop. */
async function outage(backend: Backend, backpressure: 'reject' | 'dropOldest') {
  const server = await backend.start()
  const name = uniqueName(`out_${backpressure}`)
  const run = name
  const size = RATE * 60
  const options: EventBusOptions = {
    shards: SHARDS,
    ringCapacity: RING,
    backpressure,
    // Enough retries to outlast the outage: backoff is capped at 5 s.
    retries: 30,
    adapterTimeoutMs: 2_000,
    adapter: backend.adapter(server, name),
  }
  const child = fork(path.join(__dirname, 'support', 'outage-producer.js'), [JSON.stringify({ options, run, rate: RATE, size })], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  const report = new Promise<Report>((resolve, reject) => {
    child.on('message', (m: Report) => {
      if (m.error) reject(new Error(m.error))
      if (m.done) resolve(m)
    })
    child.on('exit', (code) => reject(new Error(`producer exited with ${code}`)))
  })
  report.catch(() => undefined)
  try {
    await sleep(BEFORE_MS)
    await server.kill()
    child.send({ phase: 'down' })
    await sleep(OUTAGE_MS)
    await server.start()
    child.send({ phase: 'up' })
    await sleep(AFTER_MS)
    child.send({ stop: true })
    const r = await report
    const accepted = Buffer.from(r.acceptedMap, 'base64')
    const held = await backend.read(server, name, run, size)
    const diff = stored.compare(held, accepted)
    // What the rings may hold, however long the outage: payload and key, plus overhead.
    const eventBytes = JSON.stringify({ r: run, i: size, pad: 'x'.repeat(64) }).length + 3
    const bound = SHARDS * RING * (eventBytes + OVERHEAD) + SLACK
    return { r, diff, held, bound }
  } finally {
    child.kill('SIGKILL')
    await server.stop()
  }
}

describe.each(backends)('$name stopped for 30 s under steady ingest', (backend) => {
  it("'reject': ERR_BACKPRESSURE only with full rings, RSS bounded, every accepted event stored once", async () => {
    const { r, diff, held, bound } = await outage(backend, 'reject')
    // The producer logged its retries during the outage, and nothing unexpected.
    expect(r.logs).toMatchObject({ drops: 0, other: [] })
    expect(r.logs.retries).toBeGreaterThan(0)
    // Up: no rejection. Down: rejections, every one from a full ring.
    expect(r.rejected.before).toBe(0)
    expect(r.rejected.down).toBeGreaterThan(0)
    expect(r.notFull).toBe('')
    // The rings (4 × 4096) fill in well under 2 s at 10,000 events/s; none can fill sooner
    // than the rings' capacity takes to arrive.
    expect(r.firstRejectMs).toBeGreaterThanOrEqual(((SHARDS * RING) / RATE) * 1000 * 0.25)
    expect(r.firstRejectMs).toBeLessThan(10_000)
    expect(r.rss.down - r.rss.before).toBeLessThan(bound)
    // Accounting, then the store as nats.js / ioredis see it.
    expect(r.stats.ingested).toBe(r.accepted)
    expect(r.stats.pending).toBe(0)
    expect(r.stats.dropped).toBe(0)
    expect(r.stats.stored).toBe(r.accepted)
    expect(held.unreadable + held.foreign).toBe(0)
    expect(diff).toEqual({ lost: 0, duplicated: 0, unexpected: 0, firstLost: -1, firstDuplicated: -1 })
    measured(
      `${backend.name} 'reject': ${r.attempted} attempted, ${r.accepted} accepted and stored once, ` +
        `${r.rejected.down + r.rejected.up} rejected (first ${r.firstRejectMs} ms into the outage); ` +
        `RSS before ${(r.rss.before / 2 ** 20).toFixed(0)} MiB, max while down ${(r.rss.down / 2 ** 20).toFixed(0)} MiB (bound +${(bound / 2 ** 20).toFixed(0)} MiB)`,
    )
  })

  it("'dropOldest': everything is accepted, and droppedOldest equals what is missing from the store", async () => {
    const { r, diff, held, bound } = await outage(backend, 'dropOldest')
    expect(r.logs).toMatchObject({ other: [] })
    expect(r.logs.retries).toBeGreaterThan(0)
    expect(r.rejected.before + r.rejected.down + r.rejected.up).toBe(0)
    expect(r.accepted).toBe(r.attempted)
    expect(r.stats.ingested).toBe(r.accepted)
    expect(r.stats.pending).toBe(0)
    expect(r.stats.droppedOldest).toBeGreaterThan(0)
    expect(r.stats.dropped).toBe(r.stats.droppedOldest)
    expect(r.stats.stored + r.stats.droppedOldest).toBe(r.accepted)
    expect(held.unreadable + held.foreign).toBe(0)
    // Missing from the store, as the independent client sees it: exactly the drops.
    expect(diff.lost).toBe(r.stats.droppedOldest)
    expect(diff.duplicated).toBe(0)
    expect(diff.unexpected).toBe(0)
    expect(r.rss.down - r.rss.before).toBeLessThan(bound)
    measured(
      `${backend.name} 'dropOldest': ${r.accepted} accepted, ${r.stats.stored} stored once, ${r.stats.droppedOldest} dropped = missing; ` +
        `RSS before ${(r.rss.before / 2 ** 20).toFixed(0)} MiB, max while down ${(r.rss.down / 2 ** 20).toFixed(0)} MiB`,
    )
  })
})
