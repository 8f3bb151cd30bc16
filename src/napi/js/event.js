(function () {
  'use strict'
  const parse = JSON.parse
  const define = Object.defineProperty
  const PARSED = Symbol('ringbus.json')
  const own = Object.prototype.hasOwnProperty
  function coded(message) {
    const err = new Error(message)
    err.code = 'ERR_INVALID_EVENT'
    return err
  }
  function json() {
    if (this === null || typeof this !== 'object') throw coded('json() was called without its event; call it as ev.json()')
    if (own.call(this, PARSED)) return this[PARSED]
    let value
    try {
      value = parse(this.raw)
    } catch (e) {
      throw coded(`ev.json(): the payload is not JSON (${e.message}); events ingested as a Buffer or Uint8Array are stored byte-exact: read ev.bytes`)
    }
    try {
      define(this, PARSED, { value })
    } catch {
      // A frozen event: parsed again on the next call.
    }
    return value
  }
  // Positional for speed; napi/convert/mod.rs names each position in its `arg` module, in this order.
  function BusEvent(id, shardId, seq, timestamp, key, raw, bytes, messageId, deliveries, reason, deadLetteredAt, letterId, headers) {
    this.id = id
    this.shardId = shardId
    this.seq = seq
    this.timestamp = timestamp
    if (key !== undefined) this.key = key
    this.raw = raw
    if (bytes !== undefined) this.bytes = bytes
    this.messageId = messageId
    if (deliveries !== undefined) this.deliveries = deliveries
    if (reason !== undefined) {
      this.reason = reason
      this.deadLetteredAt = deadLetteredAt
      this.letterId = letterId
    }
    if (headers !== undefined) this.headers = headers
  }
  define(BusEvent.prototype, 'json', { value: json, writable: true, configurable: true })
  return BusEvent
})()
