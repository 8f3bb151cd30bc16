'use strict'
// The store the command works on, from `--url` (or RINGBUS_URL) and the credential
// options. Every secret found (a password or token in the URL, the environment or a
// file) is returned in `secrets`, so that output can never show one.

const fs = require('node:fs')
const { CliError } = require('./errors')

const SHAPE = /^(nats|tls|redis|rediss):\/\/(?:([^@/?#]*)@)?([^/?#]*)(\/[^?#]*)?(?:\?([^#]*))?$/

/** `host[:port]` list → `[host, port]` pairs; IPv6 in brackets. */
function hosts(text, defaultPort) {
  if (!text) throw new CliError('ERR_INVALID_CONFIG', 'the --url has no host; e.g. nats://127.0.0.1:4222/events or redis://127.0.0.1:6379?prefix=ringbus')
  return text.split(',').map((h) => {
    const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+)(?::(\d{1,5}))?$/.exec(h)
    const port = m && (m[2] === undefined ? defaultPort : Number(m[2]))
    if (!m || port < 1 || port > 65535) {
      throw new CliError('ERR_INVALID_CONFIG', `the --url host ${JSON.stringify(h)} is not host or host:port (port 1-65535)`)
    }
    return `${m[1]}:${port}`
  })
}

function readSecretFile(path, what) {
  try {
    // A trailing newline is the editor's, not the secret's.
    return fs.readFileSync(path, 'utf8').replace(/\r?\n$/, '')
  } catch (e) {
    throw new CliError('ERR_INVALID_CONFIG', `cannot read ${what} ${JSON.stringify(path)} (${e.code ?? 'unreadable'}); check the path and its permissions`)
  }
}

function decode(part, what) {
  try {
    return decodeURIComponent(part)
  } catch {
    throw new CliError('ERR_INVALID_CONFIG', `the --url ${what} is not valid percent-encoding`)
  }
}

/**
 * The secrets in `url` (its password or token, raw and decoded) and in the environment,
 * found without parsing the rest of the URL: also for errors about a URL that does not parse.
 */
function secretsIn(url, env = process.env) {
  const out = []
  const m = url && /^[a-z]+:\/\/([^@/?#]*)@/i.exec(url.trim())
  if (m && m[1]) {
    // user:password, or a token alone; the user name is not a secret.
    const at = m[1].indexOf(':')
    const raw = at >= 0 ? m[1].slice(at + 1) : m[1]
    out.push(raw)
    try {
      out.push(decodeURIComponent(raw))
    } catch {}
  }
  for (const v of [env.RINGBUS_PASSWORD, env.RINGBUS_TOKEN]) if (v) out.push(v)
  return out.filter(Boolean)
}

/**
 * Adapter options for `EventBus.create`, a description safe to print, and the secrets.
 * `opts`: the command's options (url, passwordFile, tokenFile, credsFile, tlsCa, tlsCert,
 * tlsKey); `env`: the environment (RINGBUS_URL, RINGBUS_USER, RINGBUS_PASSWORD, RINGBUS_TOKEN).
 */
function resolveStore(opts, env = process.env) {
  const url = opts.url ?? env.RINGBUS_URL
  if (!url) {
    throw new CliError('ERR_INVALID_CONFIG', 'no store given: pass --url nats://host:4222/<stream> or redis://host:6379?prefix=<keyPrefix>, or set RINGBUS_URL')
  }
  const m = SHAPE.exec(url.trim())
  if (!m) {
    throw new CliError('ERR_INVALID_CONFIG', 'the --url must look like nats://host:4222/<stream>, tls://host:4222/<stream>, redis://host:6379?prefix=<keyPrefix> or rediss://…; it was not understood (the URL is not shown: it may hold a password)')
  }
  const [, scheme, userinfo, hostText, path = '', query = ''] = m
  const secrets = secretsIn(url, env)
  let user, password, token
  if (userinfo !== undefined && userinfo !== '') {
    const at = userinfo.indexOf(':')
    if (at >= 0) {
      user = decode(userinfo.slice(0, at), 'user')
      password = decode(userinfo.slice(at + 1), 'password')
    } else if (scheme === 'nats' || scheme === 'tls') {
      token = decode(userinfo, 'token')
    } else {
      user = decode(userinfo, 'user')
    }
  }
  user = env.RINGBUS_USER || user
  if (env.RINGBUS_PASSWORD) password = env.RINGBUS_PASSWORD
  if (env.RINGBUS_TOKEN) token = env.RINGBUS_TOKEN
  if (opts.passwordFile) secrets.push((password = readSecretFile(opts.passwordFile, '--password-file')))
  if (opts.tokenFile) secrets.push((token = readSecretFile(opts.tokenFile, '--token-file')))

  const params = new URLSearchParams(query)
  const tls = opts.tlsCa || opts.tlsCert || opts.tlsKey ? { caFile: opts.tlsCa, certFile: opts.tlsCert, keyFile: opts.tlsKey } : undefined
  const shown = userinfo ? '***@' : ''
  if (scheme === 'nats' || scheme === 'tls') {
    const stream = decode(path.replace(/^\//, ''), 'stream')
    if (!/^[A-Za-z0-9_-]{1,255}$/.test(stream)) {
      throw new CliError('ERR_INVALID_CONFIG', 'the --url must name the stream as its path: nats://host:4222/<stream> (letters, digits, _ and -)')
    }
    for (const key of params.keys()) {
      throw new CliError('ERR_INVALID_CONFIG', `the --url parameter ${JSON.stringify(key)} is not known for NATS; credentials go in the URL, RINGBUS_* variables or --*-file options`)
    }
    const servers = hosts(hostText, 4222).map((h) => `${scheme}://${h}`)
    const adapter = { type: 'jetstream', servers, stream, create: false }
    if (user !== undefined) adapter.user = user
    if (password !== undefined) adapter.password = password
    if (token !== undefined) adapter.token = token
    if (opts.credsFile) adapter.credsFile = opts.credsFile
    if (tls) adapter.tls = tls
    return { adapter, secrets, describe: `${scheme}://${shown}${hostText}/${stream}` }
  }
  const nodes = hosts(hostText, 6379)
  const db = path.replace(/^\//, '')
  if (db !== '' && !/^\d+$/.test(db)) {
    throw new CliError('ERR_INVALID_CONFIG', 'the --url path of a Redis URL is the database number (e.g. redis://host:6379/0?prefix=ringbus)')
  }
  for (const key of params.keys()) {
    if (key !== 'prefix' && key !== 'cluster') {
      throw new CliError('ERR_INVALID_CONFIG', `the --url parameter ${JSON.stringify(key)} is not known for Redis: use ?prefix=<keyPrefix> and, for a cluster, ?cluster=true or several hosts`)
    }
  }
  const adapter = { type: 'redis' }
  const base = (h) => `${scheme}://${h}${db ? `/${db}` : ''}`
  if (nodes.length > 1 || params.get('cluster') === 'true') adapter.nodes = nodes.map(base)
  else adapter.url = base(nodes[0])
  if (params.has('prefix')) adapter.keyPrefix = params.get('prefix')
  if (user !== undefined) adapter.username = user
  if (password !== undefined) adapter.password = password
  if (tls || scheme === 'rediss') adapter.tls = tls ?? {}
  const prefix = params.has('prefix') ? `?prefix=${params.get('prefix')}` : ''
  return { adapter, secrets, describe: `${scheme}://${shown}${hostText}${db ? `/${db}` : ''}${prefix}` }
}

module.exports = { resolveStore, secretsIn }
