// npm run soak -- --minutes N --adapter memory|jetstream|redis [--rate 20000] [--kill-every 120] [--outage 0]
//
// A steady keyed load (`--rate` events/s over 1,000 keys, in 1 ms ticks) into one bus, read
// back meanwhile by a live subscriber and a consumer group (`process()`). For JetStream and
// Redis the backend is a private server on a free loopback port, SIGKILLed and started again
// (same port, same data) every `--kill-every` seconds, after staying down `--outage` seconds.
// Every 10 s a row: RSS, JS heap, event-loop delay p99, the bus counters, and what the
// subscriber and the group have seen.
//
// At the end it stops ingesting, flushes, lets the readers catch up, and checks:
// - `ingested == stored + dropped + pending` in every sample;
// - the store holds every accepted event exactly once, read with nats.js / ioredis (memory:
//   no other client exists, so the subscriber's view stands in);
// - the subscriber saw every accepted event once, each key's in ingest order;
// - the group handled every accepted event (at least once: a kill can repeat a delivery);
// - RSS grew at most 10 % after the first minute, compared between steady samples (the bus
//   holds under a second of load and both readers are within a second of it): a sample
//   taken while an outage's backlog is queued measures that backlog, not growth. A one-minute
//   run compares its sample at 60 s with the one taken after the readers caught up;
// - while a backlog is queued, RSS stays within that allowance plus what the rings may hold
//   (`shards` × `ringCapacity` events, payload and key plus 256 bytes each).
// Exits 1 when a check fails.
'use strict'

const { spawn } = require('node:child_process')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')
const { monitorEventLoopDelay } = require('node:perf_hooks')
const { EventBus } = require('../main.js')
const stored = require('./support/stored.js')

const KEYS = 1000
// After a restart, the backlog of the outage drains: rejections within this are the outage's.
const RECOVERY_MS = 15_000
const SAMPLE_MS = 10_000
const SHARDS = 4
const RING = 65_536
/** Per queued event beyond its payload and key: the event struct, its Bytes, the ring slot. */
const OVERHEAD = 256

function parseArgs(argv) {
  const o = { minutes: 15, adapter: 'jetstream', rate: 20_000, killEvery: 120, outage: 0 }
  for (let i = 0; i < argv.length; i++) {
    const [flag, value] = [argv[i], argv[i + 1]]
    if (flag === '--minutes') o.minutes = Number(value)
    else if (flag === '--adapter') o.adapter = value
    else if (flag === '--rate') o.rate = Number(value)
    else if (flag === '--kill-every') o.killEvery = Number(value)
    else if (flag === '--outage') o.outage = Number(value)
    else throw new Error(`unknown argument ${flag}; use --minutes N --adapter memory|jetstream|redis [--rate R] [--kill-every S] [--outage S]`)
    i++
  }
  if (!['memory', 'jetstream', 'redis'].includes(o.adapter)) throw new Error(`--adapter ${o.adapter}: use memory, jetstream or redis`)
  for (const k of ['minutes', 'rate', 'killEvery']) {
    if (!(o[k] > 0)) throw new Error(`--${k} must be a positive number`)
  }
  if (!(o.outage >= 0 && o.outage < o.killEvery)) throw new Error('--outage must be at least 0 and less than --kill-every')
  return o
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer().once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

async function listening(port) {
  for (let t = 0; t < 200; t++) {
    const up = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(s.destroy() || true)).once('error', () => resolve(false))
    })
    if (up) return
    await sleep(50)
  }
  throw new Error(`the private server on port ${port} did not start`)
}

