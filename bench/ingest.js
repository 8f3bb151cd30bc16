// Ingest benchmark: ringbus against a baseline in the same process, rounds alternating so
// machine drift hits both. Part of `npm run bench` (bench/run.js); alone:
// node bench/ingest.js [--events N --rounds R]
'use strict'

const { EventBus } = require('..')

const { makeEvent, fmt, alternate, standalone, busOptions } = require('./common')

let N = 1_000_000
const BATCH = 1000


/** The peer: what a service would do without ringbus: serialise and keep it in a JS ring. */
class JsRing {
  constructor(slots) {
    this.slots = new Array(slots)
    this.mask = slots - 1
    this.head = 0
  }
  push(s) {
    this.slots[this.head & this.mask] = s
    this.head++
  }
}

function newBus(extra = {}) {
  return new EventBus(busOptions({ adapter: { type: 'noop' }, ringCapacity: 1 << 16, ...extra }))
}

/** Runs `body(bus)` for N events; returns events/s, checking every event was accepted. */
async function timeBus(body, extra) {
  const bus = newBus(extra)
  const t0 = process.hrtime.bigint()
  const accepted = await body(bus)
  const t1 = process.hrtime.bigint()
  await bus.flush()
  const s = await bus.shutdown()
  if (accepted !== N || s.stored !== N || s.dropped !== 0) {
    throw new Error(`count mismatch: accepted ${accepted}, stored ${s.stored}, dropped ${s.dropped} of ${N}`)
  }
  return N / (Number(t1 - t0) / 1e9)
}

/**
 * Calls `body(run)`, where `run(fn)` runs `fn` with an active span (the OpenTelemetry API
 * with an AsyncLocalStorage context manager, as a traced service has it).
 */
async function withSpan(body) {
  const otel = require('@opentelemetry/api')
  const { AsyncLocalStorageContextManager } = require('@opentelemetry/context-async-hooks')
  const { BasicTracerProvider } = require('@opentelemetry/sdk-trace-base')
  const manager = new AsyncLocalStorageContextManager().enable()
  otel.context.setGlobalContextManager(manager)
  try {
    const span = new BasicTracerProvider().getTracer('bench').startSpan('request')
    const ctx = otel.trace.setSpan(otel.ROOT_CONTEXT, span)
    const rate = await body((fn) => otel.context.with(ctx, fn))
    span.end()
    return rate
  } finally {
    otel.context.disable()
  }
}

/** ingest with a retry when the ring is full (counts the waits). */
async function ingestAll(bus, make) {
  let accepted = 0
  for (let i = 0; i < N; i++) {
    try {
      bus.ingest(make(i))
      accepted++
    } catch (e) {
      if (e.code !== 'ERR_BACKPRESSURE') throw e
      await bus.flush()
      i--
    }
  }
  return accepted
}

/** ingestBatch of one prebuilt array of BATCH events, repeated until N are accepted. */
function batchScenario(key, name, make) {
  return {
    key,
    name,
    ringbus: () => {
      const batch = Array.from({ length: BATCH }, (_, i) => make(i))
      return timeBus(async (bus) => {
        let accepted = 0
        while (accepted < N) {
          const n = Math.min(BATCH, N - accepted)
          try {
            accepted += bus.ingestBatch(n === BATCH ? batch : batch.slice(0, n))
          } catch (e) {
            if (e.code !== 'ERR_BACKPRESSURE') throw e
            await bus.flush()
          }
        }
        return accepted
      })
    },
  }
}

const scenarios = [
  {
    key: 'object',
    name: 'ingest(object), noop adapter',
    ringbus: () => timeBus((bus) => ingestAll(bus, makeEvent)),
    peerName: 'JSON.stringify + JS ring (65,536 slots)',
    peer: async () => {
      const ring = new JsRing(65536)
      const t0 = process.hrtime.bigint()
      for (let i = 0; i < N; i++) ring.push(JSON.stringify(makeEvent(i)))
      const t1 = process.hrtime.bigint()
      if (ring.head !== N) throw new Error('ring count mismatch')
      return N / (Number(t1 - t0) / 1e9)
    },
  },
  {
    key: 'buffer',
    name: 'ingest(prebuilt Buffer)',
    ringbus: () => {
      const buf = Buffer.from(JSON.stringify(makeEvent(1)))
      return timeBus((bus) => ingestAll(bus, () => buf))
    },
  },
  {
    key: 'string',
    name: 'ingest(prebuilt JSON string), validated',
    ringbus: () => {
      const str = JSON.stringify(makeEvent(1))
      return timeBus((bus) => ingestAll(bus, () => str))
    },
  },
  {
    key: 'classMethod',
    name: 'ingest(prebuilt Buffer) through the napi-rs class method (frozen bus, so no bound functions)',
    ringbus: () => {
      const buf = Buffer.from(JSON.stringify(makeEvent(1)))
      return timeBus((bus) => {
        Object.freeze(bus)
        return ingestAll(bus, () => buf)
      })
    },
  },
  {
    key: 'objectPropagate',
    name: 'ingest(object) inside an active span, telemetry.propagate (traceparent into the headers)',
    ringbus: () => withSpan((run) => timeBus((bus) => run(() => ingestAll(bus, makeEvent)), { telemetry: { propagate: true } })),
    peerName: 'ingest(object) inside the same span without telemetry',
    peer: () => withSpan((run) => timeBus((bus) => run(() => ingestAll(bus, makeEvent)), { telemetry: false })),
  },
  batchScenario('batch', `ingestBatch(${BATCH} prebuilt JSON strings), validated`, (i) => JSON.stringify(makeEvent(i))),
  batchScenario('batchBuffer', `ingestBatch(${BATCH} prebuilt Buffers)`, (i) => Buffer.from(JSON.stringify(makeEvent(i)))),
]


/** Every scenario, `rounds` times each, ringbus and its peer alternating who goes first. */
async function run({ events = 1_000_000, rounds = 5 } = {}) {
  N = events
  const rows = []
  for (const sc of scenarios) {
    const rb = []
    const peerRates = []
    await alternate(
      rounds,
      async () => rb.push(await sc.ringbus()),
      sc.peer && (async () => peerRates.push(await sc.peer())),
    )
    rows.push({ key: sc.key, scenario: sc.name, rb, peer: sc.peerName, peerRates: sc.peer ? peerRates : null, unit: 'ev/s' })
  }
  return { title: `ingest: ${fmt(N)} events x ${rounds} rounds`, rows }
}

module.exports = { run }

if (require.main === module) standalone(run, { events: 1_000_000, rounds: 5 })
