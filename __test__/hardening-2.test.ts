// Issue "Hardening, round 2": hostile input against consumer groups, stored records and
// logs. Each test failed on the code before its fix (the closing note says how).
import { fork } from 'node:child_process'
import path from 'node:path'
import Redis from 'ioredis'
import { connect } from '@nats-io/transport-node'
import { jetstreamManager } from '@nats-io/jetstream'
import { EventBus, setLogger } from '../index'
import { sleep, until } from './support/adapter'
import { uniqueName } from './support/servers'
import { captureLogs, expectLogs, logged } from './support/logs'

// Provoked on purpose below, and asserted where they are.
expectLogs(/^skipped a corrupt entry/, /kept dead because their payload did not fit/, /^worker\.close\(\): \d+ handler\(s\) still running after ackWaitMs/)

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

/** Deletes JetStream streams (a bus's stream and its group bucket), ignoring absent ones. */
async function dropStreams(...names: string[]): Promise<void> {
  const nc = await connect({ servers: NATS })
  const jsm = await jetstreamManager(nc)
  for (const name of names) await jsm.streams.delete(name).catch(() => undefined)
  await nc.close()
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
    expect(logged(new RegExp(`^skipped a corrupt entry in Redis stream \\{${prefix}:0\\} at id `), 'warn').length).toBe(1)
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
    expect(logged(/^redeliver\(g\): 1 dead letter\(s\) kept dead because their payload did not fit/, 'warn').length).toBeGreaterThanOrEqual(1)
    expect((await bus.deadLetters('g')).events).toHaveLength(1)
    await next.close()
    await bus.shutdown()
    await dropStreams(stream, `KV_rbg_${stream}`)
  })
})

describe('5. credentials never reach log records', () => {
  const stream = uniqueName('creds')
  afterAll(() => dropStreams(stream))
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
    await until(() => logged(/^worker\.close\(\): 1 handler\(s\) still running after ackWaitMs \(500 ms\); closing without them/, 'warn').length === 1)
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
    await nc.close()
    await dropStreams(`KV_rbg_${stream}`, stream)
  })
})

/** A cursor of `bus`'s store with its wire fields changed (as a tampering caller would). */
function forge(cursor: string, change: (wire: any) => void): string {
  const wire = JSON.parse(Buffer.from(cursor.slice(4), 'base64url').toString())
  change(wire)
  return `rb1.${Buffer.from(JSON.stringify(wire)).toString('base64url')}`
}

describe('6, 17, 18. cursors are checked before they cost anything', () => {
  it('a producer map past 64 entries is ERR_INVALID_CURSOR, and flush() is not stalled', async () => {
    const bus = new EventBus({ shards: 2 })
    bus.ingest({ a: 1 })
    await bus.flush()
    const { cursor } = await bus.poll({ limit: 1 })
    const producers = (n: number) =>
      forge(cursor, (w) => {
        w.e = {}
        for (let i = 0; i < n; i++) w.e[`${i.toString(16).padStart(16, '0')}-0`] = 1
      })
    const [many, huge] = [producers(1000), producers(100_000)]
    const polls = [bus.poll({ cursor: many }), bus.poll({ cursor: huge })].map((p) => p.catch((e) => e))
    bus.ingest({ a: 2 })
    await bus.flush()
    const [e1, e2] = await Promise.all(polls)
    expect(e1).toMatchObject({ code: 'ERR_INVALID_CURSOR' })
    expect(e1.message).toContain('remembers 1000 producers')
    expect(e2).toMatchObject({ code: 'ERR_INVALID_CURSOR' })
    expect(e2.message).toContain('bytes, over the 262144-byte limit')
    await expect(bus.poll({ cursor: producers(64) })).resolves.toMatchObject({ hasMore: false })
    await bus.shutdown()
  })

  it('a cursor from another memory bus is ERR_INVALID_CURSOR', async () => {
    const a = new EventBus({ shards: 1 })
    const b = new EventBus({ shards: 1 })
    a.ingest({ a: 1 })
    b.ingest({ b: 1 })
    await Promise.all([a.flush(), b.flush()])
    const { cursor } = await a.poll({ limit: 1 })
    await expect(b.poll({ cursor })).rejects.toMatchObject({ code: 'ERR_INVALID_CURSOR' })
    await expect(a.poll({ cursor })).resolves.toMatchObject({ events: [] })
    await Promise.all([a.shutdown(), b.shutdown()])
  })

  it.each(['memory', 'jetstream', 'redis'])('deadLetters with a junk or poll cursor is ERR_INVALID_CURSOR on %s', async (kind) => {
    const adapter =
      kind === 'memory'
        ? { type: 'memory' as const }
        : kind === 'redis'
          ? { type: 'redis' as const, url: REDIS, keyPrefix: uniqueName('dlc') }
          : { type: 'jetstream' as const, servers: NATS, stream: uniqueName('dlc') }
    const bus = await EventBus.create({ shards: 1, adapter })
    bus.ingest({ a: 1 })
    await bus.flush()
    const { cursor } = await bus.poll()
    for (const bad of ['junk', cursor, '1-2-3']) {
      await expect(bus.deadLetters('g', { cursor: bad })).rejects.toMatchObject({ code: 'ERR_INVALID_CURSOR' })
    }
    await expect(bus.deadLetters('g')).resolves.toMatchObject({ events: [], hasMore: false })
    await bus.shutdown()
    if (kind === 'jetstream') await dropStreams(adapter.stream!)
  })

  it('a Redis cursor at the largest entry id is ERR_INVALID_CURSOR', async () => {
    const bus = await EventBus.create({ shards: 1, adapter: { type: 'redis', url: REDIS, keyPrefix: uniqueName('maxid') } })
    bus.ingest({ a: 1 })
    await bus.flush()
    const { cursor } = await bus.poll()
    const forged = forge(cursor, (w) => (w.p = { '0': '18446744073709551615-18446744073709551615' }))
    await expect(bus.poll({ cursor: forged })).rejects.toMatchObject({ code: 'ERR_INVALID_CURSOR' })
    await bus.shutdown()
  })
})

