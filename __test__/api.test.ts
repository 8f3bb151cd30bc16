import { EventBus } from '../index'
import { expectInvariant, pollAll, thrown } from './helpers'
import { feedUntil, sleep } from './support/adapter'
import { privateRedis } from './support/servers'

describe('EventBus on the memory adapter', () => {
  let bus: EventBus
  afterEach(async () => {
    await bus?.shutdown()
  })

  it('ingests objects, JSON strings and bytes, and reads them back', async () => {
    bus = new EventBus({ shards: 3 })
    const s1 = bus.ingest({ orderId: 1, total: 10 }, { key: 'customer-7' })
    const s2 = bus.ingest('{"orderId":2,"total":20}', { key: 'customer-7' })
    bus.ingest(Buffer.from([0, 255, 1, 2]))
    bus.ingest(new Uint8Array([9, 8, 7]))
    expect(s1).toBe(s2)
    expect(s1).toBeGreaterThanOrEqual(0)
    expect(s1).toBeLessThan(3)

    const flushed = await bus.flush()
    // Some events may have been stored before the call: flush covers what was still pending.
    expect(flushed.dropped).toBe(0)
    expect(flushed.stored).toBe(flushed.pending)
    expect(flushed.pending).toBeLessThanOrEqual(4)
    expect(bus.stats()).toMatchObject({ ingested: 4, stored: 4, pending: 0 })

    const events = await pollAll(bus)
    expect(events).toHaveLength(4)
    const byRaw = new Map(events.map((e) => [e.raw, e]))
    const first = byRaw.get('{"orderId":1,"total":10}')!
    expect(first.key).toBe('customer-7')
    expect(first.shardId).toBe(s1)
    expect(typeof first.timestamp).toBe('number')
    expect(Math.abs(first.timestamp - Date.now())).toBeLessThan(60_000)
    expect(first.bytes).toBeUndefined()
    expect(first.messageId).toMatch(/^[0-9a-f]{16}-0-\d+-\d+$/)
    const second = byRaw.get('{"orderId":2,"total":20}')!
    expect(second.seq).toBe(first.seq + 1)

    const binary = events.filter((e) => e.bytes !== undefined)
    expect(binary.map((e) => [...e.bytes!]).sort()).toEqual([
      [0, 255, 1, 2],
      [9, 8, 7],
    ])
    expect(Buffer.isBuffer(binary[0].bytes)).toBe(true)
    // Plain objects with exactly these properties: absent ones are left out.
    expect(Object.keys(first).sort()).toEqual(['id', 'key', 'messageId', 'raw', 'seq', 'shardId', 'timestamp'])
    expect(Object.keys(binary[0]).sort()).toEqual(['bytes', 'id', 'messageId', 'raw', 'seq', 'shardId', 'timestamp'])
    expectInvariant(bus)
  })

  it('routes a key to the same shard every time', () => {
    bus = new EventBus({ shards: 8 })
    for (let k = 0; k < 50; k++) {
      const key = `user-${k}`
      const shard = bus.ingest({ k }, { key })
      for (let i = 0; i < 5; i++) expect(bus.ingest({ k, i }, { key })).toBe(shard)
    }
  })

  it('keeps per-key order in pages with a filter and never repeats an event', async () => {
    bus = new EventBus({ shards: 4 })
    const n = 20_000
    for (let i = 0; i < n; i++) bus.ingest({ i, key: `k${i % 17}`, kind: i % 3 === 0 ? 'a' : 'b' }, { key: `k${i % 17}` })
    await bus.flush()
    const filter = { kind: 'a', i: { $gte: 30 } }
    const events = await pollAll(bus, { limit: 333, filter })
    const values = events.map((e) => JSON.parse(e.raw) as { i: number; key: string; kind: string })
    const expected = Array.from({ length: n }, (_, i) => i).filter((i) => i % 3 === 0 && i >= 30)
    expect(values.map((v) => v.i).sort((a, b) => a - b)).toEqual(expected)
    const lastByKey = new Map<string, number>()
    for (const v of values) {
      expect(v.i).toBeGreaterThan(lastByKey.get(v.key) ?? -1)
      lastByKey.set(v.key, v.i)
    }
  })

  it('cursors resume where the last page ended', async () => {
    bus = new EventBus({ shards: 2 })
    bus.ingestBatch(Array.from({ length: 10 }, (_, i) => ({ i })))
    await bus.flush()
    const first = await bus.poll({ limit: 4 })
    expect(first.events).toHaveLength(4)
    expect(first.hasMore).toBe(true)
    const rest = await pollAll(bus, { cursor: first.cursor })
    expect(rest).toHaveLength(6)
    const ids = new Set([...first.events, ...rest].map((e) => e.id))
    expect(ids.size).toBe(10)
    // Polling past the end returns nothing and keeps the cursor usable.
    const end = await bus.poll({ cursor: (await bus.poll({ limit: 100 })).cursor })
    expect(end.events).toHaveLength(0)
    expect(end.hasMore).toBe(false)
  })

  it('ingestBatch takes many events in one call, with shared or per-event keys', async () => {
    bus = new EventBus({ shards: 4 })
    expect(bus.ingestBatch([{ a: 1 }, '{"a":2}', Buffer.from('x')], { key: 'same' })).toBe(3)
    expect(bus.ingestBatch([{ b: 1 }, { b: 2 }], { keys: ['p', 'q'] })).toBe(2)
    await bus.flush()
    const events = await pollAll(bus)
    expect(events.filter((e) => e.key === 'same').map((e) => e.shardId)).toEqual(
      Array(3).fill(events.find((e) => e.key === 'same')!.shardId),
    )
    expect(events.map((e) => e.key).sort()).toEqual(['p', 'q', 'same', 'same', 'same'])
    const err = thrown(() => bus.ingestBatch([{ a: 1 }], { keys: ['a', 'b'] }))
    expect(err.code).toBe('ERR_INVALID_EVENT')
  })

  it('ingestBatch stores each payload of a mixed batch byte-exact, and refuses the whole batch at its first bad event', async () => {
    bus = new EventBus({ shards: 3 })
    // Strings and bytes of one batch share one buffer natively: each must come back whole.
    const batch: Array<string | Buffer | object> = []
    for (let i = 0; i < 60; i++) {
      if (i % 3 === 0) batch.push(JSON.stringify({ i, text: 'ü😀'.repeat(i % 7), pad: 'x'.repeat(i * 37) }))
      else if (i % 3 === 1) batch.push(Buffer.from(Array.from({ length: i * 11 }, (_, j) => (i * 31 + j) % 256)))
      else batch.push({ i, obj: true })
    }
    batch.push('""', Buffer.alloc(0), '0')
    expect(bus.ingestBatch(batch, { keys: batch.map((_, i) => `k${i % 5}`) })).toBe(63)
    await bus.flush()
    const events = await pollAll(bus)
    expect(events).toHaveLength(63)
    const stored = (b: string | Buffer | object) => (Buffer.isBuffer(b) ? b.toString('hex') : typeof b === 'string' ? b : JSON.stringify(b))
    const got = events.map((e) => (e.bytes !== undefined ? Buffer.from(e.bytes).toString('hex') : e.raw)).sort()
    expect(got).toEqual(batch.map(stored).sort())

    const before = bus.stats().ingested
    const err = thrown(() => bus!.ingestBatch(['{"ok":1}', Buffer.from('fine'), '{"bad":', 42 as never, 'nope']))
    expect(err).toMatchObject({ code: 'ERR_INVALID_EVENT' })
    expect(err.message).toMatch(/^events\[2\]: string is not valid JSON/)
    expect(bus.stats().ingested).toBe(before)
  })

  it('timestamp ordering merges shards', async () => {
    bus = new EventBus({ shards: 4 })
    for (let i = 0; i < 2000; i++) bus.ingest({ i })
    await bus.flush()
    const events = await pollAll(bus, { ordering: 'timestamp', limit: 50 })
    expect(events).toHaveLength(2000)
    for (let i = 1; i < events.length; i++) {
      expect(events[i].timestamp).toBeGreaterThanOrEqual(events[i - 1].timestamp)
    }
  })

  it('polls only the requested shards', async () => {
    bus = new EventBus({ shards: 4 })
    for (let i = 0; i < 400; i++) bus.ingest({ i }, { key: `k${i}` })
    await bus.flush()
    const events = await pollAll(bus, { shards: [1, 3] })
    expect(events.length).toBeGreaterThan(0)
    expect(new Set(events.map((e) => e.shardId))).toEqual(new Set([1, 3]))
    const perShard = bus.shardStats()
    expect(events).toHaveLength(perShard[1].stored + perShard[3].stored)
  })

  it('reports stats as plain numbers with ingested == stored + dropped + pending', async () => {
    bus = new EventBus({ shards: 2 })
    for (let i = 0; i < 1000; i++) {
      bus.ingest({ i })
      if (i % 100 === 0) expectInvariant(bus)
    }
    await bus.flush()
    const s = bus.stats()
    for (const v of Object.values(s)) expect(typeof v === 'number' || typeof v === 'string').toBe(true)
    expect(s).toMatchObject({ state: 'running', shards: 2, ingested: 1000, stored: 1000, dropped: 0, pending: 0 })
    const shards = bus.shardStats()
    expect(shards.map((x) => x.id)).toEqual([0, 1])
    expect(shards.reduce((a, x) => a + x.stored, 0)).toBe(1000)
    expect(shards[0]).toMatchObject({ state: 'active', capacity: 65536, fillRatio: 0 })
    expect(bus.numShards).toBe(2)
    await expect(bus.isHealthy()).resolves.toBe(true)
  })

  it('EventBus.create resolves to a working bus', async () => {
    bus = await EventBus.create({ shards: 1, adapter: { type: 'memory', maxEvents: 10 } })
    for (let i = 0; i < 25; i++) bus.ingest({ i })
    await bus.flush()
    // Retention keeps the newest 10.
    const events = await pollAll(bus)
    expect(events.map((e) => JSON.parse(e.raw).i).sort((a: number, b: number) => a - b)).toEqual([
      15, 16, 17, 18, 19, 20, 21, 22, 23, 24,
    ])
  })

  it('the noop adapter accepts and discards', async () => {
    bus = new EventBus({ adapter: { type: 'noop' } })
    for (let i = 0; i < 100; i++) bus.ingest({ i })
    expect(await bus.flush()).toEqual({ pending: expect.any(Number), stored: expect.any(Number), dropped: 0 })
    expect(bus.stats().stored).toBe(100)
    expect((await bus.poll()).events).toHaveLength(0)
  })
})

