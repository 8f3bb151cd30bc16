// OpenTelemetry through the real SDK (in-memory span exporter and metric reader): trace
// context from a producer process reaches the handler's `process` span as a link on
// JetStream and Redis; spans carry the conventions' names, kinds and attributes; a failed
// handler records error.type; the meter's points equal the bus's own counters.
import { execFile } from 'node:child_process'
import path from 'node:path'
import * as otel from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base'
import { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader, type DataPoint, type Histogram } from '@opentelemetry/sdk-metrics'
import type * as Ringbus from '../index'
import { storesForFile, until } from './support/adapter'
import { uniqueName } from './support/servers'

const { EventBus } = require('../main.js') as typeof Ringbus

otel.context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())

function tracing() {
  const exporter = new InMemorySpanExporter()
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] })
  return { exporter, tracerProvider }
}

function metering() {
  const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE)
  const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 })
  const meterProvider = new MeterProvider({ readers: [reader] })
  const points = async (name: string) => {
    await reader.forceFlush()
    const last = exporter.getMetrics().at(-1)
    const metric = last?.scopeMetrics.flatMap((s) => s.metrics).find((m) => m.descriptor.name === name)
    return (metric?.dataPoints ?? []) as DataPoint<number | Histogram>[]
  }
  return { meterProvider, points }
}

const named = (spans: ReadableSpan[], prefix: string) => spans.filter((s) => s.name.startsWith(prefix))

function runProducer(adapter: unknown, total: number): Promise<{ traceId: string; spanId: string; sends: { name: string; kind: number; count: number; links: string[] }[] }> {
  const script = path.join(__dirname, 'support', 'traced-producer.js')
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [script, JSON.stringify({ adapter, total })], { timeout: 60_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`traced producer failed: ${err.message}\n${stderr}`))
      else resolve(JSON.parse(stdout.trim().split('\n').at(-1)!))
    })
  })
}

const adapterFor = storesForFile()

describe.each(['jetstream', 'redis'])('trace context across processes on %s', (kind) => {
  it("a producer process's span reaches each handler's process span as a link", async () => {
    const name = uniqueName(`otel-${kind}`)
    const adapter = adapterFor(kind, name)
    const total = 12
    const produced = await runProducer(adapter, total)
    // The producer's send spans: PRODUCER, the batch size, linked to the creation span.
    expect(produced.sends.length).toBeGreaterThan(0)
    expect(produced.sends.reduce((a, s) => a + s.count, 0)).toBe(total)
    for (const s of produced.sends) {
      expect(s).toMatchObject({ name: `send ${name}`, kind: otel.SpanKind.PRODUCER, links: [produced.spanId] })
    }

    const { exporter, tracerProvider } = tracing()
    const bus = await EventBus.create({ shards: 2, adapter, telemetry: { tracerProvider } })
    let handled = 0
    const worker = bus.process(
      'traced',
      async (ev) => {
        handled += 1
        // The handler runs inside its process span.
        expect(otel.trace.getActiveSpan()?.spanContext().traceId).toBeDefined()
        if ((ev.json() as { i: number }).i === 5) throw new TypeError('card declined')
      },
      { maxDeliveries: 1, from: 'earliest' },
    )
    await until(() => worker.stats().consumer.acked + worker.stats().consumer.deadLettered === total, 30_000)
    await worker.close()
    const spans = named(exporter.getFinishedSpans(), 'process ')
    expect(spans.length).toBe(total)
    expect(handled).toBe(total)
    const ids = new Set<string>()
    for (const s of spans) {
      expect(s.name).toBe(`process ${name}`)
      expect(s.kind).toBe(otel.SpanKind.CONSUMER)
      expect(s.links.map((l) => [l.context.traceId, l.context.spanId])).toEqual([[produced.traceId, produced.spanId]])
      // A new trace, linked (not parented) by default.
      expect(s.spanContext().traceId).not.toBe(produced.traceId)
      expect(s.attributes).toMatchObject({
        'messaging.system': 'ringbus',
        'messaging.destination.name': name,
        'messaging.operation.name': 'process',
        'messaging.operation.type': 'process',
        'messaging.consumer.group.name': 'traced',
      })
      expect(['0', '1']).toContain(s.attributes['messaging.destination.partition.id'])
      ids.add(String(s.attributes['messaging.message.id']))
    }
    expect(ids.size).toBe(total)
    const failed = spans.filter((s) => s.status.code === otel.SpanStatusCode.ERROR)
    expect(failed.length).toBe(1)
    expect(failed[0].attributes['error.type']).toBe('TypeError')
    expect(failed[0].events.map((e) => [e.name, e.attributes?.['exception.message']])).toEqual([['exception', 'card declined']])
    await bus.shutdown()
  })
})

