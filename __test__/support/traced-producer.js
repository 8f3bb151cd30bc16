// A producer process with its own OpenTelemetry SDK, for the telemetry tests.
// argv[2]: JSON { adapter, total }. Ingests `{ i }` (keyed `k${i % 3}`) inside an active
// span `checkout` with `telemetry: { propagate: true }`, then prints one JSON line: the
// span's context and the `send` spans it exported (kind, batch size, linked span ids).
const otel = require('@opentelemetry/api')
const { AsyncLocalStorageContextManager } = require('@opentelemetry/context-async-hooks')
const { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } = require('@opentelemetry/sdk-trace-base')
const { EventBus } = require('../../main.js')

async function main() {
  const cfg = JSON.parse(process.argv[2])
  otel.context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())
  const exporter = new InMemorySpanExporter()
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] })
  const bus = await EventBus.create({ shards: 2, adapter: cfg.adapter, telemetry: { tracerProvider, propagate: true } })
  const checkout = tracerProvider.getTracer('shop').startSpan('checkout')
  otel.context.with(otel.trace.setSpan(otel.context.active(), checkout), () => {
    for (let i = 0; i < cfg.total; i++) bus.ingest({ i }, { key: `k${i % 3}` })
  })
  checkout.end()
  await bus.flush()
  await bus.shutdown()
  const sends = exporter
    .getFinishedSpans()
    .filter((s) => s.name.startsWith('send '))
    .map((s) => ({
      name: s.name,
      kind: s.kind,
      count: s.attributes['messaging.batch.message_count'],
      links: s.links.map((l) => l.context.spanId),
    }))
  const { traceId, spanId } = checkout.spanContext()
  process.stdout.write(JSON.stringify({ traceId, spanId, sends }) + '\n')
}

main().catch((e) => {
  process.stderr.write(`${e.stack}\n`)
  process.exit(1)
})
