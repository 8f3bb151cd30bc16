// ESM: named imports, the default export, and the same names as CommonJS.
import { createRequire } from 'node:module'
import ringbus, { EventBus } from 'ringbus'
import * as named from 'ringbus'

const cjs = createRequire(import.meta.url)('ringbus')
const own = (o) => Object.keys(o).filter((k) => k !== 'default' && !k.startsWith('__')).sort()
if (JSON.stringify(own(named)) !== JSON.stringify(own(cjs))) {
  throw new Error(`ESM exports ${own(named)} differ from CommonJS ${own(cjs)}`)
}
if (ringbus.EventBus !== EventBus) throw new Error('default export is not the CommonJS module')
const bus = new EventBus({ shards: 1 })
bus.ingest({ hello: 'esm' })
await bus.flush()
const { events } = await bus.poll()
if (events.length !== 1) throw new Error(`polled ${events.length} events`)
await bus.shutdown()
console.log('esm: ok')
