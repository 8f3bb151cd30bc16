// Issue "Hardening, round 2": hostile input against consumer groups, stored records and
// logs. Each test failed on the code before its fix (the closing note says how).
import { fork } from 'node:child_process'
import path from 'node:path'
import Redis from 'ioredis'
import { connect } from '@nats-io/transport-node'
import { jetstreamManager } from '@nats-io/jetstream'
import { EventBus } from '../index'
import { sleep, until } from './support/adapter'
import { uniqueName } from './support/servers'

const NATS = process.env.RINGBUS_NATS_URL ?? 'nats://127.0.0.1:4222'
const REDIS = process.env.RINGBUS_REDIS_URL ?? 'redis://127.0.0.1:6379'
const CHILD = path.join(__dirname, 'support', 'hostile-child.js')

jest.setTimeout(60_000)

type ChildResult = { message: any; stderr: string; code: number | null }

/** Runs hostile-child.js in `mode` and waits for its report and its own exit. */
function runChild(cfg: Record<string, unknown>, env: Record<string, string> = {}): Promise<ChildResult> {
  const child = fork(CHILD, [JSON.stringify(cfg)], {
    env: { ...process.env, RINGBUS_LOG: '', ...env },
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  })
  let stderr = ''
  child.stderr!.on('data', (d) => (stderr += d))
  let message: any
  child.on('message', (m) => (message = m))
  return new Promise((resolve) => child.once('exit', (code) => resolve({ message, stderr, code })))
}

const nest = (depth: number) => JSON.parse('{"a":'.repeat(depth) + '1' + '}'.repeat(depth))

describe('1. events no reader could parse are refused at ingest', () => {
  it('lone surrogates and nesting past 128 levels are ERR_INVALID_EVENT on every ingest path', async () => {
    const bus = new EventBus({ shards: 2 })
    const refused = (f: () => unknown, why: string) => {
      let err: any
      try {
        f()
      } catch (e) {
        err = e
      }
      expect(err).toMatchObject({ code: 'ERR_INVALID_EVENT' })
      expect(err.message).toContain(why)
    }
    // Twice each: the first call goes through the napi method, later ones through the bound path.
    for (let round = 0; round < 2; round++) {
      refused(() => bus.ingest({ note: 'ok \ud83d' }), 'lone UTF-16 surrogate')
      refused(() => bus.ingest({ note: '\udc00 tail' }, { headers: { traceparent: 'x' } }), 'lone UTF-16 surrogate')
      refused(() => bus.ingest(nest(129)), 'deeper than 128 levels')
      refused(() => bus.ingest('"\\ud800"'), 'lone UTF-16 surrogate')
      refused(() => bus.ingestBatch([{ fine: 1 }, { note: '😀'.slice(0, 1) }]), 'events[1]')
    }
    // What is well-formed still goes in, and reads back as given.
    bus.ingest({ emoji: '😀', quote: 'a"b\\c', deep: nest(120) })
    expect(bus.ingestBatch([{ n: '\u00e9' }, { n: 'ok' }])).toBe(2)
    await bus.flush()
    const { events } = await bus.poll({ limit: 10 })
    expect(events).toHaveLength(3)
    expect(events.map((e) => JSON.parse(e.raw).emoji).filter(Boolean)).toEqual(['😀'])
    expect(bus.stats().ingested).toBe(3)
    await bus.shutdown()
  })
})

describe('2. a handler result cannot take the process down', () => {
  it('throwing thenables and a failing event constructor count as handler failures; the process exits by itself', async () => {
    const { message, stderr, code } = await runChild({ mode: 'thenables' })
    expect(message.error).toBeUndefined()
    expect(code).toBe(0)
    expect(stderr).not.toMatch(/unhandled|UnhandledPromiseRejection/i)
    expect(message.handled).toBe(40)
    expect(message.distinct).toBe(40)
    // i % 3 in {0, 1}: 27 of the 40 fail once; the poisoned turn fails its events once more.
    expect(message.stats.failed).toBeGreaterThanOrEqual(27)
    expect(message.stats.handled).toBe(40)
    expect(message.stats.consumer.deadLettered).toBe(0)
  })
})