describe('subscribe', () => {
  let bus: EventBus
  afterEach(async () => {
    await bus?.shutdown()
  })

  it('delivers stored and new events, filters, and releases on break', async () => {
    bus = new EventBus({ shards: 2 })
    bus.ingest({ n: 1, kind: 'x' })
    bus.ingest({ n: 2, kind: 'y' })
    setTimeout(() => {
      bus.ingest({ n: 3, kind: 'x' })
    }, 50)
    const seen: number[] = []
    for await (const ev of bus.subscribe({ filter: { kind: 'x' } })) {
      seen.push(JSON.parse(ev.raw).n)
      if (seen.length === 2) break
    }
    expect(seen).toEqual([1, 3])
  })

  it("from: 'latest' skips what was stored before iteration began", async () => {
    bus = new EventBus()
    bus.ingest({ old: true })
    await bus.flush()
    const sub = bus.subscribe({ from: 'latest' })
    const it = sub[Symbol.asyncIterator]()
    const r = await feedUntil(it.next(), (k) => bus.ingest({ fresh: k }))
    expect(r.done).toBe(false)
    expect(JSON.parse(r.value!.raw)).toHaveProperty('fresh')
    await it.return!()
  })

  it('resumes from a cursor', async () => {
    bus = new EventBus({ shards: 1 })
    for (let i = 0; i < 5; i++) bus.ingest({ i })
    await bus.flush()
    const page = await bus.poll({ limit: 3 })
    const got: number[] = []
    for await (const ev of bus.subscribe({ from: page.cursor })) {
      got.push(JSON.parse(ev.raw).i)
      if (got.length === 2) break
    }
    expect(got).toEqual([3, 4])
  })

  it('ends pending iterations on shutdown', async () => {
    bus = new EventBus()
    const done = (async () => {
      let n = 0
      for await (const _ of bus.subscribe({ from: 'latest' })) n++
      return n
    })()
    await new Promise((r) => setTimeout(r, 30))
    await bus.shutdown()
    await expect(done).resolves.toBe(0)
  })
})

