// Typed use from a CommonJS TypeScript module: options, events, errors and groups.
import { EventBus, type BusEvent, type EventBusOptions, type ErrorCode, type LogRecord, setLogger } from 'ringbus'

const options: EventBusOptions = { shards: 2, backpressure: 'reject' }
const code: ErrorCode = 'ERR_BACKPRESSURE'

export async function run(): Promise<number> {
  setLogger((r: LogRecord) => void r.message, { level: 'warn' })
  const bus = new EventBus(options)
  const seq: number = bus.ingest({ n: 1 }, { key: 'a' })
  const page = await bus.poll({ limit: 10 })
  const first: BusEvent | undefined = page.events[0]
  const worker = bus.process('g', async (ev) => void ev.deliveries, { concurrency: 4 })
  await worker.close()
  await bus.shutdown()
  // @ts-expect-error: an unknown option is a type error
  new EventBus({ shard: 2 })
  return seq + (first?.shardId ?? 0) + code.length + (await typed())
}

interface Order {
  orderId: number
  total: number
}

// A typed bus: ingest checks the event's shape, reads give json(): Order.
async function typed(): Promise<number> {
  const bus = await EventBus.create<Order>()
  bus.ingest({ orderId: 1, total: 5 })
  // @ts-expect-error: a wrong event shape is a type error
  bus.ingest({ orderId: 'one', total: 5 })
  const ev: BusEvent<Order> | undefined = (await bus.poll()).events[0]
  const total: number = ev?.json().total ?? 0
  await bus.shutdown()
  return total
}
