'use strict';
// OpenTelemetry for grpc-core: the engine's gRFC A66 metrics into an
// @opentelemetry/api MeterProvider and its per-call spans (Sent.<method>,
// Attempt.<method>, Recv.<method>) into an SDK tracer provider's span
// processors.
//
// The engine measures; this module only records. Engine threads never run
// JavaScript: they queue each record, and the JS thread takes the queue in
// batches (src/telemetry.rs). When tracing is on, client calls carry the
// active span (@opentelemetry/api's context) as `traceparent` unless the
// metadata has one, and server handlers run inside the server span's
// context (context.with), so their spans and the calls they make are its
// children. @opentelemetry/api is an optional peer dependency: it is loaded
// when a plugin is created.

const path = require('node:path');

const native = require(path.join(__dirname, 'lib', 'grpc_core_node.node'));
const version = require('./package.json').version;

const SCOPE = 'grpc-core';
let registered = null;

function api() {
  return require('@opentelemetry/api');
}

/**
 * Records gRPC metrics into `meterProvider` (an @opentelemetry/api
 * MeterProvider) and spans into the span processors of `tracerProvider`
 * (an @opentelemetry/sdk-trace-base BasicTracerProvider or one built on it,
 * such as NodeTracerProvider) or, where the provider's processors are not
 * reachable, into `spanProcessors` (with `resource` for their resource).
 */
class OpenTelemetryPlugin {
  constructor(options = {}) {
    const { meterProvider, tracerProvider, spanProcessors, resource } = options;
    let processors = spanProcessors ? Array.from(spanProcessors) : null;
    if (tracerProvider && !processors) {
      const active = tracerProvider._activeSpanProcessor;
      if (!active || typeof active.onEnd !== 'function') {
        throw new TypeError('tracerProvider must be an @opentelemetry/sdk-trace-base tracer provider, or pass spanProcessors');
      }
      processors = [active];
    }
    this.meterProvider = meterProvider || null;
    this.tracerProvider = tracerProvider || null;
    this._processors = processors;
    this._resource = resource || (tracerProvider && tracerProvider._resource) || emptyResource();
    this._native = null;
    this._instruments = new Map();
    this._meter = null;
    this._recorded = 0;
    this._waiters = [];
  }

  get _tracing() {
    return this._processors !== null && this._processors.length > 0;
  }

  /** Channels and servers created from now on record into this plugin. Throws if one is registered. */
  registerGlobal() {
    if (registered !== null) throw new Error('an OpenTelemetryPlugin is already registered');
    this._start();
    registered = this;
  }

  /** Channels and servers created from now on record nothing (those created before keep recording). */
  deregisterGlobal() {
    if (registered !== this) throw new Error('this OpenTelemetryPlugin is not registered');
    registered = null;
  }

  /**
   * Resolves true once every record the engine handed over so far is
   * recorded into the providers, false after `timeoutMs` (default 5000).
   */
  flush(timeoutMs = 5000) {
    if (this._native === null) return Promise.resolve(true);
    const target = this._native.received();
    if (this._recorded >= target) return Promise.resolve(true);
    return new Promise((resolve) => {
      const w = { target, resolve, timer: null };
      w.timer = setTimeout(() => {
        this._waiters = this._waiters.filter((x) => x !== w);
        resolve(false);
      }, timeoutMs);
      this._waiters.push(w);
    });
  }

  /** Stops recording (what is queued is dropped); deregisters the plugin if it is registered. */
  shutdown() {
    if (registered === this) registered = null;
    if (this._native !== null) this._native.close();
    for (const w of this._waiters) {
      clearTimeout(w.timer);
      w.resolve(true);
    }
    this._waiters = [];
  }

  _start() {
    if (this._native !== null) return;
    if (this.meterProvider) this._meter = this.meterProvider.getMeter(SCOPE, version);
    this._native = new native.TelemetryNative(!!this.meterProvider, this._tracing, (batch) => this._deliver(batch));
  }

