// What the bus costs its process: event-loop delay while ingesting flat out, CPU while
// idle, and memory per shard. Part of `npm run bench` (bench/run.js); alone:
// node --expose-gc bench/system.js [--events N --rounds R]
'use strict'

const { monitorEventLoopDelay } = require('node:perf_hooks')
const { EventBus } = require('..')
const { makeEvent, sleep, standalone } = require('./common')

const gc = () => global.gc?.()

/** p99 event-loop delay (ms) while ingesting `n` objects as fast as the loop allows. */
async function loopDelay(n) {
  const bus = new EventBus({ adapter: { type: 'noop' } })
  const h = monitorEventLoopDelay({ resolution: 1 })
  h.enable()
  // A service ingests from handlers, so work comes in turns of the loop: 1,000 per turn.
  for (let i = 0; i < n; ) {
    const end = Math.min(n, i + 1000)
    for (; i < end; i++) {
      try {
        bus.ingest(makeEvent(i))
      } catch (e) {
        if (e.code !== 'ERR_BACKPRESSURE') throw e
        break
      }
    }
    await new Promise((r) => setImmediate(r))
  }
  await bus.flush()
  h.disable()
  const s = await bus.shutdown()
  if (s.ingested !== s.stored) throw new Error(`loop delay run: ingested ${s.ingested}, stored ${s.stored}`)
  return h.percentile(99) / 1e6
}

/** Process CPU seconds (all threads) over `ms` with an idle 4-shard bus and a waiting subscriber. */
async function idleCpu(ms) {
  const bus = new EventBus({ shards: 4 })
  const it = bus.subscribe({ from: 'latest' })[Symbol.asyncIterator]()
  const waiting = it.next()
  await sleep(200)
  const before = process.cpuUsage()
  await sleep(ms)
  const used = process.cpuUsage(before)
  await bus.shutdown()
  await waiting
  return (used.user + used.system) / 1e6
}

/** RSS growth per shard (MiB) after `n` events through a 4-shard bus at default options,
 * measured in a fresh process so earlier scenarios' garbage does not count. */
function rssPerShard(n) {
  const { execFileSync } = require('node:child_process')
  const out = execFileSync(process.execPath, ['--expose-gc', __filename, '--rss-child', String(n)], { encoding: 'utf8' })
  return Number(out.trim())
}

async function rssChild(n) {
  gc()
  const before = process.memoryUsage().rss
  // Default options except the adapter: noop keeps no events, so only the bus's own
  // memory (rings, batches, dispatchers) is measured.
  const bus = new EventBus({ adapter: { type: 'noop' } })
  for (let i = 0; i < n; i++) {
    try {
      bus.ingest(makeEvent(i))
    } catch (e) {
      if (e.code !== 'ERR_BACKPRESSURE') throw e
      await bus.flush()
      i--
    }
  }
  await bus.flush()
  gc()
  const after = process.memoryUsage().rss
  const shards = bus.numShards
  const s = await bus.shutdown()
  if (s.stored !== n) throw new Error(`memory run: stored ${s.stored} of ${n}`)
  return (after - before) / shards / 2 ** 20
}

async function run({ events = 1_000_000, rounds = 3, idleMs = 5000 } = {}) {
  const delay = []
  const idle = []
  const rss = []
  for (let r = 0; r < rounds; r++) delay.push(await loopDelay(events))
  for (let r = 0; r < rounds; r++) idle.push(await idleCpu(idleMs))
  // Memory once: RSS rarely shrinks, so later rounds would measure less.
  rss.push(rssPerShard(events))
  return {
    title: 'system',
    rows: [
      { key: 'loopDelay', scenario: 'p99 event-loop delay while ingesting objects flat out (1,000 per loop turn)', rb: delay, peer: null, peerRates: null, unit: 'ms' },
      { key: 'idleCpu', scenario: `process CPU over ${idleMs / 1000} s idle, 4 shards and a waiting subscriber`, rb: idle, peer: null, peerRates: null, unit: 's' },
      { key: 'rss', scenario: `RSS growth per shard after ${events.toLocaleString('en-US')} events, default options (noop adapter)`, rb: rss, peer: null, peerRates: null, unit: 'MiB' },
    ],
  }
}

module.exports = { run }

if (require.main === module && process.argv.includes('--rss-child')) {
  rssChild(Number(process.argv[process.argv.indexOf('--rss-child') + 1])).then((mib) => console.log(mib))
} else if (require.main === module) standalone(run, { events: 1_000_000, rounds: 3 })
