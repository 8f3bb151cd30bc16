// Shared by the suites that run against real servers (JetStream, Redis).
import { connect } from '@nats-io/transport-node'
import { AckPolicy, DeliverPolicy, jetstreamManager } from '@nats-io/jetstream'
import Redis from 'ioredis'
import { EventBus, type BusEvent, type EventBusOptions } from '../../index'

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

export const NATS = process.env.RINGBUS_NATS_URL ?? 'nats://127.0.0.1:4222'
export const REDIS = process.env.RINGBUS_REDIS_URL ?? 'redis://127.0.0.1:6379'

/**
 * For suites that run on every backend: `adapterFor(kind, name)` gives the adapter option
 * of `kind` ('memory', 'jetstream' or 'redis') on `name`. The JetStream streams it named
 * (and their group buckets) are deleted after the file.
 */
export function storesForFile(): (kind: string, name: string) => EventBusOptions['adapter'] {
  const streams: string[] = []
  afterAll(async () => {
    if (streams.length === 0) return
    const nc = await connect({ servers: NATS })
    const jsm = await jetstreamManager(nc)
    for (const s of streams) {
      for (const name of [s, `KV_rbg_${s}`]) await jsm.streams.delete(name).catch(() => undefined)
    }
    await nc.close()
  })
  return (kind, name) => {
    if (kind === 'jetstream') {
      streams.push(name)
      return { type: 'jetstream', servers: NATS, stream: name }
    }
    if (kind === 'redis') return { type: 'redis', url: REDIS, keyPrefix: name }
    return { type: 'memory' }
  }
}

/**
 * `create(options)` for a test file: every bus it makes is shut down after the file, even
 * when a test fails part-way, so no pending promise outlives the run.
 */
export function trackBuses(): (options: EventBusOptions) => Promise<EventBus> {
  const created: EventBus[] = []
  afterAll(async () => {
    await Promise.all(created.map((b) => b.shutdown()))
  })
  return async (options) => {
    const bus = await EventBus.create(options)
    created.push(bus)
    return bus
  }
}

/** Reads every page, retrying pages that fail while a server restarts or a cluster elects. */
export async function readAll(bus: EventBus, limit = 1000): Promise<BusEvent[]> {
  const out: BusEvent[] = []
  let cursor: string | undefined
  for (let failures = 0; ; ) {
    try {
      const page = await bus.poll({ limit, cursor })
      out.push(...page.events)
      cursor = page.cursor
      if (!page.hasMore) return out
    } catch (e) {
      const code = (e as { code?: string }).code
      if ((code !== 'ERR_ADAPTER' && code !== 'ERR_TIMEOUT') || ++failures > 50) throw e
      await sleep(200)
    }
  }
}

/** Ingests `{ i, key }` events keyed over 97 keys; waits while the rings are full, never drops. */
export async function ingestN(bus: EventBus, n: number, onProgress?: (i: number) => void): Promise<number> {
  let accepted = 0
  for (let i = 0; i < n; i++) {
    try {
      bus.ingest({ i, key: `k${i % 97}` }, { key: `k${i % 97}` })
      accepted++
      if (onProgress && i % 1000 === 0) onProgress(i)
    } catch (e) {
      if ((e as { code?: string }).code !== 'ERR_BACKPRESSURE') throw e
      await sleep(5)
      i--
    }
  }
  return accepted
}

/** Each event's key matches its payload and every key's `i` strictly increases. */
export function expectPerKeyOrder(events: BusEvent[]) {
  // Counted in plain JS: one expect() per event would dominate the run time.
  const last = new Map<string, number>()
  let wrongKey = 0
  let outOfOrder = 0
  for (const ev of events) {
    const { i, key } = JSON.parse(ev.raw) as { i: number; key: string }
    if (ev.key !== key) wrongKey++
    if (i <= (last.get(key) ?? -1)) outOfOrder++
    last.set(key, i)
  }
  expect({ wrongKey, outOfOrder }).toEqual({ wrongKey: 0, outOfOrder: 0 })
}

/** Subscribes from the earliest event until `n` arrived. */
export async function subscribeN(bus: EventBus, n: number): Promise<BusEvent[]> {
  const out: BusEvent[] = []
  if (n === 0) return out
  for await (const ev of bus.subscribe({ from: 'earliest' })) {
    out.push(ev)
    if (out.length === n) break
  }
  return out
}

/** Waits until `done()` holds, checking every 20 ms; fails after `ms`. */
export async function until(done: () => Promise<boolean> | boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms
  while (!(await done())) {
    if (Date.now() > end) throw new Error(`condition not reached within ${ms} ms`)
    await sleep(20)
  }
}

