// A steady producer for the outage test, in its own process so its RSS is its own.
// argv[2]: JSON { options (EventBusOptions), run, rate (events/s), size (most events) }.
// Ingests `{ r: run, i, pad }` keyed `k${i % 64}` at `rate`, in 1 ms ticks. The parent says
// { phase: 'down' } when it stops the server, { phase: 'up' } when it is back, and
// { stop: true } to end: the producer then flushes, shuts down and sends one report.
// RSS is sampled every 100 ms; rejections are counted per phase, and each one's message is
// checked to say the ring was full.
const { EventBus, setLogger } = require('../../index.js')

const cfg = JSON.parse(process.argv[2])

// The outage's log records come back in the report instead of going to stderr: write
// retries, disconnects and drops are expected (and counted); anything else is listed.
const logs = { retries: 0, disconnects: 0, drops: 0, other: [] }
setLogger((r) => {
  if (r.message.startsWith('write failed, retrying: ')) logs.retries++
  else if (r.message.startsWith('disconnected from NATS; reconnecting')) logs.disconnects++
  else if (/^dropped \d+ events: /.test(r.message)) logs.drops += Number(r.fields.dropped)
  else if (r.level === 'warn' || r.level === 'error') logs.other.push(`${r.level} ${r.target}: ${r.message}`)
})

async function main() {
  const bus = await EventBus.create(cfg.options)
  const capacity = cfg.options.ringCapacity
  const accepted = new Uint8Array(cfg.size)
  const pad = 'x'.repeat(64)
  let phase = 'before'
  let next = 0
  let stopping = false
  const rejected = { before: 0, down: 0, up: 0 }
  const rss = { before: 0, down: 0, up: 0 }
  let downAt = 0
  let firstRejectMs = -1
  let notFull = ''
  let lastFullAt = 0

  const sample = setInterval(() => {
    const r = process.memoryUsage().rss
    if (r > rss[phase]) rss[phase] = r
  }, 100)
  process.on('message', (m) => {
    if (m.phase) {
      phase = m.phase
      if (phase === 'down') downAt = Date.now()
      process.send({ phaseSeen: phase, at: next })
    }
    if (m.stop) stopping = true
  })

  const start = Date.now()
  while (!stopping && next < cfg.size) {
    const due = Math.min(cfg.size, Math.floor(((Date.now() - start) * cfg.rate) / 1000))
    for (; next < due; next++) {
      try {
        bus.ingest({ r: cfg.run, i: next, pad }, { key: `k${next % 64}` })
        accepted[next] = 1
      } catch (e) {
        if (e.code !== 'ERR_BACKPRESSURE') throw e
        rejected[phase] += 1
        if (phase === 'down' && firstRejectMs < 0) firstRejectMs = Date.now() - downAt
        // "shard N is full (X events, ...; ringCapacity C, ...)": full means X == C.
        const m = /is full \((\d+) events/.exec(e.message)
        if (!m || Number(m[1]) !== capacity) notFull = e.message
        else lastFullAt = Date.now()
      }
    }
    await new Promise((r) => setTimeout(r, 1))
  }
  clearInterval(sample)
  const flushed = await bus.flush()
  const stats = await bus.shutdown()
  let count = 0
  for (let i = 0; i < next; i++) count += accepted[i]
  process.send({
    done: true,
    attempted: next,
    accepted: count,
    acceptedMap: Buffer.from(accepted.buffer, 0, next).toString('base64'),
    rejected,
    rss,
    firstRejectMs,
    notFull,
    lastFullAt,
    flushed,
    stats,
    logs,
  })
}

main().catch((e) => {
  process.send({ error: `${e.code ?? ''} ${e.message}` })
  process.exit(1)
})
