'use strict';
// Name resolution, load balancing, service config and retries through the
// grpc-js API, against three real backends on 127.0.0.1 (our Node server).
const test = require('node:test');
const assert = require('node:assert/strict');
const { ours: grpc, load } = require('./common');

const { Tester } = load(grpc);
const insecure = () => grpc.credentials.createInsecure();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// grpc.health.v1.Health/Watch by hand: the response is
// HealthCheckResponse { status = 1 }, SERVING 1, NOT_SERVING 2.
const healthService = {
  Watch: {
    path: '/grpc.health.v1.Health/Watch',
    requestStream: false,
    responseStream: true,
    requestSerialize: (b) => b,
    requestDeserialize: (b) => b,
    responseSerialize: (s) => Buffer.from([8, s]),
    responseDeserialize: (b) => b[1],
  },
};

/** A backend: answers Unary with its own address, can fail the first attempts of each request name. */
async function backend() {
  const b = { calls: 0, attempts: new Map(), failFirst: 0, failCode: grpc.status.UNAVAILABLE, health: 1, watchers: new Set() };
  const server = new grpc.Server();
  server.addService(Tester.service, {
    unary(call, cb) {
      b.calls++;
      const name = call.request.name;
      const n = (b.attempts.get(name) || 0) + 1;
      b.attempts.set(name, n);
      if (n <= b.failFirst) return cb({ code: b.failCode, details: `attempt ${n} fails` });
      if (n === 1 && b.stallFirst) {
        call.on('cancelled', () => (b.cancelled = (b.cancelled || 0) + 1));
        return; // never answers: a hedged attempt must win
      }
      cb(null, { message: b.addr, n });
    },
    serverStream(call) {
      call.write({ message: b.addr, n: 1 });
      call.end();
    },
  });
  server.addService(healthService, {
    Watch(call) {
      b.watchers.add(call);
      call.write(b.health);
      call.on('cancelled', () => b.watchers.delete(call));
    },
  });
  b.port = await new Promise((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  b.addr = `127.0.0.1:${b.port}`;
  b.setHealth = (s) => {
    b.health = s;
    for (const w of b.watchers) w.write(s);
  };
  b.kill = () => server.forceShutdown();
  return b;
}

const deadline = () => Date.now() + 5000;
function unary(client, name) {
  return new Promise((resolve, reject) =>
    client.unary({ name }, { deadline: deadline() }, (e, r) => (e ? reject(e) : resolve(r.message))),
  );
}

/** Calls until `pred(addr)` holds for `run` calls in a row (errors reset the run); fails after 5 s. */
async function settle(client, pred, run = 20) {
  const until = Date.now() + 5000;
  let ok = 0;
  while (Date.now() < until) {
    try {
      ok = pred(await unary(client, 'settle')) ? ok + 1 : 0;
    } catch {
      ok = 0;
      await sleep(10);
    }
    if (ok >= run) return;
  }
  assert.fail('the channel did not settle in 5 s');
}

/** Makes `n` calls (none may fail); returns the count per server address. */
async function spread(client, n) {
  const seen = new Map();
  for (let i = 0; i < n; i++) {
    const a = await unary(client, `c${i}`);
    seen.set(a, (seen.get(a) || 0) + 1);
  }
  return seen;
}

test.describe('load balancing and name resolution', () => {
  let bs;
  const clients = [];
  const client = (target, options) => {
    const c = new Tester(target, insecure(), options);
    clients.push(c);
    return c;
  };
  test.beforeEach(async () => {
    bs = await Promise.all([backend(), backend(), backend()]);
  });
  test.afterEach(() => {
    for (const c of clients.splice(0)) c.close();
    for (const b of bs) b.kill();
  });
  const ipv4 = () => `ipv4:${bs.map((b) => b.addr).join(',')}`;

  test('round_robin (grpc.lb_policy_name) spreads 300 calls over three backends within ±20%', async () => {
    const c = client(ipv4(), { 'grpc.lb_policy_name': 'round_robin' });
    const all = new Set(bs.map((b) => b.addr));
    const warm = new Set();
    await settle(c, (a) => (warm.add(a), warm.size === 3), 1);
    const seen = await spread(c, 300);
    assert.deepEqual(new Set(seen.keys()), all);
    for (const [, n] of seen) assert.ok(n >= 80 && n <= 120, `uneven: ${JSON.stringify([...seen])}`);
  });

  test('round_robin: a killed backend gets no calls and none fail once the policy reacted', async () => {
    const c = client(ipv4(), { 'grpc.lb_policy_name': 'round_robin' });
    const warm = new Set();
    await settle(c, (a) => (warm.add(a), warm.size === 3), 1);
    bs[1].kill();
    await settle(c, (a) => a !== bs[1].addr);
    const seen = await spread(c, 60);
    assert.deepEqual(new Set(seen.keys()), new Set([bs[0].addr, bs[2].addr]));
  });

  test('pick_first sticks to one backend, then fails over when it dies', async () => {
    const c = client(ipv4()); // pick_first is the default
    const first = await spread(c, 30);
    assert.equal(first.size, 1);
    const [stuck] = first.keys();
    bs.find((b) => b.addr === stuck).kill();
    await settle(c, (a) => a !== stuck);
    const after = await spread(c, 30);
    assert.equal(after.size, 1);
    assert.notEqual([...after.keys()][0], stuck);
  });

  test('service config healthCheckConfig: round_robin skips a NOT_SERVING backend', async () => {
    bs[1].setHealth(2);
    const c = client(ipv4(), {
      'grpc.service_config': JSON.stringify({ loadBalancingConfig: [{ round_robin: {} }], healthCheckConfig: { serviceName: '' } }),
    });
    const warm = new Set();
    await settle(c, (a) => (warm.add(a), warm.size === 2), 1);
    let seen = await spread(c, 60);
    assert.deepEqual(new Set(seen.keys()), new Set([bs[0].addr, bs[2].addr]));
    bs[0].setHealth(2);
    await settle(c, (a) => a === bs[2].addr);
    seen = await spread(c, 30);
    assert.deepEqual([...seen.keys()], [bs[2].addr]);
    bs[1].setHealth(1); // back in rotation
    await settle(c, (a) => a === bs[1].addr, 1);
  });

  test('ManualResolver: update() moves calls to the new backends', async () => {
    const resolver = new grpc.ManualResolver([bs[0].addr]);
    const c = client('manual:///lb-test', { 'grpc-core.manual_resolver': resolver });
    assert.deepEqual([...(await spread(c, 10)).keys()], [bs[0].addr]);
    resolver.update([bs[2].addr]);
    await settle(c, (a) => a === bs[2].addr);
    assert.deepEqual([...(await spread(c, 10)).keys()], [bs[2].addr]);
    assert.throws(() => resolver.update(['not an address']));
    assert.throws(() => client('manual:///x', { 'grpc-core.manual_resolver': {} }), TypeError);
  });

  test('dns: targets (grpc-js forms) reach the backend; dns_min_time_between_resolutions_ms accepted', async () => {
    for (const target of [`dns:127.0.0.1:${bs[0].port}`, `dns:///localhost:${bs[0].port}`, `localhost:${bs[0].port}`]) {
      const c = client(target, { 'grpc.dns_min_time_between_resolutions_ms': 1000, 'grpc.client_idle_timeout_ms': 60000 });
      assert.equal(await unary(c, 'dns'), bs[0].addr, target);
    }
  });

  test('client getPeer() is the connected server address, also behind a resolver', async () => {
    const resolver = new grpc.ManualResolver([bs[1].addr]);
    const c = client('manual:///peer', { 'grpc-core.manual_resolver': resolver });
    const call = c.serverStream({ name: 'p' });
    const msgs = [];
    call.on('data', (m) => msgs.push(m.message));
    await new Promise((resolve, reject) => call.on('end', resolve).on('error', reject));
    assert.deepEqual(msgs, [bs[1].addr]);
    assert.equal(call.getPeer(), bs[1].addr);

    // A unary call through an interceptor runs as a native call too.
    const ic = client('manual:///peer', {
      'grpc-core.manual_resolver': resolver,
      interceptors: [(options, next) => new grpc.InterceptingCall(next(options))],
    });
    let unaryCall;
    await new Promise((resolve, reject) => {
      unaryCall = ic.unary({ name: 'u' }, (e) => (e ? reject(e) : resolve()));
    });
    assert.equal(unaryCall.getPeer(), bs[1].addr);

    // A plain unary call (the engine's unary path) knows its server too.
    let plain;
    await new Promise((resolve, reject) => {
      plain = c.unary({ name: 'u' }, (e) => (e ? reject(e) : resolve()));
    });
    assert.equal(plain.getPeer(), bs[1].addr);
  });
});

test.describe('retries (service config retryPolicy)', () => {
  let b;
  const clients = [];
  const retryConfig = JSON.stringify({
    methodConfig: [
      {
        name: [{ service: 'test.v1.Tester' }],
        retryPolicy: {
          maxAttempts: 4,
          initialBackoff: '0.01s',
          maxBackoff: '0.05s',
          backoffMultiplier: 2,
          retryableStatusCodes: ['UNAVAILABLE'],
        },
      },
    ],
  });
  const client = (options) => {
    const c = new Tester(b.addr, insecure(), { 'grpc.service_config': retryConfig, ...options });
    clients.push(c);
    return c;
  };
  test.beforeEach(async () => {
    b = await backend();
  });
  test.afterEach(() => {
    for (const c of clients.splice(0)) c.close();
    b.kill();
  });

  test('UNAVAILABLE on the first 3 attempts → the 4th succeeds', async () => {
    b.failFirst = 3;
    assert.equal(await unary(client(), 'r'), b.addr);
    assert.equal(b.attempts.get('r'), 4);
  });

  test('more failures than maxAttempts → UNAVAILABLE after 4 attempts', async () => {
    b.failFirst = 10;
    await assert.rejects(unary(client(), 'r'), (e) => e.code === grpc.status.UNAVAILABLE && /attempt 4/.test(e.details));
    assert.equal(b.attempts.get('r'), 4);
  });

  test('a non-retryable code is not retried', async () => {
    b.failFirst = 1;
    b.failCode = grpc.status.INTERNAL;
    await assert.rejects(unary(client(), 'r'), (e) => e.code === grpc.status.INTERNAL);
    assert.equal(b.attempts.get('r'), 1);
  });

  test('grpc.enable_retries: 0 turns retries off', async () => {
    b.failFirst = 1;
    await assert.rejects(unary(client({ 'grpc.enable_retries': 0 }), 'r'), (e) => e.code === grpc.status.UNAVAILABLE);
    assert.equal(b.attempts.get('r'), 1);
  });

  test('hedgingPolicy: a second attempt after hedgingDelay wins over a stalled first, which is cancelled', async () => {
    b.stallFirst = true;
    const hedged = JSON.stringify({
      methodConfig: [{ name: [{ service: 'test.v1.Tester' }], hedgingPolicy: { maxAttempts: 3, hedgingDelay: '0.05s' } }],
    });
    const c = new Tester(b.addr, insecure(), { 'grpc.service_config': hedged });
    clients.push(c);
    const t0 = Date.now();
    assert.equal(await unary(c, 'h'), b.addr);
    assert.ok(Date.now() - t0 < 2000);
    assert.ok(b.attempts.get('h') >= 2);
    for (let i = 0; i < 100 && !b.cancelled; i++) await sleep(10);
    assert.ok(b.cancelled >= 1, 'the stalled attempt was cancelled');
  });

  test('an invalid service config is refused at construction', () => {
    assert.throws(() => new Tester(b.addr, insecure(), { 'grpc.service_config': '{"loadBalancingConfig": 7}' }));
  });
});
