// A service's Jest test: ingest, poll, subscribe and shut down; Jest must then exit on its
// own (check-package.sh fails on an open-handle warning).
const { EventBus } = require('ringbus')

test('ingest, poll, subscribe, shutdown', async () => {
  const bus = new EventBus({ shards: 2 })
  for (let i = 0; i < 100; i++) bus.ingest({ i }, { key: `k${i % 5}` })
  await bus.flush()
  expect(bus.stats().stored).toBe(100)
  const page = await bus.poll({ limit: 1000 })
  expect(page.events).toHaveLength(100)
  let seen = 0
  for await (const ev of bus.subscribe()) {
    expect(typeof ev.raw).toBe('string')
    if (++seen === 100) break
  }
  expect(seen).toBe(100)
  const stats = await bus.shutdown()
  expect(stats.ingested).toBe(100)
})
