import { connect } from '@nats-io/transport-node'
import { jetstreamManager } from '@nats-io/jetstream'
import { EventBus, type BusEvent } from '../index'
import { pollAll } from './helpers'
import { readAll, sleep, trackBuses, until } from './support/adapter'
import { logged } from './support/logs'
import { privateRedis, uniqueName } from './support/servers'

const NATS = process.env.RINGBUS_NATS_URL ?? 'nats://127.0.0.1:4222'
jest.setTimeout(240_000)
const create = trackBuses()

/** Each key's `n` values, in the order given, are 0, 1, 2, ... exactly once. */
function expectEachKeyOnceInOrder(events: { key: string; n: number }[], keys: number, perKey: number) {
  const next = new Map<string, number>()
  let bad = 0
  for (const { key, n } of events) {
    if ((next.get(key) ?? 0) !== n) bad++
    next.set(key, n + 1)
  }
  expect({ bad, keys: next.size, total: events.length }).toEqual({ bad: 0, keys, total: keys * perKey })
}

describe('scaleUp / scaleDown', () => {
  it('adds and removes shards, keeps every event and reports each shard', async () => {
    const bus = await create({ shards: 2, scaling: { minShards: 2, maxShards: 16 } })
    for (let i = 0; i < 1000; i++) bus.ingest({ key: `k${i % 50}`, n: Math.floor(i / 50) }, { key: `k${i % 50}` })
    await expect(bus.scaleUp(2)).resolves.toEqual([2, 3])
    expect(bus.numShards).toBe(4)
    for (let i = 1000; i < 2000; i++) bus.ingest({ key: `k${i % 50}`, n: Math.floor(i / 50) }, { key: `k${i % 50}` })
    await bus.flush()
    const stats = bus.shardStats()
    expect(stats.map((s) => [s.id, s.state])).toEqual([
      [0, 'active'],
      [1, 'active'],
      [2, 'active'],
      [3, 'active'],
    ])
    for (const s of stats) {
      expect(s.eventRate).toBeGreaterThanOrEqual(0)
      expect(s.ingested).toBe(s.stored + s.dropped + s.pending)
    }
    expect(stats.filter((s) => s.ingested > 0).length).toBe(4)
    await expect(bus.scaleDown(2)).resolves.toEqual([2, 3])
    expect(bus.numShards).toBe(2)
    expect(bus.shardStats().map((s) => s.id)).toEqual([0, 1])
    // Totals never go down: removed shards still count.
    expect(bus.stats()).toMatchObject({ ingested: 2000, stored: 2000, dropped: 0 })
    const events = (await pollAll(bus)).map((e) => JSON.parse(e.raw) as { key: string; n: number })
    expect(events).toHaveLength(2000)
    expect(new Set(events.map((e) => `${e.key}/${e.n}`)).size).toBe(2000)
    await bus.shutdown()
  })

  it('refuses changes outside the bounds, and after shutdown', async () => {
    const bus = await create({ shards: 2, scaling: { minShards: 2, maxShards: 3 } })
    await expect(bus.scaleUp(2)).rejects.toMatchObject({ code: 'ERR_INVALID_CONFIG', message: expect.stringMatching(/maxShards/) })
    await expect(bus.scaleDown(1)).rejects.toMatchObject({ code: 'ERR_INVALID_CONFIG', message: expect.stringMatching(/minShards/) })
    await expect(bus.scaleUp(0)).rejects.toMatchObject({ code: 'ERR_INVALID_CONFIG' })
    await expect(bus.scaleUp(2 ** 32 - 1)).rejects.toMatchObject({ code: 'ERR_INVALID_CONFIG' })
    await expect(bus.scaleDown(2 ** 32 - 1)).rejects.toMatchObject({ code: 'ERR_INVALID_CONFIG' })
    expect(bus.numShards).toBe(2)
    await bus.shutdown()
    await expect(bus.scaleUp(1)).rejects.toMatchObject({ code: 'ERR_SHUT_DOWN' })
  })

  it('the policy logs each decision with its reason: up while the store stalls, down once the rings empty', async () => {
    // A stalled store (SIGSTOPped Redis) lets the ring fill: mean fill over the threshold.
    const server = await privateRedis()
    try {
      const policy = { auto: true, windowMs: 100, upWindows: 2, downWindows: 2, cooldownMs: 0, minShards: 1, maxShards: 2, maxStep: 1 }
      const bus = await create({ shards: 1, ringCapacity: 1024, scaling: policy, adapter: { type: 'redis', url: `redis://127.0.0.1:${server.port}`, keyPrefix: uniqueName('scl') } })
      const paused = server.pause(2000)
      // Filled to the brim while the write in flight hangs: the ring stays full.
      let accepted = 0
      for (let full = false; !full; await sleep(5)) {
        for (let j = 0; j < 256 && !full; j++) {
          try {
            bus.ingest({ i: accepted })
            accepted++
          } catch (e) {
            expect((e as { code: string }).code).toBe('ERR_BACKPRESSURE')
            full = true
          }
        }
      }
      await until(async () => logged(/^scaling up from 1 to 2 shards/).length > 0, 10_000)
      await paused
      await until(async () => logged(/^scaling down from 2 to 1 shards/).length > 0, 20_000)
      const [up] = logged(/^scaling up from 1 to 2 shards: mean fill ratio \d\.\d\d >= scaleUpFillRatio$/)
      expect(up).toMatchObject({ level: 'info', target: 'ringbus::scaling', fields: { from: 1, to: 2, threshold: 0.75, windows: 2, window_ms: 100 } })
      expect(up.fields.fill).toBeGreaterThanOrEqual(0.75)
      const [down] = logged(/^scaling down from 2 to 1 shards: mean fill ratio \d\.\d\d <= scaleDownFillRatio$/)
      expect(down).toMatchObject({ level: 'info', fields: { from: 2, to: 1, threshold: 0.05, windows: 2, window_ms: 100 } })
      expect(down.fields.fill).toBeLessThanOrEqual(0.05)
      expect((await bus.flush()).dropped).toBe(0)
      expect(bus.stats()).toMatchObject({ ingested: accepted, stored: accepted })
      await bus.shutdown()
    } finally {
      await server.stop()
    }
  })

  it('validates the scaling options', () => {
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ minShards: 0 }, /scaling.minShards/],
      [{ minShards: 4, maxShards: 2 }, /scaling.maxShards/],
      [{ minShards: 8 }, /shards \(4\) must be between/],
      [{ windowMs: 100 }, /only apply with auto: true/],
      [{ auto: true, scaleUpFillRatio: 0.2, scaleDownFillRatio: 0.3 }, /scaleDownFillRatio .* must be below/],
      [{ auto: true, scaleUpFillRatio: 1.5 }, /between 0 and 1/],
      [{ auto: true, maxStep: 0 }, /scaling.maxStep/],
      [{ bogus: 1 }, /bogus/],
    ]
    for (const [scaling, message] of bad) {
      let err: { code?: string; message: string } | undefined
      try {
        new EventBus({ shards: 4, scaling } as never)
      } catch (e) {
        err = e as { code?: string; message: string }
      }
      expect({ code: err?.code, ok: message.test(err?.message ?? '') }).toEqual({ code: 'ERR_INVALID_CONFIG', ok: true })
    }
  })
})

