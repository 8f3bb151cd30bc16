// Headers (trace context) travel with the event on every backend: given at ingest, stored
// (checked with nats.js and ioredis, not only through ringbus), returned by poll, subscribe,
// group deliveries and dead letters; invalid ones are refused with a coded error.
import { connect } from '@nats-io/transport-node'
import { jetstreamManager } from '@nats-io/jetstream'
import { Redis } from 'ioredis'
import { EventBus, type EventBusOptions } from '../index'
import { trackBuses } from './support/adapter'
import { uniqueName } from './support/servers'

const NATS = process.env.RINGBUS_NATS_URL ?? 'nats://127.0.0.1:4222'
const REDIS = process.env.RINGBUS_REDIS_URL ?? 'redis://127.0.0.1:6379'

jest.setTimeout(60_000)

const create = trackBuses()

const TRACE = {
  traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
  tracestate: 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE',
}

type Backend = {
  name: string
  options: () => EventBusOptions
  /** The first stored record's headers as another client sees them (none for memory: no other client can see it). */
  stored?: (o: EventBusOptions) => Promise<Record<string, string>>
}

const backends: Backend[] = [
  { name: 'memory', options: () => ({ shards: 1 }) },
  {
    name: 'jetstream',
    options: () => ({ shards: 1, adapter: { type: 'jetstream', servers: NATS, stream: uniqueName('hdr'), storage: 'memory' } }),
    stored: async (o) => {
      const nc = await connect({ servers: NATS })
      try {
        const stream = (o.adapter as { stream: string }).stream
        const m = await (await jetstreamManager(nc)).streams.getMessage(stream, { seq: 1 })
        const out: Record<string, string> = {}
        for (const name of ['traceparent', 'tracestate']) out[name] = m!.header.get(name)
        return out
      } finally {
        await nc.close()
      }
    },
  },
  {
    name: 'redis',
    options: () => ({ shards: 1, adapter: { type: 'redis', url: REDIS, keyPrefix: uniqueName('hdr') } }),
    stored: async (o) => {
      const r = new Redis(REDIS)
      try {
        const [[, fields]] = await r.xrange(`{${(o.adapter as { keyPrefix: string }).keyPrefix}:0}`, '-', '+', 'COUNT', 1)
        const h = fields[fields.indexOf('h') + 1]
        return Object.fromEntries(JSON.parse(h) as Array<[string, string]>)
      } finally {
        r.disconnect()
      }
    },
  },
]

describe.each(backends)('headers on $name', ({ options, stored }) => {
  it('are stored and come back on poll, subscribe, group deliveries and dead letters', async () => {
    const opts = options()
    const bus = await create(opts)
    bus.ingest({ n: 0 }, { key: 'a', headers: TRACE })
    bus.ingest({ n: 1 })
    bus.ingestBatch([{ n: 2 }, { n: 3 }], { headers: { 'x-tenant': 't1' } })
    expect((await bus.flush()).dropped).toBe(0)
    if (stored) expect(await stored(opts)).toEqual(TRACE)

    const { events } = await bus.poll({ limit: 10 })
    expect(events.map((e) => e.headers)).toEqual([TRACE, undefined, { 'x-tenant': 't1' }, { 'x-tenant': 't1' }])
    expect('headers' in events[1]).toBe(false)

    const seen = []
    for await (const ev of bus.subscribe()) {
      seen.push(ev.headers)
      if (seen.length === 4) break
    }
    expect(seen).toEqual([TRACE, undefined, { 'x-tenant': 't1' }, { 'x-tenant': 't1' }])

    // A group delivery carries them, and so does the dead letter it becomes.
    const group = uniqueName('hg')
    const c = await bus.consumer({ group, maxDeliveries: 1, leaseMs: 1000 })
    const it = c[Symbol.asyncIterator]()
    const first = (await it.next()).value!
    expect(first.headers).toEqual(TRACE)
    expect(c.nack(first)).toBe(true)
    await c.close()
    // close() settled it: the dead letter is there once close() resolves.
    const letters = await bus.deadLetters(group)
    expect(letters.events.map((l) => l.headers)).toEqual([TRACE])
  })
})

describe('headers validation', () => {
  it('refuses what a backend could not carry, naming the header', async () => {
    const bus = await create({})
    const bad: Array<[unknown, RegExp]> = [
      [{ 'bad name': 'x' }, /name "bad name" must be 1-64/],
      [{ ['x'.repeat(65)]: 'x' }, /must be 1-64/],
      [{ 'Nats-Msg-Id': 'x' }, /is reserved/],
      [{ 'rb-key': 'x' }, /is reserved/],
      [{ a: 'line\nbreak' }, /options\.headers\.a contains a line break/],
      [{ a: 1 }, /options\.headers\.a must be a string, got a number/],
      [Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`h${i}`, 'v'])), /17 entries, over the 16-header limit/],
      [{ a: 'x'.repeat(5000) }, /over the 4096-byte limit/],
      [{ a: 'x'.repeat(2100), b: 'y'.repeat(2100) }, /take 4202 bytes, over the 4096-byte limit/],
      ['traceparent', /options\.headers must be an object, got a string/],
    ]
    for (const [headers, message] of bad) {
      expect(() => bus.ingest({ n: 1 }, { headers: headers as Record<string, string> })).toThrow(
        expect.objectContaining({ code: 'ERR_INVALID_EVENT', message: expect.stringMatching(message) }),
      )
    }
    expect(() => bus.ingestBatch([{ n: 1 }], { headers: { 'bad name': 'x' } })).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_EVENT', message: expect.stringMatching(/^events\[0\]: /) }),
    )
    // Nothing of the refused calls was accepted; empty headers mean none.
    bus.ingest({ n: 2 }, { headers: {} })
    await bus.flush()
    const { events } = await bus.poll()
    expect(events).toHaveLength(1)
    expect(events[0].headers).toBeUndefined()
  })
})
