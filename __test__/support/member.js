// A consumer group member process for the group fault tests, started with child_process.fork.
// argv[2]: JSON { options (EventBusOptions), group, member, leaseMs, concurrency }.
// Runs bus.process(group, handler). The handler reports { h: [i, key, deliveries] } and
// resolves only once the report is written to the IPC channel, so nothing it acked goes
// unreported when the process is killed. Reports { stats } every 100 ms; on the message
// 'close' it closes the worker and the bus and reports { closed }.
// With cfg.ownership it reports { own: [event, shard, time] } for each shard it takes
// ('took'), hands over ('handed') or releases on leaving ('released'), from its log.
const { EventBus, setLogger } = require('../../index.js')

const cfg = JSON.parse(process.argv[2])

if (cfg.ownership) {
  const kinds = [[/^took shard/, 'took'], [/^handed shard/, 'handed'], [/^released shard/, 'released']]
  setLogger(
    (r) => {
      const kind = kinds.find(([re]) => re.test(r.message))
      if (kind) process.send({ own: [kind[1], Number(r.fields.shard), Date.now()] })
      else if (r.level === 'warn' || r.level === 'error') process.send({ log: `${r.level} ${r.message}` })
    },
    { level: 'info' },
  )
}

async function main() {
  const bus = await EventBus.create(cfg.options)
  const report = (m) => new Promise((resolve) => process.send(m, () => resolve()))
  const worker = bus.process(
    cfg.group,
    async (ev) => {
      const { i, key } = JSON.parse(ev.raw)
      await report({ h: [i, key, ev.deliveries] })
    },
    { member: cfg.member, leaseMs: cfg.leaseMs, concurrency: cfg.concurrency ?? 8 },
  )
  const timer = setInterval(() => process.send({ stats: worker.stats() }), 100)
  process.on('message', async (m) => {
    if (m !== 'close') return
    clearInterval(timer)
    await worker.close()
    await bus.shutdown()
    await report({ closed: true, stats: worker.stats() })
    process.exit(0)
  })
}

main().catch((e) => {
  process.send({ error: `${e.code ?? ''} ${e.message}` })
  process.exit(1)
})