describe('12. concurrent consumer.next() calls', () => {
  it('ten waiting calls all resolve from the events taken; none wait in a buffer for ackWaitMs', async () => {
    const bus = new EventBus({ shards: 1 })
    const consumer = await bus.consumer({ group: 'g', ackWaitMs: 60_000 })
    const calls = Array.from({ length: 10 }, () => consumer.next())
    for (let i = 0; i < 200; i++) bus.ingest({ i })
    await bus.flush()
    const steps = await Promise.all(calls)
    const got = steps.map((s) => JSON.parse((s.value as any).raw).i)
    expect(new Set(got).size).toBe(10)
    for (const s of steps) consumer.ack(s.value as any)
    // The rest come through next() as well, each exactly once.
    const rest: number[] = []
    while (rest.length < 190) {
      const s = await consumer.next()
      rest.push(JSON.parse((s.value as any).raw).i)
      consumer.ack(s.value as any)
    }
    expect(new Set([...got, ...rest]).size).toBe(200)
    expect(consumer.stats().redelivered).toBe(0)
    await consumer.close()
    await bus.shutdown()
  })
})

describe('13, 16, 19, 20. coded errors for hostile arguments', () => {
  const thrown = (f: () => unknown) => {
    try {
      f()
    } catch (e) {
      return e as any
    }
    throw new Error('did not throw')
  }

  it('setLogger refuses what is not a function or null, and bad options, with ERR_INVALID_CONFIG', () => {
    for (const bad of [42, {}, 'log', []]) {
      const err = thrown(() => setLogger(bad as never))
      expect(err).toMatchObject({ code: 'ERR_INVALID_CONFIG' })
      expect(err.message).toContain('must be a function')
    }
    expect(thrown(() => setLogger(() => {}, { level: 5 as never }))).toMatchObject({ code: 'ERR_INVALID_CONFIG' })
    const getter = { get level(): string { throw new Error('boom') } }
    expect(thrown(() => setLogger(() => {}, getter as never))).toMatchObject({ code: 'ERR_INVALID_CONFIG' })
    // Back to the suite's capture (null would send the later tests' records to stderr).
    captureLogs()
  })

  it('ack, nack and touch refuse non-events and bad delays with coded errors naming the value', async () => {
    const bus = new EventBus({ shards: 1 })
    const consumer = await bus.consumer({ group: 'g' })
    bus.ingest({ a: 1 })
    const { value: ev } = await consumer.next()
    for (const bad of [null, undefined, 5, { get shardId(): number { throw new Error('x') }, id: '1' }]) {
      expect(thrown(() => consumer.ack(bad as never))).toMatchObject({ code: 'ERR_INVALID_EVENT' })
      expect(thrown(() => consumer.touch(bad as never))).toMatchObject({ code: 'ERR_INVALID_EVENT' })
    }
    for (const [delayMs, shown] of [
      [2 ** 32 + 500, '4294967796'],
      [-1, '-1'],
      [NaN, 'NaN'],
      [1.5, '1.5'],
      [Infinity, 'inf'],
      ['abc', 'a string'],
    ] as const) {
      const err = thrown(() => consumer.nack(ev as any, { delayMs: delayMs as never }))
      expect(err).toMatchObject({ code: 'ERR_INVALID_CONFIG' })
      expect(err.message.toLowerCase()).toContain(String(shown).toLowerCase())
    }
    expect(consumer.nack(ev as any, { delayMs: 0 })).toBe(true)
    await consumer.close()
    await bus.shutdown()
  })

  it('a throwing setter for raw on the events\' prototype makes poll and next reject with ERR_INTERNAL', async () => {
    const bus = new EventBus({ shards: 1 })
    bus.ingest({ a: 1 })
    await bus.flush()
    const sub = bus.subscribe({ from: 'earliest' })
    // The addon's objects live in Node's main realm, not Jest's: reach it through an event.
    const proto = Object.getPrototypeOf((await bus.poll()).events[0])
    Object.defineProperty(proto, 'raw', { configurable: true, set() { throw new Error('no raw') } })
    try {
      await expect(bus.poll()).rejects.toMatchObject({ code: 'ERR_INTERNAL' })
      const err = await Promise.resolve().then(() => sub.next()).catch((e) => e)
      expect(err).toMatchObject({ code: 'ERR_INTERNAL' })
    } finally {
      delete proto.raw
    }
    expect((await bus.poll()).events).toHaveLength(1)
    await sub.return?.()
    await bus.shutdown()
  })

  it('a lone surrogate in a filter is ERR_INVALID_FILTER; headers as a Map are ERR_INVALID_EVENT', async () => {
    const bus = new EventBus({ shards: 1 })
    await expect(bus.poll({ filter: { note: 'a\ud800' } })).rejects.toMatchObject({ code: 'ERR_INVALID_FILTER' })
    const err = thrown(() => bus.ingest({ a: 1 }, { headers: new Map([['traceparent', 'x']]) as never }))
    expect(err).toMatchObject({ code: 'ERR_INVALID_EVENT' })
    expect(err.message).toContain('Object.fromEntries')
    expect(thrown(() => bus.ingest({ a: 1 }, { headers: new Map() as never }))).toMatchObject({ code: 'ERR_INVALID_EVENT' })
    expect(thrown(() => bus.ingestBatch([{ a: 1 }], { headers: ['x'] as never }))).toMatchObject({ code: 'ERR_INVALID_EVENT' })
    expect(bus.stats().ingested).toBe(0)
    await bus.shutdown()
  })

  it('an unknown option holding a class instance is named as unknown', () => {
    class Provider {
      self = this
    }
    const err = thrown(() => new EventBus({ tracing: { tracerProvider: new Provider() } } as never))
    expect(err).toMatchObject({ code: 'ERR_INVALID_CONFIG' })
    expect(err.message).toContain('tracing')
    expect(err.message).not.toContain('cycle')
  })

  it('a known option holding a class instance (a tracer provider) is accepted', async () => {
    class Provider {
      self = this
      getTracer() {
        return undefined
      }
    }
    const bus = new EventBus({ telemetry: { tracerProvider: new Provider() } })
    await bus.shutdown()
  })
})

