'use strict'
// Events and dead letters as output records: the library's field names, the payload
// parsed (`json`) or, for binary events, as base64 (`bytes`).

function eventRecord(ev) {
  const r = { id: ev.id, shardId: ev.shardId, seq: ev.seq, timestamp: ev.timestamp, messageId: ev.messageId }
  if (ev.key !== undefined) r.key = ev.key
  if (ev.headers !== undefined) r.headers = ev.headers
  if (ev.bytes !== undefined) {
    r.bytes = Buffer.from(ev.bytes).toString('base64')
  } else {
    try {
      r.json = JSON.parse(ev.raw)
    } catch {
      r.raw = ev.raw
    }
  }
  return r
}

function letterRecord(l) {
  return { letterId: l.letterId, reason: l.reason, deliveries: l.deliveries, deadLetteredAt: l.deadLetteredAt, ...eventRecord(l) }
}

/** A payload cut for one table cell. */
function preview(r, width = 60) {
  const text = r.json !== undefined ? JSON.stringify(r.json) : r.bytes !== undefined ? `<${Buffer.from(r.bytes, 'base64').length} bytes>` : String(r.raw)
  return text.length > width ? `${text.slice(0, width - 1)}…` : text
}

/** `obj` without its undefined values: the library refuses an undefined filter or option. */
function defined(obj) {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined))
}

module.exports = { eventRecord, letterRecord, preview, defined }
