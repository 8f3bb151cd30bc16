// `ev.json()` on every read path (poll, subscribe, consumer, process, dead letters): the
// payload parsed once and cached, hidden from spreading and JSON.stringify, coded when the
// payload is not JSON. The typings side (`EventBus<T>`) is checked by types.test.ts.
import { EventBus, type BusEvent, type GroupEvent } from '../index'

interface Order {
  orderId: number
  total: number
  lines: string[]
}

const order = (n: number): Order => ({ orderId: n, total: n * 10, lines: [`sku-${n}`] })

describe('ev.json()', () => {
  let bus: EventBus<Order>
  beforeEach(() => {
    bus = new EventBus<Order>({ shards: 2 })
  })
  afterEach(async () => {
    await bus.shutdown()
  })

  it('parses the payload once and returns the same value after', async () => {
    bus.ingest(order(1), { key: 'a' })
    bus.ingest(JSON.stringify(order(2)), { key: 'a' })
    await bus.flush()
    const { events } = await bus.poll({ limit: 10 })
    expect(events.map((e) => e.json())).toEqual([order(1), order(2)])
    const first = events[0].json()
    expect(events[0].json()).toBe(first)
    // raw stays as it was.
    expect(events[0].raw).toBe(JSON.stringify(order(1)))
  })

  it('is not enumerable: spreading, Object.keys and JSON.stringify do not see it', async () => {
    bus.ingest(order(3))
    await bus.flush()
    const [ev] = (await bus.poll()).events
    ev.json()
    expect(Object.keys(ev)).not.toContain('json')
    expect('json' in { ...ev }).toBe(false)
    const copy = JSON.parse(JSON.stringify(ev))
    expect(Object.keys(copy).sort()).toEqual(['id', 'messageId', 'raw', 'seq', 'shardId', 'timestamp'])
    expect(Object.getOwnPropertySymbols({ ...ev })).toEqual([])
  })

  it('works on a frozen event (parsed again, not cached)', async () => {
    bus.ingest(order(4))
    await bus.flush()
    const [ev] = (await bus.poll()).events
    Object.freeze(ev)
    expect(ev.json()).toEqual(order(4))
    expect(ev.json()).toEqual(order(4))
  })

  it('parses bytes that hold JSON; other bytes throw ERR_INVALID_EVENT naming ev.bytes', async () => {
    const loose = new EventBus({ shards: 1 })
    try {
      loose.ingest(Buffer.from('{"n":1}'))
      loose.ingest(Buffer.from([0xff, 0x00, 0x7b]))
      await loose.flush()
      const [json, binary] = (await loose.poll()).events
      expect(json.json()).toEqual({ n: 1 })
      expect(() => binary.json()).toThrow(expect.objectContaining({ code: 'ERR_INVALID_EVENT' }))
      expect(() => binary.json()).toThrow(/not JSON.*read ev\.bytes/)
      // The failure is not cached as a value.
      expect(() => binary.json()).toThrow()
      // Detached from its event: coded too, and says how to call it.
      const detached = json.json
      expect(() => detached()).toThrow(expect.objectContaining({ code: 'ERR_INVALID_EVENT', message: expect.stringMatching(/ev\.json\(\)/) }))
    } finally {
      await loose.shutdown()
    }
  })

  it('is there on subscribe, consumer, process and dead-letter events', async () => {
    for (let i = 0; i < 4; i++) bus.ingest(order(i), { key: `k${i}` })
    await bus.flush()

    const seen: BusEvent<Order>[] = []
    for await (const ev of bus.subscribe({ from: 'earliest' })) {
      seen.push(ev)
      if (seen.length === 4) break
    }
    expect(seen.map((e) => e.json().orderId).sort()).toEqual([0, 1, 2, 3])

    const consumer = await bus.consumer({ group: 'read', leaseMs: 1000 })
    const got: GroupEvent<Order>[] = []
    for await (const ev of consumer) {
      got.push(ev)
      consumer.ack(ev)
      if (got.length === 4) break
    }
    expect(got.map((e) => e.json().total).sort((a, b) => a - b)).toEqual([0, 10, 20, 30])
    expect(Object.keys(got[0])).not.toContain('json')

    const handled: number[] = []
    const worker = bus.process(
      'ship',
      async (ev) => {
        handled.push(ev.json().orderId)
        if (ev.json().orderId === 2) throw new Error('cannot ship')
      },
      { maxDeliveries: 1, leaseMs: 1000 },
    )
    for (let t = 0; t < 200 && handled.length < 4; t++) await new Promise((r) => setTimeout(r, 25))
    await worker.close()
    expect(handled.sort()).toEqual([0, 1, 2, 3])

    const letters = await bus.deadLetters('ship')
    expect(letters.events).toHaveLength(1)
    expect(letters.events[0].json()).toEqual(order(2))
    expect(letters.events[0].reason).toMatch(/cannot ship/)
  })
})
