// `npm run bench`: every scenario beside its peer in one process, rounds alternating, then a
// table of medians (min–max), per-round ratios and the goal. `--write` also writes
// BENCHMARKS.md; `--smoke` runs one tiny round of everything (CI: it must run and count
// right, its speed means nothing). `--only groups,latency` runs those parts (names: ingest,
// jetstream, redis, system, latency, groups, handover) and writes nothing.
'use strict'

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { median, fmt, ratios, summary } = require('./common')

const smoke = process.argv.includes('--smoke')
const PARTS = ['ingest', 'jetstream', 'redis', 'system', 'latency', 'groups', 'handover']
const onlyAt = process.argv.indexOf('--only')
const only = onlyAt > 0 ? (process.argv[onlyAt + 1] ?? '').split(',').filter(Boolean) : null
if (only && (only.length === 0 || only.some((p) => !PARTS.includes(p)))) {
  console.error(`bench: --only takes a comma-separated list of ${PARTS.join(', ')}; got ${JSON.stringify(process.argv[onlyAt + 1] ?? '')}`)
  process.exit(2)
}
// A run with a fixed linger (RINGBUS_BENCH_MAX_DELAY_MS), or of some parts, is a
// comparison, not the record.
const write = process.argv.includes('--write') && !smoke && !only && process.env.RINGBUS_BENCH_MAX_DELAY_MS === undefined

// Goals on the 2-core reference machine: [lowest (or highest) median, lowest median ratio].
const GOALS = {
  object: { min: 800_000, ratio: 0.85, text: '≥ 800,000 ev/s and ≥ 0.85× the JS ring' },
  buffer: { min: 2_500_000, text: '≥ 2,500,000 ev/s' },
  objectPropagate: { text: 'none (reported): the cost of propagation, against the same ingest without telemetry' },
  classMethod: { text: 'none: shows what the bound functions save (compare with the row above)' },
  string: { min: 1_500_000, text: '≥ 1,500,000 ev/s' },
  batch: { min: 5_000_000, text: '≥ 5,000,000 ev/s' },
  batchBuffer: { min: 8_000_000, text: '≥ 8,000,000 ev/s' },
  jsWrite: { min: 150_000, ratio: 5, text: '≥ 150,000 ev/s and ≥ 5× nats.js' },
  redisWrite: { min: 300_000, ratio: 2.5, text: '≥ 300,000 ev/s and ≥ 2.5× ioredis' },
  jsRead: { min: 200_000, text: '≥ 200,000 ev/s' },
  jsReadTimestamp: { ratio: 1 / 1.5, text: "≥ 0.67× the default order's rate (read time within 1.5×)" },
  redisRead: { min: 250_000, text: '≥ 250,000 ev/s' },
  loopDelay: { max: 5, text: '< 5 ms' },
  idleCpu: { max: 0.01, text: '< 0.01 s' },
  rss: { max: 8, text: '≤ 8 MiB' },
  // Latency rows: their own judge, on the medians of p50 and p99 over the rounds (ms).
  latMemory5000: { judge: (r) => r.stats.p50 <= 0.2 && r.stats.p99 <= 1, text: 'p50 ≤ 0.2 ms, p99 ≤ 1 ms' },
  latJetStream5000: {
    judge: (r) => r.stats.p50 <= r.peerStats.p50 + 0.3 && r.stats.p99 <= r.peerStats.p99,
    text: "p50 ≤ peer's + 0.3 ms, p99 ≤ peer's",
  },
  latRedis5000: {
    judge: (r) => r.stats.p50 <= r.peerStats.p50 + 0.3 && r.stats.p99 <= r.peerStats.p99 + 1,
    text: "p50 ≤ peer's + 0.3 ms, p99 ≤ peer's + 1 ms",
  },
  groupMemory: { min: 1_000_000, text: '≥ 1,000,000 ev/s' },
  groupMemoryTraced: { text: 'none (reported): the cost of a process span per event' },
  groupRedis: { ratio: 1.5, text: '≥ 1.5× ioredis' },
  groupBullmq: { ratio: 5, text: '≥ 5× BullMQ' },
  groupJetStream: { ratio: 3, text: '≥ 3× nats.js' },
  consumerMemory: { text: 'none (reported): the raw consumer beside process()' },
  consumerRedis: { text: 'none (reported): the raw consumer beside process()' },
  consumerJetStream: { text: 'none (reported): the raw consumer beside process()' },
  latGroupMemory5000: { judge: (r) => r.stats.p50 <= 0.3 && r.stats.p99 <= 2, text: 'p50 ≤ 0.3 ms, p99 ≤ 2 ms' },
  latGroupJetStream5000: {
    judge: (r) => r.stats.p50 <= r.peerStats.p50 + 0.5 && r.stats.p99 <= r.peerStats.p99,
    text: "p50 ≤ peer's + 0.5 ms, p99 ≤ peer's",
  },
  latGroupRedis5000: {
    judge: (r) => r.stats.p50 <= r.peerStats.p50 + 0.5 && r.stats.p99 <= r.peerStats.p99,
    text: "p50 ≤ peer's + 0.5 ms, p99 ≤ peer's",
  },
  handoverMemory: { judge: (r) => r.stats.p50 <= 100 && r.stats.p99 <= 250, text: 'p50 ≤ 100 ms, p99 ≤ 250 ms' },
  handoverJetStream: { judge: (r) => r.stats.p50 <= 100 && r.stats.p99 <= 250, text: 'p50 ≤ 100 ms, p99 ≤ 250 ms' },
  handoverRedis: { judge: (r) => r.stats.p50 <= 100 && r.stats.p99 <= 250, text: 'p50 ≤ 100 ms, p99 ≤ 250 ms' },
  latMemory50000: { text: 'none (reported)' },
  latJetStream50000: { text: 'none (reported)' },
  latRedis50000: { text: 'none (reported)' },
}

