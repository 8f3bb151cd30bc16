// Consumer groups (DESIGN §8) in one process, on memory, JetStream and Redis: members split
// the shards and together see every event once in per-key order; process() retries before
// a key moves on and dead-letters poison; the group outlives its members and the bus;
// idle members take over; options are validated.
import { EventBus, type EventBusOptions, type GroupEvent } from '../index'
import { sleep, trackBuses, until } from './support/adapter'
import { uniqueName } from './support/servers'

const NATS = process.env.RINGBUS_NATS_URL ?? 'nats://127.0.0.1:4222'
const REDIS = process.env.RINGBUS_REDIS_URL ?? 'redis://127.0.0.1:6379'

jest.setTimeout(120_000)

const create = trackBuses()

type Backend = { name: string; options: (shards: number) => EventBusOptions }

const backends: Backend[] = [
  { name: 'memory', options: (shards) => ({ shards }) },
  {
    name: 'jetstream',
    options: (shards) => ({ shards, adapter: { type: 'jetstream', servers: NATS, stream: uniqueName('grp'), storage: 'memory' } }),
  },
  { name: 'redis', options: (shards) => ({ shards, adapter: { type: 'redis', url: REDIS, keyPrefix: uniqueName('grp') } }) },
]

/** Ingests `{ i, key }` for i in [from, to), keyed over `keys` keys. */
async function produce(bus: EventBus, from: number, to: number, keys = 20): Promise<void> {
  for (let i = from; i < to; i++) bus.ingest({ i, key: `k${i % keys}` }, { key: `k${i % keys}` })
  expect((await bus.flush()).dropped).toBe(0)
}

const parse = (ev: GroupEvent) => JSON.parse(ev.raw) as { i: number; key: string }

/** Per key, the `i`s in the order given, must increase. */
function expectKeyOrder(seen: Array<{ i: number; key: string }>) {
  const last = new Map<string, number>()
  let outOfOrder = 0
  for (const { i, key } of seen) {
    if (i <= (last.get(key) ?? -1)) outOfOrder++
    last.set(key, i)
  }
  expect(outOfOrder).toBe(0)
}

/**
 * Takes events from `c` until `done()` (checked at least every 200 ms, also while no event
 * comes), handing each to `handle`. One `next()` is pending at a time: an abandoned one
 * would take an event nobody acks.
 */
async function take(c: AsyncIterable<GroupEvent>, done: () => boolean, handle: (ev: GroupEvent) => void) {
  const seen: Array<{ i: number; key: string; deliveries: number }> = []
  const it = c[Symbol.asyncIterator]()
  let pending = it.next()
  while (!done()) {
    const step = await Promise.race([pending, sleep(200).then(() => null)])
    if (step === null) continue
    if (step.done) break
    pending = it.next()
    seen.push({ ...parse(step.value), deliveries: step.value.deliveries })
    handle(step.value)
  }
  return seen
}

/** Iterates `consumer`, acking each event, until `stop()`; returns what it saw. */
async function consume(consumer: AsyncIterable<GroupEvent> & { ack(ev: GroupEvent): boolean }, stop: () => boolean) {
  const seen: Array<{ i: number; key: string; deliveries: number }> = []
  if (stop()) return seen
  for await (const ev of consumer) {
    seen.push({ ...parse(ev), deliveries: ev.deliveries })
    expect(consumer.ack(ev)).toBe(true)
    if (stop()) break
  }
  return seen
}

