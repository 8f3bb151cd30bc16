// npm test's engine half: `cargo test --release` without the addon, for the host's target
// triple named explicitly. napi build names it too, so both builds share target/<triple>/
// and the release dependencies are compiled once (without --target cargo keeps a second
// copy in target/release/). Extra arguments go to cargo test.
'use strict'

const { execFileSync, spawnSync } = require('node:child_process')

const host = /^host: (\S+)$/m.exec(execFileSync('rustc', ['-vV'], { encoding: 'utf8' }))?.[1]
if (!host) throw new Error('`rustc -vV` named no host triple')
const args = ['test', '--release', '--target', host, '--no-default-features', '--features', 'test-hooks', ...process.argv.slice(2)]
const run = spawnSync('cargo', args, { stdio: 'inherit' })
if (run.error) throw run.error
process.exit(run.status ?? 1)
