'use strict';
// Streams cross into JS in batches (messages that queue up while the JS
// thread is busy arrive as one event; server writes of one tick go out in one
// crossing; client writes that queue behind one in flight go as one batch).
// These check that order, counts, back-pressure and the final status survive
// the batching, on our client and server and against @grpc/grpc-js.
const test = require('node:test');
const assert = require('node:assert/strict');
const { ours: grpc, grpcjs, load, stopServer } = require('./common');

const N = 5000;

function batchServer(lib) {
  const server = new lib.Server();
  server.addService(load(lib).Tester.service, {
    // Writes everything at once, ignoring write()'s return value, then ends.
    serverStream(call) {
      for (let i = 0; i < call.request.n; i++) call.write({ message: 'm', n: i });
      if (call.request.code) return call.emit('error', { code: call.request.code, details: `after ${call.request.n}` });
      call.end();
    },
    clientStream(call, cb) {
      let count = 0;
      let inOrder = true;
      call.on('data', (r) => {
        if (r.n !== count) inOrder = false;
        count++;
      });
      call.on('end', () => cb(null, { message: inOrder ? 'in order' : 'out of order', n: count }));
    },
    bidi(call) {
      call.on('data', (r) => call.write({ message: 'e', n: r.n }));
      call.on('end', () => call.end());
    },
  });
  return new Promise((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', lib.ServerCredentials.createInsecure(), (e, port) => (e ? reject(e) : resolve({ server, port }))),
  );
}

function collect(stream) {
  return new Promise((resolve) => {
    const got = [];
    let err = null;
    stream.on('data', (m) => got.push(m.n));
    stream.on('error', (e) => (err = e));
    stream.on('status', (st) => resolve({ got, st, err }));
  });
}

const inOrder = (got, n) => got.length === n && got.every((v, i) => v === i);

for (const [cName, C, sName, S] of [
  ['grpc-core', grpc, 'grpc-core', grpc],
  ['grpc-core', grpc, 'grpc-js', grpcjs],
  ['grpc-js', grpcjs, 'grpc-core', grpc],
]) {
  test(`batched streams keep order and status: ${cName} client, ${sName} server`, async () => {
    const { server, port } = await batchServer(S);
    const client = new (load(C).Tester)(`127.0.0.1:${port}`, C.credentials.createInsecure());

    // Server streaming: N messages in order, then OK.
    const a = await collect(client.serverStream({ n: N }));
    assert.equal(a.st.code, 0);
    assert.ok(inOrder(a.got, N), `server stream: ${a.got.length} messages`);

    // Messages written before an error arrive before it.
    const b = await collect(client.serverStream({ n: 300, code: grpc.status.ABORTED }));
    assert.equal(b.st.code, grpc.status.ABORTED);
    assert.equal(b.st.details, 'after 300');
    assert.ok(inOrder(b.got, 300), `before the error: ${b.got.length} messages`);

    // Client streaming: N writes in a loop (they queue behind the one in flight).
    const c = await new Promise((resolve, reject) => {
      const call = client.clientStream((e, r) => (e ? reject(e) : resolve(r)));
      for (let i = 0; i < N; i++) call.write({ n: i });
      call.end();
    });
    assert.deepEqual({ message: c.message, n: c.n }, { message: 'in order', n: N });

    // Bidi: N requests written at once, N echoes in order.
    const call = client.bidi();
    const d = collect(call);
    for (let i = 0; i < N; i++) call.write({ n: i });
    call.end();
    const dr = await d;
    assert.equal(dr.st.code, 0);
    assert.ok(inOrder(dr.got, N), `bidi: ${dr.got.length} messages`);

    client.close();
    await stopServer(S, server);
  });
}

test('a paused reader applies back-pressure across batches (grpc-core)', async () => {
  const { server, port } = await batchServer(grpc);
  const client = new (load(grpc).Tester)(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const stream = client.serverStream({ n: N });
  const got = [];
  let maxBuffered = 0;
  await new Promise((resolve, reject) => {
    stream.on('error', reject);
    stream.on('end', resolve);
    const read = () => {
      let m;
      while ((m = stream.read()) !== null) got.push(m.n);
      maxBuffered = Math.max(maxBuffered, stream.readableLength);
    };
    // Reads slowly: a batch at a time, every 2 ms.
    const timer = setInterval(read, 2);
    stream.on('end', () => clearInterval(timer));
  });
  assert.ok(inOrder(got, N), `${got.length} messages`);
  // Never more than one read credit's worth (plus the stream's own buffer) waits in JS.
  assert.ok(maxBuffered <= 64 + 16, `buffered up to ${maxBuffered}`);
  client.close();
  await stopServer(grpc, server);
});

test('batched writes through client interceptors keep order (grpc-core client)', async () => {
  const { server, port } = await batchServer(grpc);
  let sent = 0;
  const counting = (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      sendMessage(message, next) {
        sent++;
        next(message);
      },
    });
  const client = new (load(grpc).Tester)(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { interceptors: [counting] });
  const c = await new Promise((resolve, reject) => {
    const call = client.clientStream((e, r) => (e ? reject(e) : resolve(r)));
    for (let i = 0; i < N; i++) call.write({ n: i });
    call.end();
  });
  assert.deepEqual({ message: c.message, n: c.n }, { message: 'in order', n: N });
  const call = client.bidi();
  const d = collect(call);
  for (let i = 0; i < N; i++) call.write({ n: i });
  call.end();
  const dr = await d;
  assert.equal(dr.st.code, 0);
  assert.ok(inOrder(dr.got, N), `bidi: ${dr.got.length} messages`);
  assert.equal(sent, 2 * N);
  client.close();
  await stopServer(grpc, server);
});