describe('OpenTelemetry in one process', () => {
  it('receive and settle spans, process spans as children on request, and meter points equal the counters', async () => {
    const { exporter, tracerProvider } = tracing()
    const { meterProvider, points } = metering()
    const bus = new EventBus({ shards: 2, telemetry: { tracerProvider, meterProvider, propagate: true, processParent: true, settleSpans: true } })
    const creation = tracerProvider.getTracer('test').startSpan('create')
    otel.context.with(otel.trace.setSpan(otel.ROOT_CONTEXT, creation), () => {
      for (let i = 0; i < 50; i++) bus.ingest({ i }, { key: `k${i % 4}` })
      bus.ingestBatch([{ i: 50 }, { i: 51 }])
      // A traceparent the caller gives is kept.
      bus.ingest({ i: 52 }, { headers: { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' } })
    })
    creation.end()
    await bus.flush()
    const page = await bus.poll({ limit: 100 })
    expect(page.events.length).toBe(53)
    const parent = `00-${creation.spanContext().traceId}-${creation.spanContext().spanId}-01`
    expect(page.events.filter((e) => e.headers?.traceparent === parent).length).toBe(52)
    expect(page.events.find((e) => (e.json() as { i: number }).i === 52)?.headers?.traceparent).toBe('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01')

    let calls = 0
    const worker = bus.process('g', async () => {
      calls += 1
    })
    await until(() => worker.stats().handled === 53)
    await worker.close()
    const sub = bus.subscribe({ from: 'earliest' })
    for (let n = 0; n < 2; n++) await sub.next()
    await sub.return!()
    const consumer = await bus.consumer({ group: 'other' })
    for (let n = 0; n < 3; n++) {
      const step = await consumer.next()
      consumer.ack(step.value!)
    }
    await consumer.close()

    const spans = exporter.getFinishedSpans()
    const processes = named(spans, 'process memory')
    expect(processes.length).toBe(53)
    const children = processes.filter((s) => s.parentSpanContext?.spanId === creation.spanContext().spanId)
    expect(children.length).toBe(52)
    const receives = named(spans, 'receive memory')
    // One for the poll (53 events, two distinct creation contexts), one per event a
    // subscription or a consumer yielded.
    expect(receives.map((s) => s.attributes['messaging.batch.message_count'])).toEqual([53, 1, 1, 1, 1, 1])
    expect(receives[0].links.length).toBe(2)
    expect(receives.every((s) => s.kind === otel.SpanKind.CLIENT)).toBe(true)
    expect(receives[1].attributes['messaging.consumer.group.name']).toBeUndefined()
    expect(receives[3].attributes['messaging.consumer.group.name']).toBe('other')
    const settles = named(spans, 'ack memory')
    expect(settles.length).toBe(3)
    expect(settles[0].attributes['messaging.operation.type']).toBe('settle')

    const stats = bus.stats()
    const sent = await points('messaging.client.sent.messages')
    expect(sent.find((p) => p.attributes['error.type'] === undefined)?.value).toBe(stats.stored)
    const consumed = await points('messaging.client.consumed.messages')
    const byGroup = (g?: string) => consumed.find((p) => p.attributes['messaging.consumer.group.name'] === g)?.value
    expect(byGroup('g')).toBe(calls)
    expect(byGroup('other')).toBe(3)
    // poll's 53 and the subscription's first page (it reads ahead a page; all 53 fit).
    expect(byGroup(undefined)).toBe(106)
    const processed = await points('messaging.process.duration')
    expect((processed[0].value as Histogram).count).toBe(calls)
    expect((processed[0].value as Histogram).buckets.boundaries).toEqual([0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10])
    // The meter's send durations are the exposition's, batch for batch.
    const operations = await points('messaging.client.operation.duration')
    const sendPoint = operations.find((p) => p.attributes['messaging.operation.name'] === 'send')
    const text = await bus.metrics()
    const exposed = /messaging_client_operation_duration_seconds_count\{[^}]*messaging_operation_name="send"[^}]*\} (\d+)/.exec(text)
    expect((sendPoint?.value as Histogram).count).toBe(Number(exposed?.[1]))
    await bus.shutdown()
    // Written batches become spans when taken (each second, at a meter's collection and at
    // shutdown), with their own start and end times.
    const sends = named(exporter.getFinishedSpans(), 'send memory')
    expect(sends.reduce((a, s) => a + Number(s.attributes['messaging.batch.message_count']), 0)).toBe(53)
    expect(sends.every((s) => s.kind === otel.SpanKind.PRODUCER && s.links.length >= 1)).toBe(true)
  })

  it('leaves the bus untouched without providers, with telemetry: false, and uses the global providers when registered', async () => {
    const own = (b: object) => Object.getOwnPropertyNames(b).filter((n) => ['process', 'poll', 'consumer', 'ingest'].includes(n))
    const plain = new EventBus()
    expect(own(plain)).toEqual([])
    const { exporter, tracerProvider } = tracing()
    expect(otel.trace.setGlobalTracerProvider(tracerProvider)).toBe(true)
    try {
      const off = new EventBus({ telemetry: false })
      expect(own(off)).toEqual([])
      const global = new EventBus()
      expect(own(global).sort()).toEqual(['consumer', 'poll', 'process'])
      expect(Object.getOwnPropertyNames(global)).toContain('subscribe')
      global.ingest({ a: 1 })
      await global.flush()
      await global.poll({})
      await Promise.all([off.shutdown(), global.shutdown(), plain.shutdown()])
      expect(named(exporter.getFinishedSpans(), 'receive memory').length).toBe(1)
      expect(named(exporter.getFinishedSpans(), 'send memory').length).toBe(1)
    } finally {
      otel.trace.disable()
    }
  })
})

