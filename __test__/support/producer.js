// A producer process for the shared-bus tests, started with child_process.fork.
// argv[2]: JSON { name, options (EventBusOptions), total, keys, steps: [{ at, scale }] }.
// Ingests `{ p: name, i, key }` keyed `${name}-k${i % keys}`; at event `at` it starts
// scaleUp/scaleDown (by `scale`) and keeps ingesting while the change runs. Messages to
// the parent: { scaled: ±shards, at } after each change, { done, accepted, stats } at the end.
// With `hold`, it flushes, reports { flushed } and waits to be killed.
const { EventBus } = require('../../index.js')

const cfg = JSON.parse(process.argv[2])
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

async function main() {
  const bus = await EventBus.create(cfg.options)
  const changes = []
  let accepted = 0
  for (let i = 0; i < cfg.total; i++) {
    for (const step of cfg.steps ?? []) {
      if (step.at === i) {
        const change = step.scale > 0 ? bus.scaleUp(step.scale) : bus.scaleDown(-step.scale)
        // The change's own size: by the time it resolves, a later one may have started.
        changes.push(change.then((ids) => process.send({ scaled: step.scale > 0 ? ids.length : -ids.length, at: i })))
        if (step.wait) await change
      }
    }
    const key = `${cfg.name}-k${i % cfg.keys}`
    try {
      bus.ingest({ p: cfg.name, i, key }, { key })
      accepted++
    } catch (e) {
      if (e.code !== 'ERR_BACKPRESSURE') throw e
      await sleep(5)
      i--
      continue
    }
    // Yield now and then, so scaling tasks and timers run mid-stream.
    if (i % 500 === 0) await sleep(1)
  }
  await Promise.all(changes)
  const flushed = await bus.flush()
  if (cfg.hold) {
    process.send({ flushed: true, accepted, dropped: flushed.dropped, shards: bus.numShards })
    setInterval(() => {}, 60_000) // alive until SIGKILL
    return
  }
  const stats = await bus.shutdown()
  process.send({ done: true, accepted, stats })
}

main().catch((e) => {
  process.send({ error: `${e.code ?? ''} ${e.message}` })
  process.exit(1)
})
