// Logs: the engine's records reach a setLogger sink with structured fields (and nothing
// goes to stderr meanwhile), go back to stderr after setLogger(null), and RINGBUS_LOG
// filters them. The failures are real: a private Redis server stopped under a live bus,
// in a child process whose stderr the test reads.
import { fork } from 'node:child_process'
import path from 'node:path'
import { EventBus, setLogger, type LogRecord } from '../index'
import { Redis } from 'ioredis'
import { until } from './support/adapter'
import { captureLogs } from './support/logs'
import { privateRedis, uniqueName, type PrivateServer } from './support/servers'

const REDIS = process.env.RINGBUS_REDIS_URL ?? 'redis://127.0.0.1:6379'

jest.setTimeout(60_000)

const CHILD = path.join(__dirname, 'support', 'logger-child.js')
const PASSWORD = 'p@ss:w/rd%s3cret'

type Result = { records: LogRecord[]; dropped: number; stderr: string }

/** Runs the child against a fresh private server, stopping the server once the bus is up. */
async function runChild(cfg: { sink: boolean; level?: string }, env: Record<string, string> = {}): Promise<Result> {
  const server: PrivateServer = await privateRedis(['--requirepass', PASSWORD])
  try {
    const url = `redis://:${encodeURIComponent(PASSWORD)}@127.0.0.1:${server.port}`
    const child = fork(CHILD, [JSON.stringify({ ...cfg, url })], {
      env: { ...process.env, RINGBUS_LOG: '', ...env },
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    })
    let stderr = ''
    child.stderr!.on('data', (d) => (stderr += d))
    const exited = new Promise((resolve) => child.once('exit', resolve))
    const result = await new Promise<Result>((resolve, reject) => {
      child.on('message', async (m: any) => {
        if (m === 'ready') {
          await server.kill()
          child.send('go')
        } else if (m.error) reject(new Error(m.error))
        else resolve({ ...m, stderr })
      })
      child.once('exit', (code) => reject(new Error(`child exited with ${code} before reporting; stderr: ${stderr}`)))
    })
    await exited
    return { ...result, stderr }
  } finally {
    await server.stop()
  }
}

const lines = (stderr: string) => stderr.split('\n').filter((l) => l.startsWith('ringbus '))