/** The private server: started, SIGKILLed and started again with the same port and data. */
async function privateServer(adapter) {
  const port = await freePort()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `ringbus-soak-${adapter}-`))
  const [bin, args] =
    adapter === 'jetstream'
      ? [process.env.NATS_SERVER_BIN ?? '/usr/sbin/nats-server', ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', dir]]
      : [
          process.env.REDIS_SERVER_BIN ?? '/usr/bin/redis-server',
          ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'yes', '--appendfsync', 'everysec'],
        ]
  let proc
  const server = {
    port,
    async start() {
      const log = fs.openSync(path.join(dir, 'server.log'), 'a')
      proc = spawn(bin, args, { stdio: ['ignore', log, log] })
      fs.closeSync(log)
      await listening(port)
    },
    async kill() {
      if (proc.exitCode !== null || proc.signalCode !== null) return
      await new Promise((resolve) => proc.once('exit', resolve).kill('SIGKILL'))
    },
    async stop() {
      await server.kill()
      fs.rmSync(dir, { recursive: true, force: true })
    },
  }
  await server.start()
  return server
}

const mib = (b) => (b / 2 ** 20).toFixed(1)

async function main() {
  const o = parseArgs(process.argv.slice(2))
  const run = `soak_${process.pid}_${Date.now().toString(36)}`
  const seconds = o.minutes * 60
  const size = Math.ceil(o.rate * seconds * 1.05) + 1000
  const server = o.adapter === 'memory' ? null : await privateServer(o.adapter)
  // Interrupted: the private server and its data go too.
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.once(signal, async () => {
      if (server) await server.stop()
      process.exit(130)
    })
  }
  const adapter =
    o.adapter === 'memory'
      ? { type: 'memory', maxEvents: 1_000_000 }
      : o.adapter === 'jetstream'
        ? { type: 'jetstream', servers: `nats://127.0.0.1:${server.port}`, stream: run }
        : { type: 'redis', url: `redis://127.0.0.1:${server.port}`, keyPrefix: run }
  // Retries outlast a restart (backoff is capped at 5 s).
  const bus = await EventBus.create({ shards: SHARDS, ringCapacity: RING, retries: 30, adapterTimeoutMs: 2_000, adapter })

  // Written through once now, so their pages are resident from the start: touched as the
  // run goes, they would add 3 bytes per event to RSS and look like a leak.
  const accepted = new Uint8Array(size).fill(1).fill(0)
  const seen = new Uint8Array(size).fill(1).fill(0)
  const handled = new Uint8Array(size).fill(1).fill(0)
  const failures = []
  const fail = (msg) => {
    if (failures.length < 50) failures.push(msg)
  }
  let next = 0
  let acceptedCount = 0
  let rejected = 0
  let seenCount = 0
  let handledCount = 0
  let handledTwice = 0
  let kills = 0
  let rejectedWhileUp = 0

  // The live subscriber: each event once, each key in order.
  const lastByKey = new Int32Array(KEYS).fill(-1)
  let subscriberError = null
  const subscriber = (async () => {
    try {
      for await (const ev of bus.subscribe({ from: 'earliest' })) {
        const { i, k } = ev.json()
        if (seen[i]++ > 0) fail(`the subscriber saw event ${i} twice`)
        else seenCount++
        if (i < lastByKey[k]) fail(`the subscriber saw event ${i} of key ${k} after event ${lastByKey[k]}`)
        lastByKey[k] = i
      }
    } catch (e) {
      subscriberError = e
      fail(`the subscriber failed: ${e.code ?? ''} ${e.message}`)
    }
  })()

  // The group: every event handled; repeats are counted, not failed (at least once).
  const worker = bus.process(
    'soak',
    (ev) => {
      const { i } = ev.json()
      if (handled[i]++ > 0) handledTwice++
      else handledCount++
    },
    { concurrency: 64 },
  )

  // Sampled every 1 ms; the histogram holds whole intervals, so 1 ms is taken off below.
  const delay = monitorEventLoopDelay({ resolution: 1 })
  delay.enable()
  const samples = []
  const started = Date.now()
  console.log(`soak: ${o.adapter}, ${o.minutes} min at ${o.rate} events/s over ${KEYS} keys${server ? `, server SIGKILLed every ${o.killEvery} s and down ${o.outage} s` : ''}`)
  console.log('| t (s) | RSS MiB | JS heap used / total MiB | external MiB | loop delay p99 ms | ingested | stored | dropped | pending | rejected | subscriber | group | group repeats | kills | steady |')
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|')
  const sample = () => {
    const s = bus.stats()
    if (s.ingested !== s.stored + s.dropped + s.pending) fail(`invariant broken: ${JSON.stringify(s)}`)
    const mem = process.memoryUsage()
    const row = {
      t: Math.round((Date.now() - started) / 1000),
      rss: mem.rss,
      p99: Math.max(0, delay.percentile(99) / 1e6 - 1),
      s,
      // Under a second of load queued, and both readers within a second of what was accepted.
      steady: s.pending < o.rate && acceptedCount - seenCount < o.rate && acceptedCount - handledCount < o.rate,
    }
    delay.reset()
    samples.push(row)
    console.log(
      `| ${row.t} | ${mib(row.rss)} | ${mib(mem.heapUsed)} / ${mib(mem.heapTotal)} | ${mib(mem.external)} | ${row.p99.toFixed(1)} | ${s.ingested} | ${s.stored} | ${s.dropped} | ${s.pending} | ${rejected} | ${seenCount} | ${handledCount} | ${handledTwice} | ${kills} | ${row.steady ? 'yes' : 'no'} |`,
    )
  }
  const sampler = setInterval(sample, SAMPLE_MS)
  // Kills from half a period in (at 10, 30, 50 s for every 20 s), so a run of N periods
  // has N kills however its end falls.
  let up = true
  let upSince = Date.now()
  const cycle = async () => {
    up = false
    await server.kill()
    kills++
    await sleep(o.outage * 1000)
    await server.start()
    up = true
    upSince = Date.now()
  }
  let killer = null
  const firstKill = server
    ? setTimeout(() => {
        cycle()
        killer = setInterval(cycle, o.killEvery * 1000)
      }, (o.killEvery * 1000) / 2)
    : null

  // The load: what is due at `rate`, each 1 ms tick.
  const end = started + seconds * 1000
  while (Date.now() < end) {
    const due = Math.min(size, Math.floor(((Date.now() - started) * o.rate) / 1000))
    for (; next < due; next++) {
      const k = next % KEYS
      try {
        bus.ingest({ r: run, i: next, k }, { key: `k${k}` })
        accepted[next] = 1
        acceptedCount++
      } catch (e) {
        if (e.code !== 'ERR_BACKPRESSURE') throw e
        rejected++
        // Only an outage may fill the rings: with the server up (and its backlog given time
        // to drain after a restart) every event must be accepted.
        if (!server || (up && Date.now() - upSince > RECOVERY_MS)) rejectedWhileUp++
      }
    }
    await sleep(1)
  }
  clearTimeout(firstKill)
  if (killer) clearInterval(killer)
  // A restart may be under way: let it finish before the checks.
  if (server) await listening(server.port)

  const flushed = await bus.flush()
  if (flushed.dropped > 0) fail(`${flushed.dropped} events were dropped at the final flush`)
  const caughtUp = Date.now() + 120_000
  while ((seenCount < acceptedCount || handledCount < acceptedCount) && Date.now() < caughtUp && !subscriberError) await sleep(200)
  clearInterval(sampler)
  sample()
  await worker.close()
  const stats = await bus.shutdown()
  await subscriber

  // The store, read by another client.
  if (server) {
    const held =
      o.adapter === 'jetstream'
        ? await stored.jetstreamRecords({ servers: `nats://127.0.0.1:${server.port}`, stream: run, run, size })
        : await stored.redisRecords({ url: `redis://127.0.0.1:${server.port}`, prefix: run, span: 4, run, size })
    const d = stored.compare(held, accepted)
    if (d.lost) fail(`${d.lost} accepted events are not in the store (first: ${d.firstLost})`)
    if (d.duplicated) fail(`${d.duplicated} events are stored more than once (first: ${d.firstDuplicated})`)
    if (d.unexpected || held.unreadable || held.foreign) fail(`the store holds ${d.unexpected + held.unreadable + held.foreign} records nobody accepted`)
    console.log(`store (${o.adapter === 'jetstream' ? 'nats.js' : 'ioredis'}): ${held.records} records, ${d.lost} lost, ${d.duplicated} stored twice`)
  }
  if (rejectedWhileUp > 0) fail(`${rejectedWhileUp} events were rejected while the server was up (${rejected} in all)`)
  if (server && kills < Math.floor(seconds / o.killEvery)) fail(`the server was killed ${kills} times in ${seconds} s; every ${o.killEvery} s means ${Math.floor(seconds / o.killEvery)}`)
  if (stats.stored !== acceptedCount || stats.dropped !== 0) fail(`stored ${stats.stored} and dropped ${stats.dropped} of ${acceptedCount} accepted`)
  if (seenCount !== acceptedCount) fail(`the subscriber saw ${seenCount} of ${acceptedCount} accepted events`)
  if (handledCount !== acceptedCount) fail(`the group handled ${handledCount} of ${acceptedCount} accepted events`)

  // RSS after the first minute: steady samples at most 10 % above the first steady one;
  // samples with a backlog queued, within that plus what the rings may hold.
  const settle = 60
  const last = samples[samples.length - 1]
  // A one-minute run has no steady sample between 60 s and the end: the last one before.
  const base = samples.find((s) => s.t >= settle && s.steady && s !== last) ?? samples.findLast((s) => s.steady && s !== last)
  const later = base ? samples.filter((s) => s.t >= base.t) : samples
  const steadyPeak = Math.max(...later.filter((s) => s.steady).map((s) => s.rss))
  const peak = later.reduce((a, s) => (s.rss > a.rss ? s : a), later[0])
  const eventBytes = JSON.stringify({ r: run, i: size, k: KEYS }).length + 4
  const rings = SHARDS * RING * (eventBytes + OVERHEAD)
  if (!base) fail('no steady sample to compare with: the readers never caught up')
  else {
    if (steadyPeak > base.rss * 1.1) fail(`RSS grew from ${mib(base.rss)} MiB at ${base.t} s to ${mib(steadyPeak)} MiB in a steady sample (more than 10 %)`)
    if (peak.rss > base.rss * 1.1 + rings) fail(`RSS reached ${mib(peak.rss)} MiB at ${peak.t} s, above ${mib(base.rss)} MiB + 10 % + what the rings may hold (${mib(rings)} MiB)`)
  }
  const p99s = samples.map((s) => s.p99).sort((a, b) => a - b)

  console.log(
    `summary: ${acceptedCount} accepted, ${rejected} rejected, ${stats.stored} stored, subscriber ${seenCount}, group ${handledCount} (+${handledTwice} repeats), ` +
      `${kills} server kills; RSS ${base ? mib(base.rss) : '?'} MiB at ${base?.t ?? '?'} s, steady peak ${mib(steadyPeak)} MiB, ` +
      `peak ${mib(peak.rss)} MiB at ${peak.t} s with ${peak.s.pending} events queued, at the end ${mib(last.rss)} MiB; ` +
      `event-loop p99 median ${p99s[Math.floor(p99s.length / 2)].toFixed(1)} ms, worst ${p99s[p99s.length - 1].toFixed(1)} ms`,
  )
  if (server) await server.stop()
  if (failures.length) {
    console.error(`soak FAILED:\n- ${failures.join('\n- ')}`)
    process.exit(1)
  }
  console.log('soak passed')
}

main().catch((e) => {
  console.error(`soak FAILED: ${e.code ?? ''} ${e.stack ?? e.message}`)
  process.exit(1)
})