describe('scaling on JetStream (server on 127.0.0.1:4222)', () => {
  const streams: string[] = []
  afterAll(async () => {
    const nc = await connect({ servers: NATS })
    const jsm = await jetstreamManager(nc)
    for (const s of streams) await jsm.streams.delete(s).catch(() => undefined)
    await nc.close()
  })

  it('stores 1,000,000 keyed events once, in per-key order, through 20 random scalings', async () => {
    const stream = uniqueName('scale')
    streams.push(stream)
    const bus = await create({
      shards: 4,
      retries: 30,
      scaling: { minShards: 2, maxShards: 10 },
      adapter: { type: 'jetstream', servers: NATS, stream },
    })
    const KEYS = 1000
    const PER_KEY = 1000
    let rng = 12345
    const random = (m: number) => {
      rng = (rng * 1103515245 + 12345) % 2 ** 31
      return rng % m
    }
    let changes = 0
    let scaling: Promise<unknown> = Promise.resolve()
    // Each change: the shard count before, the ids it added (+) or removed (-), the round it
    // finished in, and the count after.
    const done: Array<{ before: number; moved: number; round: number; after: number }> = []
    let round = 0
    for (let n = 0; n < PER_KEY; n++) {
      round = n
      for (let k = 0; k < KEYS; k++) {
        for (;;) {
          try {
            bus.ingest({ key: `k${k}`, n }, { key: `k${k}` })
            break
          } catch (e) {
            if ((e as { code?: string }).code !== 'ERR_BACKPRESSURE') throw e
            await sleep(2)
          }
        }
      }
      // A scaling every 45 rounds (while ingest goes on), 20 in all.
      if (n % 45 === 44 && changes < 20) {
        await scaling
        const active = bus.numShards
        const count = 1 + random(2)
        const up = random(2) === 0 ? active + count <= 10 : active - count < 2
        scaling = (up ? bus.scaleUp(count) : bus.scaleDown(count)).then((ids) => {
          done.push({ before: active, moved: up ? ids.length : -ids.length, round, after: bus.numShards })
        })
        changes++
      }
    }
    await scaling
    expect(changes).toBe(20)
    expect(done).toHaveLength(20)
    // Every change moved shards, and each took the count where it said.
    for (const d of done) {
      expect(Math.abs(d.moved)).toBeGreaterThanOrEqual(1)
      expect(d.after).toBe(d.before + d.moved)
    }
    expect(new Set(done.map((d) => d.after)).size).toBeGreaterThan(1)
    // They happened while events were being ingested, not after: all but the last finished
    // before the last round.
    expect(done.slice(0, -1).every((d) => d.round < PER_KEY - 1)).toBe(true)
    expect((await bus.flush()).dropped).toBe(0)
    expect(bus.stats()).toMatchObject({ ingested: KEYS * PER_KEY, stored: KEYS * PER_KEY, dropped: 0 })
    // The stream sequence (the event id) is the order JetStream stored them in.
    const events: BusEvent[] = await readAll(bus)
    events.sort((a, b) => Number(a.id) - Number(b.id))
    expectEachKeyOnceInOrder(
      events.map((e) => JSON.parse(e.raw) as { key: string; n: number }),
      KEYS,
      PER_KEY,
    )
    await bus.shutdown()
  })
})
