// bus.metrics() on every backend: the exposition passes Prometheus's own linter (promtool,
// Debian's `prometheus` package) and the strict OpenMetrics parser of prometheus_client
// (Debian's `python3-prometheus-client`), and its numbers equal stats(), the handler's own
// count and what an independent client (ioredis, nats.js) finds in the store.
import { spawnSync } from 'node:child_process'
import { connect } from '@nats-io/transport-node'
import { jetstreamManager } from '@nats-io/jetstream'
import Redis from 'ioredis'
import type * as Ringbus from '../index'
import { sleep, until } from './support/adapter'
import { privateNats, privateRedis, uniqueName, type PrivateServer } from './support/servers'

const { EventBus, metricsContentType, setLogger } = require('../main.js') as typeof Ringbus

// The pauses below make writes retry; their warnings are expected: kept here, not printed.
const logged: Ringbus.LogRecord[] = []
beforeAll(() => setLogger((r) => void logged.push(r), { level: 'warn' }))
afterAll(() => setLogger(null))

const PROMTOOL = process.env.PROMTOOL_BIN ?? '/usr/bin/promtool'
// Debian's interpreter, where python3-prometheus-client installs.
const PYTHON = process.env.RINGBUS_PYTHON ?? '/usr/bin/python3'

type Sample = { name: string; labels: Record<string, string>; value: number }

function samples(text: string): Sample[] {
  const out: Sample[] = []
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (!m) throw new Error(`not a sample line: ${line}`)
    const labels: Record<string, string> = {}
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2]
    out.push({ name: m[1], labels, value: Number(m[3]) })
  }
  return out
}

/** The sum of the samples named `name` whose labels include `where`. */
function sum(all: Sample[], name: string, where: Record<string, string | undefined> = {}): number {
  return all
    .filter((s) => s.name === name && Object.entries(where).every(([k, v]) => (v === undefined ? !(k in s.labels) : s.labels[k] === v)))
    .reduce((a, s) => a + s.value, 0)
}

function promtool(text: string) {
  const r = spawnSync(PROMTOOL, ['check', 'metrics'], { input: text, encoding: 'utf8' })
  if (r.error) throw new Error(`promtool could not run (${r.error.message}): install Debian's prometheus package (.ci/run does)`)
  return r
}

function openMetricsFamilies(text: string): string[] {
  const script = [
    'import sys, json',
    'from prometheus_client.openmetrics.parser import text_string_to_metric_families',
    'print(json.dumps([f.name + ":" + f.type for f in text_string_to_metric_families(sys.stdin.read())]))',
  ].join('\n')
  const r = spawnSync(PYTHON, ['-c', script], { input: text, encoding: 'utf8' })
  if (r.error || r.status !== 0) throw new Error(`the OpenMetrics parser refused the text: ${r.error?.message ?? r.stderr}`)
  return JSON.parse(r.stdout)
}

const servers: PrivateServer[] = []
afterAll(async () => {
  for (const s of servers) await s.stop()
})

/** A bus on its own server (network backends): pausing the server makes writes retry. */
async function setUp(kind: string) {
  const name = uniqueName(`metrics-${kind}`)
  const common = { shards: 2, ringCapacity: 64, backpressure: 'dropOldest' as const, retries: 50 }
  if (kind === 'memory') return { bus: new EventBus(common), server: undefined, name, count: async () => undefined }
  if (kind === 'redis') {
    const server = await privateRedis()
    servers.push(server)
    const url = `redis://127.0.0.1:${server.port}`
    const bus = await EventBus.create({ ...common, adapter: { type: 'redis', url, keyPrefix: name, commandTimeoutMs: 200 } })
    const count = async () => {
      const r = new Redis(url)
      try {
        // The shard streams, as the Redis layout names them (redis.test.ts).
        let n = 0
        for (let s = 0; s < 2; s++) n += await r.xlen(`{${name}:${s}}`)
        return n
      } finally {
        r.disconnect()
      }
    }
    return { bus, server, name, count }
  }
  const server = await privateNats()
  servers.push(server)
  const url = `nats://127.0.0.1:${server.port}`
  const bus = await EventBus.create({ ...common, adapterTimeoutMs: 3000, adapter: { type: 'jetstream', servers: url, stream: name, requestTimeoutMs: 300 } })
  const count = async () => {
    const nc = await connect({ servers: url })
    try {
      return (await (await jetstreamManager(nc)).streams.info(name)).state.messages
    } finally {
      await nc.close()
    }
  }
  return { bus, server, name, count }
}

