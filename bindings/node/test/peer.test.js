'use strict';
// getPeer(): on server calls the client's address as the engine saw it; on
// client calls the server's address when the target is a literal ip:port.
const test = require('node:test');
const assert = require('node:assert/strict');
const http2 = require('node:http2');
const { ours, load, startServer, stopServer, packageDefinition } = require('./common');

test.describe('getPeer', () => {
  let srv;
  test.before(async () => {
    srv = await startServer(ours);
  });
  test.after(async () => {
    await stopServer(ours, srv.server);
  });

  test("server call: the client's ip:port, checked against the client socket's own port", async () => {
    const session = http2.connect(`http://127.0.0.1:${srv.port}`);
    try {
      await new Promise((resolve, reject) => session.once('connect', resolve).once('error', reject));
      const localPort = session.socket.localPort;
      const body = packageDefinition['test.v1.Tester'].Unary.requestSerialize({ name: 'raw-peer' });
      const frame = Buffer.alloc(5 + body.length);
      frame.writeUInt32BE(body.length, 1);
      body.copy(frame, 5);
      const req = session.request({ ':method': 'POST', ':path': '/test.v1.Tester/Unary', 'content-type': 'application/grpc', te: 'trailers' });
      const trailers = new Promise((resolve) => req.on('trailers', resolve));
      req.end(frame);
      req.resume();
      const t = await trailers;
      assert.equal(t['grpc-status'], '0');
      assert.equal(srv.seen.peer, `127.0.0.1:${localPort}`);
    } finally {
      session.close();
    }
  });

  test('client calls: the server address for an ip:port target, on every call kind, with and without interceptors', async () => {
    const want = `127.0.0.1:${srv.port}`;
    const passThrough = (options, nextCall) => new ours.InterceptingCall(nextCall(options));
    for (const options of [{}, { interceptors: [passThrough] }]) {
      const client = new (load(ours).Tester)(want, ours.credentials.createInsecure(), options);
      try {
        const peers = [];
        await new Promise((resolve, reject) => {
          const call = client.unary({ name: 'p' }, (err) => (err ? reject(err) : resolve()));
          peers.push(call.getPeer());
        });
        const ss = client.serverStream({ name: 's', n: 1 });
        peers.push(ss.getPeer());
        for await (const _ of ss);
        const cs = client.clientStream(() => {});
        peers.push(cs.getPeer());
        cs.end();
        const bidi = client.bidi();
        peers.push(bidi.getPeer());
        bidi.end();
        for await (const _ of bidi);
        assert.deepEqual(peers, [want, want, want, want], JSON.stringify(options));
        assert.match(srv.seen.peer, /^127\.0\.0\.1:\d+$/);
        assert.notEqual(srv.seen.peer, want, "the server's peer is the client's address, not its own");
      } finally {
        client.close();
      }
    }
  });

  test('client call with a host name target: the address the name resolved to and the call used', async () => {
    const client = new (load(ours).Tester)(`localhost:${srv.port}`, ours.credentials.createInsecure());
    try {
      const peer = await new Promise((resolve, reject) => {
        const call = client.unary({ name: 'p' }, (err) => (err ? reject(err) : resolve(call.getPeer())));
      });
      assert.equal(peer, `127.0.0.1:${srv.port}`);
    } finally {
      client.close();
    }
  });
});
