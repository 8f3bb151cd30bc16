// The servers the test suites share. `npm test` (scripts/test.js) and Jest's global setup
// use this: when RINGBUS_NATS_URL / RINGBUS_REDIS_URL are set they are used as given; else
// a server already answering on 127.0.0.1:4222 / :6379 is used; else a private one is
// started on a free loopback port with a temporary data directory, and stopped afterwards.
// RINGBUS_TEST_SERVERS=private starts private ones even when the shared ports answer.
// Tests that kill or restart a server start their own as well, so the binaries are needed
// either way: without them this fails at once, saying which Debian packages to install.
'use strict'

const { spawn } = require('node:child_process')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')

const DEFAULTS = { natsPort: 4222, redisPort: 6379 }

/** The binaries the suites run, each with the Debian package that has it. */
function binaries(env = process.env) {
  return [
    { bin: env.NATS_SERVER_BIN ?? '/usr/sbin/nats-server', pkg: 'nats-server', env: 'NATS_SERVER_BIN' },
    { bin: env.REDIS_SERVER_BIN ?? '/usr/bin/redis-server', pkg: 'redis-server', env: 'REDIS_SERVER_BIN' },
    { bin: 'redis-cli', pkg: 'redis-tools' },
  ]
}

function onPath(bin, env) {
  if (bin.includes('/')) return isExecutable(bin)
  return (env.PATH ?? '').split(path.delimiter).some((d) => d && isExecutable(path.join(d, bin)))
}

function isExecutable(file) {
  try {
    fs.accessSync(file, fs.constants.X_OK)
    return fs.statSync(file).isFile()
  } catch {
    return false
  }
}

/** Throws one error naming every missing binary and how to get it. */
function checkBinaries(env = process.env) {
  const missing = binaries(env).filter((b) => !onPath(b.bin, env))
  if (missing.length === 0) return
  const names = missing.map((b) => b.bin).join(', ')
  const pkgs = [...new Set(missing.map((b) => b.pkg))].join(' ')
  const vars = missing.filter((b) => b.env).map((b) => b.env)
  const err = new Error(
    `the tests need ${names}, which ${missing.length === 1 ? 'is' : 'are'} not installed: ` +
      `on Debian or Ubuntu run \`sudo apt-get install ${pkgs}\`` +
      (vars.length ? `, or point ${vars.join(' / ')} at the binaries` : '') +
      '. The suites start private servers of their own to kill and restart them.',
  )
  err.code = 'ERR_TEST_SERVERS'
  throw err
}

function answers(port, host = '127.0.0.1', timeoutMs = 500) {
  return new Promise((resolve) => {
    const s = net.connect(port, host)
    const done = (ok) => {
      s.destroy()
      resolve(ok)
    }
    s.setTimeout(timeoutMs, () => done(false))
    s.once('connect', () => done(true))
    s.once('error', () => done(false))
  })
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

/** Starts `bin args` and resolves once it accepts connections on `port`. */
async function startServer(name, bin, args, port, dir) {
  const logFile = path.join(dir, 'server.log')
  const log = fs.openSync(logFile, 'a')
  const proc = spawn(bin, args, { stdio: ['ignore', log, log] })
  fs.closeSync(log)
  let exit = null
  proc.once('exit', (code, signal) => (exit = { code, signal }))
  proc.once('error', (e) => (exit = { error: e }))
  const deadline = Date.now() + 15_000
  while (!(await answers(port))) {
    if (exit || Date.now() > deadline) {
      proc.kill('SIGKILL')
      const tail = fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8').split('\n').slice(-10).join('\n') : ''
      const why = exit ? (exit.error ? exit.error.message : `it exited (${exit.signal ?? exit.code})`) : 'it did not listen within 15 s'
      throw Object.assign(new Error(`could not start a private ${name} on 127.0.0.1:${port}: ${why}\n${tail}`), { code: 'ERR_TEST_SERVERS' })
    }
    await new Promise((r) => setTimeout(r, 50))
  }
  return { name, port, dir, proc }
}

/**
 * Makes sure a JetStream and a Redis server answer. Returns the environment that points the
 * suites (cargo and Jest) at them, what was started, and `stop()`, which ends the private
 * servers and removes their data. `opts` (natsPort, redisPort) is for this module's test.
 */
async function ensureServers(opts = {}, env = process.env) {
  const { natsPort, redisPort } = { ...DEFAULTS, ...opts }
  checkBinaries(env)
  const forcePrivate = env.RINGBUS_TEST_SERVERS === 'private'
  const [nats, redis] = binaries(env)
  const started = []
  const out = {}
  const stop = async () => {
    await Promise.all(
      started.splice(0).map(
        (s) =>
          new Promise((resolve) => {
            const removeData = () => {
              fs.rmSync(s.dir, { recursive: true, force: true })
              resolve()
            }
            if (s.proc.exitCode !== null || s.proc.signalCode !== null) return removeData()
            s.proc.once('exit', removeData)
            s.proc.kill('SIGTERM')
            // A server that ignores SIGTERM for 5 s is killed.
            setTimeout(() => s.proc.kill('SIGKILL'), 5_000).unref()
          }),
      ),
    )
  }
  try {
    if (env.RINGBUS_NATS_URL) out.RINGBUS_NATS_URL = env.RINGBUS_NATS_URL
    else if (!forcePrivate && (await answers(natsPort))) out.RINGBUS_NATS_URL = `nats://127.0.0.1:${natsPort}`
    else {
      const port = await freePort()
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringbus-test-nats-'))
      started.push(await startServer('nats-server', nats.bin, ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', dir], port, dir))
      out.RINGBUS_NATS_URL = `nats://127.0.0.1:${port}`
    }
    if (env.RINGBUS_REDIS_URL) out.RINGBUS_REDIS_URL = env.RINGBUS_REDIS_URL
    else if (!forcePrivate && (await answers(redisPort))) out.RINGBUS_REDIS_URL = `redis://127.0.0.1:${redisPort}`
    else {
      const port = await freePort()
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringbus-test-redis-'))
      const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no']
      started.push(await startServer('redis-server', redis.bin, args, port, dir))
      out.RINGBUS_REDIS_URL = `redis://127.0.0.1:${port}`
    }
  } catch (e) {
    await stop()
    throw e
  }
  return { env: out, started: started.map((s) => ({ name: s.name, port: s.port, dir: s.dir, pid: s.proc.pid })), stop }
}

module.exports = { ensureServers, checkBinaries, answers }