describe('3. a forged stamp cannot spin a reader', () => {
  it('a Redis entry whose span is 4294967295 is skipped as corrupt; poll and subscribe return', async () => {
    const prefix = uniqueName('span')
    const bus = await EventBus.create({ shards: 1, adapter: { type: 'redis', url: REDIS, keyPrefix: prefix } })
    bus.ingest({ i: 1 })
    await bus.flush()
    const redis = new Redis(REDIS)
    await redis.xadd(`{${prefix}:0}`, '*', 'd', '{"forged":true}', 'm', `${Date.now()} 99 json 1/4294967295 00000000000000ab-0-0-99`)
    await redis.quit()
    bus.ingest({ i: 2 })
    await bus.flush()
    const { events } = await bus.poll({ limit: 100 })
    expect(events.map((e) => JSON.parse(e.raw))).toEqual([{ i: 1 }, { i: 2 }])
    expect(bus.stats().corruptSkipped).toBeGreaterThanOrEqual(1)
    const sub = bus.subscribe({ from: 'earliest' })
    const got = [(await sub.next()).value, (await sub.next()).value].map((e: any) => JSON.parse(e.raw))
    expect(got).toEqual([{ i: 1 }, { i: 2 }])
    await sub.return?.()
    await bus.shutdown()
  })
})

describe('4. a dead letter that cannot fit never stops commits (JetStream)', () => {
  it('an event near max_payload with a 3 kB error becomes a letter without its payload; acks are committed', async () => {
    const stream = uniqueName('bigletter')
    const options = { shards: 1, adapter: { type: 'jetstream' as const, servers: NATS, stream } }
    const bus = await EventBus.create(options)
    const big = { pad: 'x'.repeat(1_046_000) }
    bus.ingest(big)
    for (let i = 0; i < 10; i++) bus.ingest({ i })
    await bus.flush()
    const worker = bus.process(
      'g',
      async (ev) => {
        if (ev.raw.length > 1000) throw new Error('E'.repeat(3000))
      },
      { maxDeliveries: 1, leaseMs: 1000 },
    )
    await until(() => worker.stats().handled === 10 && worker.stats().consumer.deadLettered === 1)
    await until(async () => (await bus.deadLetters('g')).events.length === 1)
    const [letter] = (await bus.deadLetters('g')).events
    expect(letter.reason).toContain('did not fit in the letter')
    expect(letter.reason).toContain('reason cut from 3')
    expect(letter.raw).toBe('')
    await worker.close()
    // Its commits were written: a new member starts after the acked events.
    bus.ingest({ marker: true })
    await bus.flush()
    const next = await bus.consumer({ group: 'g', leaseMs: 1000 })
    const first = await next.next()
    expect(JSON.parse((first.value as any).raw)).toEqual({ marker: true })
    // The cut letter stays dead: redelivering it would deliver nothing.
    expect(await bus.redeliver('g', [letter])).toBe(0)
    expect((await bus.deadLetters('g')).events).toHaveLength(1)
    await next.close()
    await bus.shutdown()
    const nc = await connect({ servers: NATS })
    const jsm = await jetstreamManager(nc)
    await jsm.streams.delete(stream)
    await jsm.streams.delete(`KV_rbg_${stream}`)
    await nc.close()
  })
})

