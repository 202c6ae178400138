'use strict';
// OpenTelemetryPlugin: the engine's A66 metrics into an @opentelemetry
// MeterProvider, its spans into a tracer provider's span processors, the
// active span as traceparent, handlers inside the server span's context.
const test = require('node:test');
const assert = require('node:assert/strict');
const { AsyncLocalStorage } = require('node:async_hooks');
const otel = require('@opentelemetry/api');
const {
  MeterProvider,
  PeriodicExportingMetricReader,
  InMemoryMetricExporter,
  AggregationTemporality,
} = require('@opentelemetry/sdk-metrics');
const { BasicTracerProvider, SimpleSpanProcessor, InMemorySpanExporter } = require('@opentelemetry/sdk-trace-base');
const grpc = require('..');
const { OpenTelemetryPlugin } = require('../telemetry');

// What @opentelemetry/context-async-hooks does, in a few lines: the active
// context follows async calls.
class AlsContextManager {
  constructor() {
    this._als = new AsyncLocalStorage();
  }
  active() {
    return this._als.getStore() || otel.ROOT_CONTEXT;
  }
  with(ctx, fn, thisArg, ...args) {
    return this._als.run(ctx, () => fn.apply(thisArg, args));
  }
  bind(ctx, target) {
    if (typeof target !== 'function') return target;
    const self = this;
    return function (...args) {
      return self.with(ctx, () => target.apply(this, args));
    };
  }
  enable() {
    return this;
  }
  disable() {
    this._als.disable();
    return this;
  }
}
otel.context.setGlobalContextManager(new AlsContextManager());

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const id = (b) => b;
const method = (path, requestStream, responseStream) => ({
  path,
  requestStream,
  responseStream,
  requestSerialize: id,
  requestDeserialize: id,
  responseSerialize: id,
  responseDeserialize: id,
});
const SERVICE = {
  unary: method('/obs.S/Unary', false, false),
  stream: method('/obs.S/Stream', false, true),
  mid: method('/obs.S/Mid', false, false),
  leaf: method('/obs.S/Leaf', false, false),
};
const Client = grpc.makeGenericClientConstructor(SERVICE, 'S');

function setup(tracing = true) {
  const metricExporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  const reader = new PeriodicExportingMetricReader({ exporter: metricExporter, exportIntervalMillis: 3600000 });
  const meterProvider = new MeterProvider({ readers: [reader] });
  const spanExporter = new InMemorySpanExporter();
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spanExporter)] });
  const plugin = new OpenTelemetryPlugin({ meterProvider, tracerProvider: tracing ? tracerProvider : undefined });
  const t = {
    plugin,
    tracer: tracerProvider.getTracer('test'),
    spans: () => spanExporter.getFinishedSpans(),
    /** metric name -> [{ attributes, value }] (cumulative) */
    async points() {
      metricExporter.reset();
      await reader.forceFlush();
      const out = new Map();
      for (const rm of metricExporter.getMetrics()) {
        for (const sm of rm.scopeMetrics) {
          for (const m of sm.metrics) {
            for (const p of m.dataPoints) {
              if (!out.has(m.descriptor.name)) out.set(m.descriptor.name, []);
              out.get(m.descriptor.name).push({ attributes: p.attributes, value: p.value });
            }
          }
        }
      }
      return out;
    },
    /** Flushes until `done()` (a server records a call when it ends, maybe after the client's callback); bounded. */
    async settle(done) {
      const end = Date.now() + 10000;
      for (;;) {
        assert.equal(await plugin.flush(5000), true, 'records not recorded within 5 s');
        if ((await done()) || Date.now() > end) return;
        await sleep(20);
      }
    },
  };
  return t;
}

function serve(impl) {
  const server = new grpc.Server();
  server.addService(SERVICE, impl);
  return new Promise((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, port) => (e ? reject(e) : resolve({ server, port }))),
  );
}

const unaryCall = (client, name, req, md) =>
  new Promise((resolve, reject) => client[name](req, md || new grpc.Metadata(), (e, v) => (e ? reject(e) : resolve(v))));

