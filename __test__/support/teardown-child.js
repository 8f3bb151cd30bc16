// One service of the teardown stress (__test__/teardown.test.ts): a bus with a producer, a
// live subscriber and a process() worker, ended after `delayMs` in the way `ending` names.
// argv[2]: JSON { adapter, ending, delayMs, group }. What the parent judges is how the
// process ends: the exit code or signal each ending should give, and stderr (no panic, no
// V8 fatal error); a hang is killed and counted.
'use strict'

const { Worker, isMainThread, workerData } = require('node:worker_threads')
const { EventBus } = require('../../main.js')

if (!isMainThread) {
  // A worker_thread that ingests until it is terminated: its bus is never shut down.
  ;(async () => {
    const bus = await EventBus.create({ shards: 2, adapter: workerData.adapter })
    require('node:worker_threads').parentPort.postMessage('ingesting')
    for (let i = 0; ; i++) {
      bus.ingest({ from: 'thread', i })
      if (i % 500 === 0) await new Promise((r) => setImmediate(r))
    }
  })()
  return
}

const cfg = JSON.parse(process.argv[2])
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
// Asks the parent to SIGKILL this bus's private server, and waits until it has.
const killServer = () =>
  new Promise((resolve) => {
    process.once('message', resolve)
    process.send('kill the server')
  })

async function main() {
  const bus = await EventBus.create({ shards: 2, adapter: cfg.adapter })
  let n = 0
  const producer = setInterval(() => {
    try {
      for (let i = 0; i < 100; i++) bus.ingest({ n: n++, type: n % 2 ? 'a' : 'b' }, { key: `k${n % 7}` })
    } catch (e) {
      // A full ring (a store slower than 50,000 events/s on a busy machine) is refused, as
      // a service would; anything else ends the child and fails the test.
      if (e.code !== 'ERR_BACKPRESSURE') throw e
    }
  }, 2)
  // A live subscriber and a process() worker, both running when the end comes.
  ;(async () => {
    for await (const ev of bus.subscribe({ from: 'earliest' })) void ev.raw
  })().catch(() => undefined)
  const worker = bus.process(cfg.group, async (ev) => void ev.json(), { member: `m${process.pid}`, leaseMs: 3000, ackWaitMs: 2000 })
  let thread
  if (cfg.ending === 'thread-terminated') {
    thread = new Worker(__filename, { workerData: { adapter: cfg.adapter } })
    await new Promise((resolve, reject) => {
      thread.once('message', resolve)
      thread.once('error', reject)
    })
  }
  await sleep(cfg.delayMs)

  switch (cfg.ending) {
    case 'exit':
      // Mid-stream: nothing awaited, everything running.
      process.exit(0)
    case 'shutdown-race': {
      clearInterval(producer)
      // Every way of stopping at once; each settles, then the process must exit by itself.
      const results = await Promise.allSettled([bus.shutdown(), worker.close(), bus.flush(), bus.shutdown()])
      const bad = results.filter((r) => r.status === 'rejected' && r.reason?.code !== 'ERR_SHUT_DOWN')
      if (bad.length) throw bad[0].reason
      return
    }
    case 'uncaught':
      // The service crashes on its own error: exit code 1, not a signal.
      setImmediate(() => {
        throw new Error('teardown-stress: an uncaught error')
      })
      return
    case 'sigterm':
      process.kill(process.pid, 'SIGTERM')
      return
    case 'thread-terminated':
      // Terminated mid-ingest with its bus running; then the main thread shuts down.
      await thread.terminate()
      clearInterval(producer)
      await worker.close()
      await bus.shutdown()
      return
    case 'double-shutdown': {
      clearInterval(producer)
      await worker.close()
      await bus.shutdown()
      await bus.shutdown()
      let code
      try {
        bus.ingest({ late: true })
      } catch (e) {
        code = e.code
      }
      if (code !== 'ERR_SHUT_DOWN') throw new Error(`ingest after shutdown gave ${code ?? 'no error'}, not ERR_SHUT_DOWN`)
      return
    }
    case 'shutdown-then-exit':
      // The soak's SIGSEGV: the parent SIGKILLs the bus's server (when it has its own), the
      // bus starts shutting down, and the process exits at once while the runtime still
      // has the connection's tasks.
      if (cfg.killsServer) await killServer()
      clearInterval(producer)
      void bus.shutdown().catch(() => undefined)
      process.exit(0)
    case 'shutdown-kill-return':
      // The soak's own ending: shut down while the server is up, then the server is
      // SIGKILLed and the process ends by running out of work (no process.exit).
      clearInterval(producer)
      await worker.close()
      await bus.shutdown()
      if (cfg.killsServer) await killServer()
      return
    default:
      throw new Error(`unknown ending ${cfg.ending}`)
  }
}

main().catch((e) => {
  console.error(`teardown-child failed: ${e.code ?? ''} ${e.stack}`)
  process.exit(3)
})
