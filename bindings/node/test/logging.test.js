'use strict';
// Engine logs through grpc-js's setLogger / setLogVerbosity / logVerbosity.
// Logging is process-wide, so the cases run in order in this file's process.
const test = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const grpc = require('..');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A port nothing listens on. */
async function deadPort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

/** A call that fails to connect; resolves with its error. */
async function failingCall(port) {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  try {
    return await new Promise((resolve) =>
      client.makeUnaryRequest('/test.v1.Tester/Unary', (b) => b, (b) => b, Buffer.alloc(0), { deadline: Date.now() + 2000 }, resolve),
    );
  } finally {
    client.close();
  }
}

/** A logger that records which method got which line. */
function recorder(methods = ['error', 'info', 'debug']) {
  const lines = [];
  const logger = {};
  for (const m of methods) logger[m] = (...args) => lines.push({ m, text: args.join(' ') });
  return { logger, lines };
}

/** Waits until `pred()` or `ms` pass (records cross in batches, after the call's own events). */
async function until(pred, ms = 2000) {
  const end = Date.now() + ms;
  while (!pred() && Date.now() < end) await sleep(20);
}

test('logVerbosity has grpc-js numbers', () => {
  assert.deepEqual({ ...grpc.logVerbosity }, { DEBUG: 0, INFO: 1, ERROR: 2, NONE: 3 });
});

test('DEBUG: a call that fails to connect produces engine records in the logger', async () => {
  const { logger, lines } = recorder();
  grpc.setLogger(logger);
  grpc.setLogVerbosity(grpc.logVerbosity.DEBUG);
  const port = await deadPort();
  const err = await failingCall(port);
  assert.equal(err.code, grpc.status.UNAVAILABLE);
  await until(() => lines.some((l) => l.text.includes(`127.0.0.1:${port}`)));
  const rec = lines.find((l) => l.text.includes(`127.0.0.1:${port}`));
  assert.ok(rec, `no engine record about the dead port in ${JSON.stringify(lines)}`);
  // grpc-js's trace line shape: ISO time | vVERSION PID | tracer | text.
  assert.match(rec.text, /^\d{4}-\d\d-\d\dT[\d:.]+Z \| v\d+\.\d+\.\d+ \d+ \| grpc_core::\S+ \| .*connect failed/);
  assert.equal(rec.m, 'debug');
});

test('a logger with only error() gets every severity (grpc-js fallback)', async () => {
  const { logger, lines } = recorder(['error']);
  grpc.setLogger(logger);
  const port = await deadPort();
  await failingCall(port);
  await until(() => lines.some((l) => l.text.includes(`127.0.0.1:${port}`)));
  assert.ok(lines.some((l) => l.m === 'error' && l.text.includes('connect failed')));
});

test('setLogger replaces the logger', async () => {
  const a = recorder();
  const b = recorder();
  grpc.setLogger(a.logger);
  grpc.setLogger(b.logger);
  const port = await deadPort();
  await failingCall(port);
  await until(() => b.lines.some((l) => l.text.includes(`127.0.0.1:${port}`)));
  assert.ok(b.lines.some((l) => l.text.includes(`127.0.0.1:${port}`)));
  assert.equal(a.lines.length, 0);
});

test('ERROR leaves debug records out; NONE produces none', async () => {
  for (const v of [grpc.logVerbosity.ERROR, grpc.logVerbosity.NONE]) {
    const { logger, lines } = recorder();
    grpc.setLogger(logger);
    grpc.setLogVerbosity(v);
    const port = await deadPort();
    const err = await failingCall(port);
    assert.equal(err.code, grpc.status.UNAVAILABLE);
    await sleep(300);
    assert.deepEqual(lines, [], `verbosity ${v}`);
  }
});

test('records beyond the queue (4,096) are dropped while JS is busy, and one ERROR record counts them', async () => {
  const { logger, lines } = recorder();
  grpc.setLogger(logger);
  grpc.setLogVerbosity(grpc.logVerbosity.DEBUG);
  // 5,000 backends nothing listens on: each failed connect is a DEBUG record.
  const addrs = [];
  for (let i = 0; i < 5000; i++) addrs.push(`127.0.${1 + (i >> 8)}.1:${1 + (i & 255)}`);
  const resolver = new grpc.ManualResolver(addrs);
  const client = new grpc.Client('manual:///drops', grpc.credentials.createInsecure(), {
    'grpc-core.manual_resolver': resolver,
    'grpc.lb_policy_name': 'round_robin',
  });
  try {
    client.getChannel().getConnectivityState(true);
    const dropped = () => lines.find((l) => / engine log records dropped \(the queue was full\)$/.test(l.text));
    // Block the JS thread (the engine keeps logging); try again if the machine was too slow to fill the queue.
    for (let round = 0; round < 3 && !dropped(); round++) {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2000);
      await until(() => dropped() !== undefined, 300);
    }
    const rec = dropped();
    assert.ok(rec, `no drop record among ${lines.length} lines`);
    assert.equal(rec.m, 'error');
    assert.match(rec.text, /\| grpc_core_node \| [1-9]\d* engine log records dropped/);
  } finally {
    client.close();
  }
});

test('GRPC_VERBOSITY=debug enables records to the default logger (console.error, "D " prefix)', async () => {
  const port = await deadPort();
  const script = `
    const grpc = require(${JSON.stringify(path.join(__dirname, '..'))});
    const c = new grpc.Client('127.0.0.1:${port}', grpc.credentials.createInsecure());
    c.makeUnaryRequest('/a.B/C', (b) => b, (b) => b, Buffer.alloc(0), { deadline: Date.now() + 2000 }, () =>
      setTimeout(() => c.close(), 200));`;
  const run = (verbosity) => {
    const env = { ...process.env, GRPC_VERBOSITY: verbosity };
    delete env.GRPC_NODE_VERBOSITY;
    const r = spawnSync(process.execPath, ['-e', script], { env, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    return r.stderr;
  };
  assert.match(run('debug'), /^D \S+ \| v[\d.]+ \d+ \| grpc_core::\S+ \| connect failed/m);
  assert.equal(run(''), '');
});
