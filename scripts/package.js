// npm run package: builds the release addon for this machine and writes two tarballs to
// dist/: ringbus-<version>.tgz (entry points, loader, typings, README; optionalDependencies
// on every platform package of napi.targets, at the same version) and
// ringbus-<platform>-<version>.tgz (only this platform's .node). Installing them needs no
// Rust. The napi CLI does what it can: the build, version sync of npm/*, and copying the
// addon into its platform package (`napi artifacts`, given a config narrowed to this
// machine's target because it insists on every configured target otherwise).
'use strict'

const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const root = path.resolve(__dirname, '..')
const dist = path.join(root, 'dist')
const stage = path.join(dist, 'stage')
const napi = path.join(root, 'node_modules', '.bin', 'napi')
const run = (cmd, args, cwd = root) => execFileSync(cmd, args, { cwd, stdio: ['ignore', 'inherit', 'inherit'] })
const readJson = (f) => JSON.parse(fs.readFileSync(f, 'utf8'))
const writeJson = (f, v) => fs.writeFileSync(f, JSON.stringify(v, null, 2) + '\n')

const pkg = readJson(path.join(root, 'package.json'))
fs.rmSync(dist, { recursive: true, force: true })
fs.mkdirSync(stage, { recursive: true })

// The release build `npm ci` made is reused (cargo finds it fresh); napi's --strip would
// change RUSTFLAGS and rebuild every dependency, so the packed copy is stripped instead.
run(napi, ['build', '--platform', '--release'])
run(process.execPath, [path.join(__dirname, 'typings.js')])
run(napi, ['version'])

// This machine's target triple, and the platform package that carries it.
const host = /host: (\S+)/.exec(execFileSync('rustc', ['-vV'], { encoding: 'utf8' }))[1]
if (!pkg.napi.targets.includes(host)) throw new Error(`${host} is not in napi.targets of package.json`)
const node = fs.readdirSync(root).find((f) => f.startsWith(`${pkg.napi.binaryName}.`) && f.endsWith('.node'))
if (!node) throw new Error('napi build left no .node file in the package root')
const platform = node.slice(pkg.napi.binaryName.length + 1, -'.node'.length)

// The platform package: its folder under npm/, with the addon copied in by the CLI.
const npmStage = path.join(stage, 'npm')
fs.cpSync(path.join(root, 'npm', platform), path.join(npmStage, platform), { recursive: true })
const hostConfig = path.join(stage, 'napi.host.json')
writeJson(hostConfig, { ...pkg.napi, targets: [host] })
run(napi, ['artifacts', '--config-path', hostConfig, '--output-dir', root, '--npm-dir', npmStage])
// Symbols only: the exported Node-API entry points are dynamic symbols and stay.
const packed = path.join(npmStage, platform, node)
if (!fs.existsSync(packed)) throw new Error(`napi artifacts did not copy ${node} into ${path.dirname(packed)}`)
// Windows: the DLL carries no symbol table (they are in the .pdb).
if (process.platform !== 'win32') run('strip', process.platform === 'darwin' ? ['-x', packed] : ['--strip-all', packed])

// The main package: what `files` lists, and a package.json for installing, not developing.
const mainStage = path.join(stage, 'main')
fs.mkdirSync(mainStage)
for (const f of pkg.files) fs.cpSync(path.join(root, f), path.join(mainStage, f), { recursive: true })
const platformPackages = fs.readdirSync(path.join(root, 'npm')).map((d) => readJson(path.join(root, 'npm', d, 'package.json')).name)
const published = { ...pkg }
delete published.scripts // `prepare` would build from source on install
delete published.devDependencies
published.optionalDependencies = Object.fromEntries(platformPackages.sort().map((n) => [n, pkg.version]))
writeJson(path.join(mainStage, 'package.json'), published)

run('npm', ['pack', '--pack-destination', dist, mainStage])
run('npm', ['pack', '--pack-destination', dist, path.join(npmStage, platform)])
fs.rmSync(stage, { recursive: true, force: true })
console.log(`packed: ${fs.readdirSync(dist).join(', ')}`)
