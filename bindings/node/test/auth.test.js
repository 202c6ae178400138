'use strict';
// Auth on the engine: call credentials (grpc-js's createFromMetadataGenerator,
// combine*, the per-call `credentials` option) run by the engine's
// CallCredentials, the plaintext refusal, the server's auth context with
// mTLS, both directions with @grpc/grpc-js; and server reflection.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { ours: grpc, grpcjs, load, stopServer, packageDefinition } = require('./common');

/** A CA, a server certificate (localhost) and a client certificate (CN test-client), made with openssl. */
function makePki() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'grpc-core-node-auth-'));
  const run = (args) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  try {
    run(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=auth-test-ca']);
    const leaf = (name, subj, ext) => {
      run(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subj]);
      fs.writeFileSync(path.join(dir, `${name}.cnf`), ext);
      run(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', `${name}.cnf`]);
    };
    leaf('server', '/CN=localhost', 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
    leaf('client', '/O=Example/CN=test-client', 'subjectAltName=DNS:client.test.example,URI:spiffe://example.org/client\nextendedKeyUsage=clientAuth\n');
    const read = (f) => fs.readFileSync(path.join(dir, f));
    return { ca: read('ca.pem'), cert: read('server.pem'), key: read('server.key'), clientCert: read('client.pem'), clientKey: read('client.key') };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const pki = makePki();

/** A server of library `lib` whose unary handler records metadata and auth context. */
function authServer(lib, creds) {
  const seen = [];
  const server = new lib.Server();
  server.addService(load(lib).Tester.service, {
    unary(call, cb) {
      seen.push({
        authorization: call.metadata.get('authorization')[0],
        authorizations: call.metadata.get('authorization'),
        perCall: call.metadata.get('x-per-call')[0],
        auth: typeof call.getAuthContext === 'function' ? call.getAuthContext() : null,
      });
      cb(null, { message: 'ok' });
    },
  });
  return new Promise((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', creds || lib.ServerCredentials.createInsecure(), (e, port) => (e ? reject(e) : resolve({ server, port, seen }))),
  );
}

function unary(client, options = {}) {
  return new Promise((resolve) => client.unary({ name: 'x' }, options, (err, resp) => resolve({ err, resp })));
}

/** A generator that records what it is asked and returns `authorization: Bearer <token>`. */
function tokenGenerator(lib, token, asked) {
  return lib.credentials.createFromMetadataGenerator((params, cb) => {
    asked.push(params);
    const md = new lib.Metadata();
    md.set('authorization', `Bearer ${token}`);
    cb(null, md);
  });
}

const tlsServer = (lib, requireClientCert = false) =>
  lib.ServerCredentials.createSsl(requireClientCert ? pki.ca : null, [{ private_key: pki.key, cert_chain: pki.cert }], requireClientCert);

test('call credentials: channel and per-call tokens reach the server over TLS, with grpc-js params', async () => {
  const { server, port, seen } = await authServer(grpc, tlsServer(grpc));
  const asked = [];
  const channelCreds = grpc.credentials.combineChannelCredentials(grpc.credentials.createSsl(pki.ca), tokenGenerator(grpc, 'chan', asked));
  const client = new (load(grpc).Tester)(`localhost:${port}`, channelCreds);
  const perCall = grpc.credentials.combineCallCredentials(
    grpc.credentials.createFromMetadataGenerator((params, cb) => {
      const md = new grpc.Metadata();
      md.set('x-per-call', `${params.method_name}`);
      setTimeout(() => cb(null, md), 5); // answered later: the engine waits for it
    }),
    grpc.CallCredentials.createEmpty(),
  );
  const a = await unary(client);
  const b = await unary(client, { credentials: perCall });
  assert.equal(a.err, null);
  assert.equal(b.err, null);
  assert.deepEqual(
    seen.map((s) => [s.authorization, s.perCall]),
    [
      ['Bearer chan', undefined],
      ['Bearer chan', '/test.v1.Tester/Unary'],
    ],
  );
  assert.equal(asked.length, 2);
  assert.deepEqual(asked[0], { service_url: 'https://localhost/test.v1.Tester', method_name: '/test.v1.Tester/Unary' });
  // The server saw TLS, and no client certificate.
  assert.equal(seen[0].auth.transportSecurityType, 'ssl');
  assert.equal(seen[0].auth.sslPeerCertificate, undefined);
  assert.match(seen[0].auth.tlsVersion, /^TLS/);

  // Streaming calls carry them too (server streaming goes through `start`).
  const st = client.serverStream({ name: 's', n: 0 }, { credentials: perCall });
  const end = await new Promise((resolve) => st.on('status', resolve).on('data', () => {}).on('error', () => {}));
  assert.equal(end.code, grpc.status.UNIMPLEMENTED); // authServer only implements unary: the call got through auth
  assert.equal(asked.length, 3);
  client.close();
  await stopServer(grpc, server);
});

test('call credentials with client interceptors: both apply (interceptor metadata, then channel and per-call credentials)', async () => {
  const { server, port, seen } = await authServer(grpc, tlsServer(grpc));
  const interceptor = (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set('x-per-call', 'from-interceptor');
        next(metadata, listener);
      },
    });
  const asked = [];
  const creds = grpc.credentials.combineChannelCredentials(grpc.credentials.createSsl(pki.ca), tokenGenerator(grpc, 'icpt', asked));
  const client = new (load(grpc).Tester)(`localhost:${port}`, creds, { interceptors: [interceptor] });
  const r = await unary(client, { credentials: grpc.credentials.createFromAccessToken('call-token') });
  assert.equal(r.err, null);
  // Channel credentials first, then the call's: two authorization values reach the server.
  const md = seen[0];
  assert.equal(md.perCall, 'from-interceptor');
  assert.deepEqual(md.authorizations, ['Bearer icpt', 'Bearer call-token']);
  assert.equal(asked.length, 1);
  client.close();
  await stopServer(grpc, server);
});

test('call credentials: generator errors end the call with its code (UNKNOWN without one; A54 codes INTERNAL)', async () => {
  const { server, port, seen } = await authServer(grpc, tlsServer(grpc));
  const client = new (load(grpc).Tester)(`localhost:${port}`, grpc.credentials.createSsl(pki.ca));
  const failing = (err) => grpc.credentials.createFromMetadataGenerator((_params, cb) => cb(err));
  const cases = [
    [Object.assign(new Error('denied'), { code: grpc.status.PERMISSION_DENIED }), grpc.status.PERMISSION_DENIED],
    [new Error('no code'), grpc.status.UNKNOWN],
    [Object.assign(new Error('bad'), { code: grpc.status.INVALID_ARGUMENT }), grpc.status.INTERNAL],
  ];
  for (const [err, code] of cases) {
    const r = await unary(client, { credentials: failing(err) });
    assert.equal(r.err.code, code, err.message);
    assert.match(r.err.details, new RegExp(`Getting metadata from plugin failed with error: ${err.message}`));
  }
  const throwing = grpc.credentials.createFromMetadataGenerator(() => {
    throw new Error('boom');
  });
  const t = await unary(client, { credentials: throwing });
  assert.equal(t.err.code, grpc.status.UNKNOWN);
  assert.match(t.err.details, /boom/);
  // A generator that never answers is bounded by the deadline.
  const silent = grpc.credentials.createFromMetadataGenerator(() => {});
  const s = await unary(client, { credentials: silent, deadline: Date.now() + 200 });
  assert.equal(s.err.code, grpc.status.DEADLINE_EXCEEDED);
  assert.equal(seen.length, 0, 'no call reached the handler');
  client.close();
  await stopServer(grpc, server);
});

test('call credentials are refused on plaintext (UNAUTHENTICATED) unless the channel opts in', async () => {
  const { server, port, seen } = await authServer(grpc);
  const asked = [];
  const creds = tokenGenerator(grpc, 'plain', asked);
  assert.throws(() => grpc.credentials.combineChannelCredentials(grpc.credentials.createInsecure(), creds), /Cannot compose insecure credentials/);
  const client = new (load(grpc).Tester)(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const r = await unary(client, { credentials: creds });
  assert.equal(r.err.code, grpc.status.UNAUTHENTICATED);
  assert.match(r.err.details, /insecure/);
  assert.equal(asked.length, 0, 'the generator is not even asked');
  assert.equal(seen.length, 0);
  const optIn = new (load(grpc).Tester)(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { 'grpc-core.allow_insecure_call_credentials': true });
  const ok = await unary(optIn, { credentials: creds });
  assert.equal(ok.err, null);
  assert.equal(seen[0].authorization, 'Bearer plain');
  // The auth context of a plaintext call: grpc-js's empty shape, plus the peer.
  assert.equal(seen[0].auth.transportSecurityType, undefined);
  assert.match(seen[0].auth.peer, /^127\.0\.0\.1:\d+$/);
  assert.deepEqual(seen[0].auth.peerIdentity, []);
  // grpc-js, by contrast, sends per-call credentials over plaintext silently.
  const js = new (load(grpcjs).Tester)(`127.0.0.1:${port}`, grpcjs.credentials.createInsecure());
  const jr = await unary(js, { credentials: tokenGenerator(grpcjs, 'js-plain', []) });
  assert.equal(jr.err, null);
  assert.equal(seen[1].authorization, 'Bearer js-plain');
  client.close();
  optIn.close();
  js.close();
  await stopServer(grpc, server);
});

test('mTLS: the handler sees the verified client identity (ours and grpc-js clients)', async () => {
  const { server, port, seen } = await authServer(grpc, tlsServer(grpc, true));
  for (const lib of [grpc, grpcjs]) {
    const c = new (load(lib).Tester)(`localhost:${port}`, lib.credentials.createSsl(pki.ca, pki.clientKey, pki.clientCert));
    const r = await unary(c);
    assert.equal(r.err, null);
    c.close();
  }
  // A client without a certificate is turned away.
  const anon = new (load(grpc).Tester)(`localhost:${port}`, grpc.credentials.createSsl(pki.ca));
  const bad = await unary(anon, { deadline: Date.now() + 3000 });
  assert.notEqual(bad.err, null);
  anon.close();
  assert.equal(seen.length, 2);
  for (const { auth } of seen) {
    assert.equal(auth.transportSecurityType, 'ssl');
    assert.equal(auth.sslPeerCertificate.subject.CN, 'test-client');
    assert.equal(auth.sslPeerCertificate.issuer.CN, 'auth-test-ca');
    assert.ok(Buffer.isBuffer(auth.sslPeerCertificate.raw));
    assert.equal(auth.commonName, 'test-client');
    assert.match(auth.subject, /CN=test-client/);
    assert.deepEqual(auth.subjectAltNames, ['client.test.example', 'spiffe://example.org/client']);
    assert.deepEqual(auth.peerIdentity, ['client.test.example', 'spiffe://example.org/client']);
    assert.equal(auth.peerIdentityPropertyName, 'x509_subject_alternative_name');
    assert.deepEqual(auth.properties.x509_common_name, ['test-client']);
    assert.match(auth.properties.x509_pem_cert[0], /^-----BEGIN CERTIFICATE-----/);
    assert.equal(auth.peerCertificates[0].equals(auth.sslPeerCertificate.raw), true);
  }
  await stopServer(grpc, server);
});

test('grpc-js call credentials against our server, ours against grpc-js server', async () => {
  for (const [C, S] of [
    [grpcjs, grpc],
    [grpc, grpcjs],
  ]) {
    const { server, port, seen } = await authServer(S, tlsServer(S, true));
    const asked = [];
    const creds = C.credentials.combineChannelCredentials(C.credentials.createSsl(pki.ca, pki.clientKey, pki.clientCert), tokenGenerator(C, 'cross', asked));
    const c = new (load(C).Tester)(`localhost:${port}`, creds);
    const r = await unary(c);
    assert.equal(r.err, null);
    assert.equal(seen[0].authorization, 'Bearer cross');
    // The same generator params from both libraries.
    assert.deepEqual(asked[0], { service_url: 'https://localhost/test.v1.Tester', method_name: '/test.v1.Tester/Unary' });
    // Both servers see the client certificate in grpc-js's shape.
    assert.equal(seen[0].auth.transportSecurityType, 'ssl');
    assert.equal(seen[0].auth.sslPeerCertificate.subject.CN, 'test-client');
    c.close();
    await stopServer(S, server);
  }
});

// ---------------------------------------------------------------- reflection

/** Minimal protobuf reader: [fieldNumber, value] pairs (varints as numbers, length-delimited as Buffers). */
function fields(buf) {
  const out = [];
  let i = 0;
  const varint = () => {
    let v = 0;
    let shift = 0;
    for (let k = 0; k < 10; k++) {
      const b = buf[i++];
      v += (b & 0x7f) * 2 ** shift;
      shift += 7;
      if (b < 0x80) break;
    }
    return v;
  };
  while (i < buf.length) {
    const key = varint();
    const wire = key & 7;
    if (wire === 0) out.push([Math.floor(key / 8), varint()]);
    else if (wire === 2) {
      const len = varint();
      out.push([Math.floor(key / 8), buf.subarray(i, i + len)]);
      i += len;
    } else throw new Error(`unexpected wire type ${wire}`);
  }
  return out;
}

test('server reflection from a proto-loader package definition: list services, file by symbol', async () => {
  const server = new grpc.Server();
  server.addService(load(grpc).Tester.service, { unary: (call, cb) => cb(null, { message: 'r' }) });
  server.addReflection(packageDefinition);
  const port = await new Promise((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  assert.throws(() => server.addReflection(packageDefinition), /before the first bindAsync/);
  const id = (b) => b;
  const Reflection = grpc.makeGenericClientConstructor({
    info: { path: '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo', requestStream: true, responseStream: true, requestSerialize: id, requestDeserialize: id, responseSerialize: id, responseDeserialize: id },
  });
  const client = new Reflection(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const call = client.info();
  const replies = [];
  const done = new Promise((resolve, reject) => {
    call.on('data', (b) => replies.push(b));
    call.on('error', reject);
    call.on('end', resolve);
  });
  call.write(Buffer.from([0x3a, 0x00])); // list_services: ""
  const symbol = Buffer.from('test.v1.Tester');
  call.write(Buffer.concat([Buffer.from([0x22, symbol.length]), symbol])); // file_containing_symbol
  call.end();
  await done;
  assert.equal(replies.length, 2);
  // list_services_response (6) -> service (1) -> name (1)
  const list = fields(replies[0]).find(([f]) => f === 6)[1];
  const names = fields(list).map(([, svc]) => fields(svc).find(([f]) => f === 1)[1].toString()).sort();
  assert.deepEqual(names, ['grpc.reflection.v1.ServerReflection', 'grpc.reflection.v1alpha.ServerReflection', 'test.v1.Tester']);
  // file_descriptor_response (4) -> file_descriptor_proto (1): the FileDescriptorProto of test.proto
  const fdr = fields(replies[1]).find(([f]) => f === 4)[1];
  const files = fields(fdr).map(([, fd]) => fields(fd));
  assert.equal(files.length, 1);
  assert.equal(files[0].find(([f]) => f === 2)[1].toString(), 'test.v1'); // package
  client.close();
  await stopServer(grpc, server);
});

test('generators are forgotten once their credentials are unreachable, and kept while a composition or channel uses them', async () => {
  // In a child process with --expose-gc: the generators close over their own
  // credentials object (the usual shape), which must not pin them.
  const script = `
    const grpc = require(${JSON.stringify(path.join(__dirname, '..'))});
    const { load } = require(${JSON.stringify(path.join(__dirname, 'common.js'))});
    const gcUntil = async (cond) => {
      for (let k = 0; k < 100 && !cond(); k++) { global.gc(); await new Promise((r) => setTimeout(r, 20)); }
    };
    (async () => {
      const server = new grpc.Server();
      server.addService(load(grpc).Tester.service, { unary: (c, cb) => cb(null, { message: c.metadata.get('authorization').join(',') }) });
      const port = await new Promise((r) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => r(p)));
      const client = new (load(grpc).Tester)('127.0.0.1:' + port, grpc.credentials.createInsecure(), { 'grpc-core.allow_insecure_call_credentials': true });
      const call = (options) => new Promise((res) => client.unary({}, options, (e, v) => res(e ? 'error ' + e.code : v.message)));
      const before = grpc._handlerCount();
      let ok = 0;
      for (let i = 0; i < 100; i++) {
        const creds = grpc.credentials.createFromMetadataGenerator((p, cb) => { const m = new grpc.Metadata(); m.set('authorization', 'Bearer ' + i); cb(null, m, creds); });
        if ((await call({ credentials: creds })) === 'Bearer ' + i) ok++;
      }
      const peak = grpc._handlerCount();
      await gcUntil(() => grpc._handlerCount() <= before);
      const after = grpc._handlerCount();
      // A composition keeps its parts' generators alive after the parts are dropped.
      let composed = grpc.credentials.combineCallCredentials(
        grpc.credentials.createFromMetadataGenerator((p, cb) => { const m = new grpc.Metadata(); m.set('authorization', 'Bearer a'); cb(null, m); }),
        grpc.credentials.createFromMetadataGenerator((p, cb) => { const m = new grpc.Metadata(); m.set('authorization', 'Bearer b'); cb(null, m); }),
      );
      for (let k = 0; k < 10; k++) { global.gc(); await new Promise((r) => setTimeout(r, 10)); }
      const viaComposition = await call({ credentials: composed });
      composed = null;
      client.close();
      server.tryShutdown(() => {});
      console.log(JSON.stringify({ before, peak, after, ok, viaComposition }));
    })();`;
  const out = await new Promise((resolve, reject) =>
    require('node:child_process').execFile(process.execPath, ['--expose-gc', '-e', script], { timeout: 30000 }, (e, stdout) => (e ? reject(e) : resolve(stdout))),
  );
  const r = JSON.parse(out.trim());
  assert.equal(r.ok, 100);
  assert.equal(r.peak, r.before + 100);
  assert.equal(r.after, r.before, 'every generator handler released');
  assert.equal(r.viaComposition, 'Bearer a,Bearer b');
});
