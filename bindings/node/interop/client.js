#!/usr/bin/env node
'use strict';
// The gRPC interop client on grpc-core for Node: the test cases of grpc's
// doc/interop-test-descriptions.md, written against the grpc-js-compatible
// API of this package. Takes grpc-go's client flags:
//
//   node interop/client.js --server_host=H --server_port=N --test_case=C
//     [--use_tls=true --use_test_ca=true --server_host_override=foo.test.google.fr]
//     [--soak_iterations=10 --soak_max_failures=0 ...]
//
// The test CA is $GRPC_INTEROP_CERTS_DIR/ca.pem. Exits 0 when the case passes.
const assert = require('node:assert/strict');
const grpc = require('..');
const { parseFlags, loadTesting, readCert, ECHO_INITIAL_KEY, ECHO_TRAILING_KEY, MAX_MESSAGE_SIZE } = require('./common');

const CASES = [
  'empty_unary',
  'large_unary',
  'client_streaming',
  'server_streaming',
  'ping_pong',
  'empty_stream',
  'timeout_on_sleeping_server',
  'cancel_after_begin',
  'cancel_after_first_response',
  'status_code_and_message',
  'special_status_message',
  'custom_metadata',
  'unimplemented_method',
  'unimplemented_service',
  'rpc_soak',
  'channel_soak',
];
const REQ_SIZES = [27182, 8, 1828, 45904];
const RESP_SIZES = [31415, 9, 2653, 58979];
const LARGE_REQ = 271828;
const LARGE_RESP = 314159;

const testing = loadTesting(grpc);

// ------------------------------------------------------------------ helpers

const zeros = (n) => ({ type: 'COMPRESSABLE', body: Buffer.alloc(n) });

function checkPayload(p, size) {
  assert.ok(p, 'response has no payload');
  assert.equal(p.body.length, size, `payload size ${p.body.length}, want ${size}`);
  assert.ok(p.body.every((b) => b === 0), 'payload is not all zeros');
}

/** A unary call as a Promise of { response, initial, status }. */
function unary(client, method, req, metadata = new grpc.Metadata(), options = {}) {
  return new Promise((resolve, reject) => {
    let initial = null;
    let response;
    let error = null;
    const call = client[method](req, metadata, options, (err, res) => {
      error = err;
      response = res;
    });
    call.on('metadata', (md) => {
      initial = md;
    });
    call.on('status', (status) => {
      // The callback runs before 'status' (as in grpc-js).
      if (error) reject(error);
      else resolve({ response, initial, status });
    });
  });
}

/** Collects a streaming call's messages, initial metadata and status (or error). */
function collect(call) {
  return new Promise((resolve) => {
    const out = { messages: [], initial: null, status: null, error: null };
    call.on('metadata', (md) => {
      out.initial = md;
    });
    call.on('data', (m) => out.messages.push(m));
    call.on('error', (e) => {
      out.error = e;
    });
    call.on('status', (st) => {
      out.status = st;
      resolve(out);
    });
  });
}

function expectCode(err, code, what) {
  assert.ok(err, `${what}: succeeded, want ${grpc.status[code]}`);
  assert.equal(err.code, code, `${what}: want ${grpc.status[code]}, got ${err.code} ${grpc.status[err.code]}: ${err.details}`);
}

/** Resolves with the next 'data' of a stream, or rejects on its error / end. */
function nextMessage(call) {
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      call.off('data', onData);
      call.off('error', onError);
      call.off('end', onEnd);
    };
    const onData = (m) => {
      cleanup();
      call.pause();
      resolve(m);
    };
    const onError = (e) => {
      cleanup();
      reject(e);
    };
    const onEnd = () => {
      cleanup();
      reject(new Error('the stream ended, want a response'));
    };
    call.on('data', onData);
    call.on('error', onError);
    call.on('end', onEnd);
    call.resume();
  });
}

// ------------------------------------------------------------------ cases