describe.each(['memory', 'jetstream', 'redis'])('bus.metrics() on %s', (kind) => {
  it('passes promtool and the OpenMetrics parser, and its numbers equal stats(), the handler and the store', async () => {
    const { bus, server, count } = await setUp(kind)
    // Drops: bursts far larger than the 2 × 64-event rings. Retries: the server stops
    // answering for a while with writes in flight (network backends).
    const burst = (n: number, base: number) => {
      for (let i = 0; i < n; i++) bus.ingest({ i: base + i }, { key: `k${(base + i) % 5}` })
    }
    if (server) {
      burst(200, 0)
      const paused = server.pause(1500)
      await sleep(100)
      burst(2000, 200)
      await paused
    } else {
      burst(2200, 0)
    }
    await bus.flush()
    const stats = bus.stats()
    expect(stats.droppedOldest).toBeGreaterThan(0)
    if (server) {
      expect(stats.retried).toBeGreaterThan(0)
      expect(logged.some((r) => r.message.startsWith('write failed, retrying'))).toBe(true)
    }

    let calls = 0
    let thrown = 0
    const worker = bus.process(
      'billing',
      async (ev) => {
        calls += 1
        if ((ev.json() as { i: number }).i % 20 === 0) {
          thrown += 1
          throw Object.assign(new Error('declined'), { code: 'E_DECLINED' })
        }
      },
      { maxDeliveries: 2, backoffMs: 10 },
    )
    await until(() => worker.stats().consumer.acked + worker.stats().consumer.deadLettered === stats.stored, 30_000)
    const page = await bus.poll({ limit: 25 })
    await worker.close()
    // Lag from the store: events stored after the worker left.
    burst(37, 100_000)
    await bus.flush()
    // The store may show the last writes to readers a moment later (JetStream).
    await until(async () => (await bus.group('billing')).lag === 37)

    const text = await bus.metrics()
    const lint = promtool(text)
    expect({ status: lint.status, out: lint.stdout + lint.stderr }).toEqual({ status: 0, out: '' })
    const all = samples(text)
    const after = bus.stats()
    const ok = { error_type: undefined }
    expect(sum(all, 'messaging_client_sent_messages_total', ok)).toBe(after.stored)
    expect(sum(all, 'ringbus_ingested_events_total')).toBe(after.ingested)
    expect(sum(all, 'ringbus_dropped_events_total', { reason: 'oldest' })).toBe(after.droppedOldest)
    expect(sum(all, 'ringbus_write_retries_total')).toBe(after.retried)
    expect(sum(all, 'ringbus_shards')).toBe(2)
    // Independently: what the store holds (network backends).
    const held = await count()
    if (held !== undefined) expect(sum(all, 'messaging_client_sent_messages_total', ok)).toBe(held)

    const g = { messaging_consumer_group_name: 'billing' }
    // Every handler call, retries of a failed one included.
    expect(sum(all, 'messaging_client_consumed_messages_total', g)).toBe(calls)
    expect(sum(all, 'messaging_client_consumed_messages_total', { messaging_consumer_group_name: undefined })).toBe(page.events.length)
    expect(sum(all, 'messaging_process_duration_seconds_count', g)).toBe(calls)
    expect(sum(all, 'messaging_process_duration_seconds_count', { ...g, error_type: 'E_DECLINED' })).toBe(thrown)
    expect(sum(all, 'ringbus_ingest_to_handled_seconds_count', g)).toBe(calls)
    const letters = await bus.deadLetters('billing', { limit: 10_000 })
    expect(letters.events.length).toBeGreaterThan(0)
    expect(sum(all, 'ringbus_group_dead_lettered_events_total', g)).toBe(letters.events.length)
    expect(sum(all, 'ringbus_group_dead_letters', g)).toBe(letters.events.length)
    // Every failing event failed on both of its deliveries.
    expect(thrown).toBe(2 * letters.events.length)
    expect(calls).toBe(stats.stored + letters.events.length)
    expect(sum(all, 'ringbus_group_redelivered_events_total', g)).toBe(letters.events.length)
    expect(sum(all, 'ringbus_group_leases_taken_total', g)).toBe(2)
    expect(sum(all, 'ringbus_group_lag_events', g)).toBe(37)
    expect(sum(all, 'ringbus_ingest_to_stored_seconds_count')).toBe(after.stored)
    // Every histogram is whole: +Inf bucket equals the count.
    expect(sum(all, 'ringbus_ingest_to_stored_seconds_bucket', { le: '+Inf' })).toBe(after.stored)

    const om = await bus.metrics({ format: 'openmetrics' })
    expect(om.endsWith('# EOF\n')).toBe(true)
    const families = openMetricsFamilies(om)
    expect(families).toEqual(
      expect.arrayContaining([
        'messaging_client_sent_messages:counter',
        'messaging_client_consumed_messages:counter',
        'messaging_client_operation_duration_seconds:histogram',
        'messaging_process_duration_seconds:histogram',
        'ringbus_group_lag_events:gauge',
      ]),
    )
    expect(metricsContentType('openmetrics')).toBe('application/openmetrics-text; version=1.0.0; charset=utf-8')
    expect(metricsContentType()).toBe('text/plain; version=0.0.4; charset=utf-8')
    await bus.shutdown()
  })
})

