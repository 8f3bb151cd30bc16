import { connect } from '@nats-io/transport-node'
import { jetstreamManager } from '@nats-io/jetstream'
import { EventBus } from '../index'
import { uniqueName } from './support/servers'

// Defects found by probing (issue "Hardening"); each test failed on the code before its fix.
const NATS = process.env.RINGBUS_NATS_URL ?? 'nats://127.0.0.1:4222'
const REDIS = process.env.RINGBUS_REDIS_URL ?? 'redis://127.0.0.1:6379'

/** A cursor of `bus`'s store with `positions` put in (as a tampering caller would). */
function forge(cursor: string, positions: Record<string, string>): string {
  const wire = JSON.parse(Buffer.from(cursor.slice(4), 'base64url').toString())
  wire.p = positions
  return `rb1.${Buffer.from(JSON.stringify(wire)).toString('base64url')}`
}

describe('hardening', () => {
  it('a numeric password is refused without being echoed', async () => {
    const secret = 12345678
    const err = await EventBus.create({
      adapter: { type: 'redis', url: REDIS, password: secret as never },
    }).catch((e) => e)
    expect(err.code).toBe('ERR_INVALID_CONFIG')
    expect(err.message).toContain('options.adapter')
    expect(err.message).not.toContain(String(secret))
    const js = await EventBus.create({
      adapter: { type: 'jetstream', servers: NATS, stream: 'x', token: 87654321 as never },
    }).catch((e) => e)
    expect(js.code).toBe('ERR_INVALID_CONFIG')
    expect(js.message).not.toContain('87654321')
  })

  it('a cursor position at u64::MAX is ERR_INVALID_CURSOR, not a replay from the start', async () => {
    const bus = new EventBus({ shards: 1 })
    for (let i = 0; i < 5; i++) bus.ingest({ i })
    await bus.flush()
    const { cursor } = await bus.poll({ limit: 1 })
    const forged = forge(cursor, { '0': '18446744073709551615' })
    await expect(bus.poll({ cursor: forged })).rejects.toMatchObject({ code: 'ERR_INVALID_CURSOR' })
    const sub = bus.subscribe({ from: forged })
    await expect(sub.next()).rejects.toMatchObject({ code: 'ERR_INVALID_CURSOR' })
    await bus.shutdown()
  })

  it('a Redis cursor with an entry id past 64 bits is ERR_INVALID_CURSOR for poll and subscribe', async () => {
    const bus = await EventBus.create({ shards: 1, adapter: { type: 'redis', url: REDIS, keyPrefix: uniqueName('hard') } })
    bus.ingest({ a: 1 })
    await bus.flush()
    const { cursor } = await bus.poll()
    const forged = forge(cursor, { '0': '99999999999999999999-0' })
    await expect(bus.poll({ cursor: forged })).rejects.toMatchObject({ code: 'ERR_INVALID_CURSOR' })
    await expect(bus.subscribe({ from: forged }).next()).rejects.toMatchObject({ code: 'ERR_INVALID_CURSOR' })
    await bus.shutdown()
  })

  it('JetStream keeps leading and trailing spaces of keys (verified with nats.js)', async () => {
    const stream = uniqueName('keys')
    const bus = await EventBus.create({ shards: 4, adapter: { type: 'jetstream', servers: NATS, stream } })
    const keys = [' lead', 'trail ', '  both  ', 'in side']
    const shards = keys.map((key) => bus.ingest({ key }, { key }))
    await bus.flush()
    const events = (await bus.poll({ limit: 100 })).events
    for (const [i, key] of keys.entries()) {
      const ev = events.find((e) => JSON.parse(e.raw).key === key)
      expect(ev?.key).toBe(key)
      expect(ev?.shardId).toBe(shards[i])
    }
    await bus.shutdown()
    const nc = await connect({ servers: NATS })
    const jsm = await jetstreamManager(nc)
    const headers: string[] = []
    for (let seq = 1; seq <= keys.length; seq++) {
      headers.push((await jsm.streams.getMessage(stream, { seq }))?.header.get('Rb-Key') ?? '')
    }
    expect(headers.sort()).toEqual(['%20%20both%20%20', '%20lead', 'in%20side', 'trail%20'])
    await jsm.streams.delete(stream)
    await nc.close()
  })
})

