'use strict';
// Server response compression (grpc-js servers cannot compress responses).
const test = require('node:test');
const assert = require('node:assert/strict');
const http2 = require('node:http2');
const zlib = require('node:zlib');
const { ours: grpc, grpcjs, load, stopServer } = require('./common');

async function compressingServer() {
  const server = new grpc.Server({ 'grpc.default_compression_algorithm': grpc.compressionAlgorithms.gzip });
  server.addService(load(grpc).Tester.service, {
    unary: (call, cb) => cb(null, { message: 'z'.repeat(10000), n: 7 }),
  });
  const port = await new Promise((res, rej) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
  return { server, port };
}

test('gzip responses: the wire says gzip and the frame is compressed', async () => {
  const { server, port } = await compressingServer();
  const session = http2.connect(`http://127.0.0.1:${port}`);
  const req = session.request({
    ':method': 'POST',
    ':path': '/test.v1.Tester/Unary',
    'content-type': 'application/grpc',
    te: 'trailers',
    'grpc-accept-encoding': 'gzip',
  });
  req.end(Buffer.from([0, 0, 0, 0, 0]));
  const headers = await new Promise((r) => req.once('response', r));
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  await new Promise((r) => req.once('end', r));
  session.close();
  assert.equal(headers['grpc-encoding'], 'gzip');
  const body = Buffer.concat(chunks);
  assert.equal(body[0], 1, 'compressed flag set');
  const len = body.readUInt32BE(1);
  assert.ok(len < 1000, `compressed frame is small (${len} bytes)`);
  const plain = zlib.gunzipSync(body.subarray(5, 5 + len));
  assert.ok(plain.length > 10000);
  await stopServer(grpc, server);
});

test('gzip responses decode in grpc-js and grpc-core clients', async () => {
  const { server, port } = await compressingServer();
  for (const C of [grpc, grpcjs]) {
    const c = new (load(C).Tester)(`127.0.0.1:${port}`, C.credentials.createInsecure());
    const r = await new Promise((resolve, reject) => c.unary({ name: 'x' }, (e, v) => (e ? reject(e) : resolve(v))));
    assert.equal(r.message.length, 10000);
    assert.equal(r.n, 7);
    c.close();
  }
  await stopServer(grpc, server);
});

test('client request compression (grpc.default_compression_algorithm) reaches a grpc-js server', async () => {
  const server = new grpcjs.Server();
  let got = null;
  server.addService(load(grpcjs).Tester.service, {
    unary: (call, cb) => {
      got = call.request.name.length;
      cb(null, { n: 1 });
    },
  });
  const port = await new Promise((res) => server.bindAsync('127.0.0.1:0', grpcjs.ServerCredentials.createInsecure(), (e, p) => res(p)));
  const c = new (load(grpc).Tester)(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { 'grpc.default_compression_algorithm': grpc.compressionAlgorithms.gzip });
  await new Promise((resolve, reject) => c.unary({ name: 'y'.repeat(5000) }, (e) => (e ? reject(e) : resolve())));
  assert.equal(got, 5000);
  c.close();
  await stopServer(grpcjs, server);
});
