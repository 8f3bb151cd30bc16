// npm test: the engine's cargo tests, then the Jest suites, against the servers
// scripts/test-servers.js finds or starts (private ones are stopped at the end, also on
// Ctrl-C). Arguments go to Jest: `npm test -- __test__/groups.test.ts`.
'use strict'

const { spawn } = require('node:child_process')
const os = require('node:os')
const path = require('node:path')
const { ensureServers } = require('./test-servers')

const root = path.resolve(__dirname, '..')

function run(cmd, args, env) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: root, env, stdio: 'inherit' })
    running = child
    child.once('error', reject)
    child.once('exit', (code, signal) => resolve(signal ? 128 + (os.constants.signals[signal] ?? 0) : code))
  })
}

let running = null
let servers = null
async function main() {
  servers = await ensureServers()
  for (const s of servers.started) console.log(`--- started a private ${s.name} on 127.0.0.1:${s.port} (data in ${s.dir}); it stops when the tests end`)
  const env = { ...process.env, ...servers.env }
  let code = await run(process.execPath, [path.join(__dirname, 'cargo-test.js')], env)
  if (code === 0) code = await run(process.execPath, [require.resolve('jest/bin/jest'), ...process.argv.slice(2)], env)
  await servers.stop()
  return code
}

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, async () => {
    running?.kill(sig)
    await servers?.stop()
    process.exit(130)
  })
}

main().then(
  (code) => process.exit(code),
  async (e) => {
    console.error(`npm test: ${e.message}`)
    await servers?.stop()
    process.exit(1)
  },
)
