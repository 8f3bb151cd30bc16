// A producer or a process() worker for the `ringbus` command tests, started with
// child_process.fork. argv[2]: JSON { mode, options (EventBusOptions), ... }.
// - produce: ingests `{ i, type, ...extra }` for i in [from, to) (type 'refund' for every
//   third i, else 'order'), flushes and reports { done, dropped }.
// - work: bus.process(group) whose handler throws for `poison` events while the file
//   `flag` exists, and reports { h: [id, i, deliveries] } before resolving (so nothing
//   acked goes unreported); on the message 'close' it closes and reports { closed }.
const fs = require('node:fs')
const { EventBus } = require('../../index.js')

const cfg = JSON.parse(process.argv[2])
const report = (m) => new Promise((resolve) => process.send(m, () => resolve()))

async function produce() {
  const bus = await EventBus.create(cfg.options)
  for (let i = cfg.from; i < cfg.to; i++) {
    bus.ingest({ i, type: i % 3 === 0 ? 'refund' : 'order', ...(cfg.extraAll ?? {}), ...(cfg.regions ? { region: cfg.regions[i % cfg.regions.length] } : {}) }, { key: `k${i % 11}` })
  }
  const { dropped } = await bus.flush()
  await bus.shutdown()
  await report({ done: true, dropped })
  process.exit(0)
}

async function work() {
  const bus = await EventBus.create(cfg.options)
  const worker = bus.process(
    cfg.group,
    async (ev) => {
      const body = JSON.parse(ev.raw)
      if (body.poison && fs.existsSync(cfg.flag)) throw new Error(`poison ${body.i}`)
      await report({ h: [ev.id, body.i, ev.deliveries] })
    },
    { member: cfg.member, leaseMs: 3000, maxDeliveries: 2, ackWaitMs: 2000, backoffMs: 10 },
  )
  process.on('message', async (m) => {
    if (m !== 'close') return
    await worker.close()
    await bus.shutdown()
    await report({ closed: true })
    process.exit(0)
  })
  await report({ started: true })
}

;(cfg.mode === 'produce' ? produce() : work()).catch((e) => {
  process.send({ error: `${e.code ?? ''} ${e.message}` })
  process.exit(1)
})
