// Shared by the benchmarks: arguments, the event, ringbus's side of the backend scenarios,
// and the report format.
'use strict'

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`)
  return i > 0 ? Number(process.argv[i + 1]) : dflt
}
// The ~100-byte event of every scenario, built inside the timed loops.
const makeEvent = (i) => ({ id: i, type: 'order.created', customer: `c-${i % 1000}`, amount: i % 997, ok: true, tag: 'bench' })
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
// RINGBUS_BENCH_MAX_DELAY_MS=2 runs the ingest, JetStream, Redis and latency scenarios with that fixed linger instead of
// the default adaptive batching (to compare the two on the same machine).
const fixedDelay = process.env.RINGBUS_BENCH_MAX_DELAY_MS
/** Options of every bus the benchmarks create. */
const busOptions = (options) => (fixedDelay === undefined ? options : { ...options, batch: { maxDelayMs: Number(fixedDelay) } })
const now = () => Number(process.hrtime.bigint()) / 1e9
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const fmt = (n) => Math.round(n).toLocaleString('en-US')
const fmtValue = (n) => (Math.abs(n) >= 100 ? fmt(n) : Number(n.toPrecision(3)).toString())
const summary = (xs) => `${fmtValue(median(xs))} (${fmtValue(Math.min(...xs))}–${fmtValue(Math.max(...xs))})`
const ratios = (a, b) => a.map((x, i) => (x / b[i]).toFixed(2)).join(' ')

/** Ingests `n` events (waiting while rings are full), flushes; ev/s from first ingest to flushed. */
async function ringbusIngest(bus, n) {
  const t0 = now()
  for (let i = 0; i < n; i++) {
    try {
      bus.ingest(makeEvent(i))
    } catch (e) {
      if (e.code !== 'ERR_BACKPRESSURE') throw e
      await sleep(1)
      i--
    }
  }
  await bus.flush()
  const secs = now() - t0
  const s = bus.stats()
  if (s.stored !== n || s.dropped !== 0) throw new Error(`ringbus stored ${s.stored}, dropped ${s.dropped}`)
  return n / secs
}

/** Polls every page of 1,000 from the start; ev/s. */
async function ringbusRead(bus, n) {
  const t0 = now()
  let got = 0
  let cursor
  for (;;) {
    const page = await bus.poll({ limit: 1000, cursor })
    got += page.events.length
    cursor = page.cursor
    if (!page.hasMore) break
  }
  const secs = now() - t0
  if (got !== n) throw new Error(`ringbus read ${got}`)
  return n / secs
}

/** Table rows for `{ scenario, rb: [per round], peer, peerRates: [per round] | null, unit }`. */
function tableRows(rows) {
  return rows.map((r) => ({
    scenario: r.scenario,
    ringbus: `${summary(r.rb)} ${r.unit}`,
    peer: r.peerRates ? `${r.peer}: ${summary(r.peerRates)} ${r.unit}` : '—',
    'ratio per round': r.peerRates ? ratios(r.rb, r.peerRates) : '—',
  }))
}

/** Prints rows as lines and a table. */
function report(rows) {
  const table = tableRows(rows)
  for (const r of table) console.log(`${r.scenario}: ringbus ${r.ringbus}; peer ${r.peer}; ratios ${r['ratio per round']}`)
  console.table(table)
}

/** Runs `ours` and `peer` (if any) once per round, alternating which goes first so machine
 * drift hits both. */
async function alternate(rounds, ours, peer) {
  for (let r = 0; r < rounds; r++) {
    if (peer && r % 2 === 1) await peer()
    await ours()
    if (peer && r % 2 === 0) await peer()
  }
}

/** Runs a bench file on its own: `node bench/<name>.js [--events N --rounds R]`. */
function standalone(run, defaults) {
  run({ ...defaults, events: arg('events', defaults.events), rounds: arg('rounds', defaults.rounds) })
    .then((r) => report(r.rows))
    .catch((e) => {
      console.error(e)
      process.exit(1)
    })
}

module.exports = { arg, makeEvent, sleep, busOptions, now, median, fmt, summary, ratios, ringbusIngest, ringbusRead, tableRows, report, alternate, standalone }