describe('bus.metrics()', () => {
  it('keeps counters across scaling and a consumer that closes and joins again; no label holds a key or an id', async () => {
    const bus = new EventBus({ shards: 1 })
    for (let i = 0; i < 300; i++) bus.ingest({ i }, { key: `secret-key-${i}` })
    await bus.scaleUp(2)
    for (let i = 0; i < 300; i++) bus.ingest({ i }, { key: `secret-key-${i}` })
    await bus.scaleDown(2)
    await bus.flush()
    const read = async (n: number) => {
      const c = await bus.consumer({ group: 'g', maxInFlight: 50 })
      for (let got = 0; got < n; ) {
        const step = await c.next()
        c.ack(step.value!)
        got += 1
      }
      await c.close()
    }
    await read(100)
    const first = samples(await bus.metrics())
    await read(100)
    const text = await bus.metrics()
    const second = samples(text)
    expect(sum(second, 'ringbus_ingested_events_total')).toBe(600)
    expect(sum(second, 'messaging_client_sent_messages_total', { error_type: undefined })).toBe(600)
    const consumed = (s: Sample[]) => sum(s, 'messaging_client_consumed_messages_total', { messaging_consumer_group_name: 'g' })
    // What the consumers yielded, not what they fetched ahead and gave back at close.
    expect(consumed(first)).toBe(100)
    expect(consumed(second)).toBe(200)
    expect(text).not.toContain('secret-key')
    const ids = (await bus.poll({ limit: 5 })).events.map((e) => e.messageId)
    for (const id of ids) expect(text).not.toContain(id)
    await bus.shutdown()
  })

  it('rejects bad options with ERR_INVALID_CONFIG naming them', async () => {
    const bus = new EventBus()
    await expect(bus.metrics({ format: 'json' as never })).rejects.toMatchObject({ code: 'ERR_INVALID_CONFIG', message: expect.stringContaining("'prometheus' or 'openmetrics'") })
    await expect(bus.metrics({ groups: 'some' as never })).rejects.toMatchObject({ code: 'ERR_INVALID_CONFIG', message: expect.stringContaining('options.groups') })
    await expect(bus.metrics({ colour: 1 } as never)).rejects.toMatchObject({ code: 'ERR_INVALID_CONFIG', message: expect.stringContaining('colour') })
    expect(() => metricsContentType('json' as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_CONFIG' }))
    expect(() => new EventBus({ telemetry: { propagte: true } as never })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_CONFIG', message: expect.stringContaining('propagte') }))
    expect(() => new EventBus({ telemetry: { propagate: 'yes' } as never })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_CONFIG' }))
    await bus.shutdown()
  })
})
