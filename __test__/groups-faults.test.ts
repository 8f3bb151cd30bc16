// Consumer groups under faults, on JetStream and Redis: member processes in one group, one
// SIGKILLed mid-stream; a server killed and restarted while a group consumes. Counts are
// checked against the store with nats.js / ioredis; handlings are reported by the member
// processes before their handlers resolve.
import { fork, type ChildProcess } from 'node:child_process'
import path from 'node:path'
import { connect } from '@nats-io/transport-node'
import { jetstreamManager } from '@nats-io/jetstream'
import { Redis } from 'ioredis'
import type { EventBusOptions, GroupEvent, WorkerStats } from '../index'
import { sleep, trackBuses, until } from './support/adapter'
import { privateNats, privateRedis, uniqueName, type PrivateServer } from './support/servers'
import { measured } from './support/measured'
import { expectLogs, logged } from './support/logs'

// The server restart below makes the producer retry and reconnect; asserted there.
expectLogs(/^write failed, retrying: /, /^disconnected from NATS; reconnecting/)

const NATS = process.env.RINGBUS_NATS_URL ?? 'nats://127.0.0.1:4222'
const REDIS = process.env.RINGBUS_REDIS_URL ?? 'redis://127.0.0.1:6379'
const LEASE_MS = 2000

jest.setTimeout(180_000)

const create = trackBuses()
const children: ChildProcess[] = []
const servers: PrivateServer[] = []
afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
  for (const s of servers) await s.stop()
})

type Report = { h?: [number, string, number]; stats?: WorkerStats; closed?: boolean; error?: string }

interface MemberProcess {
  child: ChildProcess
  reports: Report[]
  last: () => WorkerStats | undefined
}

/** Every handling reported by any member, in arrival order: [i, key, deliveries, member]. */
type Handling = [number, string, number, string]

