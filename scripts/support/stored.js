// What a backend holds, read with an independent client (nats.js or ioredis), never through
// ringbus: used by the outage test and the soak to check that every accepted event is
// stored exactly once. Events carry `{ r: run, i: index }`; the result counts, per index of
// the given run, how many stored records hold it.
'use strict'

/** Counts per index (Uint16Array of `size`), plus records of other runs and unreadable ones. */
function tally(size) {
  return { counts: new Uint16Array(size), records: 0, foreign: 0, unreadable: 0 }
}

function note(t, run, text) {
  t.records += 1
  let ev
  try {
    ev = JSON.parse(text)
  } catch {
    t.unreadable += 1
    return
  }
  if (ev.r !== run || !Number.isInteger(ev.i) || ev.i < 0 || ev.i >= t.counts.length) {
    t.foreign += 1
    return
  }
  if (t.counts[ev.i] < 65535) t.counts[ev.i] += 1
}

/** Every message of a JetStream stream, through an ordered consumer of nats.js. */
async function jetstreamRecords({ servers, stream, run, size }) {
  const { connect } = require('@nats-io/transport-node')
  const { jetstream, jetstreamManager } = require('@nats-io/jetstream')
  const nc = await connect({ servers, maxReconnectAttempts: 5 })
  const t = tally(size)
  try {
    const total = (await (await jetstreamManager(nc)).streams.info(stream)).state.messages
    const consumer = await jetstream(nc).consumers.get(stream)
    while (t.records < total) {
      const batch = await consumer.fetch({ max_messages: 10_000, expires: 2_000 })
      let got = 0
      for await (const m of batch) {
        note(t, run, m.string())
        got += 1
      }
      if (got === 0) throw new Error(`nats.js read ${t.records} of ${total} messages and then nothing more`)
    }
  } finally {
    await nc.close()
  }
  return t
}

/** Every entry of the shard streams `{prefix:0}` … `{prefix:span-1}`, by XRANGE pages. */
async function redisRecords({ url, prefix, span, run, size }) {
  const { Redis } = require('ioredis')
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 5 })
  await client.connect()
  const t = tally(size)
  try {
    for (let s = 0; s < span; s++) {
      let start = '-'
      for (;;) {
        const entries = await client.xrange(`{${prefix}:${s}}`, start, '+', 'COUNT', 10_000)
        for (const [, fields] of entries) {
          const at = fields.indexOf('d')
          if (at < 0 || at % 2 !== 0) t.unreadable += 1
          else note(t, run, fields[at + 1])
        }
        if (entries.length < 10_000) break
        start = `(${entries[entries.length - 1][0]}`
      }
    }
  } finally {
    client.disconnect()
  }
  return t
}

/**
 * Compares what is stored with what was accepted (`accepted[i]` is 1 for an index whose
 * `ingest` returned). Returns the indexes lost, stored twice, and stored though never accepted.
 */
function compare(t, accepted) {
  const out = { lost: 0, duplicated: 0, unexpected: 0, firstLost: -1, firstDuplicated: -1 }
  for (let i = 0; i < accepted.length; i++) {
    const c = t.counts[i]
    if (accepted[i] && c === 0) {
      out.lost += 1
      if (out.firstLost < 0) out.firstLost = i
    } else if (c > 1) {
      out.duplicated += 1
      if (out.firstDuplicated < 0) out.firstDuplicated = i
    } else if (!accepted[i] && c > 0) {
      out.unexpected += 1
    }
  }
  return out
}

module.exports = { jetstreamRecords, redisRecords, compare }
