// The JS programs the addon compiles (src/napi/js/*.js), loaded here on their own: each
// must parse, and each does what the Rust side relies on, without the addon in between.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Script } from 'node:vm'

type Fn = (...args: any[]) => any

function load(name: string): any {
  const file = join(__dirname, '..', 'src', 'napi', 'js', name)
  return new Script(readFileSync(file, 'utf8'), { filename: file }).runInThisContext()
}

describe('read.js: option objects to JSON, refusing what JSON would silently change', () => {
  const read: Fn = load('read.js')

  it('returns the JSON text of plain options', () => {
    expect(read({ shards: 2, filter: { t: 'a', at: new Date(0) } }, 'options')).toBe(
      '{"shards":2,"filter":{"t":"a","at":"1970-01-01T00:00:00.000Z"}}',
    )
  })

  it('names the path and the problem, and whether it is inside a filter', () => {
    expect(read({ a: 'ok \ud83d' }, 'options')).toEqual([
      'options.a',
      expect.stringContaining('lone UTF-16 surrogate'),
      false,
    ])
    expect(read({ ringCapacity: NaN }, 'options')).toEqual(['options.ringCapacity', 'is NaN; give a finite number', false])
    expect(read({ filter: { t: undefined } }, 'poll request')).toEqual([
      'poll request.filter.t',
      expect.stringContaining('is undefined'),
      true,
    ])
    expect(read({ filter: { t: () => 1 } }, 'o')[1]).toBe('is a function; a filter holds JSON values only')
    expect(read({ filter: { t: { toJSON: () => 1 } } }, 'o')[1]).toContain('toJSON')
    const cyclic: any = { a: {} }
    cyclic.a.b = cyclic
    expect(read(cyclic, 'o')).toEqual(['o.a.b', 'nests too deep or contains a cycle', false])
  })

  it('passes a class instance outside a filter on as a named placeholder', () => {
    class TracerProvider {
      self = this
    }
    expect(read({ telemetry: new TracerProvider() }, 'o')).toBe('{"telemetry":"[instance of TracerProvider]"}')
  })
})

describe('event.js: the BusEvent constructor', () => {
  const BusEvent: Fn & (new (...a: any[]) => any) = load('event.js')

  it('takes its parameters in the order of the arg module in src/napi/convert/mod.rs', () => {
    const rust = readFileSync(join(__dirname, '..', 'src', 'napi', 'convert', 'mod.rs'), 'utf8')
    const consts = [...rust.matchAll(/pub const ([A-Z_]+): usize = (\d+);/g)].filter(([, name]) => name !== 'COUNT')
    const fromRust = consts.sort((a, b) => +a[2] - +b[2]).map(([, name]) => name.toLowerCase().replace(/_(.)/g, (_, c) => c.toUpperCase()))
    const js = readFileSync(join(__dirname, '..', 'src', 'napi', 'js', 'event.js'), 'utf8')
    const params = /function BusEvent\(([^)]*)\)/.exec(js)![1].split(',').map((p) => p.trim())
    expect(params).toEqual(fromRust)
    expect(params).toHaveLength(13)
  })

  it('sets optional properties only when present, and parses raw once', () => {
    const ev = new BusEvent('0-1', 0, 1, 5, undefined, '{"n":1}', undefined, 'm', undefined, undefined, undefined, undefined, undefined)
    expect(Object.keys(ev)).toEqual(['id', 'shardId', 'seq', 'timestamp', 'raw', 'messageId'])
    const first = ev.json()
    expect(first).toEqual({ n: 1 })
    expect(ev.json()).toBe(first)
    const letter = new BusEvent('0-2', 1, 2, 6, 'k', '{}', undefined, 'm2', 3, 'boom', 7, 'L1', { a: 'b' })
    expect(letter).toMatchObject({ key: 'k', deliveries: 3, reason: 'boom', deadLetteredAt: 7, letterId: 'L1', headers: { a: 'b' } })
  })

  it('throws coded errors for a payload that is not JSON and for a detached json()', () => {
    const ev = new BusEvent('0-1', 0, 1, 5, undefined, 'not json', undefined, 'm')
    expect(() => ev.json()).toThrow(expect.objectContaining({ code: 'ERR_INVALID_EVENT' }))
    const detached = ev.json
    expect(() => detached()).toThrow(/called without its event/)
    // A frozen event still parses (it cannot keep the value).
    expect(Object.freeze(new BusEvent('0-3', 0, 3, 5, undefined, '[1]', undefined, 'm')).json()).toEqual([1])
  })
})

