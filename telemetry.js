'use strict'
// OpenTelemetry for a bus, through the service's own `@opentelemetry/api` (an optional peer
// dependency). Without the package, or with `telemetry: false`, or with no provider given
// or registered and no propagation asked, `attach` leaves the bus untouched: its methods
// stay the native ones and nothing is logged. Names follow the messaging semantic
// conventions v1.44 (Development stability): docs/observability.md.

const { version } = require('./package.json')

const SCOPE = 'ringbus'
// The conventions' advised buckets, also those of `bus.metrics()` (src/telemetry/histogram.rs).
const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]
// Written batches become `send` spans this often, like the SDK's batch span processor; the
// batches keep their own start and end times.
const EXPORT_EVERY_MS = 1000
// Trace contexts a `receive` span links to.
const MAX_LINKS = 32

let api
function otelApi() {
  if (api === undefined) {
    try {
      api = require('@opentelemetry/api')
    } catch {
      api = null
    }
  }
  return api
}

function tracerOf(otel, provider) {
  if (provider) return provider.getTracer(SCOPE, version)
  const global = otel.trace.getTracerProvider()
  const delegate = typeof global.getDelegate === 'function' ? global.getDelegate() : global
  // A fresh proxy's delegate is the API's no-op provider: nothing is registered.
  if (delegate === new otel.ProxyTracerProvider().getDelegate()) return null
  return global.getTracer(SCOPE, version)
}

