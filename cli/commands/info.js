'use strict'
const { iso } = require('../output')

/** `ringbus info`: per shard, what the store holds. */
async function info(bus, out) {
  const result = await bus.info()
  const { shards, producers } = result
  if (out.json) {
    out.record(result)
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
  if (producers && producers.length > 0) {
    out.line()
    out.table(producers, [
      ['PRODUCER', (p) => `${p.nonce}-${p.epoch}`],
      ['LAST BEGAN A SHARD', (p) => iso(p.seenAt)],
    ])
  }
  return 0
}

module.exports = { info }