describe('5. credentials never reach log records', () => {
  const stream = uniqueName('creds')
  afterAll(async () => {
    const nc = await connect({ servers: NATS })
    const jsm = await jetstreamManager(nc)
    await jsm.streams.delete(stream).catch(() => undefined)
    await nc.close()
  })
  const url = (userinfo: string) => NATS.replace('nats://', `nats://${userinfo}@`)

  it.each([
    ['user and password', 'bob:Pa55w0rdXYZ', 'Pa55w0rdXYZ'],
    ['token', 'T0kenABCDEF', 'T0kenABCDEF'],
  ])('a URL with a %s is scrubbed from every record at RINGBUS_LOG=trace, on stderr and in setLogger', async (_, userinfo, secret) => {
    const plain = await runChild({ mode: 'secrets', url: url(userinfo), stream }, { RINGBUS_LOG: 'trace' })
    expect(plain.message.error).toBeUndefined()
    // async-nats's own records are there (the filter lets them through) …
    expect(plain.stderr).toContain('async_nats')
    expect(plain.stderr).toMatch(/attempting connection.*\*\*\*/)
    // … without the secret.
    expect(plain.stderr).not.toContain(secret)
    const sunk = await runChild({ mode: 'secrets', url: url(userinfo), stream, sink: true }, { RINGBUS_LOG: 'trace' })
    const text = JSON.stringify(sunk.message.records)
    expect(sunk.message.records.some((r: any) => r.target.startsWith('async_nats'))).toBe(true)
    expect(text).not.toContain(secret)
  })
})

describe('7. worker.close() is bounded', () => {
  it('a handler that never settles, or awaits its own close, holds close() at most ackWaitMs', async () => {
    const bus = new EventBus({ shards: 1 })
    bus.ingest({ a: 1 })
    await bus.flush()
    const hung = bus.process('g', () => new Promise(() => {}), { ackWaitMs: 500 })
    await until(() => hung.stats().running === 1)
    await hung.close()
    expect(hung.stats().running).toBe(0)
    // Its event went back to the group: another worker handles it.
    let closer: any
    const seen: number[] = []
    closer = bus.process(
      'g',
      async (ev) => {
        seen.push(JSON.parse(ev.raw).a)
        await closer.close()
      },
      { ackWaitMs: 500 },
    )
    await until(() => seen.length === 1)
    await closer.close()
    expect(seen).toEqual([1])
    await bus.shutdown()
  })

  it('shutdown() settles a close() still waiting for a handler', async () => {
    const bus = new EventBus({ shards: 1, shutdownTimeoutMs: 300 })
    bus.ingest({ a: 1 })
    await bus.flush()
    const w = bus.process('g', () => new Promise(() => {}), { ackWaitMs: 3_600_000 })
    await until(() => w.stats().running === 1)
    const closed = w.close()
    await bus.shutdown()
    await closed
  })
})

describe('8. member names are unique among live members', () => {
  it('a second live member with the same name is ERR_INVALID_CONFIG; after the first leaves, the name is free', async () => {
    const bus = new EventBus({ shards: 2 })
    const a = await bus.consumer({ group: 'g', member: 'm1', leaseMs: 1000 })
    const err = await bus.consumer({ group: 'g', member: 'm1', leaseMs: 1000 }).catch((e) => e)
    expect(err).toMatchObject({ code: 'ERR_INVALID_CONFIG' })
    expect(err.message).toContain('already a live member')
    await a.close()
    const again = await bus.consumer({ group: 'g', member: 'm1', leaseMs: 1000 })
    expect(again.stats().shards).toEqual([0, 1])
    await again.close()
    await bus.shutdown()
  })
})

describe('14. a stream named like the group bucket', () => {
  it('is named in an ERR_INVALID_CONFIG, not an opaque adapter error', async () => {
    const stream = uniqueName('kvclash')
    const nc = await connect({ servers: NATS })
    const jsm = await jetstreamManager(nc)
    await jsm.streams.add({ name: `KV_rbg_${stream}`, subjects: [`other.${stream}`] })
    const bus = await EventBus.create({ shards: 1, adapter: { type: 'jetstream', servers: NATS, stream } })
    const err = await bus.consumer({ group: 'g' }).catch((e) => e)
    expect(err).toMatchObject({ code: 'ERR_INVALID_CONFIG' })
    expect(err.message).toContain(`KV_rbg_${stream}`)
    expect(err.message).toContain('rename or delete')
    await bus.shutdown()
    await jsm.streams.delete(`KV_rbg_${stream}`)
    await jsm.streams.delete(stream)
    await nc.close()
  })
})