test('A66 metrics of a unary and a server-streaming call, with exact attributes and counts', async () => {
  const t = setup(false);
  const seen = {};
  t.plugin.registerGlobal();
  let server, port, client;
  try {
    ({ server, port } = await serve({
      unary(call, cb) {
        seen.traceparent = call.metadata.get('traceparent');
        cb(null, Buffer.concat([call.request, call.request]));
      },
      stream(call) {
        for (let i = 0; i < 3; i++) call.write(Buffer.concat([call.request, Buffer.from(String(i))]));
        call.end();
      },
    }));
    client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  } finally {
    t.plugin.deregisterGlobal();
  }
  try {
    assert.equal(String(await unaryCall(client, 'unary', Buffer.from('hello'))), 'hellohello');
    const got = await new Promise((resolve, reject) => {
      const parts = [];
      const s = client.stream(Buffer.from('ab'));
      s.on('data', (d) => parts.push(String(d)));
      s.on('error', reject);
      s.on('end', () => resolve(parts));
    });
    assert.deepEqual(got, ['ab0', 'ab1', 'ab2']);
    assert.deepEqual(seen.traceparent, [], 'no tracer provider: no traceparent on the wire');
    const target = `127.0.0.1:${port}`;
    await t.settle(async () => ((await t.points()).get('grpc.server.call.duration') || []).length === 2);
    const pts = await t.points();
    for (const [path, sent, rcvd] of [
      ['obs.S/Unary', 5, 10],
      ['obs.S/Stream', 2, 9],
    ]) {
      const client = { 'grpc.method': path, 'grpc.target': target };
      const clientSt = { ...client, 'grpc.status': 'OK' };
      const server = { 'grpc.method': path };
      const serverSt = { ...server, 'grpc.status': 'OK' };
      const expect = {
        'grpc.client.attempt.started': client,
        'grpc.client.attempt.duration': clientSt,
        'grpc.client.call.duration': clientSt,
        'grpc.client.attempt.sent_total_compressed_message_size': clientSt,
        'grpc.client.attempt.rcvd_total_compressed_message_size': clientSt,
        'grpc.server.call.started': server,
        'grpc.server.call.duration': serverSt,
        'grpc.server.call.sent_total_compressed_message_size': serverSt,
        'grpc.server.call.rcvd_total_compressed_message_size': serverSt,
      };
      for (const [name, attrs] of Object.entries(expect)) {
        const mine = (pts.get(name) || []).filter((p) => p.attributes['grpc.method'] === path);
        assert.deepEqual(
          mine.map((p) => p.attributes),
          [attrs],
          name,
        );
        const v = mine[0].value;
        if (name.endsWith('.started')) assert.equal(v, 1, name);
        else {
          assert.equal(v.count, 1, name);
          assert.equal(v.buckets.boundaries.length, name.endsWith('duration') ? 41 : 14, `${name}: A66 buckets`);
        }
      }
      const sum = (name) => pts.get(name).find((p) => p.attributes['grpc.method'] === path).value.sum;
      assert.equal(sum('grpc.client.attempt.sent_total_compressed_message_size'), sent);
      assert.equal(sum('grpc.client.attempt.rcvd_total_compressed_message_size'), rcvd);
      assert.equal(sum('grpc.server.call.rcvd_total_compressed_message_size'), sent);
      assert.equal(sum('grpc.server.call.sent_total_compressed_message_size'), rcvd);
    }
    assert.equal(t.spans().length, 0);
  } finally {
    client.close();
    server.forceShutdown();
    t.plugin.shutdown();
  }
});