class InteropClient {
  constructor(flags) {
    const host = flags.string('server_host', 'localhost');
    const port = flags.int('server_port', 10000);
    this.target = host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`;
    const useTls = flags.bool('use_tls', false);
    const useTestCa = flags.bool('use_test_ca', false);
    this.options = { 'grpc.max_receive_message_length': MAX_MESSAGE_SIZE };
    if (useTls) {
      this.creds = grpc.credentials.createSsl(useTestCa ? readCert('ca.pem') : null);
      const override = flags.string('server_host_override', '') || (useTestCa ? 'foo.test.google.fr' : '');
      if (override) this.options['grpc.ssl_target_name_override'] = override;
    } else {
      this.creds = grpc.credentials.createInsecure();
    }
    this.client = this.newClient();
    this.soak = {
      iterations: flags.int('soak_iterations', 10),
      maxFailures: flags.int('soak_max_failures', 0),
      maxLatencyMs: flags.int('soak_per_iteration_max_acceptable_latency_ms', 1000),
      overallTimeoutMs: flags.int('soak_overall_timeout_seconds', 10) * 1000,
      minBetweenMs: flags.int('soak_min_time_ms_between_rpcs', 0),
      requestSize: flags.int('soak_request_size', LARGE_REQ),
      responseSize: flags.int('soak_response_size', LARGE_RESP),
    };
  }

  newClient(Service = testing.TestService) {
    return new Service(this.target, this.creds, this.options);
  }

  close() {
    this.client.close();
  }

  async empty_unary() {
    const { response } = await unary(this.client, 'EmptyCall', {});
    assert.deepEqual(response, {});
  }

  async large_unary() {
    const { response } = await unary(this.client, 'UnaryCall', { response_type: 'COMPRESSABLE', response_size: LARGE_RESP, payload: zeros(LARGE_REQ) });
    checkPayload(response.payload, LARGE_RESP);
  }

  async client_streaming() {
    const response = await new Promise((resolve, reject) => {
      const call = this.client.StreamingInputCall((err, res) => (err ? reject(err) : resolve(res)));
      for (const n of REQ_SIZES) call.write({ payload: zeros(n) });
      call.end();
    });
    assert.equal(response.aggregated_payload_size, 74922);
  }

  async server_streaming() {
    const call = this.client.StreamingOutputCall({ response_type: 'COMPRESSABLE', response_parameters: RESP_SIZES.map((size) => ({ size })) });
    const out = await collect(call);
    assert.equal(out.error, null, `StreamingOutputCall failed: ${out.error && out.error.message}`);
    assert.equal(out.messages.length, RESP_SIZES.length);
    out.messages.forEach((m, i) => checkPayload(m.payload, RESP_SIZES[i]));
  }

  async ping_pong() {
    const call = this.client.FullDuplexCall();
    const done = collect(call);
    call.pause();
    for (let i = 0; i < REQ_SIZES.length; i++) {
      call.write({ response_type: 'COMPRESSABLE', response_parameters: [{ size: RESP_SIZES[i] }], payload: zeros(REQ_SIZES[i]) });
      const m = await nextMessage(call);
      checkPayload(m.payload, RESP_SIZES[i]);
    }
    call.end();
    call.resume();
    const out = await done;
    assert.equal(out.error, null, `FullDuplexCall failed: ${out.error && out.error.message}`);
    assert.equal(out.status.code, grpc.status.OK);
    assert.equal(out.messages.length, REQ_SIZES.length, 'a response after the last one');
  }

  async empty_stream() {
    const call = this.client.FullDuplexCall();
    const done = collect(call);
    call.end();
    const out = await done;
    assert.equal(out.error, null, `FullDuplexCall failed: ${out.error && out.error.message}`);
    assert.equal(out.messages.length, 0, 'got a response, want none');
  }

  async timeout_on_sleeping_server() {
    // Connect first, so the 1 ms deadline is spent on the call, not the handshake.
    await new Promise((resolve) => this.client.waitForReady(Date.now() + 10000, () => resolve()));
    const call = this.client.FullDuplexCall({ deadline: Date.now() + 1 });
    const done = collect(call);
    call.write({ payload: zeros(27182) });
    const out = await done;
    expectCode(out.error, grpc.status.DEADLINE_EXCEEDED, 'FullDuplexCall');
  }

  async cancel_after_begin() {
    const err = await new Promise((resolve) => {
      const call = this.client.StreamingInputCall((e) => resolve(e));
      call.cancel();
    });
    expectCode(err, grpc.status.CANCELLED, 'StreamingInputCall');
  }

  async cancel_after_first_response() {
    const call = this.client.FullDuplexCall();
    const done = collect(call);
    call.write({ response_type: 'COMPRESSABLE', response_parameters: [{ size: 31415 }], payload: zeros(27182) });
    const m = await nextMessage(call);
    checkPayload(m.payload, 31415);
    call.cancel();
    call.resume();
    const out = await done;
    expectCode(out.error, grpc.status.CANCELLED, 'FullDuplexCall after cancel');
  }

  async echoStatus(code, message, bidi) {
    const response_status = { code, message };
    const err = await unary(this.client, 'UnaryCall', { response_status }).then(
      () => null,
      (e) => e,
    );
    expectCode(err, code, 'UnaryCall');
    assert.equal(err.details, message, 'UnaryCall status message');
    if (bidi) {
      const call = this.client.FullDuplexCall();
      const done = collect(call);
      call.write({ response_status });
      call.end();
      const out = await done;
      expectCode(out.error, code, 'FullDuplexCall');
      assert.equal(out.status.details, message, 'FullDuplexCall status message');
    }
  }

  status_code_and_message() {
    return this.echoStatus(2, 'test status message', true);
  }

  special_status_message() {
    return this.echoStatus(2, '\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n', false);
  }

  async custom_metadata() {
    const INITIAL = 'test_initial_metadata_value';
    const TRAILING = Buffer.from([0xab, 0xab, 0xab]);
    const md = new grpc.Metadata();
    md.set(ECHO_INITIAL_KEY, INITIAL);
    md.set(ECHO_TRAILING_KEY, TRAILING);
    const check = (what, initial, trailing) => {
      assert.ok(initial, `${what}: no initial metadata`);
      assert.deepEqual(initial.get(ECHO_INITIAL_KEY), [INITIAL], `${what}: initial metadata`);
      assert.deepEqual(trailing.get(ECHO_TRAILING_KEY), [TRAILING], `${what}: trailing metadata`);
    };
    const r = await unary(this.client, 'UnaryCall', { response_type: 'COMPRESSABLE', response_size: LARGE_RESP, payload: zeros(LARGE_REQ) }, md);
    checkPayload(r.response.payload, LARGE_RESP);
    check('UnaryCall', r.initial, r.status.metadata);

    const call = this.client.FullDuplexCall(md);
    const done = collect(call);
    call.write({ response_type: 'COMPRESSABLE', response_parameters: [{ size: LARGE_RESP }], payload: zeros(LARGE_REQ) });
    call.end();
    const out = await done;
    assert.equal(out.error, null, `FullDuplexCall failed: ${out.error && out.error.message}`);
    assert.equal(out.messages.length, 1);
    checkPayload(out.messages[0].payload, LARGE_RESP);
    check('FullDuplexCall', out.initial, out.status.metadata);
  }

  async unimplemented_method() {
    const err = await unary(this.client, 'UnimplementedCall', {}).then(
      () => null,
      (e) => e,
    );
    expectCode(err, grpc.status.UNIMPLEMENTED, 'TestService/UnimplementedCall');
  }

  async unimplemented_service() {
    const other = this.newClient(testing.UnimplementedService);
    try {
      const err = await unary(other, 'UnimplementedCall', {}).then(
        () => null,
        (e) => e,
      );
      expectCode(err, grpc.status.UNIMPLEMENTED, 'UnimplementedService/UnimplementedCall');
    } finally {
      other.close();
    }
  }

  rpc_soak() {
    return this.runSoak(false);
  }

  channel_soak() {
    return this.runSoak(true);
  }

  /** rpc_soak (one channel) and channel_soak (a new channel per RPC), as grpc-go runs them. */
  async runSoak(newChannelEach) {
    const s = this.soak;
    const start = Date.now();
    let failures = 0;
    let ran = 0;
    const req = { response_type: 'COMPRESSABLE', response_size: s.responseSize, payload: zeros(s.requestSize) };
    for (let i = 0; i < s.iterations; i++) {
      if (Date.now() - start >= s.overallTimeoutMs) break;
      const t0 = Date.now();
      const client = newChannelEach ? this.newClient() : this.client;
      try {
        const { response } = await unary(client, 'UnaryCall', req);
        checkPayload(response.payload, s.responseSize);
        const ms = Date.now() - t0;
        if (ms > s.maxLatencyMs) {
          failures++;
          console.error(`soak iteration: ${i} elapsed_ms: ${ms} server_uri: ${this.target} exceeds max acceptable latency: ${s.maxLatencyMs}`);
        } else {
          console.error(`soak iteration: ${i} elapsed_ms: ${ms} server_uri: ${this.target} succeeded`);
        }
      } catch (e) {
        failures++;
        console.error(`soak iteration: ${i} server_uri: ${this.target} failed: ${e.message}`);
      } finally {
        if (newChannelEach) client.close();
      }
      ran++;
      const wait = s.minBetweenMs - (Date.now() - t0);
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
    console.error(`(server_uri: ${this.target}) soak test successes: ${ran - failures} / ${s.iterations} iterations. Total failures: ${failures}.`);
    assert.equal(ran, s.iterations, `soak test consumed all ${s.overallTimeoutMs} ms of time and quit early, ran ${ran} out of ${s.iterations} iterations`);
    assert.ok(failures <= s.maxFailures, `soak test total failures: ${failures} exceeded max failures threshold: ${s.maxFailures}`);
  }
}

async function main() {
  const flags = parseFlags(process.argv.slice(2), ['use_tls', 'use_test_ca']);
  const testCase = flags.string('test_case', 'large_unary');
  if (!CASES.includes(testCase)) {
    console.error(`interop-client: unsupported test case ${JSON.stringify(testCase)}; supported: ${CASES.join(' ')}`);
    return 2;
  }
  if (flags.bool('use_alts', false)) {
    console.error('interop-client: --use_alts is not supported');
    return 2;
  }
  const c = new InteropClient(flags);
  try {
    await c[testCase]();
    console.log(`${testCase}: PASS`);
    return 0;
  } catch (e) {
    console.error(`${testCase}: FAIL: ${e && e.stack ? e.stack : e}`);
    return 1;
  } finally {
    c.close();
  }
}

main().then((code) => {
  process.exitCode = code;
});