/**
 * Calls `ingest(k)` every 10 ms until `pending` (a subscriber's first `next()`) settles, and
 * returns its result: a subscriber `from: 'latest'` has started once it receives one of
 * these, without guessing how long starting takes.
 */
export async function feedUntil<T>(pending: Promise<T>, ingest: (k: number) => void): Promise<T> {
  let settled = false
  const watched = pending.finally(() => {
    settled = true
  })
  for (let k = 0; !settled; k++) {
    ingest(k)
    await Promise.race([watched, sleep(10)])
  }
  return watched
}

/**
 * Starts subscribers `from: 'latest'` without guessing how long starting takes: probes
 * (`{ probe: k }`, all on one key, so in order) are ingested until every subscriber has one,
 * then each reads on to the last probe. Afterwards every subscriber has nothing left to
 * read: the next event ingested is the next each one gets.
 */
export async function startSubscribers(bus: EventBus, subs: AsyncIterator<BusEvent>[]): Promise<void> {
  let last = -1
  const firsts = await feedUntil(Promise.all(subs.map((s) => s.next())), (k) => {
    bus.ingest({ probe: k }, { key: 'probe' })
    last = k
  })
  const probe = (step: IteratorResult<BusEvent>) => (JSON.parse((step.value as BusEvent).raw) as { probe: number }).probe
  await Promise.all(
    subs.map(async (s, i) => {
      for (let step = firsts[i]; probe(step) !== last; step = await s.next()) {
        // Earlier probes: read past them.
      }
    }),
  )
}

/**
 * Shared-bus discovery: `writer` (8 shards) stores 800 keyed events, `reader` (2 shards) on
 * the same store reads them all; then the writer grows to 10 shards and the reader's cursor
 * continues into the new shards. Returns what the reader saw, for counts by an independent
 * client.
 */
export async function expectReaderSeesEveryShard(writer: EventBus, reader: EventBus): Promise<BusEvent[]> {
  for (let i = 0; i < 800; i++) writer.ingest({ i, key: `k${i % 80}` }, { key: `k${i % 80}` })
  await writer.flush()
  let cursor: string | undefined
  const seen: BusEvent[] = []
  for (;;) {
    const page = await reader.poll({ limit: 1000, cursor })
    seen.push(...page.events)
    cursor = page.cursor
    if (!page.hasMore) break
  }
  expect(seen).toHaveLength(800)
  expect(new Set(seen.map((e) => e.shardId)).size).toBe(8)
  await writer.scaleUp(2)
  for (let i = 800; i < 1000; i++) writer.ingest({ i, key: `k${i % 80}` }, { key: `k${i % 80}` })
  await writer.flush()
  // The reader learns of shards 8 and 9 within its discovery interval (about a second).
  await until(async () => {
    const page = await reader.poll({ limit: 1000, cursor })
    seen.push(...page.events)
    cursor = page.cursor
    return seen.length >= 1000
  })
  expect(seen).toHaveLength(1000)
  expect(new Set(seen.map((e) => e.messageId)).size).toBe(1000)
  expect(seen.some((e) => e.shardId >= 8)).toBe(true)
  // A subscriber of the reader from the start gets all of it too.
  const sub = reader.subscribe({ from: 'earliest' })
  const got = new Set<string>()
  for await (const ev of sub) {
    got.add(ev.messageId)
    if (got.size === 1000) break
  }
  expect(got.size).toBe(1000)
  return seen
}

/**
 * Events stored after each shard's committed position of a group, counted with an
 * independent client (ioredis XRANGE, a nats.js consumer's pending count); undefined on
 * memory, which no other client can read.
 */
export async function lagCountedIndependently(
  kind: string,
  name: string,
  shards: Array<{ id: number; committed?: string }>,
): Promise<number | undefined> {
  let total = 0
  if (kind === 'redis') {
    const redis = new Redis(REDIS)
    for (const s of shards) total += (await redis.xrange(`{${name}:${s.id}}`, s.committed === undefined ? '-' : `(${s.committed}`, '+')).length
    await redis.quit()
    return total
  }
  if (kind !== 'jetstream') return undefined
  const nc = await connect({ servers: NATS })
  const jsm = await jetstreamManager(nc)
  for (const s of shards) {
    const ci = await jsm.consumers.add(name, {
      filter_subject: `${name}.${s.id}`,
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: Number(s.committed ?? 0) + 1,
      ack_policy: AckPolicy.None,
    })
    total += ci.num_pending
    await jsm.consumers.delete(name, ci.name)
  }
  await nc.close()
  return total
}
