import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import path from 'node:path'

import { EventBus, type ErrorCode } from '../index'
import { pollAll, thrown } from './helpers'

const root = path.join(__dirname, '..')

// Record<ErrorCode, …> must name every member of the union and nothing else: the
// typings and this list cannot drift apart without a compile error.
const typed: Record<ErrorCode, true> = {
  ERR_INVALID_CONFIG: true,
  ERR_INVALID_EVENT: true,
  ERR_BACKPRESSURE: true,
  ERR_SHUT_DOWN: true,
  ERR_CONNECT: true,
  ERR_ADAPTER: true,
  ERR_TIMEOUT: true,
  ERR_INVALID_FILTER: true,
  ERR_INVALID_CURSOR: true,
  ERR_INTERNAL: true,
}

describe('ErrorCode', () => {
  it('types exactly the codes of the README table', () => {
    const readme = readFileSync(path.join(root, 'README.md'), 'utf8')
    const table = [...readme.matchAll(/^\| `(ERR_[A-Z_]+)` \|/gm)].map((m) => m[1])
    expect(Object.keys(typed).sort()).toEqual([...table].sort())
  })

  it('is what errors carry, and the runtime object maps names to codes', async () => {
    const runtime = require('../index').ErrorCode as Record<string, string>
    expect(Object.values(runtime).sort()).toEqual(Object.keys(typed).sort())
    expect(runtime.Internal).toBe('ERR_INTERNAL')
    const bus = new EventBus({ shards: 1 })
    expect(thrown(() => bus.ingest(42 as never)).code).toBe(runtime.InvalidEvent)
    await bus.shutdown()
    expect(thrown(() => bus.ingest({ a: 1 })).code).toBe(runtime.ShutDown)
  })
})

describe('ingest options that throw', () => {
  it('is ERR_INVALID_EVENT with the getter’s message, and accepts nothing', async () => {
    const bus = new EventBus({ shards: 2 })
    const options = {
      get key(): string {
        throw new Error('no key today')
      },
    }
    for (const call of [() => bus.ingest({ a: 1 }, options), () => bus.ingestBatch([{ a: 1 }], options)]) {
      const err = thrown(call)
      expect(err.code).toBe('ERR_INVALID_EVENT')
      expect(err.message).toContain('options.key')
      expect(err.message).toContain('no key today')
    }
    const events: object[] = [{ a: 1 }, { a: 2 }]
    Object.defineProperty(events, 1, {
      get() {
        throw new Error('element trap')
      },
    })
    const err = thrown(() => bus.ingestBatch(events))
    expect(err.code).toBe('ERR_INVALID_EVENT')
    expect(err.message).toContain('element trap')
    // The bus goes on: nothing was accepted, the next event is.
    bus.ingest({ b: 1 }, { key: 'k' })
    await bus.flush()
    expect((await pollAll(bus)).map((e) => e.raw)).toEqual(['{"b":1}'])
    expect(bus.stats().ingested).toBe(1)
    await bus.shutdown()
  })
})

describe('RINGBUS_THREADS', () => {
  const run = (threads: string) =>
    spawnSync(
      process.execPath,
      [
        '-e',
        `const { EventBus } = require('.')
        ;(async () => {
          let bus
          try { bus = new EventBus({ shards: 2 }) } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); return }
          for (let i = 0; i < 1000; i++) bus.ingest({ i })
          await bus.flush()
          // The runtime's workers are the threads named ringbus (Linux: /proc/self/task).
          const fs = require('node:fs')
          const workers = fs.readdirSync('/proc/self/task').filter((t) => {
            try { return fs.readFileSync('/proc/self/task/' + t + '/comm', 'utf8').trim() === 'ringbus' } catch { return false }
          }).length
          const s = await bus.shutdown()
          console.log(JSON.stringify({ stored: s.stored, workers }))
        })()`,
      ],
      { cwd: root, encoding: 'utf8', timeout: 30_000, env: { ...process.env, RINGBUS_THREADS: threads } },
    )

  it('sets the runtime threads', () => {
    for (const n of [1, 3]) {
      const r = run(String(n))
      expect(r.status).toBe(0)
      expect(JSON.parse(r.stdout)).toEqual({ stored: 1000, workers: n })
    }
  })

  it('refuses an unusable value at the first bus, naming the variable', () => {
    const r = run('lots')
    expect(r.status).toBe(0)
    const out = JSON.parse(r.stdout)
    expect(out.code).toBe('ERR_INVALID_CONFIG')
    expect(out.message).toContain('RINGBUS_THREADS')
  })
})
