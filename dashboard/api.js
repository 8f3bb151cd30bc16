'use strict'
// The dashboard's JSON API: the bus's inspection methods (DESIGN.md §9), shaped for the
// page. Nothing here joins a group or holds a lease; every write goes through the same
// methods as `ringbus dlq` and `ringbus group reset`.

// Overview samples for the rate charts: at most one a second, for the last 10 minutes.
const SAMPLE_EVERY_MS = 1000
const HISTORY_MS = 10 * 60 * 1000
// Events looked at when finding one by id, or letters by their reason.
const SCAN_LIMIT = 100_000
const MAX_PAGE = 500

class ApiError extends Error {
  constructor(status, code, message) {
    super(message)
    this.status = status
    this.code = code
  }
}

/** `o` without its undefined keys: the bus refuses a key given as undefined. */
function defined(o) {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined))
}

const bad = (message) => new ApiError(400, 'ERR_INVALID_CONFIG', message)

function jsonParam(q, name) {
  const text = q.get(name)
  if (text === null || text.trim() === '') return undefined
  try {
    return JSON.parse(text)
  } catch (e) {
    throw bad(`${name} must be JSON, e.g. {"type":"order"}: ${e.message}`)
  }
}

function limitParam(q, fallback) {
  const text = q.get('limit')
  if (text === null || text === '') return fallback
  const n = Number(text)
  if (!Number.isInteger(n) || n < 1 || n > MAX_PAGE) throw bad(`limit must be a whole number from 1 to ${MAX_PAGE}`)
  return n
}

function required(value, name) {
  if (typeof value !== 'string' || value === '') throw bad(`${name} is required`)
  return value
}

/** The trace id of a W3C `traceparent` header, when it has one. */
function traceId(headers) {
  const m = headers && /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/.exec(headers.traceparent ?? '')
  return m ? m[1] : undefined
}

/** An event as the page shows it: JSON parsed when it is JSON, else the bytes in base64. */
function shown(ev) {
  const out = {
    id: ev.id,
    shardId: ev.shardId,
    seq: ev.seq,
    timestamp: ev.timestamp,
    key: ev.key,
    messageId: ev.messageId,
    headers: ev.headers,
    traceId: traceId(ev.headers),
  }
  if (ev.bytes) out.bytes = ev.bytes.toString('base64')
  else {
    try {
      out.json = JSON.parse(ev.raw)
    } catch {
      out.raw = ev.raw
    }
  }
  for (const k of ['deliveries', 'reason', 'deadLetteredAt', 'letterId']) if (ev[k] !== undefined) out[k] = ev[k]
  return out
}

class Api {
  constructor(bus, thresholds, title) {
    this.bus = bus
    this.thresholds = thresholds
    this.title = title
    this.samples = []
  }

  async get(route, q) {
    switch (route) {
      case 'overview':
        return this.overview()
      case 'group':
        return this.group(required(q.get('name'), 'name'))
      case 'messages':
        return this.messages(q)
      case 'letters':
        return this.letters(q)
      default:
        throw new ApiError(404, 'ERR_NOT_FOUND', `no API at ${route}`)
    }
  }

  async post(route, body) {
    if (body === null || typeof body !== 'object' || Array.isArray(body)) throw bad('the body must be a JSON object')
    const group = required(body.group, 'group')
    const dryRun = body.dryRun === true
    switch (route) {
      case 'group/reset':
        return this.bus.resetGroup(group, { to: this.resetTarget(body.to), dryRun })
      case 'letters/redeliver':
      case 'letters/purge':
        return this.onLetters(route === 'letters/purge' ? 'purge' : 'redeliver', group, body, dryRun)
      default:
        throw new ApiError(404, 'ERR_NOT_FOUND', `no API at ${route}`)
    }
  }

  resetTarget(to) {
    if (to === 'earliest' || to === 'latest') return to
    if (to && typeof to === 'object' && typeof to.time === 'string') {
      const t = Date.parse(to.time)
      if (Number.isNaN(t)) throw bad(`to.time ${JSON.stringify(to.time)} is not a date`)
      return { time: t }
    }
    throw bad("to must be 'earliest', 'latest' or { time: ISO date }")
  }

  async overview() {
    const [info, groups] = await Promise.all([this.bus.info(), this.bus.groups()])
    const stored = info.shards.reduce((n, s) => n + s.count, 0)
    const now = Date.now()
    const last = this.samples.at(-1)
    if (!last || now - last.t >= SAMPLE_EVERY_MS) {
      const consumed = {}
      for (const g of groups) consumed[g.group] = Math.max(0, stored - g.lag)
      this.samples.push({ t: now, stored, consumed })
      while (this.samples.length > 0 && now - this.samples[0].t > HISTORY_MS) this.samples.shift()
    }
    const { lag, lagAgeMs } = this.thresholds
    return {
      title: this.title,
      now,
      thresholds: this.thresholds,
      shards: info.shards,
      stored,
      groups: groups.map((g) => ({
        ...g,
        noMembers: g.members === 0,
        alert: g.lag > lag || (g.lagAgeMs ?? 0) > lagAgeMs || g.deadLetters > 0,
      })),
      history: this.samples,
    }
  }

