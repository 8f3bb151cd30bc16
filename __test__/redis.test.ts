import { execFile, execFileSync } from 'node:child_process'
import path from 'node:path'
import { Cluster, Redis } from 'ioredis'
import { EventBus, type BusEvent, type EventBusOptions } from '../index'
import { expectPerKeyOrder, expectReaderSeesEveryShard, feedUntil, ingestN, readAll, sleep, startSubscribers, subscribeN, trackBuses, until } from './support/adapter'
import fs from 'node:fs'
import { freePort, makeTlsFiles, privateRedis, redisCluster, tempDir, uniqueName, waitForPort, type PrivateServer } from './support/servers'
import { expectLogs, logged, logMark } from './support/logs'

// The fault tests below provoke these on purpose; each is asserted where it is provoked.
expectLogs(/^write failed, retrying: /, /^dropped \d+ events: /, /^skipped a corrupt entry in Redis stream /)

// Required in CI: the server on 127.0.0.1:6379 (.ci/run starts it). Tests fail, never skip, without it.
const REDIS = process.env.RINGBUS_REDIS_URL ?? 'redis://127.0.0.1:6379'

// Heavy suites: 200,000-event runs, a server killed and restarted, a cluster.
jest.setTimeout(240_000)

const create = trackBuses()

function redisOptions(keyPrefix: string, extra: Record<string, unknown> = {}, url = REDIS): EventBusOptions {
  return { shards: 4, adapter: { type: 'redis', url, keyPrefix, ...extra } } as EventBusOptions
}

const streamKey = (prefix: string, shard: number) => `{${prefix}:${shard}}`

async function xlenSum(client: Redis | Cluster, prefix: string, shards = 4): Promise<number> {
  let sum = 0
  for (let s = 0; s < shards; s++) sum += await client.xlen(streamKey(prefix, s))
  return sum
}

/** Message ids of every entry in the shard streams, read with XRANGE directly. */
async function storedMessageIds(client: Redis | Cluster, prefix: string, shards = 4): Promise<string[]> {
  const ids: string[] = []
  for (let s = 0; s < shards; s++) {
    let start = '-'
    for (;;) {
      const entries = await client.xrange(streamKey(prefix, s), start, '+', 'COUNT', 5000)
      // m = '<timestamp> <sequence> <json|bytes> <epoch>/<span> <message id>'
      for (const [, fields] of entries) ids.push(fields[fields.indexOf('m') + 1].split(' ')[4])
      if (entries.length < 5000) break
      start = '(' + entries[entries.length - 1][0]
    }
  }
  return ids
}

/** All of this process's stream and mark keys under `prefix`. */
async function dropKeys(client: Redis, prefix: string, shards = 4) {
  for (let s = 0; s < shards; s++) {
    const marks = await client.keys(`${streamKey(prefix, s)}:mark:*`)
    await client.del(streamKey(prefix, s), ...marks)
  }
}

function expectEveryEventOnce(events: BusEvent[], n: number) {
  expect(events).toHaveLength(n)
  expect(new Set(events.map((e) => e.messageId)).size).toBe(n)
  expectPerKeyOrder(events)
}

