// For check-package.sh: a group with 5 of 10 events acked, made with the installed package,
// for the installed `ringbus` command to report.
const { EventBus } = require('ringbus')

async function main() {
  const bus = await EventBus.create({ shards: 2, adapter: { type: 'redis', url: process.env.RINGBUS_REDIS_URL, keyPrefix: process.env.RINGBUS_CLEAN_PREFIX } })
  for (let i = 0; i < 10; i++) bus.ingest({ i })
  await bus.flush()
  const c = await bus.consumer({ group: 'cleanroom' })
  const it = c[Symbol.asyncIterator]()
  for (let k = 0; k < 5; k++) c.ack((await it.next()).value)
  await c.close()
  await bus.shutdown()
}

main().catch((e) => {
  console.error(e.code, e.message)
  process.exit(1)
})