  async group(name) {
    const g = await this.bus.group(name)
    // A reset is refused while any member is live or holds a lease: the form says so.
    const resettable = g.members.length === 0 && g.shards.every((s) => s.owner === undefined)
    return { ...g, resettable }
  }

  async messages(q) {
    const limit = limitParam(q, 50)
    const filter = jsonParam(q, 'filter')
    const id = q.get('id')
    if (id) return this.findById(id)
    const req = { limit, filter }
    const cursor = q.get('cursor')
    const from = q.get('from') ?? 'earliest'
    if (cursor) req.cursor = cursor
    else if (from === 'end') {
      // The end: the last minute of the stream, by its newest event.
      const info = await this.bus.info()
      const newest = Math.max(0, ...info.shards.map((s) => s.lastAt ?? 0))
      req.from = newest > 0 ? { time: newest - 60_000 } : 'latest'
    } else if (from !== 'earliest') {
      const t = Date.parse(from)
      if (Number.isNaN(t)) throw bad(`from must be 'earliest', 'end' or a date, got ${JSON.stringify(from)}`)
      req.from = { time: t }
    }
    const page = await this.bus.poll(defined(req))
    return { events: page.events.map(shown), cursor: page.cursor, hasMore: page.hasMore }
  }

  async findById(id) {
    let cursor
    for (let seen = 0; seen < SCAN_LIMIT; ) {
      const page = await this.bus.poll(defined({ limit: 1000, cursor }))
      const hit = page.events.find((e) => e.id === id || e.messageId === id)
      if (hit) return { events: [shown(hit)], cursor: page.cursor, hasMore: false }
      seen += page.events.length
      cursor = page.cursor
      if (!page.hasMore) break
    }
    return { events: [], hasMore: false, note: `no event with id ${id} in the first ${SCAN_LIMIT} events` }
  }

  async letters(q) {
    const group = required(q.get('group'), 'group')
    const limit = limitParam(q, 50)
    const filter = jsonParam(q, 'filter')
    const reason = (q.get('reason') ?? '').toLowerCase()
    const cursor = q.get('cursor') || undefined
    if (!reason) {
      const page = await this.bus.deadLetters(group, defined({ limit, cursor, filter }))
      return { events: page.events.map(shown), cursor: page.cursor, hasMore: page.hasMore }
    }
    // By reason: pages are read until `limit` letters match (the store cannot filter on it).
    const r = await this.scanLetters(group, filter, reason, cursor, limit)
    return { events: r.found.map(shown), cursor: r.cursor, hasMore: r.more }
  }

  /**
   * Letters of `group` matching `filter` whose reason contains `reason`, read from
   * `cursor` until `want` are found or SCAN_LIMIT letters were looked at.
   */
  async scanLetters(group, filter, reason, cursor, want) {
    const found = []
    let next = cursor
    let more = true
    for (let seen = 0; more && found.length < want && seen < SCAN_LIMIT; ) {
      const page = await this.bus.deadLetters(group, defined({ limit: 1000, cursor: next, filter }))
      for (const l of page.events) if (l.reason.toLowerCase().includes(reason) && found.length < want) found.push(l)
      seen += page.events.length
      next = page.cursor
      more = page.hasMore
    }
    return { found, cursor: next, more }
  }

  async onLetters(action, group, body, dryRun) {
    const filter = body.filter === undefined || body.filter === null ? undefined : body.filter
    if (filter !== undefined && (typeof filter !== 'object' || Array.isArray(filter))) throw bad('filter must be a JSON object')
    let ids
    if (Array.isArray(body.letterIds)) {
      if (body.letterIds.length === 0 || !body.letterIds.every((x) => typeof x === 'string')) throw bad('letterIds must be a non-empty list of strings')
      ids = body.letterIds
    } else if (typeof body.reason === 'string' && body.reason !== '') {
      ids = (await this.scanLetters(group, filter, body.reason.toLowerCase(), undefined, Infinity)).found.map((l) => l.letterId)
      if (ids.length === 0) return { count: 0, dryRun }
    } else if (body.all !== true) {
      throw bad('give letterIds, or all: true (with an optional filter and reason)')
    }
    const bulk = defined({ filter, dryRun })
    if (action === 'purge') {
      const count = await this.bus.purgeDeadLetters(group, ids ? { letterIds: ids, dryRun } : bulk)
      return { count, dryRun }
    }
    if (ids) {
      // A dry run counts the letters that exist (a purge's dry run removes nothing).
      if (dryRun) return { count: await this.bus.purgeDeadLetters(group, { letterIds: ids, dryRun: true }), dryRun }
      return { count: await this.bus.redeliver(group, ids), dryRun }
    }
    return { count: await this.bus.redeliver(group, bulk), dryRun }
  }
}

module.exports = { Api, ApiError }
