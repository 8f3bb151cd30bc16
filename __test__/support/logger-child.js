// A process for logging.test.ts, started with child_process.fork so its stderr can be read.
// argv[2]: JSON { url, sink (bool), level }. Creates a Redis bus (one shard, one retry),
// reports 'ready'; on 'go' (the parent has stopped the server) ingests one event and
// flushes it (it is dropped). With `sink`, records go to setLogger; then setLogger(null)
// and a second event shows stderr in use again. Reports { records, dropped } and exits.
const { EventBus, setLogger } = require('../../index.js')

const cfg = JSON.parse(process.argv[2])
const records = []

async function main() {
  if (cfg.sink) setLogger((r) => records.push(r), cfg.level ? { level: cfg.level } : undefined)
  const bus = await EventBus.create({
    shards: 1,
    retries: 1,
    adapter: { type: 'redis', url: cfg.url, keyPrefix: 'logchild', commandTimeoutMs: 300 },
  })
  process.send('ready')
  process.on('message', async (m) => {
    if (m !== 'go') return
    bus.ingest({ n: 1 })
    let { dropped } = await bus.flush()
    // Records reach the sink on this thread after they were made: give them a turn.
    await new Promise((r) => setTimeout(r, 100))
    const seen = records.slice()
    if (cfg.sink) {
      setLogger(null)
      bus.ingest({ n: 2 })
      dropped += (await bus.flush()).dropped
    }
    await bus.shutdown()
    process.send({ records: seen, dropped }, () => process.exit(0))
  })
}

main().catch((e) => {
  process.send({ error: `${e.code ?? ''} ${e.message}` })
  process.exit(1)
})
