// Type-checked (never run) by types.test.ts: how a TypeScript user writes against index.d.ts.
import http from 'node:http'
import {
  EventBus,
  createDashboard,
  metricsContentType,
  type BusEvent,
  type BusStats,
  type EventBusOptions,
  type FlushResult,
  type PollResult,
  type ShardStat,
} from '../../index'

export async function usage(): Promise<number> {
  const options: EventBusOptions = {
    shards: 4,
    ringCapacity: 1024,
    backpressure: 'dropOldest',
    maxEventBytes: 4096,
    batch: { maxEvents: 100, maxBytes: 65536, maxDelayMs: 1 },
    adapterTimeoutMs: 1000,
    retries: 2,
    producerNoncePath: '/tmp/nonce',
    shutdownTimeoutMs: 5000,
    adapter: { type: 'memory', maxEvents: 1000, maxBytes: 1 << 20 },
  }
  const bus = await EventBus.create(options)
  const other = new EventBus({ adapter: { type: 'noop' } })
  const shard: number = bus.ingest({ orderId: 1 }, { key: 'customer-7' })
  bus.ingest('{"a":1}')
  bus.ingest(Buffer.from('x'))
  bus.ingest(new Uint8Array([1]))
  const accepted: number = bus.ingestBatch([{ a: 1 }, '{"b":2}'], { keys: ['x', 'y'] })
  const flushed: FlushResult = await bus.flush()
  const page: PollResult = await bus.poll({
    limit: 10,
    filter: { total: { $gt: 5 } },
    ordering: 'timestamp',
    shards: [0, 1],
  })
  const next = await bus.poll({ cursor: page.cursor })
  const first: BusEvent | undefined = next.events[0]
  const raw: string | undefined = first?.raw
  const bytes: Buffer | undefined = first?.bytes
  for await (const ev of bus.subscribe({ from: 'earliest', filter: { orderId: 1 } })) {
    const id: string = ev.id
    const ts: number = ev.timestamp
    void id, ts
    break
  }
  const stats: BusStats = bus.stats()
  const shards: ShardStat[] = bus.shardStats()
  const n: number = bus.numShards
  const added: number[] = await bus.scaleUp(2)
  const removed: number[] = await bus.scaleDown(2)
  const rate: number = bus.shardStats()[0].eventRate
  const scaled = new EventBus({ shards: 2, scaling: { minShards: 2, maxShards: 16, auto: true, windowMs: 500, maxStep: 1 } })
  await scaled.shutdown()
  const redis = await EventBus.create({ adapter: { type: 'redis', url: 'redis://127.0.0.1:6379', keyPrefix: 'orders', maxLen: 100_000 } })
  await redis.shutdown()
  void added, removed, rate
  const healthy: boolean = await bus.isHealthy()
  const final: BusStats = await bus.shutdown()
  await other.shutdown()
  void raw, bytes, healthy, final
  return shard + accepted + flushed.dropped + stats.pending + shards.length + n
}

export function misuse(bus: EventBus): void {
  // @ts-expect-error backpressure is a closed set of modes
  new EventBus({ backpressure: 'block' })
  // @ts-expect-error unknown adapter types are rejected by the typings too
  new EventBus({ adapter: { type: 'kafka' } })
  // @ts-expect-error counters are numbers, not bigint
  const big: bigint = bus.stats().ingested
  // @ts-expect-error ingest is synchronous and returns the shard id
  const p: Promise<number> = bus.ingest({})
  // @ts-expect-error ordering is 'shard' or 'timestamp'
  void bus.poll({ ordering: 'random' })
  // @ts-expect-error scaleUp takes a count
  void bus.scaleUp('2')
  void big, p
}

// A typed bus: ingest takes T (or a JSON string or bytes), and every read gives json(): T.
interface Order {
  orderId: number
  total: number
  lines?: string[]
}

export async function typed(): Promise<number> {
  const bus = new EventBus<Order>()
  const created = await EventBus.create<Order>({ adapter: { type: 'memory' } })
  bus.ingest({ orderId: 1, total: 5 }, { key: 'c-1' })
  bus.ingest('{"orderId":2,"total":1}')
  bus.ingest(Buffer.from('{}'))
  bus.ingestBatch([{ orderId: 3, total: 2 }, '{"orderId":4,"total":0}'])
  // @ts-expect-error a wrong event shape: total is a number
  bus.ingest({ orderId: 5, total: 'five' })
  // @ts-expect-error a missing required field
  bus.ingestBatch([{ orderId: 6 }])
  const page = await bus.poll()
  const order: Order | undefined = page.events[0]?.json()
  // @ts-expect-error json() is an Order, not a string
  const wrong: string = page.events[0].json()
  for await (const ev of bus.subscribe()) {
    const total: number = ev.json().total
    void total
    break
  }
  const consumer = await bus.consumer({ group: 'billing' })
  for await (const ev of consumer) {
    const id: number = ev.json().orderId
    consumer.ack(ev)
    void id
    break
  }
  await consumer.close()
  const worker = bus.process('ship', async (ev) => {
    const lines: string[] | undefined = ev.json().lines
    // @ts-expect-error handlers get the bus's event type
    const nope: boolean = ev.json().orderId
    void lines, nope
  })
  await worker.close()
  const letters = await bus.deadLetters('ship')
  const dead: Order | undefined = letters.events[0]?.json()
  await bus.redeliver('ship', letters.events)
  // Untyped buses read `unknown`: narrowing is the caller's job.
  const plain = new EventBus()
  const anything: unknown = (await plain.poll()).events[0]?.json()
  // @ts-expect-error unknown is not an Order without a check
  const unchecked: Order = (await plain.poll()).events[0].json()
  // Metrics and OpenTelemetry options.
  const text: string = await bus.metrics({ format: 'openmetrics', groups: ['ship'] })
  const type: string = metricsContentType('prometheus')
  // @ts-expect-error the formats are named
  await bus.metrics({ format: 'json' })
  const provider = { getTracer: (name: string) => ({ name }) }
  const traced = new EventBus({ telemetry: { tracerProvider: provider, propagate: true, settleSpans: false } })
  // @ts-expect-error propagate is a boolean
  void new EventBus({ telemetry: { propagate: 'yes' } })
  const handler = createDashboard({ bus, readOnly: true, authorize: (req, action) => action === 'read' || req.headers['x-admin'] === '1' })
  http.createServer(handler).close()
  // @ts-expect-error the bus is required
  createDashboard({ readOnly: true })
  await Promise.all([bus.shutdown(), created.shutdown(), plain.shutdown(), traced.shutdown()])
  void order, wrong, dead, anything, unchecked, text, type
  return 0
}