describe('10. nack() is linear', () => {
  // Each nack once woke a scan of every held event under the lock: 75,000 nacks blocked the
  // JS thread for 52 s. The test's bound fails that, with room to spare on a slow machine.
  it('75,000 nacks of held events come back as second deliveries', async () => {
    const n = 75_000
    const bus = new EventBus({ shards: 1, ringCapacity: 131_072 })
    for (let i = 0; i < n; i++) bus.ingest({ i })
    await bus.flush()
    const consumer = await bus.consumer({ group: 'g', maxInFlight: 100_000, ackWaitMs: 600_000 })
    const held: any[] = []
    while (held.length < n) held.push((await consumer.next()).value)
    const started = Date.now()
    let nacked = 0
    for (const ev of held) if (consumer.nack(ev, { delayMs: 1000 })) nacked++
    const nackMs = Date.now() - started
    expect(nacked).toBe(n)
    const again = new Set<number>()
    let firsts = 0
    while (again.size < n) {
      const { value } = await consumer.next()
      if ((value as any).deliveries !== 2) firsts++
      again.add(JSON.parse((value as any).raw).i)
      consumer.ack(value as any)
    }
    expect(firsts).toBe(0)
    expect(consumer.stats()).toMatchObject({ nacked: n, redelivered: n, acked: n })
    // Measured here: about 160 ms outside Jest (52 s before the fix).
    expect(nackMs).toBeGreaterThanOrEqual(0)
    await consumer.close()
    await bus.shutdown()
  }, 40_000)
})

