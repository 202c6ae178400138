'use strict';
// Client interceptors (grpc-js's API): each test runs the same interceptor
// code on a grpc-core client and on a @grpc/grpc-js client, both against a
// grpc-core server, so the behaviour is checked against grpc-js's own.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { execFile } = require('node:child_process');
const { arrived, ours, grpcjs, load, startServer, stopServer } = require('./common');

const clients = [
  ['grpc-core', ours],
  ['grpc-js', grpcjs],
];

function unary(client, req, metadata, options) {
  return new Promise((resolve) => {
    const out = { err: null, res: null, headers: null, status: null };
    const call = client.unary(req, metadata || new client.__grpc.Metadata(), options || {}, (err, res) => {
      out.err = err;
      out.res = res;
    });
    call.on('metadata', (m) => (out.headers = m));
    call.on('status', (s) => {
      out.status = s;
      setImmediate(() => resolve(out));
    });
  });
}

for (const [name, C] of clients) {
  test.describe(`interceptors: ${name} client -> grpc-core server`, () => {
    let srv;
    let target;
    const make = (options) => {
      const c = new (load(C).Tester)(target, C.credentials.createInsecure(), options);
      c.__grpc = C;
      return c;
    };
    test.before(async () => {
      srv = await startServer(ours);
      target = `127.0.0.1:${srv.port}`;
    });
    test.after(async () => {
      await stopServer(ours, srv.server);
    });

    test('reads and changes outgoing metadata, incoming headers, message and status', async () => {
      const seen = {};
      const interceptor = (options, nextCall) =>
        new C.InterceptingCall(nextCall(options), {
          start(metadata, listener, next) {
            metadata.set('x-echo', 'set-by-interceptor');
            next(metadata, {
              onReceiveMetadata(md, nextMd) {
                seen.headers = md.get('x-echo-back')[0];
                md.set('x-added', 'yes');
                nextMd(md);
              },
              onReceiveMessage(msg, nextMsg) {
                seen.message = msg.message;
                nextMsg(Object.assign({}, msg, { n: msg.n * 10 }));
              },
              onReceiveStatus(st, nextSt) {
                seen.code = st.code;
                seen.trailer = st.metadata.get('x-trail')[0];
                nextSt(st);
              },
            });
          },
        });
      const client = make({ interceptors: [interceptor] });
      try {
        const out = await unary(client, { name: 'md', n: 4 });
        assert.equal(out.err, null);
        assert.equal(seen.headers, 'set-by-interceptor', 'the server echoed the header the interceptor added');
        assert.equal(seen.message, 'hello md');
        assert.equal(seen.code, C.status.OK);
        assert.equal(seen.trailer, 'done');
        assert.equal(out.res.n, 50, 'the caller got the message as the interceptor changed it');
        assert.equal(out.headers.get('x-added')[0], 'yes');
      } finally {
        client.close();
      }
    });

    test('two interceptors run outside-in on the way out and inside-out on the way back', async () => {
      const log = [];
      const tracer = (tag) => (options, nextCall) =>
        new C.InterceptingCall(nextCall(options), {
          start(metadata, listener, next) {
            log.push(`${tag} start`);
            next(metadata, {
              onReceiveMetadata: (md, n) => (log.push(`${tag} metadata`), n(md)),
              onReceiveMessage: (m, n) => (log.push(`${tag} message ${m.message}`), n(m)),
              onReceiveStatus: (s, n) => (log.push(`${tag} status ${s.code}`), n(s)),
            });
          },
          sendMessage: (m, next) => (log.push(`${tag} send ${m.name}`), next(m)),
          halfClose: (next) => (log.push(`${tag} halfClose`), next()),
        });
      const client = make({ interceptors: [tracer('A'), tracer('B')] });
      try {
        const out = await unary(client, { name: 'order' });
        assert.equal(out.err, null);
        assert.deepEqual(log, [
          'A start',
          'B start',
          'A send order',
          'B send order',
          'A halfClose',
          'B halfClose',
          'B metadata',
          'A metadata',
          'B message hello order',
          'A message hello order',
          'B status 0',
          'A status 0',
        ]);
      } finally {
        client.close();
      }
    });

    test('short-circuit: an answer from the interceptor, the server never sees the call', async () => {
      const requester = new C.RequesterBuilder()
        .withStart((metadata, listener, next) => {
          // No next(): the call never starts.
          requester.listener = listener;
        })
        .withSendMessage(() => {})
        .withHalfClose(() => {
          const l = requester.listener;
          l.onReceiveMetadata(new C.Metadata());
          l.onReceiveMessage({ message: 'cached', n: 7 });
          l.onReceiveStatus({ code: C.status.OK, details: '', metadata: new C.Metadata() });
        })
        .build();
      const cache = (options, nextCall) => new C.InterceptingCall(nextCall(options), requester);
      const client = make({ interceptors: [cache] });
      const plain = make();
      try {
        const callName = `short-${name}`;
        // The answer comes synchronously, inside the call: only the callback sees it.
        const res = await new Promise((resolve, reject) => client.unary({ name: callName }, (err, r) => (err ? reject(err) : resolve(r))));
        assert.deepEqual([res.message, res.n], ['cached', 7]);
        // A real call afterwards; the server sees calls in order.
        const after = await unary(plain, { name: `after-${callName}` });
        assert.equal(after.err, null);
        assert.ok(srv.seen.arrived.includes(`after-${callName}`));
        assert.ok(!srv.seen.arrived.includes(callName), 'the short-circuited call reached the server');
      } finally {
        client.close();
        plain.close();
      }
    });

    test('an interceptor that starts later (an async token fetch) holds messages and half-close back', async () => {
      const log = [];
      const lateAuth = (options, nextCall) =>
        new C.InterceptingCall(nextCall(options), {
          start(metadata, listener, next) {
            setTimeout(() => {
              log.push('token ready');
              metadata.set('x-echo', 'late-token');
              next(metadata, listener);
            }, 30);
          },
          sendMessage(m, next) {
            log.push(`send ${m.name}`);
            next(m);
          },
        });
      const client = make({ interceptors: [lateAuth] });
      try {
        const out = await unary(client, { name: 'late', n: 1 });
        assert.equal(out.err, null);
        assert.equal(out.res.message, 'hello late');
        assert.equal(out.headers.get('x-echo-back')[0], 'late-token');
        assert.deepEqual(log, ['send late', 'token ready']);
        // Client streaming: the Writable waits for each message to be sent.
        const res = await new Promise((resolve, reject) => {
          const call = client.clientStream((err, r) => (err ? reject(err) : resolve(r)));
          call.write({ name: 'x', n: 1 });
          call.write({ name: 'y', n: 2 });
          call.end();
        });
        assert.equal(res.message, 'x,y');
        assert.equal(res.n, 3);
      } finally {
        client.close();
      }
    });

    test('rewrites a failure status', async () => {
      const listener = new C.ListenerBuilder()
        .withOnReceiveStatus((st, next) => {
          if (st.code === C.status.NOT_FOUND) next({ code: C.status.UNAVAILABLE, details: `rewritten: ${st.details}`, metadata: st.metadata });
          else next(st);
        })
        .build();
      const rewrite = (options, nextCall) => new C.InterceptingCall(nextCall(options), new C.RequesterBuilder().withStart((md, _l, next) => next(md, listener)).build());
      const client = make({ interceptors: [rewrite] });
      try {
        const out = await unary(client, { name: 'bad', code: C.status.NOT_FOUND });
        assert.equal(out.err.code, C.status.UNAVAILABLE);
        assert.equal(out.err.details, 'rewritten: failed: bad');
        assert.equal(out.status.code, C.status.UNAVAILABLE);
        assert.equal(out.status.metadata.get('x-err')[0], 'why', 'the trailers went through');
      } finally {
        client.close();
      }
    });

    test('bidi: messages changed both ways, counted, status seen', async () => {
      const counts = { out: 0, in: 0, status: null };
      const bang = (options, nextCall) =>
        new C.InterceptingCall(nextCall(options), {
          start(metadata, listener, next) {
            next(metadata, {
              onReceiveMessage(m, n) {
                counts.in++;
                n(Object.assign({}, m, { message: `<${m.message}>` }));
              },
              onReceiveStatus(s, n) {
                counts.status = s.code;
                n(s);
              },
            });
          },
          sendMessage(m, next) {
            counts.out++;
            next(Object.assign({}, m, { name: `${m.name}x` }));
          },
        });
      const client = make({ interceptors: [bang] });
      try {
        const call = client.bidi();
        const got = [];
        const done = new Promise((resolve, reject) => {
          call.on('data', (d) => got.push(d.message));
          call.on('error', reject);
          call.on('end', resolve);
        });
        call.write({ name: 'a', n: 1 });
        call.write({ name: 'b', n: 2 });
        call.end();
        await done;
        assert.deepEqual(got, ['<AX>', '<BX>']);
        assert.deepEqual(counts, { out: 2, in: 2, status: C.status.OK });
      } finally {
        client.close();
      }
    });

    test('client streaming: each write goes through sendMessage; write callbacks complete', async () => {
      const double = (options, nextCall) => new C.InterceptingCall(nextCall(options), { sendMessage: (m, next) => next(Object.assign({}, m, { n: m.n * 2 })) });
      const client = make({ interceptors: [double] });
      try {
        const written = [];
        const res = await new Promise((resolve, reject) => {
          const call = client.clientStream((err, r) => (err ? reject(err) : resolve(r)));
          for (let i = 1; i <= 3; i++) call.write({ name: `w${i}`, n: i }, () => written.push(i));
          call.end();
        });
        assert.equal(res.n, 12);
        assert.equal(res.message, 'w1,w2,w3');
        assert.deepEqual(written, [1, 2, 3]);
      } finally {
        client.close();
      }
    });

    test('interceptor_providers: chosen per method from method_definition', async () => {
      const paths = [];
      const provider = (def) => {
        if (!def.responseStream) return null;
        return (options, nextCall) => {
          paths.push(options.method_definition.path);
          let n = 0;
          return new C.InterceptingCall(nextCall(options), {
            start: (md, l, next) => next(md, { onReceiveMessage: (m, nx) => (n++, nx(m)), onReceiveStatus: (s, nx) => (paths.push(`${n} messages`), nx(s)) }),
          });
        };
      };
      const client = make({ interceptor_providers: [provider] });
      try {
        const got = [];
        await new Promise((resolve, reject) => {
          const call = client.serverStream({ name: 's', n: 3 });
          call.on('data', (d) => got.push(d.message));
          call.on('error', reject);
          call.on('end', resolve);
        });
        assert.deepEqual(got, ['s0', 's1', 's2']);
        const out = await unary(client, { name: 'not-intercepted' });
        assert.equal(out.err, null);
        assert.deepEqual(paths, ['/test.v1.Tester/ServerStream', '3 messages']);
      } finally {
        client.close();
      }
    });

    test('call interceptors replace the client ones; an interceptor can set the deadline', async () => {
      const log = [];
      const clientLevel = (options, nextCall) => (log.push('client'), new C.InterceptingCall(nextCall(options)));
      const withDeadline = (options, nextCall) => {
        log.push('call');
        return nextCall(Object.assign({}, options, { deadline: Date.now() + 5000 }));
      };
      const client = make({ interceptors: [clientLevel] });
      try {
        const t0 = Date.now();
        const out = await unary(client, { name: 'deadline-set' }, undefined, { interceptors: [withDeadline] });
        assert.equal(out.err, null);
        assert.deepEqual(log, ['call']);
        // The server saw the deadline the interceptor set (5 s from the call).
        const left = srv.seen.deadline.getTime() - t0;
        assert.ok(left > 3000 && left <= 5200, `server deadline ${left} ms after the call`);
      } finally {
        client.close();
      }
    });

    test('cancel() goes through the cancel requester', async () => {
      const log = [];
      const watch = (options, nextCall) => new C.InterceptingCall(nextCall(options), new C.RequesterBuilder().withCancel((next) => (log.push('cancel'), next())).build());
      const client = make({ interceptors: [watch] });
      try {
        const p = new Promise((resolve) => {
          const call = client.unary({ name: 'wait' }, (err) => resolve(err));
          arrived(srv.seen, 'wait').then(() => call.cancel());
        });
        const err = await p;
        assert.equal(err.code, C.status.CANCELLED);
        assert.deepEqual(log, ['cancel']);
      } finally {
        client.close();
      }
    });

    test('server streaming: cancel after the first message ends the call on both sides', async () => {
      let statusSeen = null;
      const watch = (options, nextCall) =>
        new C.InterceptingCall(nextCall(options), {
          start: (md, l, next) => next(md, { onReceiveStatus: (st, n) => ((statusSeen = st.code), n(st)) }),
        });
      const client = make({ interceptors: [watch] });
      try {
        srv.seen.streamCancelled = false;
        const call = client.serverStream({ name: 'c', n: 2, delayMs: 1 });
        const got = [];
        const err = await new Promise((resolve) => {
          call.on('data', (d) => {
            got.push(d.message);
            if (got.length === 1) call.cancel();
          });
          call.on('error', resolve);
        });
        assert.equal(err.code, C.status.CANCELLED);
        assert.equal(statusSeen, C.status.CANCELLED, 'the interceptor saw the status');
        assert.equal(got[0], 'c0');
        for (let i = 0; i < 200 && !srv.seen.streamCancelled; i++) await new Promise((r) => setTimeout(r, 10));
        assert.equal(srv.seen.streamCancelled, true, 'the server saw the cancellation');
      } finally {
        client.close();
      }
    });

    test('interceptors and interceptor_providers together are refused', () => {
      const i = (options, nextCall) => new C.InterceptingCall(nextCall(options));
      assert.throws(() => make({ interceptors: [i], interceptor_providers: [() => i] }), /Only one of these is allowed/);
      const client = make();
      try {
        assert.throws(() => client.unary({ name: 'x' }, new C.Metadata(), { interceptors: [i], interceptor_providers: [() => i] }, () => {}), /Only one of these is allowed/);
      } finally {
        client.close();
      }
    });
  });
}