describe('lifecycle', () => {
  it('shutdown drains, is idempotent and safe to call concurrently', async () => {
    const bus = new EventBus({ shards: 4 })
    for (let i = 0; i < 50_000; i++) bus.ingest({ i })
    const [a, b] = await Promise.all([bus.shutdown(), bus.shutdown()])
    expect(a).toEqual(b)
    expect(a).toMatchObject({ state: 'closed', ingested: 50_000, stored: 50_000, dropped: 0, pending: 0 })
    await expect(bus.shutdown()).resolves.toMatchObject({ state: 'closed' })
    expect(thrown(() => bus.ingest({ late: true })).code).toBe('ERR_SHUT_DOWN')
    expect(thrown(() => bus.ingestBatch([{ late: true }])).code).toBe('ERR_SHUT_DOWN')
    await expect(bus.poll()).rejects.toMatchObject({ code: 'ERR_SHUT_DOWN' })
    await expect(bus.flush()).rejects.toMatchObject({ code: 'ERR_SHUT_DOWN' })
    expect(thrown(() => bus.subscribe()).code).toBe('ERR_SHUT_DOWN')
  })

  it('shutdown() ends a poll that cannot finish (its server stopped answering) with ERR_SHUT_DOWN', async () => {
    const server = await privateRedis()
    try {
      const url = `redis://127.0.0.1:${server.port}`
      const bus = await EventBus.create({ adapter: { type: 'redis', url, keyPrefix: 'stuck', commandTimeoutMs: 60_000 }, shutdownTimeoutMs: 2000 })
      bus.ingest({ a: 1 })
      await bus.flush()
      server.proc!.kill('SIGSTOP')
      const order: string[] = []
      const poll = bus.poll({ limit: 10 }).then(
        () => order.push('page'),
        (e) => order.push(`poll ${e.code}`),
      )
      // The read is on its way to a server that will not answer for a minute.
      await sleep(300)
      expect(order).toEqual([])
      await bus.shutdown()
      order.push('shutdown')
      await poll
      expect(order).toEqual(['poll ERR_SHUT_DOWN', 'shutdown'])
    } finally {
      server.proc?.kill('SIGCONT')
      await server.stop()
    }
  })

  it('flush in flight settles when shutdown runs', async () => {
    const bus = new EventBus()
    for (let i = 0; i < 10_000; i++) bus.ingest({ i })
    const f = bus.flush()
    await bus.shutdown()
    await expect(f).resolves.toMatchObject({ dropped: 0 })
  })
})