test('the span tree of a client → server → second-server hop under a span of the test', async () => {
  const t = setup(true);
  let leafSaw = null;
  t.plugin.registerGlobal();
  let leaf, mid, toLeaf, client;
  try {
    leaf = await serve({
      leaf(call, cb) {
        leafSaw = call.metadata.get('traceparent')[0];
        t.tracer.startActiveSpan('leaf-work', (s) => s.end());
        cb(null, Buffer.from('leaf'));
      },
    });
    toLeaf = new Client(`127.0.0.1:${leaf.port}`, grpc.credentials.createInsecure());
    mid = await serve({
      mid(call, cb) {
        toLeaf.leaf(call.request, (e, v) => cb(e, v));
      },
    });
    client = new Client(`127.0.0.1:${mid.port}`, grpc.credentials.createInsecure());
  } finally {
    t.plugin.deregisterGlobal();
  }
  try {
    const root = await t.tracer.startActiveSpan('test-parent', async (span) => {
      assert.equal(String(await unaryCall(client, 'mid', Buffer.from('abc'))), 'leaf');
      span.end();
      return span.spanContext();
    });
    const names = ['Sent.obs.S/Mid', 'Attempt.obs.S/Mid', 'Recv.obs.S/Mid', 'Sent.obs.S/Leaf', 'Attempt.obs.S/Leaf', 'Recv.obs.S/Leaf', 'leaf-work'];
    await t.settle(() => t.spans().length >= names.length + 1);
    const spans = t.spans();
    assert.deepEqual(spans.map((s) => s.name).sort(), [...names, 'test-parent'].sort());
    const by = Object.fromEntries(spans.map((s) => [s.name, s]));
    let up = root;
    for (const name of names) {
      const s = by[name];
      assert.equal(s.spanContext().traceId, root.traceId, `${name}: one trace`);
      assert.equal(s.parentSpanContext && s.parentSpanContext.spanId, up.spanId, `${name}'s parent`);
      assert.ok(s.endTime[0] > 0 && s.duration[0] >= 0, name);
      up = s.spanContext();
    }
    assert.equal(by['Sent.obs.S/Mid'].kind, otel.SpanKind.CLIENT);
    assert.equal(by['Attempt.obs.S/Mid'].kind, otel.SpanKind.INTERNAL);
    assert.equal(by['Recv.obs.S/Leaf'].kind, otel.SpanKind.SERVER);
    assert.equal(by['Recv.obs.S/Leaf'].attributes['rpc.grpc.status_code'], 0);
    assert.equal(by['Sent.obs.S/Mid'].status.code, otel.SpanStatusCode.UNSET);
    assert.equal(by['Recv.obs.S/Mid'].instrumentationScope.name, 'grpc-core');
    const out = by['Attempt.obs.S/Mid'].events.filter((e) => e.name === 'Outbound message');
    assert.equal(out.length, 1);
    assert.equal(out[0].attributes['message-size'], 3);
    assert.equal(leafSaw, `00-${root.traceId}-${by['Attempt.obs.S/Leaf'].spanContext().spanId}-01`);
  } finally {
    client.close();
    toLeaf.close();
    mid.server.forceShutdown();
    leaf.server.forceShutdown();
    t.plugin.shutdown();
  }
});

test('an explicit traceparent wins; channels made after deregistering record nothing', async () => {
  const t = setup(true);
  const seen = {};
  t.plugin.registerGlobal();
  let server, port, client;
  try {
    ({ server, port } = await serve({
      unary(call, cb) {
        seen.traceparent = call.metadata.get('traceparent')[0];
        cb(null, call.request);
      },
    }));
    client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  } finally {
    t.plugin.deregisterGlobal();
  }
  const plain = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  try {
    const md = new grpc.Metadata();
    md.set('traceparent', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01');
    await t.tracer.startActiveSpan('ignored', async (s) => {
      await unaryCall(client, 'unary', Buffer.from('x'), md);
      s.end();
    });
    await t.settle(() => t.spans().some((s) => s.name === 'Recv.obs.S/Unary'));
    const sent = t.spans().filter((s) => s.name === 'Sent.obs.S/Unary');
    assert.equal(sent.length, 1);
    assert.equal(sent[0].spanContext().traceId, '4bf92f3577b34da6a3ce929d0e0e4736');
    assert.equal(sent[0].parentSpanContext.spanId, '00f067aa0ba902b7');
    assert.equal(sent[0].parentSpanContext.isRemote, true);
    assert.ok(seen.traceparent.startsWith('00-4bf92f3577b34da6a3ce929d0e0e4736-'), seen.traceparent);

    const before = (await t.points()).get('grpc.client.attempt.started').length;
    await unaryCall(plain, 'unary', Buffer.from('y'));
    assert.equal(await t.plugin.flush(5000), true);
    assert.equal(before, 1);
    assert.equal((await t.points()).get('grpc.client.attempt.started').length, 1, 'the later channel records nothing');
  } finally {
    client.close();
    plain.close();
    server.forceShutdown();
    t.plugin.shutdown();
  }
});

test('registerGlobal / deregisterGlobal', () => {
  const a = new OpenTelemetryPlugin({ meterProvider: new MeterProvider() });
  const b = new OpenTelemetryPlugin({ meterProvider: new MeterProvider() });
  a.registerGlobal();
  try {
    assert.throws(() => b.registerGlobal(), /already registered/);
    assert.throws(() => b.deregisterGlobal(), /not registered/);
  } finally {
    a.deregisterGlobal();
  }
  assert.throws(() => a.deregisterGlobal(), /not registered/);
  assert.equal(grpc.OpenTelemetryPlugin, OpenTelemetryPlugin);
  assert.throws(() => new OpenTelemetryPlugin({ tracerProvider: {} }), TypeError);
  a.shutdown();
  b.shutdown();
});
