// Typed use from an ES module.
import { EventBus } from 'ringbus'

const bus = new EventBus()
const id: number = bus.ingest('{"ok":true}')
await bus.shutdown()
export { id }
