import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'

/** A free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo
      srv.close(() => resolve(port))
    })
  })
}

export async function waitForPort(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1')
      s.once('connect', () => {
        s.destroy()
        resolve(true)
      })
      s.once('error', () => resolve(false))
    })
    if (ok) return
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** A server process this test owns: on loopback, with its own data directory. */
export class PrivateServer {
  proc?: ChildProcess
  constructor(
    readonly bin: string,
    readonly args: string[],
    readonly port: number,
    readonly dir: string,
  ) {}

  async start(): Promise<void> {
    const log = fs.openSync(path.join(this.dir, 'server.log'), 'a')
    this.proc = spawn(this.bin, this.args, { stdio: ['ignore', log, log] })
    fs.closeSync(log)
    await waitForPort(this.port)
  }

  /** SIGKILL, as a crash would. */
  async kill(): Promise<void> {
    const p = this.proc
    if (!p || p.exitCode !== null || p.signalCode !== null) return
    await new Promise<void>((resolve) => {
      p.once('exit', () => resolve())
      p.kill('SIGKILL')
    })
  }

  /** SIGSTOP for `ms`, then SIGCONT: connections stay open, nothing is answered. */
  async pause(ms: number): Promise<void> {
    this.proc?.kill('SIGSTOP')
    await new Promise((r) => setTimeout(r, ms))
    this.proc?.kill('SIGCONT')
  }

  async stop(): Promise<void> {
    await this.kill()
    fs.rmSync(this.dir, { recursive: true, force: true })
  }
}

export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix))
}

export const NATS_BIN = process.env.NATS_SERVER_BIN ?? '/usr/sbin/nats-server'
export const REDIS_BIN = process.env.REDIS_SERVER_BIN ?? '/usr/bin/redis-server'

/** A single JetStream server on a free loopback port. */
export async function privateNats(extra: string[] = []): Promise<PrivateServer> {
  const port = await freePort()
  const dir = tempDir('ringbus-nats-')
  const s = new PrivateServer(NATS_BIN, ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', dir, ...extra], port, dir)
  await s.start()
  return s
}

/** A 3-node JetStream cluster on loopback, each node with its own store directory. */
export async function natsCluster(): Promise<PrivateServer[]> {
  const clientPorts = [await freePort(), await freePort(), await freePort()]
  const routePorts = [await freePort(), await freePort(), await freePort()]
  const routes = routePorts.map((p) => `nats://127.0.0.1:${p}`).join(',')
  const nodes = clientPorts.map((port, i) => {
    const dir = tempDir(`ringbus-nats-c${i}-`)
    return new PrivateServer(
      NATS_BIN,
      [
        '-a', '127.0.0.1', '-p', String(port), '-js', '-sd', dir, '-n', `rb-node-${i}`,
        '--cluster_name', 'ringbus-test', '--cluster', `nats://127.0.0.1:${routePorts[i]}`, '--routes', routes,
      ],
      port,
      dir,
    )
  })
  await Promise.all(nodes.map((n) => n.start()))
  return nodes
}

/** A private CA and a server certificate for 127.0.0.1 (made with openssl) in `dir`. */
export function makeTlsFiles(dir: string): { ca: string; cert: string; key: string } {
  const { execFileSync } = require('node:child_process') as typeof import('node:child_process')
  const f = (n: string) => path.join(dir, n)
  const ssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'ignore' })
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=ringbus-test-ca')
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=127.0.0.1')
  fs.writeFileSync(f('ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n')
  ssl('x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('server.pem'), '-days', '2', '-extfile', f('ext.cnf'))
  return { ca: f('ca.pem'), cert: f('server.pem'), key: f('server.key') }
}

export const uniqueName = (prefix: string) =>
  `${prefix}_${process.pid}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`

/**
 * A Redis server on a free loopback port with its data in a temp directory. Appends every
 * write to its AOF before replying (`appendfsync always`), so a SIGKILL loses nothing it
 * acknowledged.
 */
export async function privateRedis(extra: string[] = []): Promise<PrivateServer> {
  const port = await freePort()
  const dir = tempDir('ringbus-redis-')
  const s = new PrivateServer(
    REDIS_BIN,
    ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'yes', '--appendfsync', 'always', ...extra],
    port,
    dir,
  )
  await s.start()
  return s
}

/** A Redis Cluster of three masters on loopback, slots assigned and the cluster ready. */
export async function redisCluster(): Promise<PrivateServer[]> {
  const nodes: PrivateServer[] = []
  for (let i = 0; i < 3; i++) {
    const port = await freePort()
    const dir = tempDir(`ringbus-redis-c${i}-`)
    nodes.push(
      new PrivateServer(
        REDIS_BIN,
        ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', '--cluster-enabled', 'yes', '--cluster-config-file', path.join(dir, 'nodes.conf')],
        port,
        dir,
      ),
    )
  }
  await Promise.all(nodes.map((n) => n.start()))
  const { execFileSync } = await import('node:child_process')
  execFileSync('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'], {
    stdio: 'pipe',
  })
  const deadline = Date.now() + 20_000
  for (const n of nodes) {
    for (;;) {
      const info = execFileSync('redis-cli', ['-p', String(n.port), 'CLUSTER', 'INFO'], { encoding: 'utf8' })
      if (info.includes('cluster_state:ok')) break
      if (Date.now() > deadline) throw new Error(`Redis Cluster node ${n.port} not ready: ${info}`)
      await new Promise((r) => setTimeout(r, 100))
    }
  }
  return nodes
}
