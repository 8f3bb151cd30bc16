// `npm test` on a machine where nothing listens on 4222/6379 (scripts/test-servers.js):
// private servers are started on free ports, work as the suites' stores, and are stopped
// with their data removed; given URLs and answering ports are used as they are; missing
// binaries fail at once with the Debian packages to install.
import fs from 'node:fs'
import net from 'node:net'
import { EventBus } from '../index'
import { freePort, uniqueName } from './support/servers'

const { ensureServers, answers } = require('../scripts/test-servers.js') as {
  answers(port: number): Promise<boolean>
  ensureServers(
    opts?: { natsPort?: number; redisPort?: number },
    env?: NodeJS.ProcessEnv,
  ): Promise<{ env: Record<string, string>; started: Array<{ name: string; port: number; dir: string; pid: number }>; stop(): Promise<void> }>
}

jest.setTimeout(60_000)

const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

// The environment without the variables a surrounding `npm test` sets.
const bareEnv = () => {
  const env = { ...process.env }
  delete env.RINGBUS_NATS_URL
  delete env.RINGBUS_REDIS_URL
  delete env.RINGBUS_TEST_SERVERS
  return env
}

it('starts private servers when nothing answers, and they serve a bus until stopped', async () => {
  const [natsPort, redisPort] = [await freePort(), await freePort()]
  const servers = await ensureServers({ natsPort, redisPort }, bareEnv())
  try {
    expect(servers.started.map((s) => s.name)).toEqual(['nats-server', 'redis-server'])
    const [nats, redis] = servers.started
    expect(servers.env).toEqual({ RINGBUS_NATS_URL: `nats://127.0.0.1:${nats.port}`, RINGBUS_REDIS_URL: `redis://127.0.0.1:${redis.port}` })
    for (const adapter of [
      { type: 'jetstream' as const, servers: servers.env.RINGBUS_NATS_URL, stream: uniqueName('ts') },
      { type: 'redis' as const, url: servers.env.RINGBUS_REDIS_URL, keyPrefix: uniqueName('ts') },
    ]) {
      const bus = await EventBus.create({ shards: 2, adapter })
      for (let i = 0; i < 100; i++) bus.ingest({ i })
      await bus.flush()
      const page = await bus.poll({ limit: 1000 })
      expect(page.events.map((e) => (e.json() as { i: number }).i).sort((a, b) => a - b)).toEqual([...Array(100).keys()])
      await bus.shutdown()
    }
  } finally {
    await servers.stop()
  }
  for (const s of servers.started) {
    expect(alive(s.pid)).toBe(false)
    expect(fs.existsSync(s.dir)).toBe(false)
    expect(await answers(s.port)).toBe(false)
  }
})

it('uses URLs it is given and ports that answer, and starts nothing then', async () => {
  const given = await ensureServers({}, { ...bareEnv(), RINGBUS_NATS_URL: 'nats://10.1.2.3:4222', RINGBUS_REDIS_URL: 'redis://10.1.2.3:6379' })
  expect(given.started).toEqual([])
  expect(given.env).toEqual({ RINGBUS_NATS_URL: 'nats://10.1.2.3:4222', RINGBUS_REDIS_URL: 'redis://10.1.2.3:6379' })

  const listener = net.createServer((s) => s.destroy())
  await new Promise<void>((r) => listener.listen(0, '127.0.0.1', () => r()))
  const port = (listener.address() as net.AddressInfo).port
  try {
    const shared = await ensureServers({ natsPort: port, redisPort: port }, bareEnv())
    expect(shared.started).toEqual([])
    expect(shared.env).toEqual({ RINGBUS_NATS_URL: `nats://127.0.0.1:${port}`, RINGBUS_REDIS_URL: `redis://127.0.0.1:${port}` })
  } finally {
    listener.close()
  }
})

it('RINGBUS_TEST_SERVERS=private starts its own even when the shared ports answer', async () => {
  const listener = net.createServer((s) => s.destroy())
  await new Promise<void>((r) => listener.listen(0, '127.0.0.1', () => r()))
  const port = (listener.address() as net.AddressInfo).port
  const servers = await ensureServers({ natsPort: port, redisPort: port }, { ...bareEnv(), RINGBUS_TEST_SERVERS: 'private' })
  try {
    expect(servers.started.length).toBe(2)
    expect(servers.env.RINGBUS_NATS_URL).not.toContain(`:${port}`)
  } finally {
    await servers.stop()
    listener.close()
  }
})

it('fails at once without the binaries, naming the Debian packages and the variables', async () => {
  const env = { ...bareEnv(), NATS_SERVER_BIN: '/nonexistent/nats-server', REDIS_SERVER_BIN: '/nonexistent/redis-server' }
  const err = await ensureServers({}, env).catch((e) => e)
  expect(err.code).toBe('ERR_TEST_SERVERS')
  expect(err.message).toContain('/nonexistent/nats-server, /nonexistent/redis-server')
  expect(err.message).toContain('sudo apt-get install nats-server redis-server')
  expect(err.message).toContain('NATS_SERVER_BIN / REDIS_SERVER_BIN')
  // redis-cli too: PATH without it.
  const noCli = await ensureServers({}, { ...bareEnv(), PATH: '/nonexistent' }).catch((e) => e)
  expect(noCli.message).toContain('not installed')
  expect(noCli.message).toContain('redis-tools')
})
