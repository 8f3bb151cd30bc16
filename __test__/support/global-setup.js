// Jest's global setup: the suites' JetStream and Redis (scripts/test-servers.js). Under
// `npm test` they are already chosen (the environment names them); a bare `npx jest` finds
// the shared ones or starts private ones, which the global teardown stops.
const { ensureServers } = require('../../scripts/test-servers')

module.exports = async () => {
  if (process.env.RINGBUS_NATS_URL && process.env.RINGBUS_REDIS_URL) return
  const servers = await ensureServers()
  for (const s of servers.started) console.log(`\nstarted a private ${s.name} on 127.0.0.1:${s.port} for the tests`)
  Object.assign(process.env, servers.env)
  globalThis.__ringbusTestServers = servers
}
