'use strict'
// The dashboard as a plain Node `(req, res)` handler: `http.createServer(handler)`, or
// mounted under a path in Express or Fastify. It serves one page, its assets (all in this
// package: no CDN) and a small JSON API over the bus's inspection methods. Reads are GETs;
// writes are POSTs that need the page's CSRF token and a same-origin request, and are
// refused with 403 in read-only mode or when `authorize` says no.

const crypto = require('node:crypto')
const fs = require('node:fs')
const path = require('node:path')
const { Api, ApiError } = require('./api')

const PAGE = path.join(__dirname, 'page')
const UPLOT = path.dirname(require.resolve('uplot/dist/uPlot.iife.min.js'))
const ASSETS = {
  'app.js': [path.join(PAGE, 'app.js'), 'text/javascript; charset=utf-8'],
  'app.css': [path.join(PAGE, 'app.css'), 'text/css; charset=utf-8'],
  'uplot.js': [path.join(UPLOT, 'uPlot.iife.min.js'), 'text/javascript; charset=utf-8'],
  'uplot.css': [path.join(UPLOT, 'uPlot.min.css'), 'text/css; charset=utf-8'],
}
// Longest JSON body a write takes: a selection of letter ids and a filter.
const MAX_BODY = 256 * 1024
const HEADERS = {
  'Content-Security-Policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Cross-Origin-Resource-Policy': 'same-origin',
}
const WRITES = { 'group/reset': 'reset', 'letters/redeliver': 'redeliver', 'letters/purge': 'purge' }

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}

function same(a, b) {
  const x = Buffer.from(String(a))
  const y = Buffer.from(String(b))
  return x.length === y.length && crypto.timingSafeEqual(x, y)
}

/**
 * `createDashboard({ bus, readOnly, authorize, user, password })` → `(req, res)`.
 * - `bus`: the EventBus whose store the page shows (it never joins a group).
 * - `readOnly`: refuse every write (403) and show no write buttons. Default: false.
 * - `authorize(req, action)`: `action` is 'read', 'reset', 'redeliver' or 'purge'; false
 *   (or a promise of false) refuses with 403. Default: everything allowed.
 * - `user`, `password`: HTTP Basic authentication; a wrong or missing one gets 401.
 *   Default: none (bind to 127.0.0.1, or put the handler behind your own authentication).
 * - `title`: shown in the page's header (e.g. the stream). Default: none.
 * - `thresholds`: `{ lag, lagAgeMs }` past which the overview highlights a group. Default:
 *   `{ lag: 10000, lagAgeMs: 60000 }`.
 */
