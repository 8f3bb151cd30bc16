// CommonJS: what `require('ringbus')` gives a service.
const { EventBus, ErrorCode, setLogger } = require('ringbus')

async function main() {
  if (typeof setLogger !== 'function' || ErrorCode.Backpressure === undefined) throw new Error('exports missing')
  const bus = new EventBus({ shards: 2 })
  bus.ingest({ hello: 'cjs' }, { key: 'k' })
  await bus.flush()
  const { events } = await bus.poll({ limit: 10 })
  if (events.length !== 1 || JSON.parse(events[0].raw).hello !== 'cjs') throw new Error(`polled ${JSON.stringify(events)}`)
  await bus.shutdown()
  console.log('cjs: ok')
}
main().catch((e) => {
  console.error(e)
  process.exit(1)
})