  _deliver(batch) {
    for (const m of batch.metrics) {
      try {
        this._record(m);
      } catch (e) {
        process.emitWarning(`grpc-core: recording ${m.name} failed: ${e && e.message}`);
      }
    }
    for (const s of batch.spans) {
      try {
        this._export(s);
      } catch (e) {
        process.emitWarning(`grpc-core: exporting span ${s.name} failed: ${e && e.message}`);
      }
    }
    if (batch.dropped > 0) process.emitWarning(`grpc-core: ${batch.dropped} telemetry records dropped (the queue was full)`);
    this._recorded += batch.metrics.length + batch.spans.length + batch.dropped;
    if (this._waiters.length > 0) {
      const still = [];
      for (const w of this._waiters) {
        if (this._recorded >= w.target) {
          clearTimeout(w.timer);
          w.resolve(true);
        } else still.push(w);
      }
      this._waiters = still;
    }
  }

  _record(m) {
    let inst = this._instruments.get(m.name);
    if (inst === undefined) {
      const opts = { unit: m.unit, description: m.description };
      if (m.kind === 0) {
        inst = this._meter.createCounter(m.name, opts);
      } else {
        opts.advice = { explicitBucketBoundaries: m.boundaries };
        inst = this._meter.createHistogram(m.name, opts);
      }
      this._instruments.set(m.name, inst);
    }
    if (m.kind === 0) inst.add(m.value, m.attributes);
    else inst.record(m.value, m.attributes);
  }

  _export(s) {
    const { TraceFlags } = api();
    const spanContext = { traceId: s.traceId, spanId: s.spanId, traceFlags: TraceFlags.SAMPLED, isRemote: false };
    const parent = s.parentSpanId
      ? { traceId: s.traceId, spanId: s.parentSpanId, traceFlags: TraceFlags.SAMPLED, isRemote: s.parentIsRemote }
      : undefined;
    const status = { code: s.statusCode };
    if (s.statusMessage) status.message = s.statusMessage;
    const durationNs = (s.end[0] - s.start[0]) * 1e9 + (s.end[1] - s.start[1]);
    const scope = { name: SCOPE, version };
    const span = {
      name: s.name,
      kind: s.kind,
      spanContext: () => spanContext,
      parentSpanContext: parent,
      parentSpanId: parent ? parent.spanId : undefined, // sdk-trace-base 1.x
      startTime: s.start,
      endTime: s.end,
      status,
      attributes: attributesOf(s.attributes),
      links: [],
      events: s.events.map((e) => ({ name: e.name, time: e.time, attributes: attributesOf(e.attributes), droppedAttributesCount: 0 })),
      duration: [Math.floor(Math.max(durationNs, 0) / 1e9), Math.max(durationNs, 0) % 1e9],
      ended: true,
      resource: this._resource,
      instrumentationScope: scope,
      instrumentationLibrary: scope, // sdk-trace-base 1.x
      droppedAttributesCount: 0,
      droppedEventsCount: 0,
      droppedLinksCount: 0,
    };
    for (const p of this._processors) p.onEnd(span);
  }
}

function attributesOf(list) {
  const out = {};
  for (const a of list) out[a.key] = a.value;
  return out;
}

function emptyResource() {
  return { attributes: {}, merge: (other) => other, getRawAttributes: () => [], asyncAttributesPending: false };
}

// ------------------------------------------------------------ for index.js

/** The registered plugin's native sink and whether it traces, for a new channel or server. */
function current() {
  return registered;
}

/** `list` (a native metadata list) with the active span as `traceparent`, unless it has one. */
function inject(list) {
  const { trace, context } = api();
  const span = trace.getSpan(context.active());
  if (!span) return list;
  const sc = span.spanContext();
  if (!trace.isSpanContextValid(sc)) return list;
  for (let i = 0; i < list.length; i += 2) if (list[i] === 'traceparent') return list;
  const flags = (sc.traceFlags & 1).toString(16).padStart(2, '0');
  return list.concat(['traceparent', `00-${sc.traceId}-${sc.spanId}-${flags}`]);
}

/** Runs `fn` with the server span of `traceparent` as the active context. */
function runIn(traceparent, fn) {
  if (!traceparent) return fn();
  const { trace, context, TraceFlags } = api();
  const [, traceId, spanId, flags] = traceparent.split('-');
  const sc = { traceId, spanId, traceFlags: parseInt(flags, 16) & TraceFlags.SAMPLED, isRemote: false };
  return context.with(trace.setSpanContext(context.active(), sc), fn);
}

module.exports = { OpenTelemetryPlugin, _internal: { current, inject, runIn } };