function createDashboard(options) {
  const o = options ?? {}
  if (!o.bus || typeof o.bus.groups !== 'function') {
    throw Object.assign(new Error('createDashboard({ bus }): bus must be a ringbus EventBus'), { code: 'ERR_INVALID_CONFIG' })
  }
  if ((o.user === undefined) !== (o.password === undefined)) {
    throw Object.assign(new Error('createDashboard: give both user and password, or neither'), { code: 'ERR_INVALID_CONFIG' })
  }
  if (o.authorize !== undefined && typeof o.authorize !== 'function') {
    throw Object.assign(new Error('createDashboard: authorize must be a function (req, action) => boolean'), { code: 'ERR_INVALID_CONFIG' })
  }
  const readOnly = o.readOnly === true
  const csrf = crypto.randomBytes(24).toString('base64url')
  const api = new Api(o.bus, { lag: 10_000, lagAgeMs: 60_000, ...(o.thresholds ?? {}) }, typeof o.title === 'string' ? o.title : '')
  const template = fs.readFileSync(path.join(PAGE, 'index.html'), 'utf8')
  const allowed = async (req, action) => (o.authorize ? (await o.authorize(req, action)) !== false : true)

  function send(res, status, body, type, extra = {}) {
    res.writeHead(status, { ...HEADERS, 'Content-Type': type, 'Cache-Control': 'no-store', ...extra })
    res.end(body)
  }
  const json = (res, status, value) => send(res, status, JSON.stringify(value), 'application/json; charset=utf-8')
  const fail = (res, status, code, message) => json(res, status, { error: { code, message } })

  function authenticated(req) {
    if (o.user === undefined) return true
    const m = /^Basic ([A-Za-z0-9+/=]+)$/.exec(req.headers.authorization ?? '')
    if (!m) return false
    const text = Buffer.from(m[1], 'base64').toString('utf8')
    const at = text.indexOf(':')
    // Both compared, so the time taken does not say which was wrong.
    const userOk = same(text.slice(0, at), o.user)
    const passwordOk = same(text.slice(at + 1), o.password)
    return at >= 0 && userOk && passwordOk
  }

  function sameOrigin(req) {
    const origin = req.headers.origin
    if (origin === undefined) return req.headers['sec-fetch-site'] === undefined || req.headers['sec-fetch-site'] === 'same-origin'
    try {
      return new URL(origin).host === req.headers.host
    } catch {
      return false
    }
  }

  function body(req) {
    return new Promise((resolve, reject) => {
      let size = 0
      const chunks = []
      req.on('data', (c) => {
        size += c.length
        if (size > MAX_BODY) {
          reject(new ApiError(413, 'ERR_INVALID_CONFIG', `the request body is over ${MAX_BODY} bytes`))
          req.destroy()
        } else chunks.push(c)
      })
      req.on('end', () => {
        try {
          resolve(size === 0 ? {} : JSON.parse(Buffer.concat(chunks).toString('utf8')))
        } catch {
          reject(new ApiError(400, 'ERR_INVALID_CONFIG', 'the request body must be JSON'))
        }
      })
      req.on('error', reject)
    })
  }

  async function handle(req, res) {
    if (!authenticated(req)) {
      return send(res, 401, 'authentication required', 'text/plain; charset=utf-8', { 'WWW-Authenticate': 'Basic realm="ringbus", charset="UTF-8"' })
    }
    const url = new URL(req.url ?? '/', 'http://dashboard.invalid')
    const route = url.pathname.replace(/^\/+/, '')
    if (req.method === 'GET' || req.method === 'HEAD') {
      if (route === '' || route === 'index.html') {
        // A mount without the trailing slash would break the page's relative URLs.
        const original = req.originalUrl ?? req.url ?? '/'
        const pathname = original.split('?')[0]
        if (pathname !== '/' && !pathname.endsWith('/') && route === '') {
          return send(res, 308, '', 'text/plain; charset=utf-8', { Location: `${pathname}/` })
        }
        if (!(await allowed(req, 'read'))) return fail(res, 403, 'ERR_FORBIDDEN', 'not allowed to read this dashboard')
        const page = template
          .replace('{{csrf}}', escapeHtml(csrf))
          .replace('{{readOnly}}', readOnly ? 'true' : 'false')
          .replace('{{writes}}', escapeHtml(await writesAllowed(req)))
        return send(res, 200, page, 'text/html; charset=utf-8')
      }
      const asset = /^assets\/([a-z.]+)$/.exec(route)
      if (asset && ASSETS[asset[1]]) {
        const [file, type] = ASSETS[asset[1]]
        return send(res, 200, fs.readFileSync(file), type, { 'Cache-Control': 'max-age=3600' })
      }
      if (route.startsWith('api/')) {
        if (!(await allowed(req, 'read'))) return fail(res, 403, 'ERR_FORBIDDEN', 'not allowed to read this dashboard')
        return json(res, 200, await api.get(route.slice(4), url.searchParams))
      }
      return fail(res, 404, 'ERR_NOT_FOUND', `nothing at ${route}`)
    }
    if (req.method === 'POST' && route.startsWith('api/') && WRITES[route.slice(4)]) {
      const action = WRITES[route.slice(4)]
      if (readOnly) return fail(res, 403, 'ERR_READ_ONLY', 'this dashboard is read-only')
      if (!sameOrigin(req)) return fail(res, 403, 'ERR_FORBIDDEN', 'cross-origin writes are refused')
      if (!same(req.headers['x-ringbus-csrf'] ?? '', csrf)) return fail(res, 403, 'ERR_FORBIDDEN', 'missing or wrong CSRF token; reload the page')
      if (!/^application\/json\b/.test(req.headers['content-type'] ?? '')) return fail(res, 415, 'ERR_INVALID_CONFIG', 'send the body as application/json')
      if (!(await allowed(req, action))) return fail(res, 403, 'ERR_FORBIDDEN', `not allowed to ${action}`)
      return json(res, 200, await api.post(route.slice(4), await body(req)))
    }
    return fail(res, 405, 'ERR_METHOD', `${req.method} is not served at ${route || '/'}`)
  }

  /** Which writes the page may offer: comma-separated actions. */
  async function writesAllowed(req) {
    if (readOnly) return ''
    const out = []
    for (const action of ['reset', 'redeliver', 'purge']) if (await allowed(req, action)) out.push(action)
    return out.join(',')
  }

  return function dashboard(req, res) {
    handle(req, res).catch((e) => {
      if (res.headersSent) return res.end()
      if (e instanceof ApiError) return fail(res, e.status, e.code, e.message)
      // Errors from the bus carry a code and a message without secrets (DESIGN.md).
      const status = e && /^ERR_(INVALID_|NOT_FOUND)/.test(e.code) ? 400 : 502
      fail(res, status, (e && e.code) || 'ERR_INTERNAL', (e && e.message) || String(e))
    })
  }
}

module.exports = { createDashboard }
