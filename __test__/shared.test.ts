// One bus across processes (DESIGN §7): producers in child processes with their own shard
// counts and scaling, readers here with other shard counts. Counts are checked with
// nats.js / ioredis, order per producer and key through poll (both orderings) and subscribe.
import { fork, type ChildProcess } from 'node:child_process'
import path from 'node:path'
import { connect } from '@nats-io/transport-node'
import { jetstreamManager } from '@nats-io/jetstream'
import { Cluster, Redis } from 'ioredis'
import type { BusEvent, EventBus, EventBusOptions } from '../index'
import { expectPerKeyOrder, trackBuses } from './support/adapter'
import { redisCluster, uniqueName, type PrivateServer } from './support/servers'

const NATS = process.env.RINGBUS_NATS_URL ?? 'nats://127.0.0.1:4222'
const REDIS = process.env.RINGBUS_REDIS_URL ?? 'redis://127.0.0.1:6379'

jest.setTimeout(180_000)

const create = trackBuses()

type Message = { scaled?: number; done?: boolean; flushed?: boolean; accepted?: number; error?: string; stats?: { stored: number } }

interface Producer {
  child: ChildProcess
  messages: Message[]
  /** Resolves with the first message that satisfies `pred`; rejects on a reported error or exit. */
  waitFor(pred: (m: Message) => boolean): Promise<Message>
}

const children: ChildProcess[] = []
afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
})

