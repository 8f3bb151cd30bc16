// Operating groups from outside (DESIGN §9) on memory, JetStream and Redis: bus.groups() and
// bus.group() report members, owners and the lag an independent client counts (ioredis,
// nats.js); resetGroup is refused while a member is live, a dry run changes nothing, a reset
// by time replays exactly the events stored after it; bulk redrive and purge move exactly
// the letters they select.
import type { EventBus, GroupEvent, GroupInfo } from '../index'
import { lagCountedIndependently, sleep, storesForFile, trackBuses, until } from './support/adapter'
import { uniqueName } from './support/servers'

jest.setTimeout(90_000)

const create = trackBuses()
const adapterFor = storesForFile()

/** Takes exactly `n` events from `c`, acking each; returns them. */
async function ackN(c: AsyncIterable<GroupEvent> & { ack(ev: GroupEvent): void }, n: number): Promise<GroupEvent[]> {
  const it = c[Symbol.asyncIterator]()
  const got: GroupEvent[] = []
  while (got.length < n) {
    const step = await it.next()
    if (step.done) throw new Error(`the consumer ended after ${got.length} events`)
    c.ack(step.value)
    got.push(step.value)
  }
  return got
}

async function settledLag(bus: EventBus, group: string, lag: number): Promise<GroupInfo> {
  await until(async () => (await bus.group(group)).lag === lag, 15_000)
  return bus.group(group)
}

