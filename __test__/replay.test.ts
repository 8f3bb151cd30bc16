// Replay from a point in time (`from: { time }`) for poll, subscribe and a new group, on
// every backend: exactly the events stored at or after the time, checked by message id,
// and on Redis and JetStream also against an independent client reading by time.
import Redis from 'ioredis'
import { connect } from '@nats-io/transport-node'
import { jetstream } from '@nats-io/jetstream'
import { type BusEvent, type EventBus } from '../index'
import { NATS, REDIS, sleep, storesForFile, trackBuses } from './support/adapter'
import { uniqueName } from './support/servers'

jest.setTimeout(60_000)

const create = trackBuses()
const adapterFor = storesForFile()

/** Stores `n` events tagged `tag` and waits until every one is stored. */
async function store(bus: EventBus, tag: string, n: number): Promise<void> {
  for (let i = 0; i < n; i++) bus.ingest({ tag, i }, { key: `k${i % 5}` })
  const r = await bus.flush()
  expect(r.dropped).toBe(0)
}

/** Every page from `first` on, following cursors. */
async function pollAll(bus: EventBus, first: Parameters<EventBus['poll']>[0]): Promise<BusEvent[]> {
  const out: BusEvent[] = []
  let page = await bus.poll(first)
  out.push(...page.events)
  while (page.hasMore) {
    page = await bus.poll({ cursor: page.cursor, limit: 1000 })
    out.push(...page.events)
  }
  return out
}

const ids = (events: BusEvent[]) => events.map((e) => e.messageId).sort()
const body = (e: BusEvent) => JSON.parse(e.raw) as { tag: string; i: number }

describe.each(['memory', 'jetstream', 'redis'])('%s: from { time }', (kind) => {
  const name = uniqueName('replay')
  let bus: EventBus
  let at: Date
  let before: BusEvent[]
  let after: BusEvent[]

  beforeAll(async () => {
    bus = await create({ shards: 4, adapter: adapterFor(kind, name) })
    await store(bus, 'before', 300)
    // Store times are whole milliseconds: keep the two batches apart by more than one.
    await sleep(30)
    at = new Date()
    await sleep(30)
    await store(bus, 'after', 200)
    const all = await pollAll(bus, { limit: 1000 })
    before = all.filter((e) => body(e).tag === 'before')
    after = all.filter((e) => body(e).tag === 'after')
    expect([before.length, after.length]).toEqual([300, 200])
  })

  it('poll returns exactly the events stored at or after the time', async () => {
    expect(ids(await pollAll(bus, { from: { time: at }, limit: 50 }))).toEqual(ids(after))
    expect(ids(await pollAll(bus, { from: { time: at.getTime() }, limit: 1000 }))).toEqual(ids(after))
    expect(await pollAll(bus, { from: { time: 0 }, limit: 1000 })).toHaveLength(500)
    // A time after everything: an empty page whose cursor follows what is stored next.
    const future = await bus.poll({ from: { time: Date.now() + 60_000 } })
    expect(future.events).toHaveLength(0)
    await store(bus, 'later', 3)
    const next = await bus.poll({ cursor: future.cursor, limit: 100 })
    expect(next.events.map((e) => body(e).tag)).toEqual(['later', 'later', 'later'])
  })

  it('subscribe starts at the time', async () => {
    const seen: BusEvent[] = []
    for await (const ev of bus.subscribe({ from: { time: at } })) {
      seen.push(ev)
      if (seen.length === 203) break
    }
    expect(ids(seen.filter((e) => body(e).tag === 'after'))).toEqual(ids(after))
    expect(seen.some((e) => body(e).tag === 'before')).toBe(false)
  })

  it('a new group starts at the time', async () => {
    const consumer = await bus.consumer({ group: `g-${kind}`, from: { time: at.toISOString() as never } })
    const got: BusEvent[] = []
    for await (const ev of consumer) {
      got.push(ev)
      consumer.ack(ev)
      if (got.length === 203) break
    }
    expect(got.some((e) => body(e).tag === 'before')).toBe(false)
    expect(ids(got.filter((e) => body(e).tag === 'after'))).toEqual(ids(after))
  })

  it('refuses bad times and a cursor together with from', async () => {
    for (const from of [{ time: -1 }, { time: 'yesterday' }, { time: new Date(NaN) }, { when: 1 }, 42]) {
      await expect(bus.poll({ from: from as never })).rejects.toMatchObject({ code: 'ERR_INVALID_CONFIG' })
    }
    const { cursor } = await bus.poll({ limit: 1 })
    await expect(bus.poll({ cursor, from: { time: at } })).rejects.toMatchObject({
      code: 'ERR_INVALID_CONFIG',
      message: expect.stringContaining('not both'),
    })
    await expect(bus.consumer({ group: 'bad', from: 'now' as never })).rejects.toMatchObject({ code: 'ERR_INVALID_CONFIG' })
  })

  if (kind === 'redis') {
    it('matches what ioredis reads from the same time', async () => {
      const redis = new Redis(REDIS)
      const seen: string[] = []
      for (let shard = 0; shard < 4; shard++) {
        const entries = await redis.xrange(`{${name}:${shard}}`, `${at.getTime()}`, '+')
        for (const [, fields] of entries) {
          const d = JSON.parse(fields[fields.indexOf('d') + 1])
          if (d.tag === 'after') seen.push(`${shard}-${d.i}`)
        }
      }
      await redis.quit()
      expect(seen.sort()).toEqual(after.map((e) => `${e.shardId}-${body(e).i}`).sort())
    })
  }

  if (kind === 'jetstream') {
    it('matches what a nats.js consumer started at the same time reads', async () => {
      const nc = await connect({ servers: NATS })
      const js = jetstream(nc)
      const c = await js.consumers.get(name, { opt_start_time: at.toISOString() })
      const first = await c.next({ expires: 5000 })
      await nc.close()
      // The first message the server finds at the time is the first event `from` returns.
      const ours = await bus.poll({ from: { time: at }, limit: 1 })
      expect(first?.headers?.get('Nats-Msg-Id')).toBe(ours.events[0].messageId)
    })
  }
})