describe('Redis adapter (server on 127.0.0.1:6379)', () => {
  let redis: Redis
  const prefixes: string[] = []
  beforeAll(() => {
    redis = new Redis(REDIS)
  })
  afterAll(async () => {
    for (const p of prefixes) await dropKeys(redis, p)
    await redis.quit()
  })
  const newPrefix = (p: string) => {
    const s = uniqueName(p)
    prefixes.push(s)
    return s
  }

  it('a reader with 2 shards reads every shard an 8-shard producer wrote, and follows it to 10 (counted by ioredis)', async () => {
    const prefix = newPrefix('discover')
    const writer = await create({ ...redisOptions(prefix), shards: 8 })
    const reader = await create({ ...redisOptions(prefix), shards: 2 })
    await expectReaderSeesEveryShard(writer, reader)
    expect(await xlenSum(redis, prefix, 10)).toBe(1000)
    expect((await redis.smembers(`{${prefix}}:shards`)).map(Number).sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    await reader.shutdown()
    await writer.shutdown()
  })

  it('stores 200,000 keyed events exactly once and reads them back in per-key order', async () => {
    const prefix = newPrefix('e2e')
    const bus = await create(redisOptions(prefix))
    const accepted = await ingestN(bus, 200_000)
    const flushed = await bus.flush()
    expect(flushed.dropped).toBe(0)
    expect(bus.stats()).toMatchObject({ ingested: 200_000, stored: 200_000, dropped: 0, pending: 0 })
    expect(await xlenSum(redis, prefix)).toBe(accepted)

    expectEveryEventOnce(await readAll(bus), 200_000)
    expectEveryEventOnce(await subscribeN(bus, 200_000), 200_000)
    await bus.shutdown()
  })

  it('writes entries that redis-cli reads under the documented keys', async () => {
    const prefix = newPrefix('keys')
    const bus = await create({ ...redisOptions(prefix), shards: 1 })
    bus.ingest({ orderId: 1 }, { key: 'customer-7' })
    bus.ingest(Buffer.from([0, 1, 2, 255]))
    await bus.flush()
    const url = new URL(REDIS)
    const out = execFileSync('redis-cli', ['-h', url.hostname, '-p', url.port || '6379', 'XRANGE', streamKey(prefix, 0), '-', '+'], {
      encoding: 'utf8',
    })
    const lines = out.trim().split('\n')
    expect(lines).toEqual(expect.arrayContaining(['d', '{"orderId":1}', 'm', 'k', 'customer-7']))
    const [first, second] = await bus.poll({ limit: 10 }).then((p) => p.events)
    expect(lines[lines.indexOf('m') + 1]).toBe(`${first.timestamp} ${first.seq} json 0/1 ${first.messageId}`)
    expect(first).toMatchObject({ shardId: 0, key: 'customer-7', raw: '{"orderId":1}' })
    expect(first.id).toMatch(/^\d+-\d+$/)
    expect([...second.bytes!]).toEqual([0, 1, 2, 255])
    await bus.shutdown()
  })

  it('resumes from cursors, filters without skipping and refuses foreign positions', async () => {
    const prefix = newPrefix('cursor')
    const bus = await create(redisOptions(prefix))
    for (let i = 0; i < 3000; i++) bus.ingest({ i, even: i % 2 === 0 }, { key: `k${i % 5}` })
    await bus.flush()
    const evens: number[] = []
    let cursor: string | undefined
    for (;;) {
      const page = await bus.poll({ limit: 100, cursor, filter: { even: true } })
      evens.push(...page.events.map((e) => JSON.parse(e.raw).i as number))
      cursor = page.cursor
      if (!page.hasMore) break
    }
    expect(evens.sort((a, b) => a - b)).toEqual(Array.from({ length: 1500 }, (_, k) => k * 2))
    // A cursor from the end sees only later events.
    bus.ingest({ i: 3000, even: true })
    await bus.flush()
    const after = await bus.poll({ cursor })
    expect(after.events.map((e) => JSON.parse(e.raw).i)).toEqual([3000])
    // A cursor of the memory adapter is refused, not misread.
    const mem = new EventBus()
    mem.ingest({ x: 1 })
    await mem.flush()
    const foreign = (await mem.poll()).cursor
    await mem.shutdown()
    await expect(bus.poll({ cursor: foreign })).rejects.toMatchObject({ code: 'ERR_INVALID_CURSOR' })
    await bus.shutdown()
  })

  it('subscribes from latest while writes go on, and skips a corrupt entry', async () => {
    const prefix = newPrefix('sub')
    const bus = await create({ ...redisOptions(prefix), shards: 2 })
    bus.ingest({ n: 0 })
    await bus.flush()
    const it = bus.subscribe({ from: 'latest' })[Symbol.asyncIterator]()
    // Started once it sees a warm-up event (never the one stored before it).
    const warm = await feedUntil(it.next(), (w) => bus.ingest({ w }, { key: 'warm' }))
    expect(JSON.parse(warm.value.raw)).toHaveProperty('w')
    // While it waits in XREAD on its own connection, writes are not held up.
    const first = it.next()
    await redis.xadd(streamKey(prefix, 0), '*', 'd', 'garbage')
    for (let n = 1; n <= 100; n++) bus.ingest({ n }, { key: `k${n}` })
    const flushed = await bus.flush()
    expect(flushed.dropped).toBe(0)
    const got: number[] = []
    let r = await first
    for (;;) {
      const v = JSON.parse(r.value.raw)
      if (v.n !== undefined) got.push(v.n)
      if (got.length === 100) break
      r = await it.next()
    }
    await it.return?.()
    expect(got.sort((a, b) => a - b)).toEqual(Array.from({ length: 100 }, (_, k) => k + 1))
    // The one garbage entry, skipped once, and logged once with where it is.
    expect(bus.stats().corruptSkipped).toBe(1)
    expect(logged(/^skipped a corrupt entry in Redis stream /, 'warn').filter((r) => r.fields.stream === streamKey(prefix, 0))).toHaveLength(1)
    await bus.shutdown()
  })

  it('trims each shard stream to about maxLen', async () => {
    const prefix = newPrefix('trim')
    const bus = await create({ ...redisOptions(prefix, { maxLen: 1000 }), shards: 1 })
    await ingestN(bus, 5000)
    await bus.flush()
    const len = await redis.xlen(streamKey(prefix, 0))
    expect(len).toBeGreaterThanOrEqual(1000)
    expect(len).toBeLessThan(1200)
    await bus.shutdown()
  })

  it('validates options with the key in the message', async () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ url: REDIS, nodes: [REDIS] }, /either url .* or nodes/],
      [{}, /either url .* or nodes/],
      [{ url: 'http://127.0.0.1:6379' }, /not a Redis URL/],
      [{ url: REDIS, keyPrefix: 'a{b}' }, /keyPrefix/],
      [{ url: REDIS, dedupWindowMs: 10_000 }, /dedupWindowMs/],
      [{ url: REDIS, pipelineSize: 0 }, /pipelineSize/],
      [{ url: REDIS, maxLen: 1.5 }, /maxLen/],
      [{ url: REDIS, tls: { caFile: '/nonexistent.pem' } }, /rediss:\/\//],
      [{ url: REDIS, bogus: 1 }, /bogus/],
    ]
    for (const [adapter, message] of cases) {
      const err = await EventBus.create({ adapter: { type: 'redis', ...adapter } } as never).catch((e) => e)
      expect({ code: err.code, ok: message.test(err.message), message: err.message }).toMatchObject({ code: 'ERR_INVALID_CONFIG', ok: true })
    }
    expect(() => new EventBus(redisOptions('x'))).toThrow(/EventBus.create/)
  })

  it('fails create with ERR_CONNECT within connectTimeoutMs when nothing listens', async () => {
    const port = await freePort()
    const started = Date.now()
    const err = await EventBus.create(redisOptions('x', { connectTimeoutMs: 500 }, `redis://127.0.0.1:${port}`)).catch((e) => e)
    expect(err.code).toBe('ERR_CONNECT')
    expect(err.message).toMatch(new RegExp(`127.0.0.1:${port}`))
    expect(Date.now() - started).toBeLessThan(3000)
  })
})

