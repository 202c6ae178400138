'use strict';
// Server lifecycle and the Promise / async-iterator API (beyond grpc-js).
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { execFile } = require('node:child_process');
const { arrived, ours: grpc, grpcjs, load, startServer, stopServer, makeCerts } = require('./common');

test('bindAsync: port 0 gives a real port; a taken port fails', async () => {
  const { port, server } = await startServer(grpc);
  assert.ok(port > 0);
  const other = new grpc.Server();
  other.addService(load(grpc).Tester.service, {});
  const err = await new Promise((resolve) => other.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (e, p) => resolve([e, p])));
  assert.ok(err[0] instanceof Error);
  assert.equal(err[1], -1);
  other.forceShutdown();
  await stopServer(grpc, server);
});

test('unimplemented methods of a service answer UNIMPLEMENTED', async () => {
  const server = new grpc.Server();
  server.addService(load(grpc).Tester.service, { unary: (call, cb) => cb(null, { message: 'ok' }) });
  const port = await new Promise((res, rej) => server.bindAsync('localhost:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
  const c = new (load(grpc).Tester)(`localhost:${port}`, grpc.credentials.createInsecure());
  const err = await new Promise((resolve) => c.clientStream((e) => resolve(e)).end());
  assert.equal(err.code, grpc.status.UNIMPLEMENTED);
  const ok = await new Promise((resolve, reject) => c.unary({ name: 'a' }, (e, r) => (e ? reject(e) : resolve(r))));
  assert.equal(ok.message, 'ok');
  c.close();
  await stopServer(grpc, server);
});

test('getDeadline is Infinity without a deadline; handler throw -> UNKNOWN', async () => {
  let deadline = null;
  const server = new grpc.Server();
  server.addService(load(grpc).Tester.service, {
    unary(call, cb) {
      deadline = call.getDeadline();
      if (call.request.name === 'throw') throw new Error('kaboom');
      cb(null, {});
    },
  });
  const port = await new Promise((res) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => res(p)));
  const c = new (load(grpcjs).Tester)(`127.0.0.1:${port}`, grpcjs.credentials.createInsecure());
  await new Promise((resolve, reject) => c.unary({ name: 'x' }, (e) => (e ? reject(e) : resolve())));
  assert.equal(deadline, Infinity);
  const err = await new Promise((resolve) => c.unary({ name: 'throw' }, (e) => resolve(e)));
  assert.equal(err.code, grpc.status.UNKNOWN);
  assert.equal(err.details, 'kaboom');
  c.close();
  await stopServer(grpc, server);
});

test('tryShutdown waits for an in-flight call; forceShutdown cancels', async () => {
  const { port, server, seen } = await startServer(grpc);
  const c = new (load(grpc).Tester)(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const slow = new Promise((resolve) => c.unary({ name: 's', delayMs: 200 }, (e, r) => resolve([e, r])));
  await arrived(seen, 's');
  let down = false;
  const shut = new Promise((resolve) => server.tryShutdown(() => resolve((down = true))));
  const [e, r] = await slow;
  assert.equal(e, null);
  assert.equal(r.message, 'hello s');
  await shut;
  assert.ok(down);

  const s2 = await startServer(grpc);
  const c2 = new (load(grpc).Tester)(`127.0.0.1:${s2.port}`, grpc.credentials.createInsecure());
  const hung = new Promise((resolve) => c2.unary({ name: 'wait' }, (err) => resolve(err)));
  await arrived(s2.seen, 'wait');
  s2.server.forceShutdown();
  const err = await hung;
  assert.ok(err && err.code !== 0);
  c.close();
  c2.close();
});

test('promisify: await unary, client streaming from an iterable, for-await streams', async () => {
  const { port, server } = await startServer(grpc);
  const client = grpc.promisify(new (load(grpc).Tester)(`127.0.0.1:${port}`, grpc.credentials.createInsecure()));
  const r = await client.unary({ name: 'p', n: 1 });
  assert.equal(r.message, 'hello p');
  await assert.rejects(client.unary({ name: 'p', code: 3 }), (e) => e.code === 3 && e.details === 'failed: p');
  async function* reqs() {
    for (let i = 1; i <= 3; i++) yield { name: `r${i}`, n: i };
  }
  const cs = await client.clientStream(reqs());
  assert.equal(cs.n, 6);
  const got = [];
  for await (const m of client.serverStream({ name: 'i', n: 4 })) got.push(m.message);
  assert.deepEqual(got, ['i0', 'i1', 'i2', 'i3']);
  await assert.rejects(
    (async () => {
      for await (const _ of client.serverStream({ name: 'z', n: 1, code: 10 })) void _;
    })(),
    (e) => e.code === 10,
  );
  const bidi = client.bidi();
  bidi.write({ name: 'a', n: 1 });
  bidi.write({ name: 'b', n: 2 });
  bidi.end();
  const echoed = [];
  for await (const m of bidi) echoed.push(m.message);
  assert.deepEqual(echoed, ['A', 'B']);
  client.close();
  await stopServer(grpc, server);
});

test('async handlers: Promise results and async generators', async () => {
  const server = new grpc.Server();
  server.addService(load(grpc).Tester.service, {
    async unary(call) {
      if (call.request.code) throw { code: call.request.code, details: 'async no' };
      return { message: `async ${call.request.name}` };
    },
    async clientStream(call) {
      let n = 0;
      for await (const r of call) n += r.n;
      return { n };
    },
    async *serverStream(call) {
      for (let i = 0; i < call.request.n; i++) yield { n: i };
    },
  });
  const port = await new Promise((res) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => res(p)));
  const client = grpc.promisify(new (load(grpcjs).Tester)(`127.0.0.1:${port}`, grpcjs.credentials.createInsecure()));
  assert.equal((await client.unary({ name: 'q' })).message, 'async q');
  await assert.rejects(client.unary({ code: 6 }), (e) => e.code === 6 && e.details === 'async no');
  assert.equal((await client.clientStream([{ n: 2 }, { n: 5 }])).n, 7);
  const ns = [];
  for await (const m of client.serverStream({ n: 3 })) ns.push(m.n);
  assert.deepEqual(ns, [0, 1, 2]);
  client.close();
  await stopServer(grpc, server);
});

test('TLS: createSsl client and server, both directions with grpc-js', async (t) => {
  let certs;
  try {
    certs = makeCerts();
  } catch (e) {
    t.skip('openssl not available');
    return;
  }
  for (const [C, S] of [
    [grpc, grpc],
    [grpc, grpcjs],
    [grpcjs, grpc],
  ]) {
    const { port, server } = await startServer(S, S.ServerCredentials.createSsl(null, [{ private_key: certs.key, cert_chain: certs.cert }]));
    const opts = { 'grpc.ssl_target_name_override': 'foo.test.example', 'grpc.default_authority': 'foo.test.example' };
    const c = new (load(C).Tester)(`localhost:${port}`, C.credentials.createSsl(certs.ca), opts);
    const r = await new Promise((resolve, reject) => c.unary({ name: 'tls' }, (e, v) => (e ? reject(e) : resolve(v))));
    assert.equal(r.message, 'hello tls');
    // A client that does not trust the CA fails.
    const bad = new (load(C).Tester)(`localhost:${port}`, C.credentials.createSsl(certs.cert === certs.ca ? null : Buffer.from(certs.cert)), opts);
    const err = await new Promise((resolve) => bad.unary({ name: 'x' }, { deadline: Date.now() + 3000 }, (e) => resolve(e)));
    assert.ok(err && err.code !== 0, 'untrusted server rejected');
    c.close();
    bad.close();
    await stopServer(S, server);
  }
});

test('call credentials add metadata to every call', async () => {
  let certs;
  try {
    certs = makeCerts();
  } catch (e) {
    return;
  }
  const seen = [];
  const server = new grpc.Server();
  server.addService(load(grpc).Tester.service, {
    unary(call, cb) {
      seen.push(call.metadata.get('authorization')[0]);
      cb(null, {});
    },
  });
  const port = await new Promise((res) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createSsl(null, [{ private_key: certs.key, cert_chain: certs.cert }]), (e, p) => res(p)));
  const callCreds = grpc.credentials.createFromMetadataGenerator((opts, cb) => {
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer t-${opts.service_url.endsWith('/test.v1.Tester')}`);
    cb(null, md);
  });
  const creds = grpc.credentials.combineChannelCredentials(grpc.credentials.createSsl(certs.ca), callCreds);
  const c = new (load(grpc).Tester)(`127.0.0.1:${port}`, creds, { 'grpc.ssl_target_name_override': 'localhost' });
  await new Promise((resolve, reject) => c.unary({}, (e) => (e ? reject(e) : resolve())));
  assert.deepEqual(seen, ['Bearer t-true']);
  c.close();
  await stopServer(grpc, server);
});

test('the process exits once clients and servers are closed', async () => {
  const script = `
    const grpc = require(${JSON.stringify(path.join(__dirname, '..'))});
    const { startServer, load } = require(${JSON.stringify(path.join(__dirname, 'common.js'))});
    startServer(grpc).then(({ port, server }) => {
      const c = new (load(grpc).Tester)('127.0.0.1:' + port, grpc.credentials.createInsecure());
      c.unary({ name: 'x' }, (e, r) => { console.log(r.message); c.close(); server.tryShutdown(() => {}); });
    });`;
  const out = await new Promise((resolve, reject) =>
    execFile(process.execPath, ['-e', script], { timeout: 10000 }, (e, stdout) => (e ? reject(e) : resolve(stdout))),
  );
  assert.equal(out.trim(), 'hello x');
});

test('channel connectivity: IDLE -> READY via getConnectivityState(true) and watchConnectivityState', async () => {
  const { port, server } = await startServer(grpc);
  const c = new (load(grpc).Tester)(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const ch = c.getChannel();
  assert.equal(ch.getTarget(), `127.0.0.1:${port}`);
  assert.equal(ch.getConnectivityState(false), grpc.connectivityState.IDLE);
  let state = ch.getConnectivityState(true);
  while (state !== grpc.connectivityState.READY) {
    await new Promise((resolve, reject) => ch.watchConnectivityState(state, Date.now() + 5000, (e) => (e ? reject(e) : resolve())));
    state = ch.getConnectivityState(false);
    assert.notEqual(state, grpc.connectivityState.TRANSIENT_FAILURE);
  }
  const err = await new Promise((resolve) => ch.watchConnectivityState(grpc.connectivityState.READY, Date.now() + 100, (e) => resolve(e)));
  assert.ok(err instanceof Error, 'no change before the deadline');
  c.close();
  await stopServer(grpc, server);
});