describe('backpressure', () => {
  const fill = (bus: EventBus, n: number) => {
    let accepted = 0
    for (let i = 0; i < n; i++) {
      try {
        bus.ingest({ i })
        accepted++
      } catch (e) {
        expect((e as { code: string }).code).toBe('ERR_BACKPRESSURE')
      }
    }
    return accepted
  }
  // A long linger keeps events in the ring, so the ring bound is what is tested.
  const opts = { shards: 1, ringCapacity: 16, batch: { maxDelayMs: 60_000, maxEvents: 1000 } }

  it("'reject' throws ERR_BACKPRESSURE once the ring is full", async () => {
    const bus = new EventBus({ ...opts })
    expect(fill(bus, 20)).toBe(16)
    expect(bus.stats()).toMatchObject({ ingested: 16, rejected: 4, dropped: 0 })
    const err = thrown(() => bus.ingest({ more: true }))
    expect(err.message).toMatch(/full/)
    await bus.shutdown()
  })

  it("'dropOldest' keeps the newest events and counts evictions", async () => {
    const bus = new EventBus({ ...opts, backpressure: 'dropOldest' })
    expect(fill(bus, 20)).toBe(20)
    const r = await bus.flush()
    expect(r).toEqual({ pending: 16, stored: 16, dropped: 0 })
    expect(bus.stats()).toMatchObject({ ingested: 20, stored: 16, droppedOldest: 4, dropped: 4, pending: 0 })
    const kept = (await pollAll(bus)).map((e) => JSON.parse(e.raw).i)
    expect(kept).toEqual(Array.from({ length: 16 }, (_, i) => i + 4))
    await bus.shutdown()
  })

  it("'dropNewest' keeps the oldest events and counts discards", async () => {
    const bus = new EventBus({ ...opts, backpressure: 'dropNewest' })
    expect(fill(bus, 20)).toBe(20)
    await bus.flush()
    expect(bus.stats()).toMatchObject({ ingested: 20, stored: 16, droppedNewest: 4, dropped: 4 })
    const kept = (await pollAll(bus)).map((e) => JSON.parse(e.raw).i)
    expect(kept).toEqual(Array.from({ length: 16 }, (_, i) => i))
    await bus.shutdown()
  })
})