function startProducer(cfg: { name: string; options: EventBusOptions; total: number; keys: number; steps?: unknown[]; hold?: boolean }): Producer {
  const child = fork(path.join(__dirname, 'support', 'producer.js'), [JSON.stringify(cfg)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  children.push(child)
  const messages: Message[] = []
  const waiters: Array<() => void> = []
  child.on('message', (m: Message) => {
    messages.push(m)
    for (const w of waiters.splice(0)) w()
  })
  child.on('exit', () => {
    for (const w of waiters.splice(0)) w()
  })
  const waitFor = (pred: (m: Message) => boolean) =>
    new Promise<Message>((resolve, reject) => {
      const check = () => {
        const hit = messages.find(pred)
        const failed = messages.find((m) => m.error)
        if (failed) reject(new Error(`producer ${cfg.name}: ${failed.error}`))
        else if (hit) resolve(hit)
        else if (child.exitCode !== null || child.signalCode !== null) reject(new Error(`producer ${cfg.name} exited (${child.exitCode ?? child.signalCode})`))
        else waiters.push(check)
      }
      check()
    })
  return { child, messages, waitFor }
}

/** Subscribes (from the earliest event) until `n` events arrived; started before the producers. */
function collect(bus: EventBus, n: number): Promise<BusEvent[]> {
  const it = bus.subscribe({ from: 'earliest' })
  return (async () => {
    const out: BusEvent[] = []
    for await (const ev of it) {
      out.push(ev)
      if (out.length === n) break
    }
    return out
  })()
}

/** Pages through everything from the start in `ordering`. */
async function pollAll(bus: EventBus, ordering: 'shard' | 'timestamp'): Promise<BusEvent[]> {
  const out: BusEvent[] = []
  let cursor: string | undefined
  for (;;) {
    const page = await bus.poll({ limit: 1000, cursor, ordering })
    out.push(...page.events)
    cursor = page.cursor
    if (!page.hasMore) return out
  }
}

/** Every one of `n` events once, each producer's keys in ingest order. */
function expectAllInOrder(events: BusEvent[], n: number) {
  expect(events).toHaveLength(n)
  expect(new Set(events.map((e) => e.messageId)).size).toBe(n)
  expectPerKeyOrder(events)
}

interface Backend {
  name: string
  options(shards: number): EventBusOptions
  /** Events stored, counted by an independent client over shards 0..span-1. */
  stored(span: number): Promise<number>
  cleanup(): Promise<void>
}

function jetstream(): Backend {
  const stream = uniqueName('shared')
  return {
    name: 'JetStream',
    options: (shards) => ({ shards, adapter: { type: 'jetstream', servers: NATS, stream } }) as EventBusOptions,
    async stored() {
      const nc = await connect({ servers: NATS })
      try {
        return (await (await jetstreamManager(nc)).streams.info(stream)).state.messages
      } finally {
        await nc.close()
      }
    },
    async cleanup() {
      const nc = await connect({ servers: NATS })
      await (await jetstreamManager(nc)).streams.delete(stream).catch(() => undefined)
      await nc.close()
    },
  }
}

function redis(urls?: string[]): Backend {
  const keyPrefix = uniqueName('shared')
  const client = () => (urls ? new Cluster(urls.map((u) => ({ host: '127.0.0.1', port: Number(new URL(u).port) }))) : new Redis(REDIS))
  return {
    name: urls ? 'Redis Cluster' : 'Redis',
    options: (shards) => ({ shards, adapter: urls ? { type: 'redis', nodes: urls, keyPrefix } : { type: 'redis', url: REDIS, keyPrefix } }) as EventBusOptions,
    async stored(span) {
      const c = client()
      try {
        let n = 0
        for (let s = 0; s < span; s++) n += await c.xlen(`{${keyPrefix}:${s}}`)
        return n
      } finally {
        c.disconnect()
      }
    },
    async cleanup() {
      const c = client()
      try {
        for (let s = 0; s < 16; s++) await c.del(`{${keyPrefix}:${s}}`)
      } finally {
        c.disconnect()
      }
    },
  }
}

/**
 * A producer in a child process with 4 shards scales to 8 and back to 6 while ingesting;
 * a reader here with `shards: 2` gets every event in per-key order through a subscriber
 * started first, through poll in both orderings, and counts match the independent client.
 */
async function scalingProducerTest(backend: Backend) {
  const total = 30_000
  const reader = await create(backend.options(2))
  const live = collect(reader, total)
  const producer = startProducer({
    name: 'a',
    options: backend.options(4),
    total,
    keys: 120,
    steps: [
      { at: 6000, scale: 4 },
      { at: 16_000, scale: -2 },
    ],
  })
  const done = await producer.waitFor((m) => !!m.done)
  expect(done.accepted).toBe(total)
  expect(done.stats?.stored).toBe(total)
  expect(producer.messages.filter((m) => m.scaled).map((m) => m.scaled)).toEqual([4, -2])
  expect(await backend.stored(8)).toBe(total)
  const subscribed = await live
  expectAllInOrder(subscribed, total)
  expect(new Set(subscribed.map((e) => e.shardId))).toEqual(new Set([0, 1, 2, 3, 4, 5, 6, 7]))
  expectAllInOrder(await pollAll(reader, 'shard'), total)
  expectAllInOrder(await pollAll(reader, 'timestamp'), total)
  await backend.cleanup()
}

describe.each([
  ['JetStream', jetstream],
  ['Redis', () => redis()],
])('one bus across processes on %s', (_name, make) => {
  it('a reader with 2 shards gets all of a 4 → 8 → 6 shard producer in another process, in per-key order', async () => {
    await scalingProducerTest(make())
  })

  it('two producer processes (3 and 5 shards, one scaling) and a 1-shard live subscriber: all events, each producer in order', async () => {
    const backend = make()
    const reader = await create(backend.options(1))
    const live = collect(reader, 30_000)
    const a = startProducer({ name: 'a', options: backend.options(3), total: 12_000, keys: 40 })
    const b = startProducer({ name: 'b', options: backend.options(5), total: 18_000, keys: 60, steps: [{ at: 5000, scale: 2 }, { at: 11_000, scale: -3 }] })
    const [da, db] = await Promise.all([a.waitFor((m) => !!m.done), b.waitFor((m) => !!m.done)])
    expect([da.accepted, db.accepted]).toEqual([12_000, 18_000])
    expect(await backend.stored(7)).toBe(30_000)
    const events = await live
    expectAllInOrder(events, 30_000)
    expect(events.filter((e) => e.key?.startsWith('a-'))).toHaveLength(12_000)
    expectAllInOrder(await pollAll(reader, 'shard'), 30_000)
    await backend.cleanup()
  })

  it('a producer SIGKILLed right after a scaleUp and restarted: nothing flushed is lost, readers see every shard', async () => {
    const backend = make()
    const first = startProducer({ name: 'a', options: backend.options(2), total: 4000, keys: 30, steps: [{ at: 2000, scale: 3, wait: true }], hold: true })
    const flushed = await first.waitFor((m) => !!m.flushed)
    expect(flushed).toMatchObject({ accepted: 4000, dropped: 0 })
    first.child.kill('SIGKILL')
    await new Promise((r) => first.child.once('exit', r))
    // The restarted service is a new producer on the same store, with its first shard count.
    const second = startProducer({ name: 'b', options: backend.options(2), total: 1000, keys: 30 })
    expect((await second.waitFor((m) => !!m.done)).accepted).toBe(1000)
    expect(await backend.stored(5)).toBe(5000)
    const reader = await create(backend.options(1))
    const events = await pollAll(reader, 'shard')
    expectAllInOrder(events, 5000)
    expect(new Set(events.filter((e) => e.key?.startsWith('a-')).map((e) => e.shardId))).toEqual(new Set([0, 1, 2, 3, 4]))
    expectAllInOrder(await pollAll(reader, 'timestamp'), 5000)
    await backend.cleanup()
  })
})

describe('one bus across processes on a 3-master Redis Cluster', () => {
  let nodes: PrivateServer[] = []
  beforeAll(async () => {
    nodes = await redisCluster()
  })
  afterAll(async () => {
    await Promise.all(nodes.map((n) => n.stop()))
  })

  it('a reader with 2 shards gets all of a 4 → 8 → 6 shard producer in another process, in per-key order', async () => {
    await scalingProducerTest(redis(nodes.map((n) => `redis://127.0.0.1:${n.port}`)))
  })
})
