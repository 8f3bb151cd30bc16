// The `adapter` option is typed in index.d.ts (from src/napi/options/adapter.rs) and parsed
// by each backend's own config.rs: both must name the same keys, or a typed option would
// be refused (or an untyped one accepted). The engine says which keys it takes in its
// unknown-key error; the typings are read from index.d.ts.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { EventBus } from '../index'

const dts = readFileSync(join(__dirname, '..', 'index.d.ts'), 'utf8').replace(/\/\*[\s\S]*?\*\//g, '')

/** Keys of each `{ type: '…'; … }` member of the AdapterOptions union. */
function typedVariants(): Map<string, string[]> {
  const union = /export type AdapterOptions =([\s\S]*?)\n\n/.exec(dts)![1]
  const out = new Map<string, string[]>()
  for (const [, type, body] of union.matchAll(/\{\s*type: '(\w+)';?([^}]*)\}/g)) {
    out.set(type, [...body.matchAll(/(\w+)\??:/g)].map((m) => m[1]))
  }
  return out
}

function typedInterface(name: string): string[] {
  const body = new RegExp(`export interface ${name} \\{([^}]*)\\}`).exec(dts)![1]
  return [...body.matchAll(/(\w+)\??:/g)].map((m) => m[1])
}

/** The keys the engine takes, from the message it gives for an unknown key. */
async function parsedKeys(adapter: Record<string, unknown>): Promise<string[]> {
  const err = await EventBus.create({ adapter: adapter as never }).then(
    () => {
      throw new Error('an unknown key was accepted')
    },
    (e: Error & { code?: string }) => e,
  )
  expect(err.code).toBe('ERR_INVALID_CONFIG')
  const m = /unknown field `zzUnknown`, (?:expected (.*)|there are no fields)$/.exec(err.message)
  if (!m) throw new Error(`not an unknown-key error: ${err.message}`)
  return m[1] === undefined ? [] : [...m[1].matchAll(/`(\w+)`/g)].map((k) => k[1])
}

describe('adapter options: typings and parsers name the same keys', () => {
  const typed = typedVariants()

  it('has one typed variant per backend', () => {
    expect([...typed.keys()].sort()).toEqual(['jetstream', 'memory', 'noop', 'redis'])
  })

  it.each(['memory', 'noop', 'jetstream', 'redis'])('%s', async (type) => {
    const keys = await parsedKeys({ type, zzUnknown: 1 })
    expect(keys.sort()).toEqual([...typed.get(type)!].sort())
  })

  it('tls', async () => {
    const keys = await parsedKeys({ type: 'redis', url: 'redis://127.0.0.1:1', tls: { zzUnknown: 1 } })
    expect(keys.sort()).toEqual(typedInterface('TlsOptions').sort())
  })

  it('names the key at fault under options.adapter', async () => {
    const err = await EventBus.create({ adapter: { type: 'jetstream', servers: 'nats://x', stream: 's', replicas: 'two' } as never }).catch((e) => e)
    expect(err.code).toBe('ERR_INVALID_CONFIG')
    expect(err.message).toMatch(/^options\.adapter(\.replicas)?: invalid type: string, expected u32/)
    const storage = await EventBus.create({ adapter: { type: 'jetstream', servers: 'nats://x', stream: 's', storage: 'disk' } as never }).catch((e) => e)
    expect(storage.message).toContain("unknown variant `disk`, expected `file` or `memory`")
  })
})