function meterOf(otel, provider) {
  const meter = (provider || otel.metrics.getMeterProvider()).getMeter(SCOPE, version)
  return meter instanceof otel.createNoopMeter().constructor ? null : meter
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/

// The last header pair parsed: the events of one request share it.
let lastParent = null
let lastState = null
let lastContext = null

/** The span context a `traceparent` (and `tracestate`) header names, or null. */
function remoteContext(otel, traceparent, tracestate) {
  if (traceparent === lastParent && tracestate === lastState && lastParent !== null) return lastContext
  const context = parseContext(otel, traceparent, tracestate)
  lastParent = traceparent
  lastState = tracestate
  lastContext = context
  return context
}

function parseContext(otel, traceparent, tracestate) {
  const m = typeof traceparent === 'string' ? TRACEPARENT.exec(traceparent) : null
  if (!m || m[1] === 'ff') return null
  const context = { traceId: m[2], spanId: m[3], traceFlags: parseInt(m[4], 16) & 0xff, isRemote: true }
  if (!otel.isSpanContextValid(context)) return null
  if (typeof tracestate === 'string' && tracestate !== '') {
    try {
      context.traceState = otel.createTraceState(tracestate)
    } catch {
      // A malformed tracestate is dropped, the traceparent still links.
    }
  }
  return context
}

/** `err.code` when it is a short name, else the class name, else `_OTHER` (as driver.js). */
function errorType(e) {
  const named = /^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$/
  try {
    const code = e !== null && typeof e === 'object' ? e.code : undefined
    if (typeof code === 'string' && named.test(code)) return code
    const name = e !== null && e !== undefined ? e.constructor && e.constructor.name : undefined
    if (typeof name === 'string' && named.test(name)) return name
  } catch {
    // A hostile getter: the fallback.
  }
  return '_OTHER'
}

function failed(span, e) {
  try {
    span.recordException(e instanceof Error ? e : String(e))
  } catch {
    // Telemetry never changes what the handler's caller sees.
  }
  span.setAttribute('error.type', errorType(e))
  span.setStatus({ code: 2 /* SpanStatusCode.ERROR */ })
}

class Telemetry {
  constructor(otel, bus, tracer, meter, options) {
    this.otel = otel
    this.tracer = tracer
    this.meter = meter
    this.options = options
    this.proto = Object.getPrototypeOf(bus)
    const first = JSON.parse(bus._telemetryTake())
    this.destination = first.destination
    this.base = { 'messaging.system': 'ringbus', 'messaging.destination.name': this.destination }
    this.counts = first
  }

  /** Takes the written batches: `send` spans and durations, and the latest counters. */
  drain(bus) {
    const take = JSON.parse(bus._telemetryTake())
    this.counts = take
    const { otel, tracer } = this
    for (const b of take.batches) {
      const attributes = {
        ...this.base,
        'messaging.operation.name': 'send',
        'messaging.operation.type': 'send',
        'messaging.destination.partition.id': String(b.shard),
        'messaging.batch.message_count': b.events,
      }
      if (b.error) attributes['error.type'] = b.error
      if (tracer) {
        const links = []
        for (const [parent, state] of b.links) {
          const context = remoteContext(otel, parent, state)
          if (context) links.push({ context })
        }
        const span = tracer.startSpan(
          `send ${this.destination}`,
          { kind: otel.SpanKind.PRODUCER, startTime: b.startedMs, links, attributes: { ...attributes, 'ringbus.write.attempts': b.attempts } },
          otel.ROOT_CONTEXT,
        )
        if (b.error) span.setStatus({ code: otel.SpanStatusCode.ERROR })
        span.end(b.startedMs + b.durationMs)
      }
      if (this.operationDuration) {
        const { 'messaging.batch.message_count': _, 'messaging.destination.partition.id': __, ...labels } = attributes
        this.operationDuration.record(b.durationMs / 1000, labels)
      }
    }
  }

  instruments(ref) {
    const { meter, otel } = this
    if (!meter) return () => {}
    const advice = { explicitBucketBoundaries: BUCKETS }
    this.operationDuration = meter.createHistogram('messaging.client.operation.duration', {
      description: 'Duration of a messaging operation initiated by a producer or consumer client.',
      unit: 's',
      advice,
      valueType: otel.ValueType.DOUBLE,
    })
    this.processDuration = meter.createHistogram('messaging.process.duration', {
      description: 'Duration of processing operation.',
      unit: 's',
      advice,
      valueType: otel.ValueType.DOUBLE,
    })
    const sent = meter.createObservableCounter('messaging.client.sent.messages', {
      description: 'Number of messages producer attempted to send to the broker.',
      unit: '{message}',
      valueType: otel.ValueType.INT,
    })
    const consumed = meter.createObservableCounter('messaging.client.consumed.messages', {
      description: 'Number of messages that were delivered to the application.',
      unit: '{message}',
      valueType: otel.ValueType.INT,
    })
    const send = { ...this.base, 'messaging.operation.name': 'send', 'messaging.operation.type': 'send' }
    const receive = { ...this.base, 'messaging.operation.name': 'receive', 'messaging.operation.type': 'receive' }
    const observeSent = (result) => {
      const bus = ref.deref()
      if (!bus) return
      const s = bus.stats()
      result.observe(s.stored, send)
      result.observe(s.droppedAdapter, { ...send, 'error.type': 'ERR_ADAPTER' })
      result.observe(s.droppedShutdown, { ...send, 'error.type': 'ERR_SHUT_DOWN' })
    }
    const observeConsumed = (result) => {
      const bus = ref.deref()
      if (bus && bus.stats().state !== 'closed') this.drain(bus)
      const c = this.counts
      result.observe(c.polled, receive)
      for (const g of c.groups) result.observe(g.consumed, { ...receive, 'messaging.consumer.group.name': g.group })
    }
    sent.addCallback(observeSent)
    consumed.addCallback(observeConsumed)
    return () => {
      sent.removeCallback(observeSent)
      consumed.removeCallback(observeConsumed)
    }
  }

  /** `ingest` and `ingestBatch` that add the active trace context to the headers. */
  propagate(bus) {
    const { otel } = this
    // The headers of the last span context seen: a request ingests many events under one
    // span, and the SDK hands out the same context object each time.
    let lastSpan = null
    let lastHeaders = null
    let lastOptions = null
    const inject = (options) => {
      const span = otel.trace.getSpanContext(otel.context.active())
      if (!span) return options
      if (span !== lastSpan) {
        if (!otel.isSpanContextValid(span)) return options
        const context = {
          traceparent: `00-${span.traceId}-${span.spanId}-${(span.traceFlags & 0xff).toString(16).padStart(2, '0')}`,
        }
        const state = span.traceState && span.traceState.serialize()
        if (state) context.tracestate = state
        lastSpan = span
        lastHeaders = context
        lastOptions = { headers: context }
      }
      if (options === undefined || options === null) return lastOptions
      if (typeof options !== 'object') return options
      const headers = options.headers
      if (headers === undefined || headers === null) return { ...options, headers: lastHeaders }
      if (typeof headers !== 'object' || headers.traceparent !== undefined) return options
      return { ...options, headers: { ...headers, ...lastHeaders } }
    }
    // The native fast functions are bound on the object first, then wrapped.
    const bound = bus._bindIngest()
    const ingest = bound ? bus.ingest : this.proto.ingest.bind(bus)
    const ingestBatch = bound ? bus.ingestBatch : this.proto.ingestBatch.bind(bus)
    define(bus, 'ingest', function ingestWithContext(event, options) {
      return ingest(event, inject(options))
    })
    define(bus, 'ingestBatch', function ingestBatchWithContext(events, options) {
      return ingestBatch(events, inject(options))
    })
  }

  /** `process()` with a `process` span and the handler's duration around each handler. */
  process(bus) {
    const { otel, tracer, proto } = this
    const self = this
    define(bus, 'process', function process(group, handler, options) {
      if (typeof handler !== 'function') return proto.process.call(bus, group, handler, options)
      const fixed = { ...self.base, 'messaging.operation.name': 'process', 'messaging.operation.type': 'process', 'messaging.consumer.group.name': group }
      const traced = function (ev) {
        const started = performance.now()
        let span
        let ctx = otel.context.active()
        if (tracer) {
          const h = ev.headers
          const creation = h ? remoteContext(otel, h.traceparent, h.tracestate) : null
          const parent = creation && self.options.processParent ? otel.trace.setSpanContext(otel.ROOT_CONTEXT, creation) : otel.ROOT_CONTEXT
          span = tracer.startSpan(
            `process ${self.destination}`,
            {
              kind: otel.SpanKind.CONSUMER,
              links: creation ? [{ context: creation }] : [],
              attributes: {
                ...fixed,
                'messaging.message.id': ev.messageId,
                'messaging.destination.partition.id': String(ev.shardId),
                ...(typeof ev.deliveries === 'number' ? { 'messaging.message.delivery_count': ev.deliveries } : {}),
              },
            },
            parent,
          )
          ctx = otel.trace.setSpan(parent, span)
        }
        const end = (e) => {
          if (span) {
            if (e !== undefined) failed(span, e)
            span.end()
          }
          if (self.processDuration) {
            const labels = e === undefined ? fixed : { ...fixed, 'error.type': errorType(e) }
            self.processDuration.record((performance.now() - started) / 1000, labels)
          }
        }
        let result
        try {
          result = otel.context.with(ctx, handler, undefined, ev)
        } catch (e) {
          end(e === undefined ? null : e)
          throw e
        }
        if (result !== null && (typeof result === 'object' || typeof result === 'function')) {
          return Promise.resolve(result).then(
            (v) => {
              end()
              return v
            },
            (e) => {
              end(e === undefined ? null : e)
              throw e
            },
          )
        }
        end()
        return result
      }
      return proto.process.call(bus, group, traced, options)
    })
  }

  /** A `receive` span (and duration) around each `poll` and consumer read. */
  receive(bus) {
    const { otel, tracer, proto } = this
    const self = this
    const span = (startTime, events, extra, error) => {
      const attributes = { ...self.base, 'messaging.operation.name': 'receive', 'messaging.operation.type': 'receive', ...extra }
      if (self.operationDuration) {
        const labels = error === undefined ? { ...attributes } : { ...attributes, 'error.type': errorType(error) }
        self.operationDuration.record((Date.now() - startTime) / 1000, labels)
      }
      if (!tracer) return
      // The first distinct creation contexts, as the native side picks them for `send`.
      const links = []
      const seen = new Set()
      for (const ev of events) {
        const parent = ev.headers && ev.headers.traceparent
        if (!parent || seen.has(parent)) continue
        seen.add(parent)
        const context = remoteContext(otel, parent, ev.headers.tracestate)
        if (context) links.push({ context })
        if (links.length === MAX_LINKS) break
      }
      attributes['messaging.batch.message_count'] = events.length
      if (events.length === 1) {
        attributes['messaging.message.id'] = events[0].messageId
        attributes['messaging.destination.partition.id'] = String(events[0].shardId)
      }
      const s = tracer.startSpan(`receive ${self.destination}`, { kind: otel.SpanKind.CLIENT, startTime, links, attributes })
      if (error !== undefined) failed(s, error)
      s.end()
    }
    define(bus, 'poll', function poll(request) {
      const started = Date.now()
      return proto.poll.call(bus, request).then(
        (page) => {
          span(started, page.events, {})
          return page
        },
        (e) => {
          span(started, [], {}, e)
          throw e
        },
      )
    })
    define(bus, 'subscribe', function subscribe(options) {
      const it = proto.subscribe.call(bus, options)
      self.reads(it, span, {})
      return it
    })
    define(bus, 'consumer', function consumer(options) {
      return proto.consumer.call(bus, options).then((c) => {
        self.consumerReads(c, span)
        return c
      })
    })
  }

  /** A `receive` span per event an iterator (a subscription, a consumer) yields. */
  reads(it, span, extra) {
    const iproto = Object.getPrototypeOf(it)
    define(it, 'next', function next() {
      const started = Date.now()
      return iproto.next.call(it).then((step) => {
        if (!step.done) span(started, [step.value], extra)
        return step
      })
    })
  }

  consumerReads(c, span) {
    const { otel, tracer } = this
    const cproto = Object.getPrototypeOf(c)
    const group = { 'messaging.consumer.group.name': c.group }
    this.reads(c, span, group)
    if (!tracer || !this.options.settleSpans) return
    const settle = (name, fn) =>
      function (event, options) {
        const s = tracer.startSpan(`${name} ${this.destination}`, {
          kind: otel.SpanKind.CLIENT,
          attributes: {
            ...this.base,
            ...group,
            'messaging.operation.name': name,
            'messaging.operation.type': 'settle',
            'messaging.message.id': event && event.messageId,
          },
        })
        try {
          return fn.call(c, event, options)
        } catch (e) {
          failed(s, e)
          throw e
        } finally {
          s.end()
        }
      }.bind(this)
    define(c, 'ack', settle('ack', cproto.ack))
    define(c, 'nack', settle('nack', cproto.nack))
  }
}

function define(object, name, value) {
  Object.defineProperty(object, name, { value, writable: true, configurable: true, enumerable: false })
}

/**
 * Wires OpenTelemetry into `bus` as `options.telemetry` asks (see `TelemetryOptions` in
 * index.d.ts) and returns it.
 */
function attach(bus, options) {
  let o
  try {
    o = options == null ? undefined : options.telemetry
  } catch {
    return bus
  }
  if (o === false) return bus
  const otel = otelApi()
  if (!otel) return bus
  o = o !== null && typeof o === 'object' ? o : {}
  const tracer = tracerOf(otel, o.tracerProvider)
  const meter = meterOf(otel, o.meterProvider)
  const t = new Telemetry(otel, bus, tracer, meter, o)
  if (o.propagate === true) t.propagate(bus)
  if (!tracer && !meter) return bus
  // Held weakly: a bus the service forgets is still collected (and closed).
  const ref = new WeakRef(bus)
  const release = t.instruments(ref)
  if (tracer || meter) {
    bus._telemetryStart()
    t.process(bus)
    t.receive(bus)
  }
  const timer = setInterval(() => {
    const b = ref.deref()
    if (!b) {
      clearInterval(timer)
      release()
      return
    }
    t.drain(b)
  }, EXPORT_EVERY_MS)
  timer.unref()
  const shutdown = t.proto.shutdown
  define(bus, 'shutdown', function () {
    return shutdown.call(bus).then((stats) => {
      clearInterval(timer)
      t.drain(bus)
      release()
      return stats
    })
  })
  return bus
}

module.exports = { attach }