function run(file) {
  return new Promise((resolve, reject) =>
    execFile(process.execPath, [file], { timeout: 20000, cwd: path.dirname(file) }, (e, stdout, stderr) => (e ? reject(new Error(`${e.message}\n${stderr}`)) : resolve(stdout))),
  );
}

test('a program written for grpc-js interceptors: same output with only the require line changed', async () => {
  const src = path.join(__dirname, 'fixtures', 'grpcjs_interceptors.js');
  const original = fs.readFileSync(src, 'utf8');
  const line = "const grpc = require('@grpc/grpc-js');";
  assert.ok(original.includes(line));
  const ported = original.replace(line, `const grpc = require(${JSON.stringify(path.join(__dirname, '..'))});`);
  const changed = original.split('\n').filter((l, i) => l !== ported.split('\n')[i]);
  assert.deepEqual(changed, [line], 'exactly one line differs');
  const portedFile = path.join(__dirname, 'fixtures', `.grpcjs_interceptors.grpc-core.${process.pid}.js`);
  fs.writeFileSync(portedFile, ported);
  try {
    const [a, b] = await Promise.all([run(src), run(portedFile)]);
    const expected = [
      'unary HELLO WORLD+ 1',
      'failed error 5 [auth] bad x+',
      'cached from cache 0',
      'call-level Hello plain 2',
      'client-stream A+,B+ 3',
      'server-stream item0,item1,item2',
      'bidi p!,q!',
      'provided unary Hello u',
      'config error Both interceptors and interceptor_providers were passed as options to the client constructor. Only one of these is allowed.',
      'log server saw world+ token=secret',
      'log headers x-seen-by=auth',
      'log cache store HELLO WORLD+',
      'log auth status 0',
      'log server saw x+ token=secret',
      'log cache store null',
      'log auth status 5',
      'log cache hit',
      'log auth status 0',
      'log server saw plain token=-',
      'log headers x-seen-by=-',
      'log auth status 0',
      'log /test.v1.Tester/ServerStream got 3 messages',
      'log /test.v1.Tester/Bidi got 2 messages',
      'log server saw u token=-',
      'done',
    ];
    assert.deepEqual(a.trim().split('\n'), expected, 'grpc-js');
    assert.deepEqual(b.trim().split('\n'), expected, 'grpc-core');
  } finally {
    fs.rmSync(portedFile, { force: true });
  }
});
