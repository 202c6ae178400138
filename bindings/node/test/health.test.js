'use strict';
// The health service with grpc-health-check's API (HealthImplementation),
// served by the engine on our Server, checked with our client and with
// @grpc/grpc-js's client over grpc-health-check's own service definition.
const test = require('node:test');
const assert = require('node:assert/strict');
const grpcjs = require('@grpc/grpc-js');
const ghc = require('grpc-health-check');
const protoLoader = require('@grpc/proto-loader');
const grpc = require('..');
const health = require('../health');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(pred, ms = 3000) {
  const end = Date.now() + ms;
  while (!pred() && Date.now() < end) await sleep(10);
  return pred();
}

function bind(server, lib) {
  return new Promise((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', lib.ServerCredentials.createInsecure(), (e, port) => (e ? reject(e) : resolve(port))),
  );
}

// Each client: a library and the service definition its Health client is made from.
const CLIENTS = {
  'ours (our service)': (addr) => new (grpc.makeGenericClientConstructor(health.service, 'Health'))(addr, grpc.credentials.createInsecure()),
  'ours (grpc-health-check service)': (addr) => new (grpc.makeGenericClientConstructor(ghc.service, 'Health'))(addr, grpc.credentials.createInsecure()),
  'grpc-js (grpc-health-check service)': (addr) =>
    new (grpcjs.makeGenericClientConstructor(ghc.service, 'Health'))(addr, grpcjs.credentials.createInsecure()),
};

/** Check's status name, or `{ code }` when it fails. */
function check(client, service) {
  return new Promise((resolve) =>
    client.Check({ service }, { deadline: Date.now() + 3000 }, (err, r) => resolve(err ? { code: err.code, details: err.details } : r.status)),
  );
}

/** Starts Watch; `seen` collects the streamed status names. */
function watch(client, service) {
  const call = client.Watch({ service });
  const w = { call, seen: [], ended: false };
  call.on('data', (r) => w.seen.push(r.status));
  call.on('error', (e) => (w.error = e));
  call.on('end', () => (w.ended = true));
  return w;
}

async function ourServer(impl) {
  const server = new grpc.Server();
  impl.addToServer(server);
  const port = await bind(server, grpc);
  return { server, addr: `127.0.0.1:${port}` };
}

for (const [name, makeClient] of Object.entries(CLIENTS)) {
  test(`${name} → our server: Check SERVING / NOT_SERVING / unknown → NOT_FOUND`, async () => {
    const impl = new grpc.HealthImplementation({ '': 'SERVING', 'svc.A': 'SERVING', 'svc.B': 'NOT_SERVING' });
    const { server, addr } = await ourServer(impl);
    const client = makeClient(addr);
    try {
      // The engine serves Check and Watch; only List is a JS handler.
      assert.deepEqual([...server._handlers.keys()], ['/grpc.health.v1.Health/List']);
      assert.equal(await check(client, ''), 'SERVING');
      assert.equal(await check(client, 'svc.A'), 'SERVING');
      assert.equal(await check(client, 'svc.B'), 'NOT_SERVING');
      const unknown = await check(client, 'svc.nope');
      assert.equal(unknown.code, grpc.status.NOT_FOUND);
      impl.setStatus('svc.A', 'NOT_SERVING');
      impl.setStatus('svc.nope', 'SERVING');
      assert.equal(await check(client, 'svc.A'), 'NOT_SERVING');
      assert.equal(await check(client, 'svc.nope'), 'SERVING');
    } finally {
      client.close();
      server.forceShutdown();
    }
  });

  test(`${name} → our server: Watch streams each status change`, async () => {
    const impl = new grpc.HealthImplementation({ 'svc.A': 'SERVING' });
    const { server, addr } = await ourServer(impl);
    const client = makeClient(addr);
    try {
      const a = watch(client, 'svc.A');
      const c = watch(client, 'svc.C');
      assert.ok(await until(() => a.seen.length === 1 && c.seen.length === 1), `${a.seen} / ${c.seen}`);
      assert.deepEqual(a.seen, ['SERVING']);
      assert.deepEqual(c.seen, ['SERVICE_UNKNOWN']); // unknown: the call stays open
      impl.setStatus('svc.A', 'NOT_SERVING');
      impl.setStatus('svc.C', 'SERVING');
      assert.ok(await until(() => a.seen.length === 2 && c.seen.length === 2), `${a.seen} / ${c.seen}`);
      assert.deepEqual(a.seen, ['SERVING', 'NOT_SERVING']);
      assert.deepEqual(c.seen, ['SERVICE_UNKNOWN', 'SERVING']);
      impl.setStatus('svc.A', 'SERVING');
      assert.ok(await until(() => a.seen.length === 3));
      assert.deepEqual(a.seen, ['SERVING', 'NOT_SERVING', 'SERVING']);
      assert.equal(a.ended || c.ended, false);
      a.call.cancel();
      c.call.cancel();
    } finally {
      client.close();
      server.forceShutdown();
    }
  });
}

test('as grpc-health-check: the whole server ("") is unknown until given a status; statuses set before bind count', async () => {
  const impl = new grpc.HealthImplementation();
  impl.setStatus('svc.Early', 'NOT_SERVING');
  const { server, addr } = await ourServer(impl);
  const client = CLIENTS['grpc-js (grpc-health-check service)'](addr);
  try {
    assert.equal((await check(client, '')).code, grpc.status.NOT_FOUND);
    assert.equal(await check(client, 'svc.Early'), 'NOT_SERVING');
    impl.setStatus('', 'SERVING');
    assert.equal(await check(client, ''), 'SERVING');
  } finally {
    client.close();
    server.forceShutdown();
  }
});

test('List (a JS handler next to the engine service), with grpc-js over health.proto from protoPath', async () => {
  const impl = new grpc.HealthImplementation({ '': 'SERVING', 'svc.B': 'NOT_SERVING' });
  const { server, addr } = await ourServer(impl);
  // Our protoPath, loaded by proto-loader, is the same service as grpc-health-check's.
  const pkg = grpcjs.loadPackageDefinition(protoLoader.loadSync(health.protoPath, { keepCase: true, enums: String, defaults: true }));
  const client = new pkg.grpc.health.v1.Health(addr, grpcjs.credentials.createInsecure());
  try {
    const res = await new Promise((resolve, reject) => client.List({}, (e, r) => (e ? reject(e) : resolve(r))));
    assert.deepEqual(res.statuses, { '': { status: 'SERVING' }, 'svc.B': { status: 'NOT_SERVING' } });
    const ours = new (grpc.makeGenericClientConstructor(health.service, 'Health'))(addr, grpc.credentials.createInsecure());
    const res2 = await new Promise((resolve, reject) => ours.List({}, (e, r) => (e ? reject(e) : resolve(r))));
    assert.deepEqual(res2.statuses, res.statuses);
    ours.close();
  } finally {
    client.close();
    server.forceShutdown();
  }
});

test('our HealthImplementation on a @grpc/grpc-js server (plain JS handlers)', async () => {
  const impl = new health.HealthImplementation({ 'svc.A': 'SERVING' });
  const server = new grpcjs.Server();
  impl.addToServer(server);
  const port = await bind(server, grpcjs);
  const client = CLIENTS['grpc-js (grpc-health-check service)'](`127.0.0.1:${port}`);
  try {
    assert.equal(await check(client, 'svc.A'), 'SERVING');
    assert.equal((await check(client, 'svc.X')).code, grpc.status.NOT_FOUND);
    const w = watch(client, 'svc.A');
    assert.ok(await until(() => w.seen.length === 1));
    impl.setStatus('svc.A', 'NOT_SERVING');
    assert.ok(await until(() => w.seen.length === 2));
    assert.deepEqual(w.seen, ['SERVING', 'NOT_SERVING']);
    w.call.cancel();
  } finally {
    client.close();
    server.forceShutdown();
  }
});

test('grpc-health-check\'s own HealthImplementation still works on our server (as any service)', async () => {
  const impl = new ghc.HealthImplementation({ 'svc.A': 'SERVING' });
  const server = new grpc.Server();
  impl.addToServer(server);
  const port = await bind(server, grpc);
  const client = CLIENTS['grpc-js (grpc-health-check service)'](`127.0.0.1:${port}`);
  try {
    assert.equal(await check(client, 'svc.A'), 'SERVING');
    assert.equal((await check(client, 'svc.X')).code, grpc.status.NOT_FOUND);
  } finally {
    client.close();
    server.forceShutdown();
  }
});

test('misuse: a second health service, after bindAsync, bad status', async () => {
  const server = new grpc.Server();
  new grpc.HealthImplementation().addToServer(server);
  assert.throws(() => new grpc.HealthImplementation().addToServer(server), /already provided/);
  assert.throws(() => new grpc.HealthImplementation({ x: 'FINE' }), TypeError);
  assert.throws(() => new grpc.HealthImplementation().setStatus('x', 'FINE'), TypeError);
  const late = new grpc.Server();
  await bind(late, grpc);
  assert.throws(() => new grpc.HealthImplementation().addToServer(late), /before the first bindAsync/);
  late.forceShutdown();
  server.forceShutdown();
});
