'use strict'
const { iso } = require('../output')

/** `ringbus info`: per shard, what the store holds. */
async function info(bus, out) {
  const { shards } = await bus.info()
  if (out.json) {
    for (const s of shards) out.record(s)
    return 0
  }
  out.table(shards, [
    ['SHARD', (s) => s.id],
    ['EVENTS', (s) => s.count],
    ['BYTES', (s) => s.bytes],
    ['OLDEST', (s) => iso(s.firstAt)],
    ['NEWEST', (s) => iso(s.lastAt)],
  ])
  out.line(`${shards.reduce((n, s) => n + s.count, 0)} events on ${shards.length} shards`)
  return 0
}

module.exports = { info }