/** `at`, when given, gets the arrival time of each handling, index for index with `handled`. */
function startMember(name: string, options: EventBusOptions, group: string, handled: Handling[], at?: number[]): MemberProcess {
  const cfg = { options, group, member: name, leaseMs: LEASE_MS }
  const child = fork(path.join(__dirname, 'support', 'member.js'), [JSON.stringify(cfg)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  children.push(child)
  const reports: Report[] = []
  let stats: WorkerStats | undefined
  child.on('message', (m: Report) => {
    if (m.error) throw new Error(`member ${name}: ${m.error}`)
    if (m.h) {
      handled.push([...m.h, name])
      at?.push(Date.now())
    }
    else reports.push(m)
    if (m.stats) stats = m.stats
  })
  return { child, reports, last: () => stats }
}

type Store = { name: string; options: (shards: number, url?: string) => EventBusOptions; count: (options: EventBusOptions) => Promise<number> }

const stores: Store[] = [
  {
    name: 'jetstream',
    options: (shards, url = NATS) => ({ shards, adapter: { type: 'jetstream', servers: url, stream: uniqueName('gf') } }),
    count: async (o) => {
      const a = o.adapter as { servers: string; stream: string }
      const nc = await connect({ servers: a.servers })
      try {
        return (await (await jetstreamManager(nc)).streams.info(a.stream)).state.messages
      } finally {
        await nc.close()
      }
    },
  },
  {
    name: 'redis',
    options: (shards, url = REDIS) => ({ shards, adapter: { type: 'redis', url, keyPrefix: uniqueName('gf') } }),
    count: async (o) => {
      const a = o.adapter as { url: string; keyPrefix: string }
      const r = new Redis(a.url)
      try {
        let n = 0
        for (let s = 0; s < (o.shards ?? 1); s++) n += await r.xlen(`{${a.keyPrefix}:${s}}`)
        return n
      } finally {
        r.disconnect()
      }
    },
  },
]

/** Each key's first handlings, in the order reported, follow ingest order. */
function expectFirstHandlingsInOrder(handled: Handling[]) {
  const seen = new Set<number>()
  const last = new Map<string, number>()
  let outOfOrder = 0
  for (const [i, key] of handled) {
    if (seen.has(i)) continue
    seen.add(i)
    if (i <= (last.get(key) ?? -1)) outOfOrder++
    last.set(key, i)
  }
  expect(outOfOrder).toBe(0)
}

describe.each(stores)('consumer group processes on $name', ({ name, options, count }) => {
  it('a SIGKILLed member loses its shards to the other within the lease; every event is handled', async () => {
    const opts = options(4)
    const producer = await create(opts)
    const group = uniqueName('kill')
    const handled: Handling[] = []
    const a = startMember('a', { ...opts, shards: 1 }, group, handled)
    const b = startMember('b', { ...opts, shards: 1 }, group, handled)
    const total = 4000
    // The members (1 shard each) learn of shards 1-3 from the store, once they hold events.
    const first = 200
    for (let i = 0; i < first; i++) producer.ingest({ i, key: `k${i % 40}` }, { key: `k${i % 40}` })
    await producer.flush()
    await until(() => a.last()?.consumer.shards.length === 2 && b.last()?.consumer.shards.length === 2, 20_000)
    let killedAt = 0
    let tookOver = 0
    let takeover: Promise<void> = Promise.resolve()
    for (let i = first; i < total; i++) {
      producer.ingest({ i, key: `k${i % 40}` }, { key: `k${i % 40}` })
      if (i % 200 === 199) {
        await producer.flush()
        await sleep(20)
      }
      if (i === 1600) {
        // Mid-stream, with events of A's shards delivered and not yet acked.
        await until(() => handled.some(([, , , m]) => m === 'a'), 10_000)
        a.child.kill('SIGKILL')
        killedAt = Date.now()
        // Watched from the kill on, while the ingest goes on, so the time is the takeover's.
        takeover = until(() => {
          if (!tookOver && b.last()?.consumer.shards.length === 4) tookOver = Date.now()
          return tookOver > 0
        }, 20_000)
        // Awaited after the loop; a failure in between is reported there, not as unhandled.
        takeover.catch(() => undefined)
      }
    }
    expect((await producer.flush()).dropped).toBe(0)
    // B takes A's shards once A's leases run out (LEASE_MS), at its next renewal.
    await takeover
    expect(tookOver - killedAt).toBeLessThan(LEASE_MS + LEASE_MS / 3 + 1500)
    await until(() => new Set(handled.map(([i]) => i)).size === total, 60_000)
    expect(await count(opts)).toBe(total)
    expectFirstHandlingsInOrder(handled)
    // Handled again only after the kill: what A handled and had not committed, by B.
    const byEvent = new Map<number, string[]>()
    for (const [i, , , m] of handled) byEvent.set(i, [...(byEvent.get(i) ?? []), m])
    const repeated = [...byEvent.values()].filter((ms) => ms.length > 1)
    expect(repeated.filter((ms) => ms[0] !== 'a' || ms.slice(1).some((m) => m !== 'b'))).toEqual([])
    measured(`${name}: ${repeated.length} of ${total} events handled again after the kill; takeover ${tookOver - killedAt} ms`)
    // Bounded by what A held (maxInFlight, 1000) plus its acks of the last commit interval.
    expect(repeated.length).toBeLessThan(1000)

    // A member started later gets nothing already acked, then only what is new.
    await until(() => (b.last()?.consumer.acked ?? 0) + handled.filter(([, , , m]) => m === 'a').length >= total)
    const late = await producer.consumer({ group, member: 'late', leaseMs: LEASE_MS })
    b.child.send('close')
    await until(() => b.reports.some((r) => r.closed), 20_000)
    await until(() => late.stats().shards.length === 4, 20_000)
    await sleep(500)
    expect(late.stats().delivered).toBe(0)
    for (let i = total; i < total + 20; i++) producer.ingest({ i, key: `k${i % 40}` }, { key: `k${i % 40}` })
    await producer.flush()
    const got: number[] = []
    for await (const ev of late as AsyncIterable<GroupEvent>) {
      got.push(JSON.parse(ev.raw).i)
      late.ack(ev)
      if (got.length === 20) break
    }
    expect(got.sort((x, y) => x - y)).toEqual(Array.from({ length: 20 }, (_, j) => total + j))
  })

  it('after a server kill and restart, a new bus and member continue from the committed positions', async () => {
    const server = name === 'jetstream' ? await privateNats() : await privateRedis()
    servers.push(server)
    const url = name === 'jetstream' ? `nats://127.0.0.1:${server.port}` : `redis://127.0.0.1:${server.port}`
    const opts = { ...options(3, url), retries: 100 }
    const producer = await create(opts)
    const group = uniqueName('restart')
    const handled: Handling[] = []
    const at: number[] = []
    // Member A (its own process and bus) works while events arrive; it dies with the server.
    const a = startMember('a', opts, group, handled, at)
    const total = 3000
    let killedAt = 0
    for (let i = 0; i < total; i++) {
      producer.ingest({ i, key: `k${i % 30}` }, { key: `k${i % 30}` })
      // Slowly before the kill, so that A acked plenty well before it.
      if (i % 100 === 99) await sleep(i < 1500 ? 150 : 10)
      if (i === 1500) {
        await until(() => handled.length > 1000, 20_000)
        a.child.kill('SIGKILL')
        killedAt = Date.now()
        await server.kill()
        await sleep(500)
        await server.start()
      }
    }
    expect((await producer.flush()).dropped).toBe(0)
    // The producer saw the restart (its writes were retried or its client reconnected).
    expect(logged(/^write failed, retrying: |^disconnected from NATS; reconnecting/, 'warn').length).toBeGreaterThan(0)
    // Member B: a new process and bus, after the restart, on what the store kept.
    startMember('b', opts, group, handled, at)
    await until(() => new Set(handled.map(([i]) => i)).size === total, 90_000)
    expect(await count(opts)).toBe(total)
    const byA = new Map<number, number>()
    handled.forEach(([i, , , m], k) => m === 'a' && !byA.has(i) && byA.set(i, at[k]))
    const repeated = handled.filter(([i, , , m]) => m === 'b' && byA.has(i)).map(([i]) => i)
    // What B repeats is what A had not committed: the handlers running at the kill, and the
    // acks of A's last commit interval (50 ms; 500 ms allowed for IPC and the write).
    const lastMoments = [...byA.values()].filter((t) => t >= killedAt - 500).length
    expect(repeated.length).toBeLessThanOrEqual(8 + lastMoments)
    // Events A acked well before the kill are never handled again.
    const early = [...byA.entries()].filter(([, t]) => t < killedAt - 1000).map(([i]) => i)
    expect(early.length).toBeGreaterThan(500)
    expect(repeated.filter((i) => early.includes(i))).toEqual([])
  })
})