describe.each(backends)('consumer groups on $name', ({ name, options }) => {
  const lease = { leaseMs: 1000 }

  it('two members split the shards and together see every event once, per key in order', async () => {
    const bus = await create(options(4))
    await produce(bus, 0, 1000)
    const group = uniqueName('split')
    const a = await bus.consumer({ group, member: 'a', ...lease })
    const b = await bus.consumer({ group, member: 'b', ...lease })
    let total = 0
    const runs = [a, b].map((c) => take(c, () => total >= 2000, (ev) => {
      expect(c.ack(ev)).toBe(true)
      total++
    }))
    await until(() => a.stats().shards.length === 2 && b.stats().shards.length === 2, 15_000)
    await produce(bus, 1000, 2000)
    const [sa, sb] = await Promise.all(runs)
    expectKeyOrder(sa)
    expectKeyOrder(sb)
    const all = [...sa, ...sb].map((e) => e.i).sort((x, y) => x - y)
    expect(all).toEqual(Array.from({ length: 2000 }, (_, i) => i))
    expect(sa.length).toBeGreaterThan(0)
    expect(sb.length).toBeGreaterThan(0)
    expect([...sa, ...sb].every((e) => e.deliveries === 1)).toBe(true)
    const [st1, st2] = [a.stats(), b.stats()]
    expect(st1.acked + st2.acked).toBe(2000)
    expect(st1.redelivered + st2.redelivered).toBe(0)
    expect(new Set([...st1.shards, ...st2.shards])).toEqual(new Set([0, 1, 2, 3]))
    await Promise.all([a.close(), b.close()])
  })

  it('process() hands over events equal to what poll() reads: text, bytes, headers, keys and none, any script', async () => {
    // process() builds most events from one packed page, the rest one by one: both must
    // give what poll() gives (every field, same order per shard).
    const bus = await create(options(2))
    const bad = Buffer.from([0x7b, 0xff, 0xfe, 0x7d])
    const sent: Array<() => void> = [
      () => bus.ingest({ plain: 1 }, { key: 'k1' }),
      () => bus.ingest({ text: 'é ü 中文 😀', n: 2 }, { key: 'ключ😀' }),
      () => bus.ingest({ nokey: 3 }),
      () => bus.ingest(bad, { key: 'k1' }),
      () => bus.ingest(Buffer.from('{"bytes":5}'), { key: '' }),
      () => bus.ingest({ headed: 6 }, { key: 'k2', headers: { 'x-tenant': 'tä', traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' } }),
      () => bus.ingest('"a string 😀"', { key: 'k2' }),
      () => bus.ingest({ long: 'x'.repeat(70_000) }, { key: 'k3' }),
      () => bus.ingest({ emptyKey: 9 }, { key: '' }),
    ]
    for (let round = 0; round < 3; round++) for (const send of sent) send()
    expect((await bus.flush()).dropped).toBe(0)
    const polled: unknown[] = []
    for (let cursor: string | undefined; ; ) {
      const page = await bus.poll({ cursor, limit: 100 })
      polled.push(...page.events)
      cursor = page.cursor
      if (!page.hasMore) break
    }
    expect(polled).toHaveLength(27)
    const seen: GroupEvent[] = []
    const worker = bus.process(uniqueName('same'), (ev) => {
      seen.push(ev)
    })
    await until(() => seen.length === 27)
    await worker.close()
    const plain = (ev: any) => ({ ...ev, bytes: ev.bytes === undefined ? undefined : Buffer.from(ev.bytes).toString('hex') })
    const byId = (a: any, b: any) => a.shardId - b.shardId || a.seq - b.seq
    const got = seen.map(plain).sort(byId)
    expect(got.map((e) => e.deliveries)).toEqual(new Array(27).fill(1))
    expect(got.map(({ deliveries, ...rest }) => rest)).toEqual(polled.map(plain).sort(byId))
    expect(got.filter((e) => e.key === undefined)).toHaveLength(3)
    expect(seen.find((e) => e.key === 'ключ😀')?.json()).toEqual({ text: 'é ü 中文 😀', n: 2 })
    expect(seen.filter((e) => e.key === '')).toHaveLength(6)
  })

  it('process() retries a failed event before its key moves on, and dead-letters poison', async () => {
    const bus = await create(options(2))
    await produce(bus, 0, 400, 8)
    const group = uniqueName('work')
    const attempts = new Map<number, number>()
    const handled: Array<{ i: number; key: string }> = []
    const worker = bus.process(
      group,
      async (ev) => {
        const e = parse(ev)
        const n = (attempts.get(e.i) ?? 0) + 1
        attempts.set(e.i, n)
        expect(ev.deliveries).toBe(n)
        await sleep(e.i % 3)
        if (e.i === 77) throw new Error(`poison ${e.i}`)
        if (e.i % 9 === 0 && n < 2) throw new Error('transient')
        if (e.i % 25 === 0 && n < 3) return Promise.reject(new Error('twice'))
        handled.push(e)
      },
      { concurrency: 8, maxDeliveries: 3, backoffMs: 5, ...lease },
    )
    await until(() => worker.stats().handled === 399 && worker.stats().consumer.deadLettered === 1, 30_000)
    // Per key, the successful handlings are exactly the ingest order (77 excepted).
    const perKey = new Map<string, number[]>()
    for (const e of handled) perKey.set(e.key, [...(perKey.get(e.key) ?? []), e.i])
    for (const [key, is] of perKey) {
      const k = Number(key.slice(1))
      expect(is).toEqual(Array.from({ length: 50 }, (_, j) => j * 8 + k).filter((i) => i !== 77))
    }
    const letters = await bus.deadLetters(group)
    expect(letters.events).toHaveLength(1)
    const [letter] = letters.events
    expect(parse(letter as unknown as GroupEvent).i).toBe(77)
    expect(letter.deliveries).toBe(3)
    expect(letter.reason).toBe('handler failed on each of 3 deliveries; last error: poison 77')
    expect(letter.deadLetteredAt).toBeGreaterThan(Date.now() - 60_000)
    expect(letter.key).toBe('k5')
    expect(letters.hasMore).toBe(false)
    const stats = worker.stats()
    expect(stats).toMatchObject({ running: 0, queued: 0, retrying: 0, handled: 399 })
    expect(stats.failed).toBe(3 + 45 + 2 * 16 - 2) // 77 thrice; multiples of 9 once, of 25 twice (225 both)
    await worker.close()
    // Put the letter back: a fresh worker (77 now succeeds) handles it, counting from 1.
    expect(await bus.redeliver(group, [letter, 'no-such-letter'])).toBe(1)
    expect((await bus.deadLetters(group)).events).toHaveLength(0)
    const again: GroupEvent[] = []
    const w2 = bus.process(group, (ev) => {
      again.push(ev)
    }, lease)
    await until(() => again.length === 1, 15_000)
    expect(parse(again[0]).i).toBe(77)
    expect(again[0].deliveries).toBe(1)
    await until(() => w2.stats().consumer.acked === 1)
    await w2.close()
    await w2.close() // idempotent
  })

  it('the group outlives its members and the bus: a later member gets nothing already acked', async () => {
    const opts = options(3)
    const bus = await create(opts)
    await produce(bus, 0, 300)
    const group = uniqueName('durable')
    const first = await bus.consumer({ group, ...lease })
    const seen = await consume(first, () => first.stats().acked === 300)
    expect(seen).toHaveLength(300)
    await first.close()
    await produce(bus, 300, 330)
    // Another bus on the same store (memory: the same bus) continues the group.
    const other = name === 'memory' ? bus : await create(opts)
    const second = await other.consumer({ group, from: 'latest', ...lease })
    const rest = await consume(second, () => second.stats().acked === 30)
    expect(rest.map((e) => e.i).sort((x, y) => x - y)).toEqual(Array.from({ length: 30 }, (_, i) => 300 + i))
    expect(second.stats().lag).toBe(0)
    await second.close()
  })

  it('lag counts the stored backlog, also for a member that continues mid-stream', async () => {
    const opts = options(2)
    const bus = await create(opts)
    await produce(bus, 0, 400)
    const group = uniqueName('lag')
    const first = await bus.consumer({ group, maxInFlight: 20, ...lease })
    // Nothing delivered yet: the whole backlog, once the member has read and counted.
    await until(() => first.stats().lag === 400 && first.stats().shards.length === 2, 15_000)
    let acked = 0
    await take(first, () => acked >= 30, (ev) => {
      expect(first.ack(ev)).toBe(true)
      acked++
    })
    await first.close()
    // Another bus on the same store (memory: the same bus) continues past the 30 acked.
    const other = name === 'memory' ? bus : await create(opts)
    const second = await other.consumer({ group, maxInFlight: 20, ...lease })
    await until(() => second.stats().lag === 370, 15_000)
    let more = 0
    await take(second, () => more >= 10, (ev) => {
      expect(second.ack(ev)).toBe(true)
      more++
    })
    // Lag is what the group has not acked: in flight or not yet delivered.
    await until(() => second.stats().lag === 360, 15_000)
    expect(second.stats().acked).toBe(10)
    await second.close()
  })

  it('a new group from "latest" starts at the end of every shard', async () => {
    const bus = await create(options(3))
    await produce(bus, 0, 90)
    const group = uniqueName('latest')
    const c = await bus.consumer({ group, from: 'latest', ...lease })
    await produce(bus, 90, 120)
    const seen = await consume(c, () => c.stats().acked === 30)
    expect(seen.map((e) => e.i).sort((x, y) => x - y)).toEqual(Array.from({ length: 30 }, (_, i) => 90 + i))
    await c.close()
  })

  it('four members on two shards: the idle two take over when the owners close', async () => {
    const bus = await create(options(2))
    const group = uniqueName('idle')
    const members = await Promise.all(['m1', 'm2', 'm3', 'm4'].map((member) => bus.consumer({ group, member, ...lease })))
    await until(() => members.filter((m) => m.stats().shards.length === 1).length === 2, 15_000)
    const owners = members.filter((m) => m.stats().shards.length === 1)
    const idle = members.filter((m) => m.stats().shards.length === 0)
    expect(idle).toHaveLength(2)
    await Promise.all(owners.map((m) => m.close()))
    await until(() => idle.every((m) => m.stats().shards.length === 1), 15_000)
    await produce(bus, 0, 40)
    let got = 0
    const seen = (
      await Promise.all(idle.map((m) => take(m, () => got >= 40, (ev) => {
        expect(m.ack(ev)).toBe(true)
        got++
      })))
    ).flat()
    // Exactly the 40 events, each delivered once: a loss plus a duplicate would not pass.
    expect(seen.map((e) => e.i).sort((x, y) => x - y)).toEqual(Array.from({ length: 40 }, (_, i) => i))
    expect(seen.every((e) => e.deliveries === 1)).toBe(true)
    await Promise.all(idle.map((m) => m.close()))
  })
})

describe('consumer API on memory', () => {
  it('redelivers after ackWaitMs and after nack, touch extends the deadline, and dead-letters past maxDeliveries', async () => {
    const bus = new EventBus({ shards: 1 })
    for (let i = 0; i < 3; i++) bus.ingest({ i, key: 'k' }, { key: 'k' })
    await bus.flush()
    const group = 'redeliver'
    const c = await bus.consumer({ group, ackWaitMs: 600, maxDeliveries: 2, leaseMs: 1000 })
    const it = c[Symbol.asyncIterator]()
    const next = async () => (await it.next()).value as GroupEvent
    const [e0, e1, e2] = [await next(), await next(), await next()]
    expect([e0, e1, e2].map((e) => [parse(e).i, e.deliveries])).toEqual([[0, 1], [1, 1], [2, 1]])
    expect(c.ack(e0)).toBe(true)
    expect(c.ack(e0)).toBe(false)
    expect(c.nack(e1, { delayMs: 50 })).toBe(true)
    const touched = setInterval(() => c.touch(e2), 100)
    const r1 = await next()
    expect([parse(r1).i, r1.deliveries]).toEqual([1, 2])
    expect(c.ack(r1)).toBe(true)
    // e2 is kept alive by touch (every 100 ms, a sixth of ackWaitMs: a slow timer on a
    // loaded machine does not let it lapse) past three ack deadlines.
    await sleep(1800)
    expect(c.stats().inFlight).toBe(1)
    clearInterval(touched)
    const r2 = await next()
    expect([parse(r2).i, r2.deliveries]).toEqual([2, 2])
    // Not acked again: past maxDeliveries it becomes a dead letter.
    await until(async () => (await bus.deadLetters(group)).events.length === 1)
    const [letter] = (await bus.deadLetters(group)).events
    expect(letter.reason).toBe('not acked within ackWaitMs (600 ms) on each of 2 deliveries')
    expect(c.stats()).toMatchObject({ delivered: 5, acked: 2, nacked: 1, redelivered: 2, deadLettered: 1, inFlight: 0, lag: 0, shards: [0] })
    expect(c.ack(r2)).toBe(false)
    await c.close()
    expect((await it.next()).done).toBe(true)
    await bus.shutdown()
  })

  it('pages through dead letters with a cursor', async () => {
    const bus = new EventBus({ shards: 2 })
    for (let i = 0; i < 25; i++) bus.ingest({ i, key: `k${i}` }, { key: `k${i}` })
    await bus.flush()
    const w = bus.process('pages', () => {
      throw new Error('always')
    }, { maxDeliveries: 1, concurrency: 4 })
    await until(() => w.stats().consumer.deadLettered === 25)
    await w.close()
    const seen: number[] = []
    let cursor: string | undefined
    for (;;) {
      const page = await bus.deadLetters('pages', { limit: 10, cursor })
      expect(page.events.length).toBeLessThanOrEqual(10)
      seen.push(...page.events.map((l) => JSON.parse(l.raw).i as number))
      cursor = page.cursor ?? cursor
      if (!page.hasMore) break
    }
    expect(seen.sort((a, b) => a - b)).toEqual(Array.from({ length: 25 }, (_, i) => i))
    await bus.shutdown()
  })

  it('shutdown waits for running handlers, commits their acks and ends consumers', async () => {
    const bus = new EventBus({ shards: 2 })
    for (let i = 0; i < 20; i++) bus.ingest({ i, key: `k${i % 4}` }, { key: `k${i % 4}` })
    await bus.flush()
    let finished = 0
    const w = bus.process('slow', async () => {
      await sleep(150)
      finished++
    }, { concurrency: 4 })
    const c = await bus.consumer({ group: 'other' })
    const pending = c[Symbol.asyncIterator]().next()
    await until(() => w.stats().running === 4)
    await bus.shutdown()
    expect(finished).toBeGreaterThanOrEqual(4)
    expect(w.stats().running).toBe(0)
    expect(w.stats().consumer.acked).toBe(finished)
    const step = await pending
    expect(step.done === true || step.value !== undefined).toBe(true)
    await expect(bus.consumer({ group: 'late' })).rejects.toMatchObject({ code: 'ERR_SHUT_DOWN' })
    expect(() => bus.process('late', () => {})).toThrow(expect.objectContaining({ code: 'ERR_SHUT_DOWN' }))
  })

  it('validates every option with a coded error naming it', async () => {
    const bus = new EventBus({ shards: 1 })
    const bad: Array<[unknown, string]> = [
      [{}, 'missing field `group`'],
      [{ group: 'a b' }, 'group must be 1-64 characters'],
      [{ group: 'g', member: '' }, 'member must be 1-64 characters'],
      [{ group: 'g', from: 'middle' }, "from must be 'earliest' or 'latest'"],
      [{ group: 'g', ackWaitMs: 5 }, 'ackWaitMs must be between 100 and 86400000'],
      [{ group: 'g', maxDeliveries: 0 }, 'maxDeliveries must be between 1'],
      [{ group: 'g', maxInFlight: 0 }, 'maxInFlight must be between 1'],
      [{ group: 'g', leaseMs: 10 }, 'leaseMs must be between 1000'],
      [{ group: 'g', ackWaitMs: 1.5 }, 'consumer options.ackWaitMs'],
      [{ group: 'g', nope: 1 }, 'unknown field `nope`'],
    ]
    for (const [opts, message] of bad) {
      await expect(bus.consumer(opts as never)).rejects.toMatchObject({ code: 'ERR_INVALID_CONFIG', message: expect.stringContaining(message) })
    }
    await expect(bus.consumer({ group: 'g', filter: { $nope: 1 } })).rejects.toMatchObject({ code: 'ERR_INVALID_FILTER' })
    const processBad: Array<[unknown[], string]> = [
      [[5, () => {}], 'group must be a string'],
      [['g', 'not a function'], 'handler must be a function'],
      [['g', () => {}, { concurrency: 0 }], 'concurrency must be between 1 and 10000'],
      [['g', () => {}, { backoffMs: -1 }], 'process options.backoffMs'],
      [['g', () => {}, { group: 'x' }], "give the group as process()'s first argument"],
      [['g', () => {}, { maxDeliveries: 0 }], 'maxDeliveries must be between 1'],
    ]
    for (const [args, message] of processBad) {
      expect(() => (bus.process as (...a: unknown[]) => unknown)(...args)).toThrow(
        expect.objectContaining({ code: 'ERR_INVALID_CONFIG', message: expect.stringContaining(message) }),
      )
    }
    const c = await bus.consumer({ group: 'g' })
    expect(() => c.ack({} as GroupEvent)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_EVENT' }))
    expect(() => c.nack({ shardId: 0, id: 'x' } as GroupEvent, { delayMs: -1 })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_CONFIG' }))
    await expect(bus.redeliver('g', [42 as never])).rejects.toMatchObject({ code: 'ERR_INVALID_CONFIG' })
    await expect(bus.deadLetters('bad group')).rejects.toMatchObject({ code: 'ERR_INVALID_CONFIG' })
    await c.close()
    const noop = new EventBus({ adapter: { type: 'noop' } })
    await expect(noop.consumer({ group: 'g' })).rejects.toMatchObject({ code: 'ERR_INVALID_CONFIG', message: expect.stringContaining('use memory, jetstream or redis') })
    await Promise.all([bus.shutdown(), noop.shutdown()])
  })
})