describe('unpack.js: a packed page of group deliveries into events', () => {
  const BusEvent: Fn & (new (...a: any[]) => any) = load('event.js')
  const unpack: Fn = load('unpack.js')

  it('cuts each event from the text by its UTF-16 lengths, and takes natively made ones in turn', () => {
    const made = new BusEvent('9-9', 2, 9, 9, 'z', 'bytes', Buffer.from('x'), 'm9', 1)
    // Per event: shardId, seq, timestamp, deliveries, then lengths of id, key (-1: none), raw, messageId.
    const text = '1-0' + 'kü' + '{"a":"😀"}' + 'p-1-0-1' + '2-0' + '[1]' + 'p-1-1-1'
    const nums = new Float64Array([0, 1, 100, 1, 3, 2, 10, 7, -1, -1, -1, -1, -1, -1, -1, -1, 1, 1, 101, 3, 3, -1, 3, 7])
    const out = unpack(BusEvent, text, nums, [made], 3)
    expect(out).toHaveLength(3)
    expect(out[0]).toEqual({ id: '1-0', shardId: 0, seq: 1, timestamp: 100, key: 'kü', raw: '{"a":"😀"}', messageId: 'p-1-0-1', deliveries: 1 })
    expect(out[0].json()).toEqual({ a: '😀' })
    expect(out[1]).toBe(made)
    expect(Object.keys(out[2])).toEqual(['id', 'shardId', 'seq', 'timestamp', 'raw', 'messageId', 'deliveries'])
    expect(out[2]).toMatchObject({ id: '2-0', raw: '[1]', messageId: 'p-1-1-1', deliveries: 3 })
  })

  it('keeps an empty key, which is not an absent one', () => {
    const out = unpack(BusEvent, 'a' + '' + '1' + 'm', new Float64Array([0, 1, 1, 1, 1, 0, 1, 1]), undefined, 1)
    expect(out[0]).toMatchObject({ key: '', raw: '1' })
  })
})

describe('ingest.js: which native path an event takes', () => {
  const calls: string[] = []
  const factory: Fn = load('ingest.js')
  const ingest: Fn = factory(
    (json: string) => calls.push(`stringified ${json}`),
    (json: string, o: any) => calls.push(`withHeaders ${json} ${Object.keys(o.headers)}`),
    (ev: unknown) => calls.push(`native ${typeof ev}`),
  )

  it('stringifies objects once and hands bytes, text and odd values to the native path', () => {
    calls.length = 0
    ingest({ a: 1 })
    ingest({ a: 2 }, { key: 'k' })
    ingest({ a: 3 }, { headers: { h: 'v' } })
    ingest(Buffer.from('x'))
    ingest('{"a":4}')
    ingest({ big: 1n })
    ingest({ toJSON: () => undefined })
    ingest({ a: 5 }, { get headers() { throw new Error('getter') } })
    expect(calls).toEqual([
      'stringified {"a":1}',
      'stringified {"a":2}',
      'withHeaders {"a":3} h',
      'native object',
      'native string',
      'native object',
      'native object',
      'native object',
    ])
  })
})

describe('driver.js: the process() loop', () => {
  const drive: Fn = load('driver.js')

  it('settles each event by its handler outcome, successes together, and stops on an empty batch', async () => {
    const batches: any[] = [
      Object.assign(['ok', 'throws', 'rejects', 'bad-thenable', 'bad-getter', 'resolves'], { first: 10 }),
      Object.assign([], { skipped: true }),
      Object.assign(['late'], { first: 4294967295 }),
    ]
    const succeeded: number[] = []
    const failed: Array<[number, string]> = []
    let aborted: string | undefined
    let finished!: () => void
    const done = new Promise<void>((r) => (finished = r))
    const worker = {
      take: async () => {
        const b = batches.shift()
        if (b) return b
        setTimeout(finished, 20)
        return []
      },
      settleAll: (tokens: number[]) => succeeded.push(...tokens),
      settle: (token: number, reason: string) => failed.push([token, reason]),
      abort: (why: string) => (aborted = why),
    }
    drive(worker, (ev: string) => {
      switch (ev) {
        case 'throws':
          throw new Error('sync boom')
        case 'rejects':
          return Promise.reject(new Error('async boom'))
        case 'bad-thenable':
          return { then() { throw new Error('then boom') } }
        case 'bad-getter':
          return { get then() { throw new Error('getter boom') } }
        case 'resolves':
          return Promise.resolve(1)
        default:
          return undefined
      }
    })
    await done
    expect(aborted).toBeUndefined()
    expect(succeeded.sort((a, b) => a - b)).toEqual([10, 15, 4294967295])
    expect(failed.sort((a, b) => a[0] - b[0])).toEqual([
      [11, 'sync boom'],
      [12, 'async boom'],
      [13, 'then boom'],
      [14, 'getter boom'],
    ])
  })
})

describe('guard.js: a log sink that throws', () => {
  it('passes records on and swallows what the sink throws', () => {
    const seen: unknown[] = []
    const guard: Fn = load('guard.js')
    const wrapped = guard((r: unknown) => {
      seen.push(r)
      throw new Error('sink failed')
    })
    expect(() => wrapped({ level: 'warn' })).not.toThrow()
    expect(seen).toEqual([{ level: 'warn' }])
  })
})