describe('Redis adapter against private servers', () => {
  let server: PrivateServer | undefined
  afterEach(async () => {
    await server?.stop()
    server = undefined
  })

  it("a group's signal subscription comes back at the first pause after each of eight dropped connections", async () => {
    // The watch backs off while it cannot subscribe; a connection that worked and then
    // dropped starts that backoff over. Kept growing, the eighth drop would pause 2.5-5 s.
    // A private server: killing pub/sub connections on the shared one would disturb others.
    server = await privateRedis()
    const url = `redis://127.0.0.1:${server.port}`
    const prefix = uniqueName('sigdrop')
    const bus = await create(redisOptions(prefix, {}, url))
    const consumer = await bus.consumer({ group: 'g' })
    const channel = `{${prefix}:g:g}:moved`
    const admin = new Redis(url)
    try {
      const watching = async () => ((await admin.pubsub('NUMSUB', channel)) as [string, number])[1]
      await until(async () => (await watching()) === 1)
      const waits: number[] = []
      for (let drop = 0; drop < 8; drop++) {
        expect(Number(await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub'))).toBe(1)
        const t0 = Date.now()
        await until(async () => (await watching()) === 1, 10_000)
        waits.push(Date.now() - t0)
      }
      // The base pause is 25-50 ms; 1 s leaves room for a slow machine, not for growth.
      expect(Math.max(...waits)).toBeLessThan(1000)
    } finally {
      admin.disconnect()
      await consumer.close()
    }
  })

  it('200 waiting subscribers share a bounded set of blocking connections, and all get the next event', async () => {
    server = await privateRedis()
    const url = `redis://127.0.0.1:${server.port}`
    const admin = new Redis(url)
    const clients = async () => Number(/connected_clients:(\d+)/.exec(await admin.info('clients'))![1])
    try {
      const base = await clients()
      const bus = await create({ ...redisOptions(uniqueName('waiters'), {}, url), shards: 2 })
      const subs = Array.from({ length: 200 }, () => bus.subscribe({ from: 'latest' }))
      await startSubscribers(bus, subs)
      const next = subs.map((s) => s.next())
      // Every one waits now (nothing is left to read): count the connections they hold.
      await until(async () => (await clients()) - base >= 3)
      // Two data connections and at most 16 blocking ones (MAX_BLOCKING_WAITS), not 200.
      const during = (await clients()) - base
      expect(during).toBeLessThanOrEqual(2 + 16)
      bus.ingest({ hello: 1 })
      const steps = await Promise.all(next)
      expect(steps.map((s) => JSON.parse(s.value!.raw).hello)).toEqual(Array(200).fill(1))
      await bus.shutdown()
    } finally {
      admin.disconnect()
    }
  })

  it('stores a write that timed out and was applied later exactly once', async () => {
    server = await privateRedis()
    const url = `redis://127.0.0.1:${server.port}`
    const admin = new Redis(url)
    try {
      const prefix = uniqueName('pause')
      const bus = await create({ ...redisOptions(prefix, { commandTimeoutMs: 200 }, url), shards: 2, retries: 30 })
      const mark = logMark()
      // Writes wait in the server past the command timeout, then all run after the pause:
      // the first attempt of each chunk appends, every retry of it must append nothing.
      await admin.call('CLIENT', 'PAUSE', '1500', 'WRITE')
      for (let i = 0; i < 2000; i++) bus.ingest({ i, key: `k${i % 7}` }, { key: `k${i % 7}` })
      const flushed = await bus.flush()
      expect(flushed).toMatchObject({ pending: 2000, stored: 2000, dropped: 0 })
      const stats = bus.stats()
      expect(stats.retried).toBeGreaterThan(0)
      expect(logged(/^write failed, retrying: .*timed out/, 'warn', mark).length).toBeGreaterThan(0)
      expect(await xlenSum(admin, prefix, 2)).toBe(2000)
      expect(new Set(await storedMessageIds(admin, prefix, 2)).size).toBe(2000)
      expectEveryEventOnce(await readAll(bus), 2000)
      await bus.shutdown()
    } finally {
      admin.disconnect()
    }
  })

  it('loses and duplicates nothing when the server is killed and restarted mid-ingest', async () => {
    server = await privateRedis()
    const srv = server
    const url = `redis://127.0.0.1:${srv.port}`
    const prefix = uniqueName('restart')
    const bus = await create({ ...redisOptions(prefix, {}, url), retries: 100 })
    const mark = logMark()
    let restarting: Promise<void> | undefined
    const accepted = await ingestN(bus, 200_000, (i) => {
      if (i === 60_000 && !restarting) {
        restarting = (async () => {
          await srv.kill()
          await sleep(500)
          await srv.start()
        })()
      }
    })
    await restarting
    const flushed = await bus.flush()
    expect(flushed.dropped).toBe(0)
    expect(bus.stats()).toMatchObject({ ingested: accepted, stored: accepted, dropped: 0 })
    const admin = new Redis(url)
    try {
      expect(await xlenSum(admin, prefix)).toBe(accepted)
      expect(new Set(await storedMessageIds(admin, prefix)).size).toBe(accepted)
    } finally {
      admin.disconnect()
    }
    expectEveryEventOnce(await readAll(bus), accepted)
    // The kill showed as retried writes, none given up.
    expect(logged(/^write failed, retrying: /, 'warn', mark).length).toBeGreaterThan(0)
    expect(logged(/^dropped /, 'error', mark)).toEqual([])
    await expect(bus.isHealthy()).resolves.toBe(true)
    await bus.shutdown()
  })

  it('reports health, reconnects by itself and shuts down within its bound when the server is gone', async () => {
    server = await privateRedis()
    const srv = server
    const url = `redis://127.0.0.1:${srv.port}`
    const bus = await create({ ...redisOptions(uniqueName('health'), { commandTimeoutMs: 500 }, url), shutdownTimeoutMs: 1000 })
    const mark = logMark()
    await expect(bus.isHealthy()).resolves.toBe(true)
    await srv.kill()
    await expect(bus.isHealthy()).resolves.toBe(false)
    await srv.start()
    let healthy = false
    for (let i = 0; i < 50 && !healthy; i++) {
      healthy = await bus.isHealthy()
      if (!healthy) await sleep(100)
    }
    expect(healthy).toBe(true)
    bus.ingest({ after: 'restart' })
    expect(await bus.flush()).toMatchObject({ stored: 1, dropped: 0 })

    await srv.kill()
    for (let i = 0; i < 100; i++) bus.ingest({ i })
    const started = Date.now()
    const report = await bus.shutdown()
    expect(Date.now() - started).toBeLessThan(5000)
    expect(report.ingested).toBe(report.stored + report.dropped)
    expect(report.droppedShutdown + report.droppedAdapter).toBe(100)
    // Every dropped event is in an ERROR record's count.
    await until(() => logged(/^dropped \d+ events: /, 'error', mark).reduce((n, r) => n + Number(r.fields.dropped), 0) === 100)
  })

  it('connects over TLS (rediss://) with a private CA, and refuses an untrusted server with ERR_CONNECT', async () => {
    const dir = tempDir('ringbus-redis-tls-')
    try {
      const tls = makeTlsFiles(dir)
      const tlsPort = await freePort()
      server = await privateRedis(['--tls-port', String(tlsPort), '--tls-cert-file', tls.cert, '--tls-key-file', tls.key, '--tls-ca-cert-file', tls.ca, '--tls-auth-clients', 'no'])
      await waitForPort(tlsPort)
      const url = `rediss://127.0.0.1:${tlsPort}`
      const bus = await create({ ...redisOptions(uniqueName('tls'), { tls: { caFile: tls.ca } }, url), shards: 1 })
      bus.ingest({ secure: true })
      await expect(bus.flush()).resolves.toMatchObject({ stored: 1, dropped: 0 })
      expect((await bus.poll()).events.map((e) => e.raw)).toEqual(['{"secure":true}'])
      await bus.shutdown()
      const untrusted = await EventBus.create(redisOptions('x', { connectTimeoutMs: 2000 }, url)).catch((e) => e)
      expect(untrusted.code).toBe('ERR_CONNECT')
      expect(untrusted.message).toMatch(/certificate|TLS|tls/)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it('authenticates as an ACL user and writes to the database named in the URL', async () => {
    server = await privateRedis()
    const admin = new Redis(server.port, '127.0.0.1')
    try {
      await admin.call('ACL', 'SETUSER', 'ringbus-user', 'on', '>acl-pass-31', '~*', '+@all')
      const prefix = uniqueName('acl')
      for (const adapter of [
        { url: `redis://ringbus-user:acl-pass-31@127.0.0.1:${server.port}/3` },
        { url: `redis://127.0.0.1:${server.port}/3`, username: 'ringbus-user', password: 'acl-pass-31' },
      ]) {
        const bus = await create({ shards: 1, adapter: { type: 'redis', keyPrefix: prefix, ...adapter } })
        bus.ingest({ acl: true })
        await expect(bus.flush()).resolves.toMatchObject({ stored: 1, dropped: 0 })
        await bus.shutdown()
      }
      await admin.select(3)
      expect(await admin.xlen(streamKey(prefix, 0))).toBe(2)
      await admin.select(0)
      expect(await admin.exists(streamKey(prefix, 0))).toBe(0)
    } finally {
      admin.disconnect()
    }
  })

  it('keeps a wrong password out of the error and the logs', async () => {
    server = await privateRedis(['--requirepass', 'right-pass-4711'])
    const port = server.port
    const script = `
      const { EventBus } = require(${JSON.stringify(path.resolve(__dirname, '..', 'index.js'))})
      const tries = [
        { type: 'redis', url: 'redis://127.0.0.1:${port}', password: 'wrong-pass-0815' },
        { type: 'redis', url: 'redis://:wrong-pass-0815@127.0.0.1:${port}' },
        { type: 'redis', url: 'redis://alice:wrong-pass-0815@127.0.0.1:${port}' },
      ]
      ;(async () => {
        for (const adapter of tries) {
          const err = await EventBus.create({ adapter }).then(() => null, (e) => e)
          console.log(JSON.stringify({ code: err && err.code, message: err && err.message }))
        }
      })()
    `
    const { stdout, stderr } = await new Promise<{ stdout: string; stderr: string }>((resolve, reject) =>
      execFile(process.execPath, ['-e', script], { timeout: 30_000 }, (e, stdout, stderr) =>
        e ? reject(e) : resolve({ stdout, stderr }),
      ),
    )
    const results = stdout.trim().split('\n').map((l) => JSON.parse(l) as { code: string; message: string })
    expect(results.map((r) => r.code)).toEqual(['ERR_CONNECT', 'ERR_CONNECT', 'ERR_CONNECT'])
    for (const r of results) expect(r.message).toMatch(/password|credentials/)
    expect(stdout + stderr).not.toContain('wrong-pass-0815')
    expect(stdout + stderr).not.toContain('right-pass-4711')
  })
})

describe('Redis adapter on a 3-master Redis Cluster', () => {
  let nodes: PrivateServer[] = []
  beforeAll(async () => {
    nodes = await redisCluster()
  })
  afterAll(async () => {
    await Promise.all(nodes.map((n) => n.stop()))
  })

  it('stores 200,000 keyed events exactly once and reads them back in per-key order', async () => {
    const prefix = uniqueName('cluster')
    const urls = nodes.map((n) => `redis://127.0.0.1:${n.port}`)
    const bus = await create({ shards: 4, adapter: { type: 'redis', nodes: urls, keyPrefix: prefix } })
    const accepted = await ingestN(bus, 200_000)
    expect((await bus.flush()).dropped).toBe(0)
    expect(bus.stats()).toMatchObject({ ingested: 200_000, stored: 200_000, dropped: 0 })
    const cluster = new Cluster(nodes.map((n) => ({ host: '127.0.0.1', port: n.port })))
    try {
      expect(await xlenSum(cluster, prefix)).toBe(accepted)
      // The shards really are spread over the masters.
      const owners = new Set<number>()
      for (let s = 0; s < 4; s++) {
        for (const n of nodes) {
          const len = Number(execFileSync('redis-cli', ['-p', String(n.port), 'XLEN', streamKey(prefix, s)], { encoding: 'utf8' }).trim())
          if (len > 0) owners.add(n.port)
        }
      }
      expect(owners.size).toBeGreaterThan(1)
    } finally {
      cluster.disconnect()
    }
    expectEveryEventOnce(await readAll(bus), 200_000)
    expectEveryEventOnce(await subscribeN(bus, 200_000), 200_000)
    await bus.shutdown()
  })

  it('wakes a subscriber waiting on shards in different slots', async () => {
    const urls = nodes.map((n) => `redis://127.0.0.1:${n.port}`)
    const bus = await create({ shards: 4, adapter: { type: 'redis', nodes: urls, keyPrefix: uniqueName('cwait') } })
    const it = bus.subscribe({ from: 'latest' })[Symbol.asyncIterator]()
    // One XREAD BLOCK per shard (a cluster refuses one over several slots); the first wins.
    const got = await feedUntil(it.next(), (k) => bus.ingest({ late: k }, { key: `any${k}` }))
    expect(JSON.parse(got.value.raw)).toHaveProperty('late')
    await it.return?.()
    await bus.shutdown()
  })
})
