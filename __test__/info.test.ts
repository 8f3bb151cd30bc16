// bus.info(): what the store holds per shard, on every backend, checked against an
// independent client (ioredis XLEN, nats.js subject state) and against what poll reads.
import Redis from 'ioredis'
import { connect } from '@nats-io/transport-node'
import { jetstreamManager } from '@nats-io/jetstream'
import { EventBus } from '../index'
import { NATS, REDIS, storesForFile, trackBuses } from './support/adapter'
import { uniqueName } from './support/servers'

jest.setTimeout(60_000)

const create = trackBuses()
const adapterFor = storesForFile()

/** Events per shard as an independent client counts them (memory: as poll reads them). */
async function independentCounts(kind: string, name: string, bus: EventBus): Promise<Map<number, number>> {
  const counts = new Map<number, number>()
  if (kind === 'redis') {
    const redis = new Redis(REDIS)
    for (let shard = 0; shard < 4; shard++) counts.set(shard, await redis.xlen(`{${name}:${shard}}`))
    await redis.quit()
  } else if (kind === 'jetstream') {
    const nc = await connect({ servers: NATS })
    const jsm = await jetstreamManager(nc)
    const info = await jsm.streams.info(name, { subjects_filter: '>' })
    for (const [subject, n] of Object.entries(info.state.subjects ?? {})) counts.set(Number(subject.split('.').pop()), n)
    await nc.close()
  } else {
    let page = await bus.poll({ limit: 1000 })
    for (;;) {
      for (const ev of page.events) counts.set(ev.shardId, (counts.get(ev.shardId) ?? 0) + 1)
      if (!page.hasMore) break
      page = await bus.poll({ cursor: page.cursor, limit: 1000 })
    }
  }
  return counts
}

describe.each(['memory', 'jetstream', 'redis'])('%s: bus.info()', (kind) => {
  it('counts what each shard holds, with the times of its oldest and newest event', async () => {
    const name = uniqueName('info')
    const bus = await create({ shards: 4, adapter: adapterFor(kind, name) })
    const before = Date.now()
    for (let i = 0; i < 500; i++) bus.ingest({ i }, { key: `k${i}` })
    expect((await bus.flush()).dropped).toBe(0)
    const after = Date.now()
    const { shards } = await bus.info()
    expect(shards.map((s) => s.id)).toEqual([0, 1, 2, 3])
    expect(shards.reduce((n, s) => n + s.count, 0)).toBe(500)
    const counts = await independentCounts(kind, name, bus)
    for (const s of shards) {
      expect(s.count).toBe(counts.get(s.id) ?? 0)
      if (s.count === 0) continue
      // One clock on this machine; a millisecond of slack for rounding.
      expect(s.firstAt!).toBeGreaterThanOrEqual(before - 1)
      expect(s.lastAt!).toBeLessThanOrEqual(after + 1)
      expect(s.firstAt!).toBeLessThanOrEqual(s.lastAt!)
    }
    if (kind !== 'jetstream') expect(shards.every((s) => s.count === 0 || (s.bytes ?? 0) > 0)).toBe(true)
    // Another bus on the same store (a reader in another process) sees the same.
    if (kind !== 'memory') {
      const other = await create({ shards: 1, adapter: adapterFor(kind, name) })
      expect((await other.info()).shards.map((s) => [s.id, s.count])).toEqual(shards.map((s) => [s.id, s.count]))
    }
    // Producers: recorded by Redis (each message id starts with its nonce and epoch), not elsewhere.
    const { producers } = await bus.info()
    if (kind === 'redis') {
      const [nonce, epoch] = (await bus.poll({ limit: 1 })).events[0].messageId.split('-')
      expect(producers).toEqual([{ nonce, epoch: Number(epoch), seenAt: expect.any(Number) }])
      expect(producers![0].seenAt).toBeGreaterThanOrEqual(before - 1000)
      expect(producers![0].seenAt).toBeLessThanOrEqual(after + 1000)
      const redis = new Redis(REDIS)
      expect(await redis.zscore(`{${name}}:producers`, `${nonce}-${epoch}`)).toBe(String(producers![0].seenAt))
      await redis.quit()
    } else {
      expect(producers).toBeUndefined()
    }
  })
})

it('memory: counts only what retention keeps', async () => {
  const bus = new EventBus({ shards: 2, adapter: { type: 'memory', maxEvents: 100 } })
  for (let i = 0; i < 300; i++) bus.ingest({ i })
  await bus.flush()
  const { shards } = await bus.info()
  expect(shards.reduce((n, s) => n + s.count, 0)).toBe(100)
  await bus.shutdown()
  await expect(bus.info()).rejects.toMatchObject({ code: 'ERR_SHUT_DOWN' })
})
