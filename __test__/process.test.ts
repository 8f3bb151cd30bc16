import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { Redis } from 'ioredis'
import { EventBus } from '../index'
import { uniqueName } from './support/servers'

const root = path.resolve(__dirname, '..')
const REDIS = process.env.RINGBUS_REDIS_URL ?? 'redis://127.0.0.1:6379'

/** Entries stored under `prefix` on its first `shards` shards (then removed), read with ioredis. */
async function storedCount(prefix: string, shards: number): Promise<number> {
  const redis = new Redis(REDIS)
  try {
    let n = 0
    for (let s = 0; s < shards; s++) n += await redis.xlen(`{${prefix}:${s}}`)
    const keys = await redis.keys(`{${prefix}:*`)
    if (keys.length) await redis.del(...keys)
    return n
  } finally {
    redis.disconnect()
  }
}

function runNode(script: string, timeoutMs = 20_000) {
  const started = Date.now()
  const r = spawnSync(process.execPath, ['-e', script], { cwd: root, encoding: 'utf8', timeout: timeoutMs })
  return { ...r, elapsed: Date.now() - started }
}

describe('process and worker lifecycle', () => {
  it('a process whose bus is never shut down exits on its own, and the exit drain delivers everything', async () => {
    // Redis outlives the process, so what the exit drain delivered can be counted.
    const prefix = uniqueName('exitdrain')
    const r = runNode(`
      const { EventBus } = require('./index.js')
      EventBus.create({ shards: 4, adapter: { type: 'redis', url: ${JSON.stringify(REDIS)}, keyPrefix: '${prefix}' } }).then((bus) => {
        for (let i = 0; i < 100000; i++) bus.ingest({ i })
        bus.poll().then((p) => console.log('polled', p.events.length))
        const sub = bus.subscribe({ from: 'latest' })
        console.log('done ingesting')
      })
    `)
    expect(r.error).toBeUndefined()
    expect(r.status).toBe(0)
    expect(r.stdout).toContain('done ingesting')
    expect(r.elapsed).toBeLessThan(10_000)
    // Everything reached Redis during the exit drain: nothing to report, all of it stored.
    expect(r.stderr).toBe('')
    expect(await storedCount(prefix, 4)).toBe(100_000)
  })

  it('process.exit() with events still queued drains them before exit', async () => {
    const prefix = uniqueName('exitnow')
    const r = runNode(`
      const { EventBus } = require('./index.js')
      EventBus.create({ shards: 2, batch: { maxDelayMs: 60000, maxEvents: 100000 }, adapter: { type: 'redis', url: ${JSON.stringify(REDIS)}, keyPrefix: '${prefix}' } }).then((bus) => {
        for (let i = 0; i < 5000; i++) bus.ingest({ i })
        console.log('pending', bus.stats().pending)
        process.exit(0)
      })
    `)
    expect(r.status).toBe(0)
    expect(r.stdout).toContain('pending 5000')
    expect(r.stderr).toBe('')
    expect(await storedCount(prefix, 2)).toBe(5000)
  })

  it('process.exit() while process() handlers run exits without waiting for them, and their events go back to the group', async () => {
    const prefix = uniqueName('exithandlers')
    const adapter = { type: 'redis' as const, url: REDIS, keyPrefix: prefix }
    // The handlers never settle: JS stops at exit, so nothing could settle them.
    const r = runNode(`
      const { EventBus } = require('./index.js')
      EventBus.create({ shards: 2, adapter: ${JSON.stringify(adapter)} }).then(async (bus) => {
        for (let i = 0; i < 200; i++) bus.ingest({ i }, { key: 'k' + (i % 20) })
        await bus.flush()
        let started = 0
        bus.process('g', () => {
          if (++started === 8) setImmediate(() => { console.log('running', started); process.exit(0) })
          return new Promise(() => {})
        }, { concurrency: 8 })
      })
    `)
    expect(r.status).toBe(0)
    expect(r.stdout).toContain('running 8')
    // Before, the exit drain waited for the handlers until its 3 s bound and then reported
    // "delivery of 0 pending events could not be confirmed".
    expect(r.stderr).toBe('')
    // Another process's member gets all 200, the 8 that were running included.
    const bus = await EventBus.create({ shards: 2, adapter })
    const seen = new Set<number>()
    const all = new Promise<void>((resolve) => {
      bus.process('g', (ev) => {
        seen.add((ev.json() as { i: number }).i)
        if (seen.size === 200) resolve()
      })
    })
    await all
    await bus.shutdown()
    expect(seen.size).toBe(200)
    expect(await storedCount(prefix, 2)).toBe(200)
  })

  it('a bus inside a worker_threads Worker works and the worker exits cleanly', () => {
    const r = runNode(`
      const { Worker } = require('node:worker_threads')
      const code = \`
        const { parentPort } = require('node:worker_threads')
        const { EventBus } = require(\${JSON.stringify(require('node:path').resolve('index.js'))})
        ;(async () => {
          const bus = new EventBus({ shards: 2 })
          for (let i = 0; i < 10000; i++) bus.ingest({ i })
          const f = await bus.flush()
          let n = 0, cursor
          for (;;) { const p = await bus.poll({ limit: 1000, cursor }); n += p.events.length; cursor = p.cursor; if (!p.hasMore) break }
          parentPort.postMessage({ dropped: f.dropped, stored: bus.stats().stored, read: n })
          // A second bus is left running on purpose: worker teardown must drain it.
          const other = new EventBus()
          other.ingest({ left: 'running' })
          await bus.shutdown()
        })()
      \`
      const w = new Worker(code, { eval: true })
      w.on('message', (m) => console.log('worker says', JSON.stringify(m)))
      w.on('error', (e) => { console.error('worker error', e); process.exitCode = 2 })
      w.on('exit', (c) => console.log('worker exit', c))
    `)
    expect(r.stderr).toBe('')
    expect(r.status).toBe(0)
    expect(r.stdout).toContain('worker says {"dropped":0,"stored":10000,"read":10000}')
    expect(r.stdout).toContain('worker exit 0')
  })

  it('a worker thread that ends with its Redis bus running: the exit drain delivers every event (counted with ioredis)', async () => {
    const prefix = uniqueName('threaddrain')
    const r = runNode(`
      const { Worker } = require('node:worker_threads')
      const code = \`
        const { parentPort } = require('node:worker_threads')
        const { EventBus } = require(\${JSON.stringify(require('node:path').resolve('index.js'))})
        EventBus.create({ shards: 3, adapter: { type: 'redis', url: ${JSON.stringify(REDIS)}, keyPrefix: '${prefix}' } }).then((bus) => {
          let accepted = 0
          for (let i = 0; i < 30000; i++) { bus.ingest({ i }); accepted++ }
          // No flush, no shutdown: the thread's end must deliver what ingest accepted.
          parentPort.postMessage(accepted)
        })
      \`
      const w = new Worker(code, { eval: true })
      w.on('message', (m) => console.log('accepted', m))
      w.on('error', (e) => { console.error('worker error', e); process.exitCode = 2 })
      w.on('exit', (c) => console.log('worker exit', c))
    `)
    expect(r.stderr).toBe('')
    expect(r.status).toBe(0)
    expect(r.stdout).toContain('accepted 30000')
    expect(r.stdout).toContain('worker exit 0')
    expect(await storedCount(prefix, 3)).toBe(30_000)
  })

  it('a bus used from the main thread and a worker at once stays independent', () => {
    const r = runNode(`
      const { Worker } = require('node:worker_threads')
      const { EventBus } = require('./index.js')
      const main = new EventBus()
      main.ingest({ from: 'main' })
      const w = new Worker(\`
        const { EventBus } = require(\${JSON.stringify(require('node:path').resolve('index.js'))})
        const b = new EventBus(); b.ingest({ from: 'worker' })
        b.flush().then(() => b.poll()).then((p) => { require('node:worker_threads').parentPort.postMessage(p.events.map(e => e.raw)); return b.shutdown() })
      \`, { eval: true })
      w.on('message', async (m) => {
        await main.flush()
        const p = await main.poll()
        console.log(JSON.stringify({ worker: m, main: p.events.map(e => e.raw) }))
        await main.shutdown()
      })
    `)
    expect(r.status).toBe(0)
    expect(r.stdout.trim()).toBe(JSON.stringify({ worker: ['{"from":"worker"}'], main: ['{"from":"main"}'] }))
  })
})
