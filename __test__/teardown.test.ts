// The teardown stress: a native addon must never take its host process down. Child
// processes (support/teardown-child.js) run a bus on each backend with a producer, a live
// subscriber and a process() worker, and end at a seeded random moment in every way a
// service ends. Any death by a signal it did not ask for (SIGSEGV, SIGABRT, SIGBUS...), a
// Rust panic, a V8 fatal error, a wrong exit code or a hang fails the test.
// RINGBUS_TEARDOWN_SEED and RINGBUS_TEARDOWN_CHILDREN (default 72) change the run.
import { spawn } from 'node:child_process'
import path from 'node:path'
import { storesForFile } from './support/adapter'
import { privateNats, uniqueName, type PrivateServer } from './support/servers'
import { rng } from './support/random'

const SEED = Number(process.env.RINGBUS_TEARDOWN_SEED ?? 20261204)
const CHILDREN = Number(process.env.RINGBUS_TEARDOWN_CHILDREN ?? 72)
const PARALLEL = 4
// Longer than any ending needs (the exit drain of a forgotten bus is bounded at 3 s).
const HANG_MS = 30_000

jest.setTimeout(Math.max(300_000, CHILDREN * 4_000))

type Ending = 'exit' | 'shutdown-race' | 'uncaught' | 'sigterm' | 'thread-terminated' | 'double-shutdown' | 'shutdown-then-exit' | 'shutdown-kill-return'
const ENDINGS: Ending[] = ['exit', 'shutdown-race', 'uncaught', 'sigterm', 'thread-terminated', 'double-shutdown', 'shutdown-then-exit', 'shutdown-kill-return']
const BACKENDS = ['memory', 'jetstream', 'redis']
const EVERY = ENDINGS.length * BACKENDS.length
// How each ending must end the process.
const EXPECTED: Record<Ending, { code: number | null; signal: NodeJS.Signals | null }> = {
  exit: { code: 0, signal: null },
  'shutdown-race': { code: 0, signal: null },
  uncaught: { code: 1, signal: null },
  sigterm: { code: null, signal: 'SIGTERM' },
  'thread-terminated': { code: 0, signal: null },
  'double-shutdown': { code: 0, signal: null },
  'shutdown-then-exit': { code: 0, signal: null },
  'shutdown-kill-return': { code: 0, signal: null },
}
const CRASH_TEXT = /panicked at|FATAL ERROR|Fatal error in|Segmentation fault|Aborted|double free|corrupted|SIGSEGV|teardown-child failed/


type Outcome = { i: number; backend: string; ending: Ending; delayMs: number; code: number | null; signal: NodeJS.Signals | null; hung: boolean; stderr: string }

const adapterFor = storesForFile()

async function runChild(i: number, backend: string, ending: Ending, delayMs: number): Promise<Outcome> {
  // The soak's crash: a JetStream bus whose server is SIGKILLed around its shutdown, and a
  // process that exits right after. Each such child gets its own server to kill.
  let server: PrivateServer | undefined
  let adapter
  if ((ending === 'shutdown-then-exit' || ending === 'shutdown-kill-return') && backend === 'jetstream') {
    server = await privateNats()
    adapter = { type: 'jetstream', servers: `nats://127.0.0.1:${server.port}`, stream: uniqueName('td') }
  } else {
    adapter = adapterFor(backend, uniqueName(`td-${backend}`))
  }
  const cfg = { adapter, ending, delayMs, group: 'td', killsServer: server !== undefined }
  const child = spawn(process.execPath, [path.join(__dirname, 'support', 'teardown-child.js'), JSON.stringify(cfg)], {
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  })
  let stderr = ''
  child.stderr!.on('data', (d) => (stderr += d))
  if (server) {
    const s = server
    child.once('message', async () => {
      await s.kill()
      child.send('killed')
    })
  }
  let hung = false
  const timer = setTimeout(() => {
    hung = true
    child.kill('SIGKILL')
  }, HANG_MS + delayMs)
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.once('exit', (c, s) => resolve([c, s])))
  clearTimeout(timer)
  await server?.stop()
  return { i, backend, ending, delayMs, code, signal, hung, stderr }
}

it(`${CHILDREN} services end at random moments in every way, and none crashes or hangs (seed ${SEED})`, async () => {
  const random = rng(SEED)
  const plan = Array.from({ length: CHILDREN }, (_, i) => ({
    i,
    // Every ending on every backend in the first children, then at random.
    backend: i < EVERY ? BACKENDS[i % 3] : BACKENDS[Math.floor(random() * 3)],
    ending: i < EVERY ? ENDINGS[Math.floor(i / 3)] : ENDINGS[Math.floor(random() * ENDINGS.length)],
    delayMs: Math.floor(random() * 600),
  }))
  const outcomes: Outcome[] = []
  let next = 0
  await Promise.all(
    Array.from({ length: PARALLEL }, async () => {
      while (next < plan.length) {
        const p = plan[next++]
        outcomes.push(await runChild(p.i, p.backend, p.ending, p.delayMs))
      }
    }),
  )
  const bad = outcomes.filter((o) => {
    const want = EXPECTED[o.ending]
    const crashText = CRASH_TEXT.test(o.stderr.replace('teardown-stress: an uncaught error', ''))
    return o.hung || o.code !== want.code || o.signal !== want.signal || crashText
  })
  const describe = (o: Outcome) =>
    `child ${o.i} (${o.backend}, ${o.ending} after ${o.delayMs} ms): ${o.hung ? 'hung' : `exit ${o.code} signal ${o.signal}`}\n${o.stderr.slice(-2000)}`
  expect(bad.map(describe)).toEqual([])
  expect(outcomes.length).toBe(CHILDREN)
  if (CHILDREN >= EVERY) {
    // Every ending ran on every backend.
    for (const e of ENDINGS) for (const b of BACKENDS) expect(outcomes.some((o) => o.ending === e && o.backend === b)).toBe(true)
    const uncaught = outcomes.filter((o) => o.ending === 'uncaught')
    expect(uncaught.every((o) => o.stderr.includes('teardown-stress: an uncaught error'))).toBe(true)
  }
})
