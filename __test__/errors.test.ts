import { EventBus } from '../index'
import { pollAll, thrown } from './helpers'

describe('error codes', () => {
  let bus: EventBus
  beforeAll(() => {
    bus = new EventBus({ shards: 2, maxEventBytes: 64 })
  })
  afterAll(async () => {
    await bus.shutdown()
  })

  it.each([
    [{ shards: 0 }, 'shards'],
    [{ shards: 2.5 }, 'options.shards'],
    [{ shards: 'four' }, 'options.shards'],
    [{ unknownKey: 1 }, 'unknownKey'],
    [{ backpressure: 'block' }, 'options.backpressure'],
    [{ batch: { maxEvents: 0 } }, 'batch.maxEvents'],
    [{ batch: { lingerMs: 5 } }, 'options.batch'],
    [{ ringCapacity: 1 }, 'ringCapacity'],
    [{ adapter: { type: 'memory', capacity: 5 } }, 'options.adapter'],
    [{ adapter: { type: 'kafka' } }, 'options.adapter.type'],
    [{ adapterTimeoutMs: -1 }, 'options.adapterTimeoutMs'],
    [{ retries: 1000 }, 'retries'],
  ])('ERR_INVALID_CONFIG for %j names %s', (options, key) => {
    const err = thrown(() => new EventBus(options as never))
    expect(err.code).toBe('ERR_INVALID_CONFIG')
    expect(err.message).toContain(key)
  })

  it('ERR_INVALID_CONFIG from create() is a rejection', async () => {
    await expect(EventBus.create({ shards: 0 })).rejects.toMatchObject({ code: 'ERR_INVALID_CONFIG' })
    await expect(EventBus.create({ nope: true } as never)).rejects.toMatchObject({ code: 'ERR_INVALID_CONFIG' })
  })

  it('options must be an object', () => {
    expect(thrown(() => new EventBus(42 as never)).code).toBe('ERR_INVALID_CONFIG')
  })

  it('ERR_INVALID_EVENT for events that cannot be stored, with nothing accepted', () => {
    const circular: Record<string, unknown> = {}
    circular.self = circular
    const cases: unknown[] = [
      circular,
      { big: 1n },
      '{not json',
      '',
      42,
      null,
      undefined,
      true,
      { toJSON: () => undefined },
      'x'.repeat(100),
      Buffer.alloc(65),
    ]
    for (const ev of cases) {
      const err = thrown(() => bus.ingest(ev as never))
      expect(err.code).toBe('ERR_INVALID_EVENT')
      expect(err.message.length).toBeGreaterThan(10)
    }
    const batchErr = thrown(() => bus.ingestBatch([{ ok: 1 }, circular, { ok: 2 }]))
    expect(batchErr.code).toBe('ERR_INVALID_EVENT')
    expect(batchErr.message).toMatch(/^events\[1\]/)
    expect(thrown(() => bus.ingest({ a: 1 }, { key: 'k'.repeat(5000) })).code).toBe('ERR_INVALID_EVENT')
    expect(bus.stats().ingested).toBe(0)
  })

  it('oversized events and keys are refused before their bytes are copied', () => {
    // `bus` has maxEventBytes 64. A string's UTF-16 length bounds its UTF-8 size from below.
    expect(thrown(() => bus.ingest(JSON.stringify('x'.repeat(5_000_000)))).message).toMatch(
      /^event is at least 5000002 bytes, over maxEventBytes \(64\)/,
    )
    expect(thrown(() => bus.ingest({ big: 'y'.repeat(100) })).message).toContain('event is at least 110 bytes')
    expect(thrown(() => bus.ingest(Buffer.alloc(1_000_000))).message).toMatch(/^event is 1000000 bytes, over maxEventBytes/)
    // Three UTF-8 bytes per character: over the limit, though only 32 UTF-16 units.
    expect(thrown(() => bus.ingest(JSON.stringify('€'.repeat(30)))).message).toContain('event is 92 bytes')
    expect(thrown(() => bus.ingest({ a: 1 }, { key: 'k'.repeat(1_000_000) })).message).toMatch(/^key is at least 1000000 bytes/)
    expect(thrown(() => bus.ingestBatch([{ a: 1 }, Buffer.alloc(65)])).message).toMatch(/^events\[1\]: event is 65 bytes/)
    expect(bus.stats().ingested).toBe(0)
  })

  it('ERR_INVALID_EVENT for bad options and JSON text says where, on the first call and later ones', () => {
    // The first ingest call of a bus goes through the class method and binds the fast
    // functions; later calls use those. Both must refuse the same way.
    const fresh = new EventBus({ shards: 2 })
    try {
      for (let round = 0; round < 2; round++) {
        expect(thrown(() => fresh.ingest('{"a":1,}')).message).toContain('trailing comma at line 1 column 8')
        expect(thrown(() => fresh.ingest('[1 2]')).message).toContain('expected `,` or `]` at line 1 column 4')
        expect(thrown(() => fresh.ingest({ a: 1 }, { key: 7 } as never)).message).toContain('options.key must be a string, got a number')
        expect(thrown(() => fresh.ingest({ a: 1 }, 'k' as never)).message).toContain('options must be an object, got a string')
        expect(thrown(() => fresh.ingestBatch('x' as never)).message).toContain('events must be an array')
        expect(thrown(() => fresh.ingestBatch([{}], { keys: [1] } as never)).message).toContain('options.keys[0] must be a string')
        expect(thrown(() => fresh.ingestBatch([{}], { keys: ['a', 'b'] })).code).toBe('ERR_INVALID_EVENT')
      }
      expect(fresh.stats().ingested).toBe(0)
      expect(fresh.ingest('  {"ok": [1, 2.5e3, "\u00e9"]} ')).toBeGreaterThanOrEqual(0)
      expect(fresh.ingest({ a: 1 }, { key: null } as never)).toBeGreaterThanOrEqual(0)
      expect(fresh.stats().ingested).toBe(2)
    } finally {
      void fresh.shutdown()
    }
  })

  it('binding the fast ingest functions leaves the object looking the same, and a frozen bus still ingests', async () => {
    const a = new EventBus({ shards: 4 })
    const b = new EventBus({ shards: 4 })
    Object.freeze(b)
    try {
      for (let i = 0; i < 3; i++) {
        expect(a.ingest({ i }, { key: 'same' })).toBe(b.ingest({ i }, { key: 'same' }))
        expect(a.ingestBatch([{ i }, '{}', Buffer.from('x')])).toBe(3)
        expect(b.ingestBatch([{ i }, '{}', Buffer.from('x')])).toBe(3)
      }
      expect(Object.keys(a)).toEqual([])
      expect(Object.prototype.hasOwnProperty.call(a, 'ingest')).toBe(true)
      expect(Object.prototype.hasOwnProperty.call(b, 'ingest')).toBe(false)
      // The bound function works detached from its object too, since it carries its bus.
      const { ingest } = a
      ingest({ detached: true })
      expect(a.stats().ingested).toBe(13)
      expect(b.stats().ingested).toBe(12)
    } finally {
      await Promise.all([a.shutdown(), b.shutdown()])
    }
  })

  it('the JS side of ingest stores what the native side would: typed arrays, dates, toJSON, keys', async () => {
    const bus = new EventBus({ shards: 2 })
    try {
      bus.ingest({ warmup: true }) // binds the fast functions; everything below goes through them
      const d = new Date(0)
      const shards = [
        bus.ingest(new Float32Array([1.5]), { key: 'k' }),
        bus.ingest(d, { key: 'k' }),
        bus.ingest({ toJSON: () => ({ via: 'toJSON' }) }, { key: 'k' }),
        bus.ingest(new Uint8Array([0, 255]), { key: 'k' }),
        bus.ingest([1, 'two'], { key: 'k' }),
      ]
      expect(new Set(shards).size).toBe(1)
      await bus.flush()
      const events = (await pollAll(bus)).filter((e) => e.key === 'k')
      expect(events.slice(0, 3).map((e) => e.raw)).toEqual([
        '{"0":1.5}',
        JSON.stringify(d),
        '{"via":"toJSON"}',
      ])
      expect([...(events[3].bytes as Buffer)]).toEqual([0, 255])
      expect(events[4].raw).toBe('[1,"two"]')
    } finally {
      await bus.shutdown()
    }
  })

  it('ERR_INVALID_FILTER names the offending path', async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ a: { $regex: 'x' } }, 'filter.a.$regex'],
      [{ $or: [{ a: 1 }, { b: { $in: 5 } }] }, 'filter.$or[1].b.$in'],
      [{ $and: [] }, 'filter.$and'],
      [{ a: { $exists: 'yes' } }, 'filter.a.$exists'],
    ]
    for (const [filter, path] of cases) {
      await expect(bus.poll({ filter })).rejects.toMatchObject({ code: 'ERR_INVALID_FILTER' })
      const err = await bus.poll({ filter }).catch((e) => e)
      expect(err.message).toContain(path)
      expect(thrown(() => bus.subscribe({ filter })).code).toBe('ERR_INVALID_FILTER')
    }
    let deep: Record<string, unknown> = { a: 1 }
    for (let i = 0; i < 40; i++) deep = { $not: deep }
    await expect(bus.poll({ filter: deep })).rejects.toMatchObject({
      code: 'ERR_INVALID_FILTER',
      message: expect.stringContaining('deeper than 32 levels'),
    })
  })

  it('ERR_INVALID_CURSOR for malformed cursors and cursors of another backend', async () => {
    const foreign = 'rb1.' + Buffer.from(JSON.stringify({ s: 'jetstream:orders', p: { '0': '5' } })).toString('base64url')
    for (const cursor of ['', 'garbage', 'rb1.%%%', 'rb1.e30', foreign]) {
      await expect(bus.poll({ cursor })).rejects.toMatchObject({ code: 'ERR_INVALID_CURSOR' })
    }
    expect(thrown(() => bus.subscribe({ from: 'garbage' })).code).toBe('ERR_INVALID_CURSOR')
    const err = await bus.poll({ cursor: foreign }).catch((e) => e)
    expect(err.message).toMatch(/another store/)
  })

  it('ERR_INVALID_CONFIG for bad poll requests', async () => {
    await expect(bus.poll({ limit: 0 })).rejects.toMatchObject({ code: 'ERR_INVALID_CONFIG' })
    await expect(bus.poll({ limit: 1_000_000 })).rejects.toMatchObject({ code: 'ERR_INVALID_CONFIG' })
    await expect(bus.poll({ shards: [99] })).rejects.toMatchObject({ code: 'ERR_INVALID_CONFIG' })
    await expect(bus.poll({ ordering: 'random' as never })).rejects.toMatchObject({ code: 'ERR_INVALID_CONFIG' })
    await expect(bus.poll({ limt: 5 } as never)).rejects.toMatchObject({ code: 'ERR_INVALID_CONFIG' })
  })

  it('ERR_BACKPRESSURE and ERR_SHUT_DOWN', async () => {
    const small = new EventBus({ shards: 1, ringCapacity: 16, batch: { maxDelayMs: 60_000 } })
    for (let i = 0; i < 16; i++) small.ingest({ i })
    expect(thrown(() => small.ingest({ i: 16 })).code).toBe('ERR_BACKPRESSURE')
    expect(thrown(() => small.ingestBatch([{ i: 17 }])).code).toBe('ERR_BACKPRESSURE')
    await small.shutdown()
    expect(thrown(() => small.ingest({})).code).toBe('ERR_SHUT_DOWN')
    await expect(small.poll()).rejects.toMatchObject({ code: 'ERR_SHUT_DOWN' })
  })

  it('producerNoncePath held by a live bus is ERR_INVALID_CONFIG', async () => {
    const os = await import('node:os')
    const path = await import('node:path')
    const fs = await import('node:fs')
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringbus-nonce-'))
    const file = path.join(dir, 'producer')
    const a = new EventBus({ producerNoncePath: file })
    const err = thrown(() => new EventBus({ producerNoncePath: file }))
    expect(err.code).toBe('ERR_INVALID_CONFIG')
    expect(err.message).toMatch(/in use/)
    a.ingest({ x: 1 })
    await a.flush()
    const first = (await a.poll()).events[0].messageId
    await a.shutdown()
    const b = new EventBus({ producerNoncePath: file })
    b.ingest({ x: 1 })
    await b.flush()
    const second = (await b.poll()).events[0].messageId
    await b.shutdown()
    // Same nonce, next generation: ids never repeat across restarts.
    expect(second.split('-')[0]).toBe(first.split('-')[0])
    expect(Number(second.split('-')[1])).toBe(Number(first.split('-')[1]) + 1)
    expect((fs.statSync(file).mode & 0o777).toString(8)).toBe('600')
    fs.rmSync(dir, { recursive: true })
  })
})
