'use strict'
// `ringbus dashboard`: the web dashboard of the store, served until interrupted. It binds
// 127.0.0.1 by default; any other address needs --user and a password, since the page
// can redrive and purge dead letters.

const fs = require('node:fs')
const http = require('node:http')
const { CliError } = require('../errors')

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost'])

function password(o, env) {
  if (o.userPasswordFile) {
    try {
      return fs.readFileSync(o.userPasswordFile, 'utf8').replace(/\r?\n$/, '')
    } catch (e) {
      throw new CliError('ERR_INVALID_CONFIG', `cannot read --user-password-file ${JSON.stringify(o.userPasswordFile)} (${e.code ?? 'unreadable'}); check the path and its permissions`)
    }
  }
  return env.RINGBUS_DASHBOARD_PASSWORD
}

/** The server's settings from the options, checked before anything connects. */
function settings(o, env = process.env) {
  const port = Number(o.port)
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new CliError('ERR_INVALID_CONFIG', `--port must be 0-65535, got ${JSON.stringify(o.port)}`)
  const pass = password(o, env)
  if ((o.user === undefined) !== (pass === undefined || pass === '')) {
    throw new CliError('ERR_INVALID_CONFIG', 'give --user with --user-password-file (or RINGBUS_DASHBOARD_PASSWORD), or neither')
  }
  if (!LOOPBACK.has(o.host) && o.user === undefined) {
    throw new CliError('ERR_INVALID_CONFIG', `--host ${o.host} is reachable from other machines: add --user and --user-password-file, or bind 127.0.0.1`)
  }
  return { port, host: o.host, readOnly: Boolean(o.readOnly), user: o.user, password: pass, secrets: pass ? [pass] : [] }
}

async function dashboard(bus, out, s, title, signal) {
  const { createDashboard } = require('../../dashboard')
  const handler = createDashboard({ bus, readOnly: s.readOnly, user: s.user, password: s.password, title })
  const server = http.createServer(handler)
  await new Promise((resolve, reject) => {
    server.once('error', (e) => reject(new CliError('ERR_INVALID_CONFIG', `cannot listen on ${s.host}:${s.port} (${e.code}); pick another --port or --host`)))
    server.listen(s.port, s.host, resolve)
  })
  const { port } = server.address()
  const host = s.host.includes(':') ? `[${s.host}]` : s.host
  const url = `http://${host}:${port}/`
  if (out.json) out.record({ url, readOnly: s.readOnly })
  else out.line(`ringbus dashboard on ${url}${s.readOnly ? ' (read-only)' : ''}; Ctrl-C stops it`)
  await new Promise((resolve) => (signal.aborted ? resolve() : signal.addEventListener('abort', resolve, { once: true })))
  server.closeAllConnections()
  await new Promise((resolve) => server.close(resolve))
  return 0
}

module.exports = { dashboard, settings }
