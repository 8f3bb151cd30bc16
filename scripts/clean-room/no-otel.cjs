// Run by check-package.sh in the clean room, where @opentelemetry/api is not installed:
// telemetry options are accepted and do nothing, metrics() works, the dashboard serves its
// page and assets from the installed package, and nothing is printed (the script itself
// prints only on failure).
const assert = require('node:assert')
const http = require('node:http')
const { EventBus, createDashboard } = require('ringbus')

async function main() {
  assert.throws(() => require.resolve('@opentelemetry/api'), /Cannot find module/)
  const bus = new EventBus({ shards: 2, telemetry: { propagate: true, settleSpans: true } })
  const own = Object.getOwnPropertyNames(bus).filter((n) => ['ingest', 'process', 'poll'].includes(n))
  assert.deepStrictEqual(own, [], 'without @opentelemetry/api the bus keeps its native methods')
  for (let i = 0; i < 100; i++) bus.ingest({ i }, { key: `k${i % 3}` })
  await bus.flush()
  let handled = 0
  const worker = bus.process('clean', async () => {
    handled += 1
  })
  for (let t = 0; handled < 100 && t < 500; t++) await new Promise((r) => setTimeout(r, 20))
  assert.strictEqual(handled, 100)
  await worker.close()
  const page = await bus.poll({ limit: 10 })
  assert.strictEqual(page.events[0].headers, undefined, 'no trace context without the API')
  const text = await bus.metrics()
  assert.match(text, /messaging_client_consumed_messages_total\{[^}]*messaging_consumer_group_name="clean"[^}]*\} 100\n/)
  const server = http.createServer(createDashboard({ bus })).listen(0, '127.0.0.1')
  await new Promise((r) => server.once('listening', r))
  const base = `http://127.0.0.1:${server.address().port}/`
  for (const asset of ['', 'assets/app.js', 'assets/uplot.js', 'assets/uplot.css', 'api/overview']) {
    const res = await fetch(base + asset)
    assert.strictEqual(res.status, 200, `GET /${asset}`)
  }
  server.close()
  await bus.shutdown()
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