describe('11. redeliver() runs at processing speed', () => {
  // Returned letters were picked up 256 per five lease renewals (~16 s): 3,000 took minutes.
  it('3,000 redelivered letters all come back to a live member within the test bound', async () => {
    const n = 3000
    const bus = new EventBus({ shards: 2 })
    for (let i = 0; i < n; i++) bus.ingest({ i })
    await bus.flush()
    const consumer = await bus.consumer({ group: 'g', maxDeliveries: 1, maxInFlight: 500 })
    for (let seen = 0; seen < n; seen++) consumer.nack((await consumer.next()).value as any)
    const letters: string[] = []
    await until(async () => {
      letters.length = 0
      let cursor: string | undefined
      for (;;) {
        const page = await bus.deadLetters('g', { limit: 1000, cursor })
        letters.push(...page.events.map((l) => l.letterId))
        if (!page.hasMore) break
        cursor = page.cursor
      }
      return letters.length === n
    }, 20_000)
    expect(await bus.redeliver('g', letters)).toBe(n)
    const back = new Set<number>()
    while (back.size < n) {
      const { value } = await consumer.next()
      back.add(JSON.parse((value as any).raw).i)
      consumer.ack(value as any)
    }
    expect(back.size).toBe(n)
    await consumer.close()
    await bus.shutdown()
  }, 40_000)
})

describe('15. JetStream dead letters page through the tray, not the bucket', () => {
  it('2,000 letters page out 150 at a time, each once, oldest first; removed ones are skipped', async () => {
    const stream = uniqueName('dlpage')
    const bus = await EventBus.create({ shards: 2, adapter: { type: 'jetstream', servers: NATS, stream } })
    const n = 2000
    for (let i = 0; i < n; i++) bus.ingest({ i })
    await bus.flush()
    const consumer = await bus.consumer({ group: 'g', maxDeliveries: 1, maxInFlight: 1000 })
    for (let seen = 0; seen < n; seen++) consumer.nack((await consumer.next()).value as any)
    const pageAll = async () => {
      const out: any[] = []
      let cursor: string | undefined
      let pages = 0
      for (;;) {
        const page = await bus.deadLetters('g', { limit: 150, cursor })
        pages++
        out.push(...page.events)
        if (!page.hasMore) return { out, pages }
        cursor = page.cursor
      }
    }
    await until(async () => (await pageAll()).out.length === n, 30_000)
    const { out, pages } = await pageAll()
    expect(pages).toBe(Math.ceil(n / 150))
    expect(new Set(out.map((l) => l.letterId)).size).toBe(n)
    expect(new Set(out.map((l) => JSON.parse(l.raw).i)).size).toBe(n)
    const times = out.map((l) => l.deadLetteredAt)
    expect(times).toEqual([...times].sort((a, b) => a - b))
    // Redelivered letters leave the tray; paging skips what they left behind.
    await consumer.close()
    expect(await bus.redeliver('g', out.slice(0, 500))).toBe(500)
    const after = await pageAll()
    expect(after.out.map((l) => l.letterId)).toEqual(out.slice(500).map((l) => l.letterId))
    await bus.shutdown()
    await dropStreams(stream, `KV_rbg_${stream}`)
  }, 60_000)
})

describe('9. many members in one group', () => {
  // docs/consumer-groups.md states the number supported: 5,000 members per group (500 on JetStream).
  it.each([
    ['memory', 5000],
    ['redis', 5000],
    ['jetstream', 500],
  ] as const)('%s: %i members join at once; each shard has exactly one owner', async (kind, n) => {
    const stream = uniqueName('many')
    const adapter =
      kind === 'memory'
        ? { type: 'memory' as const }
        : kind === 'redis'
          ? { type: 'redis' as const, url: REDIS, keyPrefix: stream }
          : { type: 'jetstream' as const, servers: NATS, stream }
    const bus = await EventBus.create({ shards: 8, adapter })
    const members = await Promise.all(Array.from({ length: n }, () => bus.consumer({ group: 'g', leaseMs: 3000 })))
    expect(members).toHaveLength(n)
    await until(() => members.reduce((k, m) => k + m.stats().shards.length, 0) === 8, 30_000)
    const owned = members.flatMap((m) => m.stats().shards)
    expect(owned.sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7])
    await bus.shutdown()
    if (kind === 'jetstream') {
      await dropStreams(stream, `KV_rbg_${stream}`)
    }
  }, 60_000)
})