describe('logging', () => {
  it('setLogger receives connect, retry and drop records with fields, and stderr stays quiet until setLogger(null)', async () => {
    const { records, dropped, stderr } = await runChild({ sink: true })
    expect(dropped).toBe(2)
    const connected = records.find((r) => r.message === 'connected to Redis')
    expect(connected).toMatchObject({ level: 'info', target: 'ringbus::adapter::redis', fields: { key_prefix: 'logchild' } })
    expect(typeof connected!.timestamp).toBe('number')
    const retry = records.find((r) => r.message.startsWith('write failed, retrying'))
    expect(retry).toMatchObject({ level: 'warn', target: 'ringbus::dispatch', fields: { shard: 0, events: 1, attempt: 1 } })
    expect(typeof retry!.fields.reason).toBe('string')
    const drop = records.find((r) => r.message.startsWith('dropped 1 events'))
    expect(drop).toMatchObject({ level: 'error', fields: { shard: 0, dropped: 1, stored: 0 } })
    // Nothing reached stderr while the sink was set: the only lines are from the second
    // event, after setLogger(null).
    const out = lines(stderr)
    expect(out.length).toBeGreaterThan(0)
    expect(out.every((l) => !l.includes('connected to Redis'))).toBe(true)
    expect(out.some((l) => l.startsWith('ringbus ERROR ringbus::dispatch: dropped 1 events'))).toBe(true)
    // No secret in any record or line.
    const all = JSON.stringify(records) + stderr
    expect(all).not.toContain('s3cret')
    expect(all).not.toContain(encodeURIComponent(PASSWORD))
  })

  it('RINGBUS_LOG filters what goes to stderr', async () => {
    const verbose = lines((await runChild({ sink: false }, { RINGBUS_LOG: 'ringbus=info' })).stderr)
    expect(verbose.some((l) => l.startsWith('ringbus INFO ringbus::adapter::redis: connected to Redis'))).toBe(true)
    expect(verbose.some((l) => l.startsWith('ringbus WARN ringbus::dispatch: write failed, retrying'))).toBe(true)
    expect(verbose.some((l) => l.startsWith('ringbus ERROR ringbus::dispatch: dropped 1 events'))).toBe(true)

    const quiet = lines((await runChild({ sink: false }, { RINGBUS_LOG: 'ringbus=error' })).stderr)
    expect(quiet.length).toBeGreaterThan(0)
    expect(quiet.every((l) => l.startsWith('ringbus ERROR '))).toBe(true)

    // Unset: warnings and errors, not info.
    const normal = lines((await runChild({ sink: false })).stderr)
    expect(normal.some((l) => l.startsWith('ringbus WARN '))).toBe(true)
    expect(normal.some((l) => l.startsWith('ringbus INFO '))).toBe(false)
  })

  it('a sink at a level gets nothing below it', async () => {
    const { records } = await runChild({ sink: true, level: 'error' })
    expect(records.length).toBeGreaterThan(0)
    expect(records.every((r) => r.level === 'error')).toBe(true)
  })

  it('a sink that throws disturbs nothing', async () => {
    let calls = 0
    setLogger(() => {
      calls++
      throw new Error('logger broke')
    }, { level: 'info' })
    try {
      const bus = await EventBus.create({ adapter: { type: 'redis', url: REDIS, keyPrefix: uniqueName('logthrow') } })
      bus.ingest({ n: 1 })
      expect((await bus.flush()).stored).toBe(1)
      await bus.shutdown()
      await until(() => calls > 0)
      // The sink is still called after it threw: a second bus's records reach it too.
      const before = calls
      const again = await EventBus.create({ adapter: { type: 'redis', url: REDIS, keyPrefix: uniqueName('logthrow') } })
      await again.shutdown()
      await until(() => calls > before)
    } finally {
      captureLogs()
    }
  })

  it('a JS thread that falls behind loses records past the queue of 1,024, and a record of their own counts them', async () => {
    // Corrupt Redis entries: each reader logs the first 1,024 it skips, one WARN each. Two
    // buses read 1,100 each while the JS thread is kept busy, so 2,048 records meet a queue
    // of 1,024.
    const prefix = uniqueName('flood')
    const redis = new Redis(REDIS)
    const forge = async (keyPrefix: string, n: number) => {
      const pipe = redis.pipeline()
      for (let i = 0; i < n; i++) pipe.xadd(`{${keyPrefix}:0}`, '*', 'd', '{}', 'm', `not a ringbus stamp ${i}`)
      await pipe.exec()
    }
    await forge(prefix, 1100)
    const records: LogRecord[] = []
    setLogger((r) => void records.push(r), { level: 'warn' })
    const adapter = { type: 'redis' as const, url: REDIS, keyPrefix: prefix }
    const [a, b] = [await EventBus.create({ shards: 1, adapter }), await EventBus.create({ shards: 1, adapter })]
    try {
      const polls = [a.poll({ limit: 2000 }), b.poll({ limit: 2000 })]
      // Busy until both readers have skipped everything: no record can be delivered meanwhile.
      const deadline = Date.now() + 30_000
      while (a.stats().corruptSkipped + b.stats().corruptSkipped < 2200 && Date.now() < deadline);
      expect(a.stats().corruptSkipped + b.stats().corruptSkipped).toBe(2200)
      await Promise.all(polls)
      // One more record after the queue drained carries the count.
      const other = uniqueName('flood')
      await forge(other, 1)
      const c = await EventBus.create({ shards: 1, adapter: { ...adapter, keyPrefix: other } })
      await c.poll({ limit: 10 })
      await until(() => records.some((r) => r.target === 'ringbus::log'), 10_000)
      const [note] = records.filter((r) => r.target === 'ringbus::log')
      const dropped = note.fields.dropped as number
      expect(note).toMatchObject({ level: 'warn', message: `${dropped} log records were dropped: the logger fell behind` })
      const skipped = records.filter((r) => r.message.startsWith('skipped a corrupt entry'))
      // Nothing lost silently: delivered + counted = what the two readers logged; the queue
      // held about 1,024 of them.
      const fromAB = skipped.filter((r) => r.fields.stream === `{${prefix}:0}`)
      expect(fromAB.length + dropped).toBe(2048)
      expect(dropped).toBeGreaterThanOrEqual(1000)
      await c.shutdown()
    } finally {
      await Promise.all([a.shutdown(), b.shutdown()])
      await redis.quit()
      captureLogs()
    }
  })

  it('validates the level', () => {
    expect(() => setLogger(() => undefined, { level: 'loud' as any })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_CONFIG' }))
    expect(() => setLogger(() => undefined, { level: 'loud' as any })).toThrow(/level must be/)
    captureLogs()
  })
})
