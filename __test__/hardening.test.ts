import { connect } from '@nats-io/transport-node'
import { jetstreamManager } from '@nats-io/jetstream'
import { EventBus } from '../index'
import { uniqueName } from './support/servers'

// Defects found by probing (issue "Hardening"); each test failed on the code before its fix.
const NATS = process.env.RINGBUS_NATS_URL ?? 'nats://127.0.0.1:4222'
const REDIS = process.env.RINGBUS_REDIS_URL ?? 'redis://127.0.0.1:6379'

/** A cursor of `bus`'s store with `positions` put in (as a tampering caller would). */
function forge(cursor: string, positions: Record<string, string>): string {
  const wire = JSON.parse(Buffer.from(cursor.slice(4), 'base64url').toString())
  wire.p = positions
  return `rb1.${Buffer.from(JSON.stringify(wire)).toString('base64url')}`
}

describe('hardening', () => {
  it('a numeric password is refused without being echoed', async () => {
    const secret = 12345678
    const err = await EventBus.create({
      adapter: { type: 'redis', url: REDIS, password: secret as never },
    }).catch((e) => e)
    expect(err.code).toBe('ERR_INVALID_CONFIG')
    expect(err.message).toContain('options.adapter')
    expect(err.message).not.toContain(String(secret))
    const js = await EventBus.create({
      adapter: { type: 'jetstream', servers: NATS, stream: 'x', token: 87654321 as never },
    }).catch((e) => e)
    expect(js.code).toBe('ERR_INVALID_CONFIG')
    expect(js.message).not.toContain('87654321')
  })

  it('a cursor position at u64::MAX is ERR_INVALID_CURSOR, not a replay from the start', async () => {
    const bus = new EventBus({ shards: 1 })
    for (let i = 0; i < 5; i++) bus.ingest({ i })
    await bus.flush()
    const { cursor } = await bus.poll({ limit: 1 })
    const forged = forge(cursor, { '0': '18446744073709551615' })
    await expect(bus.poll({ cursor: forged })).rejects.toMatchObject({ code: 'ERR_INVALID_CURSOR' })
    const sub = bus.subscribe({ from: forged })
    await expect(sub.next()).rejects.toMatchObject({ code: 'ERR_INVALID_CURSOR' })
    await bus.shutdown()
  })

  it('a Redis cursor with an entry id past 64 bits is ERR_INVALID_CURSOR for poll and subscribe', async () => {
    const bus = await EventBus.create({ shards: 1, adapter: { type: 'redis', url: REDIS, keyPrefix: uniqueName('hard') } })
    bus.ingest({ a: 1 })
    await bus.flush()
    const { cursor } = await bus.poll()
    const forged = forge(cursor, { '0': '99999999999999999999-0' })
    await expect(bus.poll({ cursor: forged })).rejects.toMatchObject({ code: 'ERR_INVALID_CURSOR' })
    await expect(bus.subscribe({ from: forged }).next()).rejects.toMatchObject({ code: 'ERR_INVALID_CURSOR' })
    await bus.shutdown()
  })

  it('JetStream keeps leading and trailing spaces of keys (verified with nats.js)', async () => {
    const stream = uniqueName('keys')
    const bus = await EventBus.create({ shards: 4, adapter: { type: 'jetstream', servers: NATS, stream } })
    const keys = [' lead', 'trail ', '  both  ', 'in side']
    const shards = keys.map((key) => bus.ingest({ key }, { key }))
    await bus.flush()
    const events = (await bus.poll({ limit: 100 })).events
    for (const [i, key] of keys.entries()) {
      const ev = events.find((e) => JSON.parse(e.raw).key === key)
      expect(ev?.key).toBe(key)
      expect(ev?.shardId).toBe(shards[i])
    }
    await bus.shutdown()
    const nc = await connect({ servers: NATS })
    const jsm = await jetstreamManager(nc)
    const headers: string[] = []
    for (let seq = 1; seq <= keys.length; seq++) {
      headers.push((await jsm.streams.getMessage(stream, { seq }))?.header.get('Rb-Key') ?? '')
    }
    expect(headers.sort()).toEqual(['%20%20both%20%20', '%20lead', 'in%20side', 'trail%20'])
    await jsm.streams.delete(stream)
    await nc.close()
  })
})
