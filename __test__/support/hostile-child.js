// A process for hardening-2.test.ts, started with child_process.fork so that what would
// crash it, keep it alive or reach its stderr is observed from outside.
// argv[2]: JSON { mode, ... }. Reports one message { ... } and exits on its own.
//  - 'thenables': process() over 40 memory events whose handler returns hostile thenables
//    for the first deliveries, and a poisoned Object.prototype.raw for one turn; reports
//    the worker's stats once every event is handled, then closes the bus (the process must
//    then exit by itself).
//  - 'secrets': a JetStream bus on a URL with credentials, logging at RINGBUS_LOG (set by
//    the parent) to stderr, or to a setLogger sink with { sink: true }; reports the records.
const { EventBus, setLogger } = require('../../index.js')

const cfg = JSON.parse(process.argv[2])
const send = (m) => new Promise((resolve) => process.send(m, () => resolve()))

async function thenables() {
  const bus = new EventBus({ shards: 2 })
  for (let i = 0; i < 40; i++) bus.ingest({ i }, { key: `k${i % 5}` })
  await bus.flush()
  const seen = new Map()
  let poisoned = true
  // Every event made while this setter exists fails to construct, once.
  Object.defineProperty(Object.prototype, 'raw', {
    configurable: true,
    set() {
      if (poisoned) {
        poisoned = false
        delete Object.prototype.raw
        throw new Error('poisoned raw')
      }
    },
  })
  let handled = 0
  const worker = bus.process(
    'g',
    (ev) => {
      const { i } = JSON.parse(ev.raw)
      const n = (seen.get(i) ?? 0) + 1
      seen.set(i, n)
      if (n === 1 && i % 3 === 0) return { then() { throw new Error('then throws') } }
      if (n === 1 && i % 3 === 1) return { get then() { throw new Error('then getter throws') } }
      handled++
      return undefined
    },
    { backoffMs: 10, maxDeliveries: 5, concurrency: 4 },
  )
  while (handled < 40) await new Promise((r) => setTimeout(r, 20))
  const stats = worker.stats()
  await worker.close()
  await bus.shutdown()
  await send({ stats, handled, distinct: seen.size })
}

async function secrets() {
  const records = []
  if (cfg.sink) setLogger((r) => records.push(r))
  const bus = await EventBus.create({ shards: 1, adapter: { type: 'jetstream', servers: cfg.url, stream: cfg.stream } })
  bus.ingest({ a: 1 })
  await bus.flush()
  await bus.shutdown()
  await new Promise((r) => setTimeout(r, 100))
  await send({ records })
}

const modes = { thenables, secrets }
modes[cfg.mode]().catch(async (e) => {
  await send({ error: String(e && e.stack) })
  process.exit(1)
})
