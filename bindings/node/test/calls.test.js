'use strict';
// The four call kinds, metadata, errors, deadlines and cancellation, in
// three pairings: our client and server, ours against @grpc/grpc-js, and
// grpc-js against ours.
const test = require('node:test');
const assert = require('node:assert/strict');
const { arrived, ours, grpcjs, load, startServer, stopServer } = require('./common');

const pairings = [
  ['grpc-core client -> grpc-core server', ours, ours],
  ['grpc-core client -> grpc-js server', ours, grpcjs],
  ['grpc-js client -> grpc-core server', grpcjs, ours],
];

function collect(stream) {
  return new Promise((resolve) => {
    const out = { data: [], headers: null, status: null, error: null };
    stream.on('metadata', (m) => (out.headers = m));
    stream.on('data', (d) => out.data.push(d));
    stream.on('error', (e) => (out.error = e));
    stream.on('status', (s) => {
      out.status = s;
      setImmediate(() => resolve(out));
    });
  });
}

for (const [name, C, S] of pairings) {
  test.describe(name, () => {
    let srv;
    let client;
    test.before(async () => {
      srv = await startServer(S);
      client = new (load(C).Tester)(`127.0.0.1:${srv.port}`, C.credentials.createInsecure());
    });
    test.after(async () => {
      client.close();
      await stopServer(S, srv.server);
    });

    test('unary: response, headers, trailers, -bin metadata, deadline seen by server', async () => {
      const md = new C.Metadata();
      md.set('x-echo', 'abc');
      md.set('x-bin-bin', Buffer.from([0, 255, 7]));
      const events = [];
      const deadline = new Date(Date.now() + 10000);
      const res = await new Promise((resolve, reject) => {
        const call = client.unary({ name: 'ann', n: 41 }, md, { deadline }, (err, r) => (err ? reject(err) : resolve(r)));
        call.on('metadata', (m) => events.push(['metadata', m]));
        call.on('status', (s) => events.push(['status', s]));
      });
      await new Promise((r) => setImmediate(r));
      assert.equal(res.message, 'hello ann');
      assert.equal(res.n, 42);
      const headers = events.find((e) => e[0] === 'metadata')[1];
      assert.equal(headers.get('x-echo-back')[0], 'abc');
      assert.deepEqual(headers.get('x-bin-back-bin')[0], Buffer.from([0, 255, 7]));
      const st = events.find((e) => e[0] === 'status')[1];
      assert.equal(st.code, C.status.OK);
      assert.equal(st.metadata.get('x-trail')[0], 'done');
      assert.deepEqual(st.metadata.get('x-trail-bin')[0], Buffer.from([1, 2, 3]));
      const seenDeadline = new Date(srv.seen.deadline).getTime();
      assert.ok(Math.abs(seenDeadline - deadline.getTime()) < 2000, 'server sees the deadline');
      assert.equal(typeof srv.seen.peer, 'string');
    });

    test('unary: error is a ServiceError with code, details, metadata, message', async () => {
      const err = await new Promise((resolve) => client.unary({ name: 'bob', code: 5 }, (e) => resolve(e)));
      assert.ok(err instanceof Error);
      assert.equal(err.code, 5);
      assert.equal(err.details, 'failed: bob');
      assert.equal(err.message, '5 NOT_FOUND: failed: bob');
      assert.equal(err.metadata.get('x-err')[0], 'why');
      assert.deepEqual(err.metadata.get('x-err-bin')[0], Buffer.from([9, 8]));
    });

    test('unary: failure after headers emits them before the error; trailers stay apart', async () => {
      const md = new C.Metadata();
      md.set('x-echo', 'hdr');
      const events = [];
      const err = await new Promise((resolve) => {
        const call = client.unary({ name: 'late', code: 9 }, md, { deadline: Date.now() + 10000 }, (e) => {
          events.push(['error', e]);
          resolve(e);
        });
        call.on('metadata', (m) => events.push(['metadata', m]));
      });
      assert.deepEqual(events.map((e) => e[0]), ['metadata', 'error']);
      const headers = events[0][1];
      assert.equal(headers.get('x-echo-back')[0], 'hdr');
      assert.equal(headers.get('x-err').length, 0);
      assert.equal(err.code, 9);
      assert.equal(err.metadata.get('x-err')[0], 'why');
      assert.equal(err.metadata.get('x-echo-back').length, 0);

      // The same through a server stream.
      const out = await collect(client.serverStream({ name: 's', n: 1, code: 9 }, md, { deadline: Date.now() + 10000 }));
      assert.equal(out.data.length, 1);
      assert.equal(out.headers.get('x-echo-back')[0], 'hdr');
      assert.equal(out.error.code, 9);
      assert.equal(out.error.metadata.get('x-err')[0], 'why');
      assert.equal(out.error.metadata.get('x-echo-back').length, 0);
    });

    test('unary: trailers-only failure emits no metadata', async () => {
      let headers = null;
      const err = await new Promise((resolve) => {
        const call = client.unary({ name: 'trailers-only', code: 9 }, { deadline: Date.now() + 10000 }, (e) => resolve(e));
        call.on('metadata', (m) => (headers = m));
      });
      await new Promise((r) => setImmediate(r));
      assert.equal(err.code, 9);
      assert.equal(err.metadata.get('x-err')[0], 'why');
      assert.equal(headers, null);
    });

    test('unary: deadline exceeded', async () => {
      const err = await new Promise((resolve) => client.unary({ name: 'slow', delayMs: 2000 }, { deadline: Date.now() + 100 }, (e) => resolve(e)));
      if (C === grpcjs && err.code === C.status.CANCELLED) {
        // Under load our server's deadline timer (RST_STREAM CANCEL, as
        // grpc-go does) can fire before grpc-js's own, which grpc-js then
        // reports as CANCELLED.
        return;
      }
      assert.equal(err.code, C.status.DEADLINE_EXCEEDED);
    });

    test('unary: client cancel -> CANCELLED, server sees cancelled', async () => {
      const err = await new Promise((resolve) => {
        const call = client.unary({ name: 'wait' }, (e) => resolve(e));
        arrived(srv.seen, 'wait').then(() => call.cancel());
      });
      assert.equal(err.code, C.status.CANCELLED);
      assert.equal(err.details, 'Cancelled on client');
      const sawWait = () => (srv.seen.cancelledNames || []).includes('wait');
      for (let i = 0; i < 50 && !sawWait(); i++) await new Promise((r) => setTimeout(r, 20));
      assert.ok(sawWait(), 'server saw the cancellation');
      assert.equal(srv.seen.cancelledFlag, true);
    });

    test('client streaming: callback, headers, trailers', async () => {
      let headers = null;
      let st = null;
      const res = await new Promise((resolve, reject) => {
        const call = client.clientStream((err, r) => (err ? reject(err) : resolve(r)));
        call.on('metadata', (m) => (headers = m));
        call.on('status', (s) => (st = s));
        for (let i = 1; i <= 5; i++) call.write({ name: `m${i}`, n: i });
        call.end();
      });
      await new Promise((r) => setImmediate(r));
      assert.equal(res.n, 15);
      assert.equal(res.message, 'm1,m2,m3,m4,m5');
      assert.ok(headers instanceof C.Metadata);
      assert.equal(st.code, 0);
      assert.equal(st.metadata.get('x-trail')[0], 'done');
    });

    test('many messages both ways (read credits, pipelined writes)', async () => {
      const res = await new Promise((resolve, reject) => {
        const call = client.clientStream((err, r) => (err ? reject(err) : resolve(r)));
        for (let i = 0; i < 300; i++) call.write({ name: 'm', n: i });
        call.end();
      });
      assert.equal(res.n, (299 * 300) / 2);
      const bidi = client.bidi();
      const done = collect(bidi);
      for (let i = 0; i < 200; i++) bidi.write({ name: `b${i}`, n: i });
      bidi.end();
      const out = await done;
      assert.equal(out.status.code, 0);
      assert.equal(out.data.length, 200);
      assert.deepEqual(out.data.map((d) => d.n), Array.from({ length: 200 }, (_, i) => i * 2));
      const ss = await collect(client.serverStream({ name: 's', n: 1000 }));
      assert.deepEqual(ss.data.map((d) => d.n), Array.from({ length: 1000 }, (_, i) => i));
    });

    test('client streaming: error status', async () => {
      const err = await new Promise((resolve) => {
        const call = client.clientStream((e) => resolve(e));
        call.write({ name: 'fail', n: 1 });
        call.end();
      });
      assert.equal(err.code, C.status.FAILED_PRECONDITION);
      assert.equal(err.details, 'no fail allowed');
    });

    test('server streaming: messages, metadata and status events', async () => {
      const md = new C.Metadata();
      md.set('x-echo', 'ss');
      const out = await collect(client.serverStream({ name: 'x', n: 50 }, md));
      assert.equal(out.data.length, 50);
      assert.deepEqual(out.data.slice(0, 3).map((d) => d.message), ['x0', 'x1', 'x2']);
      assert.equal(out.data[49].n, 49);
      assert.equal(out.headers.get('x-echo-back')[0], 'ss');
      assert.equal(out.status.code, 0);
      assert.equal(out.status.metadata.get('x-trail')[0], 'done');
      assert.equal(out.error, null);
    });

    test('server streaming: emit("error") ends with that status after messages', async () => {
      const out = await collect(client.serverStream({ name: 'e', n: 3, code: 7 }));
      assert.equal(out.data.length, 3);
      assert.equal(out.error.code, 7);
      assert.equal(out.error.message, '7 PERMISSION_DENIED: failed: e');
      assert.equal(out.status.code, 7);
      assert.equal(out.error.metadata.get('x-err')[0], 'why');
    });

    test('server streaming: cancel', async () => {
      srv.seen.streamCancelled = false;
      const call = client.serverStream({ name: 'c', n: 2, delayMs: 1 });
      const done = collect(call);
      call.once('data', () => setTimeout(() => call.cancel(), 50));
      const out = await done;
      assert.equal(out.status.code, C.status.CANCELLED);
      assert.equal(out.error.code, C.status.CANCELLED);
      for (let i = 0; i < 50 && !srv.seen.streamCancelled; i++) await new Promise((r) => setTimeout(r, 20));
      assert.equal(srv.seen.streamCancelled, true);
    });

    test('bidi streaming: ping-pong and trailers', async () => {
      const call = client.bidi();
      const done = collect(call);
      const replies = [];
      for (let i = 0; i < 10; i++) {
        const got = new Promise((r) => call.once('data', r));
        call.write({ name: `w${i}`, n: i });
        replies.push(await got);
      }
      call.end();
      const out = await done;
      assert.deepEqual(replies.map((r) => r.message), ['W0', 'W1', 'W2', 'W3', 'W4', 'W5', 'W6', 'W7', 'W8', 'W9']);
      assert.deepEqual(replies.map((r) => r.n), [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]);
      assert.equal(out.status.code, 0);
      assert.equal(out.status.metadata.get('x-trail')[0], 'done');
    });

    test('bidi streaming: server error mid-stream', async () => {
      const call = client.bidi();
      const done = collect(call);
      call.write({ name: 'a', n: 1 });
      call.write({ name: 'b', n: 1, code: 9 });
      const out = await done;
      assert.equal(out.status.code, 9);
      assert.equal(out.error.code, 9);
      assert.deepEqual(out.data.map((d) => d.message), ['A']);
    });

    test('bidi streaming: cancel, server sees it', async () => {
      srv.seen.bidiCancelled = false;
      const call = client.bidi();
      const done = collect(call);
      call.write({ name: 'a', n: 1 });
      await new Promise((r) => call.once('data', r));
      call.cancel();
      const out = await done;
      assert.equal(out.status.code, C.status.CANCELLED);
      for (let i = 0; i < 50 && !srv.seen.bidiCancelled; i++) await new Promise((r) => setTimeout(r, 20));
      assert.equal(srv.seen.bidiCancelled, true);
    });

    test('unimplemented method', async () => {
      const Generic = C.makeGenericClientConstructor(
        {
          nope: {
            path: '/test.v1.Tester/Nope',
            requestStream: false,
            responseStream: false,
            requestSerialize: (x) => x,
            responseDeserialize: (x) => x,
          },
        },
        'Tester',
      );
      const g = new Generic(`127.0.0.1:${srv.port}`, C.credentials.createInsecure());
      const err = await new Promise((resolve) => g.nope(Buffer.alloc(0), (e) => resolve(e)));
      assert.equal(err.code, C.status.UNIMPLEMENTED);
      g.close();
    });

    test('waitForReady', async () => {
      await new Promise((resolve, reject) => client.waitForReady(Date.now() + 5000, (e) => (e ? reject(e) : resolve())));
    });
  });
}

test('waitForReady fails at the deadline when nothing listens', async () => {
  const Tester = load(ours).Tester;
  const c = new Tester('127.0.0.1:1', ours.credentials.createInsecure());
  const err = await new Promise((resolve) => c.waitForReady(Date.now() + 300, (e) => resolve(e)));
  assert.ok(err instanceof Error);
  c.close();
});

test('unreachable server -> UNAVAILABLE', async () => {
  const c = new (load(ours).Tester)('127.0.0.1:1', ours.credentials.createInsecure());
  const err = await new Promise((resolve) => c.unary({ name: 'x' }, (e) => resolve(e)));
  assert.equal(err.code, ours.status.UNAVAILABLE);
  c.close();
});

test('close: calls after close fail', async () => {
  const srv = await startServer(ours);
  const c = new (load(ours).Tester)(`127.0.0.1:${srv.port}`, ours.credentials.createInsecure());
  await new Promise((resolve, reject) => c.unary({ name: 'x' }, (e) => (e ? reject(e) : resolve())));
  c.close();
  const err = await new Promise((resolve) => c.unary({ name: 'x' }, (e) => resolve(e)));
  assert.ok(err && typeof err.code === 'number' && err.code !== 0);
  await stopServer(ours, srv.server);
});