describe('hardening: filters and options that JSON would silently change', () => {
  let bus: EventBus
  beforeAll(async () => {
    bus = new EventBus({ shards: 2 })
    bus.ingest({ tenant: 'a', n: 1 })
    bus.ingest({ tenant: 'b', n: 2 })
    // Dates as JSON gives them: ISO text.
    bus.ingest({ n: 3, at: new Date('2026-01-15T10:00:00Z') })
    bus.ingest({ n: 4, at: new Date('2026-09-30T18:30:00Z') })
    await bus.flush()
  })
  afterAll(() => bus.shutdown())

  it.each([
    [{ tenant: undefined }, 'filter.tenant is undefined'],
    [{ tenant: () => 'a' }, 'filter.tenant is a function'],
    [{ tenant: { toJSON: () => undefined } }, 'filter.tenant has a toJSON method'],
    [{ n: { $gt: NaN } }, 'filter.n.$gt is NaN'],
    [{ n: { $in: [1, Infinity] } }, 'filter.n.$in[1] is Infinity'],
    [{ $or: [{ tenant: 'a' }, { tenant: Symbol('b') }] }, 'filter.$or[1].tenant is a symbol'],
  ])('poll and subscribe refuse %p with ERR_INVALID_FILTER', async (filter, message) => {
    const err = await bus.poll({ filter: filter as never }).catch((e) => e)
    expect(err.code).toBe('ERR_INVALID_FILTER')
    expect(err.message).toContain(message)
    let thrown: { code?: string; message: string } | undefined
    try {
      bus.subscribe({ filter: filter as never })
    } catch (e) {
      thrown = e as { code?: string; message: string }
    }
    expect(thrown?.code).toBe('ERR_INVALID_FILTER')
  })

  it('a Date operand still works (it is JSON text), and a plain filter still matches', async () => {
    expect((await bus.poll({ filter: { tenant: 'a' } })).events.map((e) => JSON.parse(e.raw).n)).toEqual([1])
    // A Date operand is its JSON text: ISO dates compare as text, in time order.
    expect((await bus.poll({ filter: { at: { $lt: new Date('2026-06-01T00:00:00Z') } } as never })).events.map((e) => JSON.parse(e.raw).n)).toEqual([3])
    expect((await bus.poll({ filter: { at: { $gte: new Date('2026-06-01T00:00:00Z') } } as never })).events.map((e) => JSON.parse(e.raw).n)).toEqual([4])
  })

  it('NaN options are refused instead of falling back to defaults', async () => {
    await expect(bus.poll({ limit: NaN })).rejects.toMatchObject({ code: 'ERR_INVALID_CONFIG', message: expect.stringContaining('poll request.limit is NaN') })
    expect(() => new EventBus({ shards: NaN })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_CONFIG' }))
  })

  it('a filter nested past any sane depth is ERR_INVALID_FILTER, like a shallower one', async () => {
    let deep: Record<string, unknown> = { n: 1 }
    for (let i = 0; i < 100; i++) deep = { $not: deep }
    await expect(bus.poll({ filter: deep })).rejects.toMatchObject({ code: 'ERR_INVALID_FILTER' })
    let over: Record<string, unknown> = { n: 1 }
    for (let i = 0; i < 40; i++) over = { $not: over }
    await expect(bus.poll({ filter: over })).rejects.toMatchObject({ code: 'ERR_INVALID_FILTER' })
    // 31 `$not` around `{ n: 1 }` are 32 nested objects: the limit, allowed.
    let limit: Record<string, unknown> = { n: 1 }
    for (let i = 0; i < 31; i++) limit = { $not: limit }
    await expect(bus.poll({ filter: limit })).resolves.toMatchObject({ hasMore: false })
  })

  it('keyPrefix limits are stated in bytes', async () => {
    const err = await EventBus.create({ adapter: { type: 'redis', url: REDIS, keyPrefix: 'é'.repeat(65) } }).catch((e) => e)
    expect(err.code).toBe('ERR_INVALID_CONFIG')
    expect(err.message).toContain('1-128 bytes')
  })
})

describe('hardening: every accepted event is readable by filters', () => {
  it('refuses JSON a reader could not parse: numbers out of range, nesting past 128', async () => {
    const bus = new EventBus({ shards: 1 })
    for (const bad of ['{"a":1e309}', '[-1e400]', `${'['.repeat(129)}1${']'.repeat(129)}`]) {
      expect(() => bus.ingest(bad)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_EVENT' }))
    }
    bus.ingest('{"a":1e308}')
    bus.ingest(`${'['.repeat(100)}1${']'.repeat(100)}`)
    await bus.flush()
    expect((await bus.poll({ filter: {} })).events).toHaveLength(2)
    expect(bus.stats().ingested).toBe(2)
    await bus.shutdown()
  })
})

describe('hardening: rings are bounded in bytes', () => {
  it('ringMaxBytes applies backpressure before ringCapacity, and everything accepted is stored', async () => {
    // A long linger keeps the events in the ring, as a stalled backend would.
    const bus = new EventBus({ shards: 1, ringMaxBytes: 4096, batch: { maxDelayMs: 60_000 } })
    const big = Buffer.alloc(1000, 7)
    for (let i = 0; i < 4; i++) bus.ingest(big)
    const err = (() => {
      try {
        bus.ingest(big)
      } catch (e) {
        return e as { code: string; message: string }
      }
    })()
    expect(err?.code).toBe('ERR_BACKPRESSURE')
    expect(err?.message).toContain('ringMaxBytes 4096')
    expect(bus.shardStats()[0].queuedBytes).toBe(4000)
    expect(await bus.flush()).toMatchObject({ pending: 4, stored: 4, dropped: 0 })
    expect(bus.stats()).toMatchObject({ ingested: 4, stored: 4, rejected: 1 })
    await bus.shutdown()
    expect(() => new EventBus({ ringMaxBytes: 10 })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_CONFIG' }))
  })
})

describe('hardening: one filter cannot stall the process', () => {
  it('a 70,000-operand $in against a 70,000-element array answers, other buses keep writing, shutdown ends polls', async () => {
    const a = new EventBus({ shards: 2 })
    const b = new EventBus({ shards: 2 })
    // Enough large events that matching them takes the polls far longer than b needs.
    const big = { tags: Array.from({ length: 70_000 }, (_, i) => -(i + 1)) }
    for (let k = 0; k < 40; k++) a.ingest(big)
    a.ingest({ tags: [5] })
    await a.flush()
    const list = Array.from({ length: 70_000 }, (_, i) => i + 1)
    const order: string[] = []
    const polls = [0, 1, 2, 3].map(() => a.poll({ filter: { tags: { $in: list } } }).finally(() => order.push('poll')))
    const nin = a.poll({ filter: { tags: { $nin: list } } }).finally(() => order.push('poll'))
    for (let i = 0; i < 1000; i++) b.ingest({ i })
    await b.flush()
    order.push('b flushed')
    expect(b.stats()).toMatchObject({ ingested: 1000, stored: 1000 })
    for (const p of await Promise.all(polls)) expect(p.events.map((e) => JSON.parse(e.raw).tags)).toEqual([[5]])
    expect((await nin).events).toHaveLength(40)
    // The other bus was not held up behind the big filters: it flushed before any ended.
    expect(order[0]).toBe('b flushed')
    await a.shutdown()
    await b.shutdown()
  }, 30_000)
})
