// The quick-start demo: 1,000,000 JSON events through the default memory adapter,
// read back with a filtered poll. Every number printed is measured in this run.
'use strict'

const { EventBus } = require('..')

const N = 1_000_000
const fmt = (n) => Math.round(n).toLocaleString('en-US')

async function main() {
  const bus = new EventBus() // memory adapter, 4 shards
  console.log(`ringbus demo: ${fmt(N)} JSON events, memory adapter, ${bus.numShards} shards`)

  let waits = 0
  let expected = 0
  const t0 = performance.now()
  for (let i = 0; i < N; i++) {
    const event = { id: i, type: i % 4 === 0 ? 'order' : 'view', amount: i % 1000, user: `u${i % 5000}` }
    try {
      bus.ingest(event, { key: event.user })
    } catch (e) {
      if (e.code !== 'ERR_BACKPRESSURE') throw e
      // Rings full: let the dispatchers catch up, then retry this event.
      waits++
      await bus.flush()
      i--
      continue
    }
    if (event.type === 'order' && event.amount >= 500) expected++
  }
  const t1 = performance.now()
  const flushed = await bus.flush()
  const t2 = performance.now()
  console.log(`ingest: ${fmt(N)} events in ${fmt(t1 - t0)} ms (${fmt(N / ((t1 - t0) / 1000))} ev/s), backpressure waits: ${waits}`)
  console.log(`flush:  ${fmt(t2 - t1)} ms; ingest-to-stored ${fmt(N / ((t2 - t0) / 1000))} ev/s; last flush covered ${fmt(flushed.pending)} events, dropped ${flushed.dropped}`)

  const filter = { type: 'order', amount: { $gte: 500 } }
  let matched = 0
  let pages = 0
  let cursor
  const t3 = performance.now()
  for (;;) {
    const page = await bus.poll({ limit: 10_000, filter, cursor })
    matched += page.events.length
    pages++
    cursor = page.cursor
    if (!page.hasMore) break
  }
  const t4 = performance.now()
  console.log(
    `poll:   filter ${JSON.stringify(filter)} matched ${fmt(matched)} events (expected ${fmt(expected)}) ` +
      `in ${pages} pages, ${fmt(t4 - t3)} ms (${fmt(N / ((t4 - t3) / 1000))} events scanned/s)`,
  )

  const stats = await bus.shutdown()
  console.log(
    `stats:  ingested ${fmt(stats.ingested)}, stored ${fmt(stats.stored)}, dropped ${fmt(stats.dropped)}, pending ${fmt(stats.pending)}`,
  )
  if (matched !== expected || stats.stored !== N) {
    console.error('demo: counts do not match')
    process.exit(1)
  }
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
