'use strict'
// Points in time and durations as the commands take them: `earliest`, `latest`, ISO 8601
// text, a duration ago (`15m`, `30s`, `2h`, `1d`, `500ms`), or a cursor from `poll`.

const { CliError } = require('./errors')

const UNITS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/** `30s`, `15m`, `1h30m`, `500ms` → ms; undefined when `text` is not a duration. */
function durationMs(text) {
  if (!/^(\d+(\.\d+)?(ms|s|m|h|d))+$/.test(text)) return undefined
  let total = 0
  for (const [, n, , unit] of text.matchAll(/(\d+(\.\d+)?)(ms|s|m|h|d)/g)) total += Number(n) * UNITS[unit]
  return total
}

function parseDuration(text, option) {
  const ms = durationMs(String(text))
  if (ms === undefined) {
    throw new CliError('ERR_INVALID_CONFIG', `${option} must be a duration such as 500ms, 30s, 15m, 2h or 1d, got ${JSON.stringify(text)}`)
  }
  return ms
}

const ISO = /^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$/

/**
 * Where a read or a reset starts, as the library's `from`/`to` takes it. Cursors pass
 * through (the library checks them: ERR_INVALID_CURSOR).
 */
function parseStart(text, option, now = Date.now()) {
  const t = String(text).trim()
  if (t === 'earliest' || t === 'latest') return t
  const ago = durationMs(t)
  if (ago !== undefined) return { time: new Date(now - ago) }
  if (/^\d{4}-/.test(t)) {
    const ms = ISO.test(t) ? Date.parse(t) : NaN
    if (Number.isNaN(ms)) {
      throw new CliError('ERR_INVALID_CONFIG', `${option} ${JSON.stringify(t)} is not a valid ISO 8601 time (e.g. 2026-12-03T18:00:00Z)`)
    }
    return { time: new Date(ms) }
  }
  if (t === '') throw new CliError('ERR_INVALID_CONFIG', `${option} is empty: give earliest, latest, an ISO time, a duration ago (15m) or a cursor`)
  return t
}

module.exports = { parseStart, parseDuration, durationMs }
