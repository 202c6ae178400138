'use strict';
// Shared fixtures: the test service, implemented once in grpc-js style so
// the same implementation runs on our server and on @grpc/grpc-js's.
const path = require('node:path');
const fs = require('node:fs');
const os = require('node:os');
const { execFileSync } = require('node:child_process');
const protoLoader = require('@grpc/proto-loader');

const ours = require('..');
const grpcjs = require('@grpc/grpc-js');

const PROTO = path.join(__dirname, 'fixtures', 'test.proto');
const packageDefinition = protoLoader.loadSync(PROTO, { keepCase: false, longs: String, enums: String, defaults: true, oneofs: true });

function load(grpc) {
  return grpc.loadPackageDefinition(packageDefinition).test.v1;
}

/** The service implementation; `seen` records server-side observations. */
function makeImpl(grpc, seen) {
  const trailers = () => {
    const t = new grpc.Metadata();
    t.set('x-trail', 'done');
    t.set('x-trail-bin', Buffer.from([1, 2, 3]));
    return t;
  };
  const echoHeaders = (call) => {
    const h = new grpc.Metadata();
    const v = call.metadata.get('x-echo');
    if (v.length) h.set('x-echo-back', String(v[0]));
    const b = call.metadata.get('x-bin-bin');
    if (b.length) h.set('x-bin-back-bin', b[0]);
    call.sendMetadata(h);
  };
  const fail = (req) => {
    const md = new grpc.Metadata();
    md.set('x-err', 'why');
    md.set('x-err-bin', Buffer.from([9, 8]));
    return { code: req.code, details: `failed: ${req.name}`, metadata: md };
  };
  return {
    unary(call, callback) {
      seen.deadline = call.getDeadline();
      seen.peer = call.getPeer();
      const req = call.request;
      call.on('cancelled', () => {
        (seen.cancelledNames = seen.cancelledNames || []).push(req.name);
        seen.cancelledFlag = call.cancelled;
      });
      seen.arrived = (seen.arrived || []).concat([req.name]);
      if (req.name === 'wait') return; // never answers: the client cancels or times out
      if (req.name !== 'trailers-only') echoHeaders(call); // else a failure is trailers-only
      const answer = () => (req.code ? callback(fail(req)) : callback(null, { message: `hello ${req.name}`, n: req.n + 1 }, trailers()));
      if (req.delayMs) setTimeout(answer, req.delayMs);
      else answer();
    },
    clientStream(call, callback) {
      echoHeaders(call);
      let n = 0;
      const names = [];
      call.on('data', (r) => {
        n += r.n;
        names.push(r.name);
      });
      call.on('end', () => {
        if (names.includes('fail')) return callback({ code: grpc.status.FAILED_PRECONDITION, details: 'no fail allowed' });
        callback(null, { message: names.join(','), n }, trailers());
      });
    },
    serverStream(call) {
      echoHeaders(call);
      const req = call.request;
      for (let i = 0; i < req.n; i++) call.write({ message: `${req.name}${i}`, n: i });
      if (req.code) {
        call.emit('error', fail(req));
        return;
      }
      if (req.delayMs) {
        call.on('cancelled', () => {
          seen.streamCancelled = true;
        });
        return;
      }
      call.end(trailers());
    },
    bidi(call) {
      echoHeaders(call);
      call.on('data', (r) => {
        if (r.code) return call.emit('error', fail(r));
        call.write({ message: r.name.toUpperCase(), n: r.n * 2 });
      });
      // Ends a little after the client half-closes: grpc-js's cancel() can
      // reach the server as a half-close just before its RST_STREAM, and a
      // status sent at once would then (correctly) win over the cancel.
      call.on('end', () => setTimeout(() => call.end(trailers()), 30));
      call.on('cancelled', () => {
        seen.bidiCancelled = true;
      });
    },
  };
}

/** Starts a server of library `grpc`; resolves { port, server, seen }. */
function startServer(grpc, creds) {
  const seen = {};
  const server = new grpc.Server();
  server.addService(load(grpc).Tester.service, makeImpl(grpc, seen));
  return new Promise((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', creds || grpc.ServerCredentials.createInsecure(), (err, port) => {
      if (err) return reject(err);
      resolve({ port, server, seen });
    });
  });
}

/** Resolves once the server has seen a unary call named `name`. */
async function arrived(seen, name) {
  for (let i = 0; i < 500 && !(seen.arrived || []).includes(name); i++) await new Promise((r) => setTimeout(r, 10));
}

function stopServer(grpc, server) {
  return new Promise((resolve) => server.tryShutdown(() => resolve()));
}

/** A self-signed CA and a server certificate for localhost (openssl). */
function makeCerts() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'grpc-core-node-'));
  const run = (args) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  run(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=test-ca']);
  run(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost']);
  fs.writeFileSync(path.join(dir, 'ext.cnf'), 'subjectAltName=DNS:localhost,DNS:foo.test.example,IP:127.0.0.1\n');
  run(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'ext.cnf']);
  const read = (f) => fs.readFileSync(path.join(dir, f));
  const certs = { ca: read('ca.pem'), cert: read('server.pem'), key: read('server.key') };
  fs.rmSync(dir, { recursive: true, force: true });
  return certs;
}

module.exports = { arrived, ours, grpcjs, load, startServer, stopServer, makeCerts, packageDefinition, PROTO };