function verdict(row) {
  const g = GOALS[row.key]
  if (g.judge) return g.judge(row) ? 'met' : 'missed'
  // A goal may be a ratio to the peer only (the group rows): judged too.
  if (g.min === undefined && g.max === undefined && g.ratio === undefined) return '—'
  const m = median(row.rb)
  let met = (g.min === undefined || m >= g.min) && (g.max === undefined || m < g.max || (row.key === 'rss' && m <= g.max))
  if (g.ratio !== undefined && row.peerRates) met = met && m / median(row.peerRates) >= g.ratio
  return met ? 'met' : 'missed'
}

async function main() {
  const sizes = smoke
    ? { ingest: { events: 20_000, rounds: 1 }, jetstream: { events: 5_000, rounds: 1 }, system: { events: 20_000, rounds: 1, idleMs: 500 }, latency: { seconds: 0.2, rounds: 1 }, groups: { events: 2_000, rounds: 1 }, handover: { rounds: 1 } }
    : { ingest: { events: 1_000_000, rounds: 5 }, jetstream: { events: 200_000, rounds: 3 }, system: { events: 1_000_000, rounds: 3, idleMs: 5000 }, latency: { seconds: 3, rounds: 3 }, groups: { events: 200_000, rounds: 3 }, handover: { rounds: 3 } }
  sizes.redis = sizes.jetstream
  const parts = []
  const took = []
  const started = Date.now()
  for (const name of PARTS.filter((p) => !only || only.includes(p))) {
    const t0 = Date.now()
    const part = await require(`./${name}`).run(sizes[name])
    const secs = Math.round((Date.now() - t0) / 1000)
    console.log(`bench: ${name} took ${secs} s`)
    took.push(`${name} ${secs} s`)
    parts.push(part)
  }
  const rows = parts.flatMap((p) => p.rows)
  const versions = Object.assign({}, ...parts.map((p) => p.versions ?? {}))
  const cpu = `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'unknown CPU'}`
  const header = [
    `machine: ${cpu}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.type()} ${os.release()}`,
    `node ${process.version}; nats-server ${versions['nats-server'] ?? '(not run)'}; redis ${versions.redis ?? '(not run)'}`,
    `rounds: ${parts.map((p) => p.title).join('; ')}`,
    `run time: ${Math.round((Date.now() - started) / 1000)} s (${took.join(', ')})`,
  ]
  const table = rows.map((r) => ({
    scenario: r.scenario,
    'ringbus median (min–max)': r.text ?? `${summary(r.rb)} ${r.unit}`,
    peer: r.peerRates ? `${r.peer}: ${r.peerText ?? `${summary(r.peerRates)} ${r.unit}`}` : '—',
    'ratio per round': r.peerRates ? ratios(r.rb, r.peerRates) : '—',
    goal: GOALS[r.key].text,
    '': smoke ? '(smoke)' : verdict(r),
  }))
  for (const h of header) console.log(h)
  console.table(table)
  if (smoke) {
    console.log(`bench smoke: ${rows.length} scenarios ran and counted every event`)
    return
  }
  if (write) {
    const cols = Object.keys(table[0])
    const md = [
      '# Benchmarks',
      '',
      `Measured ${new Date().toISOString().slice(0, 10)} with \`npm run bench\` (\`node --expose-gc bench/run.js --write\`), which wrote this file.`,
      'Each scenario runs ringbus and its peer in the same process, alternating which goes first in each round; the table shows medians with the range over rounds and the ratio ringbus/peer per round. The event is the same ~100-byte JSON object everywhere, built inside the timed loop (the prebuilt scenarios build it once).',
      '',
      ...header.map((h) => `- ${h}`),
      '',
      `| ${cols.map((c) => c || 'goal met').join(' | ')} |`,
      `|${cols.map(() => '---').join('|')}|`,
      ...table.map((r) => `| ${cols.map((c) => String(r[c]).replace(/\|/g, '\\|')).join(' | ')} |`),
      '',
      'Goals are for the 2-core reference machine; a missed goal is reported, not hidden. Throughputs are events per second from the first `ingest` to the `flush()` that confirmed the last one (writes), or over all `poll` pages (reads). Latency rows time each event from just before `ingest` (or the peer\'s publish) to its arrival at a reader in the same process (`subscribe({ from: \'latest\' })`; the peers\' consumers), 100 keys, sent in 1 ms timer ticks at the stated rate after 200 warm-up events; the columns give the medians over rounds of each run\'s p50, p99 and maximum, and the ratios compare p50s (lower is better).',
      '',
    ].join('\n')
    fs.writeFileSync(path.join(__dirname, '..', 'BENCHMARKS.md'), md)
    console.log('wrote BENCHMARKS.md')
  }
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