describe.each(['memory', 'jetstream', 'redis'])('%s: operating a group', (kind) => {
  it('group() and groups() report members, owners and the lag an independent count gives', async () => {
    const name = uniqueName('gadm')
    const bus = await create({ shards: 4, adapter: adapterFor(kind, name) })
    for (let i = 0; i < 200; i++) bus.ingest({ i }, { key: `k${i % 20}` })
    expect((await bus.flush()).dropped).toBe(0)
    const c = await bus.consumer({ group: 'billing', member: 'alpha', leaseMs: 3000 })
    await ackN(c, 120)
    await until(() => c.stats().shards.length === 4)
    let g = await bus.group('billing')
    expect(g.members.map((m) => m.name)).toEqual(['alpha'])
    expect(g.members[0].renewedAt).toBeGreaterThan(Date.now() - 5000)
    expect(g.members[0].expiresAt).toBeGreaterThan(g.members[0].renewedAt)
    expect(g.shards.map((s) => s.owner)).toEqual(['alpha', 'alpha', 'alpha', 'alpha'])
    expect(g.shards.every((s) => s.leaseUntil! > Date.now())).toBe(true)
    // The member's own count: its unacked (held) events plus what it has not read.
    await until(() => c.stats().lag === 80)
    await c.close()

    g = await settledLag(bus, 'billing', 80)
    expect(g.members).toEqual([])
    expect(g.shards.every((s) => s.owner === undefined)).toBe(true)
    expect(g.shards.reduce((n, s) => n + s.lag, 0)).toBe(80)
    expect(g.lagAgeMs!).toBeGreaterThanOrEqual(0)
    expect(g.deadLetters).toBe(0)
    const independent = await lagCountedIndependently(kind, name, g.shards)
    if (independent !== undefined) expect(independent).toBe(80)

    const rows = await bus.groups()
    expect(rows).toEqual([{ group: 'billing', members: 0, lag: 80, lagAgeMs: g.lagAgeMs !== undefined ? expect.any(Number) : undefined, inFlight: 0, redelivered: 0, deadLetters: 0 }])
    await expect(bus.group('nobody')).rejects.toMatchObject({ code: 'ERR_INVALID_CONFIG', message: expect.stringContaining('no consumer group "nobody"') })
    await expect(bus.group('bad name')).rejects.toMatchObject({ code: 'ERR_INVALID_CONFIG' })
  })

  it('resetGroup is refused while a member is live, a dry run changes nothing, a reset by time replays exactly what was stored after it', async () => {
    const name = uniqueName('greset')
    const bus = await create({ shards: 3, adapter: adapterFor(kind, name) })
    for (let i = 0; i < 50; i++) bus.ingest({ i }, { key: `k${i % 7}` })
    expect((await bus.flush()).dropped).toBe(0)
    await sleep(30)
    const t = new Date()
    await sleep(30)
    for (let i = 50; i < 80; i++) bus.ingest({ i }, { key: `k${i % 7}` })
    expect((await bus.flush()).dropped).toBe(0)

    const c = await bus.consumer({ group: 'g', member: 'first', leaseMs: 3000 })
    await ackN(c, 80)
    await expect(bus.resetGroup('g', { to: 'earliest' })).rejects.toMatchObject({
      code: 'ERR_INVALID_CONFIG',
      message: expect.stringContaining('first'),
    })
    await c.close()
    const before = await settledLag(bus, 'g', 0)

    const dry = await bus.resetGroup('g', { to: { time: t }, dryRun: true })
    expect(dry.dryRun).toBe(true)
    expect(dry.shards.reduce((n, s) => n + s.lagAfter, 0)).toBe(30)
    expect(dry.shards.reduce((n, s) => n + s.lagBefore, 0)).toBe(0)
    const after = await bus.group('g')
    expect(after.lag).toBe(0)
    expect(after.shards.map((s) => s.committed)).toEqual(before.shards.map((s) => s.committed))

    const done = await bus.resetGroup('g', { to: { time: t } })
    expect(done.dryRun).toBe(false)
    expect((await bus.group('g')).lag).toBe(30)
    const c2 = await bus.consumer({ group: 'g', member: 'second', leaseMs: 3000 })
    const again = await ackN(c2, 30)
    expect(again.map((ev) => (JSON.parse(ev.raw) as { i: number }).i).sort((a, b) => a - b)).toEqual(
      Array.from({ length: 30 }, (_, k) => 50 + k),
    )
    const stored = (await bus.poll({ from: { time: t }, limit: 100 })).events.map((ev) => ev.id).sort()
    expect(again.map((ev) => ev.id).sort()).toEqual(stored)
    await c2.close()
    expect((await settledLag(bus, 'g', 0)).lag).toBe(0)

    await expect(bus.resetGroup('g', { to: 'yesterday' })).rejects.toMatchObject({ code: 'ERR_INVALID_CURSOR' })
    await expect(bus.resetGroup('g', { to: { time: 'noon' as never } })).rejects.toMatchObject({ code: 'ERR_INVALID_CONFIG' })
    await expect(bus.resetGroup('g', {} as never)).rejects.toMatchObject({ code: 'ERR_INVALID_CONFIG', message: expect.stringContaining('to is required') })
    await expect(bus.resetGroup('nobody', { to: 'latest' })).rejects.toMatchObject({ code: 'ERR_INVALID_CONFIG' })
  })

  it('bulk redrive and purge act on exactly the letters they select', async () => {
    const name = uniqueName('gdlq')
    const bus = await create({ shards: 2, adapter: adapterFor(kind, name) })
    for (let i = 0; i < 10; i++) bus.ingest({ i, odd: i % 2 === 1 }, { key: `k${i}` })
    expect((await bus.flush()).dropped).toBe(0)
    const c = await bus.consumer({ group: 'dl', ackWaitMs: 100, maxDeliveries: 1, leaseMs: 3000 })
    const it = c[Symbol.asyncIterator]()
    for (let k = 0; k < 10; k++) await it.next()
    await until(async () => (await bus.group('dl')).deadLetters === 10, 15_000)

    const num = (ev: { raw: string }) => (JSON.parse(ev.raw) as { i: number }).i
    // Oldest first: the letters' order, not the events'.
    const firstTwoOdd = (await bus.deadLetters('dl', { limit: 100 })).events.map(num).filter((i) => i % 2 === 1).slice(0, 2)
    expect(await bus.redeliver('dl', { filter: { odd: true }, dryRun: true })).toBe(5)
    expect((await bus.group('dl')).deadLetters).toBe(10)
    expect(await bus.redeliver('dl', { filter: { odd: true }, limit: 2 })).toBe(2)
    const back: number[] = []
    for (let k = 0; k < 2; k++) {
      const step = await it.next()
      c.ack(step.value)
      back.push((JSON.parse(step.value.raw) as { i: number }).i)
    }
    expect(back.sort()).toEqual([...firstTwoOdd].sort())
    const letters = (await bus.deadLetters('dl', { limit: 100 })).events
    const rest = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9].filter((i) => !firstTwoOdd.includes(i))
    expect(letters.map(num).sort((a, b) => a - b)).toEqual(rest)

    // A filtered page, and paging on past the letters it left out.
    const oddPage = await bus.deadLetters('dl', { filter: { odd: true }, limit: 1 })
    expect(oddPage.events.length).toBe(1)
    expect(num(oddPage.events[0]) % 2).toBe(1)
    const oddRest = await bus.deadLetters('dl', { filter: { odd: true }, limit: 100, cursor: oddPage.cursor })
    expect([...oddPage.events, ...oddRest.events].map(num).sort((a, b) => a - b)).toEqual(rest.filter((i) => i % 2 === 1))
    expect(oddRest.hasMore).toBe(false)
    const zero = letters.find((l) => (JSON.parse(l.raw) as { i: number }).i === 0)!
    expect(await bus.purgeDeadLetters('dl', { letterIds: [zero.letterId, 'no-such'] })).toBe(1)
    expect(await bus.purgeDeadLetters('dl', { filter: { odd: false }, dryRun: true })).toBe(4)
    expect(await bus.purgeDeadLetters('dl', { filter: { odd: false } })).toBe(4)
    const left = (await bus.deadLetters('dl', { limit: 100 })).events
    expect(left.map(num).sort((a, b) => a - b)).toEqual(rest.filter((i) => i % 2 === 1))
    expect(await bus.purgeDeadLetters('dl')).toBe(3)
    expect((await bus.group('dl')).deadLetters).toBe(0)
    await expect(bus.redeliver('dl', { filter: { $nope: 1 } })).rejects.toMatchObject({ code: 'ERR_INVALID_FILTER' })
    await expect(bus.purgeDeadLetters('dl', { letterIds: 'x' } as never)).rejects.toMatchObject({ code: 'ERR_INVALID_CONFIG' })
    await c.close()
  })
})

describe('redis: lag far behind', () => {
  it('counts a lag of more entries than one counting step (10,000) exactly, from another bus', async () => {
    const name = uniqueName('gfar')
    const bus = await create({ shards: 1, adapter: adapterFor('redis', name) })
    for (let i = 0; i < 25_000; i++) bus.ingest({ i })
    expect((await bus.flush()).dropped).toBe(0)
    const c = await bus.consumer({ group: 'far', leaseMs: 3000 })
    await ackN(c, 10)
    await c.close()
    // A bus that never read this shard knows no entry numbers: it counts inside the server.
    const outside = await create({ shards: 1, adapter: adapterFor('redis', name) })
    const g = await outside.group('far')
    expect(g.lag).toBe(24_990)
    expect(await lagCountedIndependently('redis', name, g.shards)).toBe(24_990)
  })
})
