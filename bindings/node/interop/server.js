#!/usr/bin/env node
'use strict';
// The gRPC interop server on grpc-core for Node: grpc.testing.TestService as
// the "Server" section of grpc's doc/interop-test-descriptions.md describes,
// written against the grpc-js-compatible API of this package.
//
//   node interop/server.js --port N --use_tls=true|false
//
// Listens on 127.0.0.1:N. TLS uses $GRPC_INTEROP_CERTS_DIR/server1.pem and
// server1.key. Stops on SIGTERM / SIGINT.
const grpc = require('..');
const { parseFlags, loadTesting, readCert, ECHO_INITIAL_KEY, ECHO_TRAILING_KEY, MAX_MESSAGE_SIZE } = require('./common');

/** Initial metadata and trailers to echo back (the Echo Metadata feature). */
function echoOf(call) {
  const initial = new grpc.Metadata();
  const trailing = new grpc.Metadata();
  const i = call.metadata.get(ECHO_INITIAL_KEY);
  if (i.length) initial.set(ECHO_INITIAL_KEY, i[0]);
  const t = call.metadata.get(ECHO_TRAILING_KEY);
  if (t.length) trailing.set(ECHO_TRAILING_KEY, t[0]);
  return { initial, trailing, hasInitial: i.length > 0 };
}

function sendEcho(call, echo) {
  if (echo.hasInitial) call.sendMetadata(echo.initial);
}

/** A ServiceError-shaped object for the Echo Status feature, or null. */
function echoStatus(st, echo) {
  if (!st || !st.code) return null;
  return { code: st.code, details: st.message, metadata: echo.trailing };
}

function payload(type, size) {
  if (type !== undefined && type !== 'COMPRESSABLE' && type !== 0) {
    throw Object.assign(new Error(`unsupported response payload type ${type}`), { code: grpc.status.INVALID_ARGUMENT });
  }
  if (!Number.isInteger(size) || size < 0) {
    throw Object.assign(new Error(`requested a response with invalid length ${size}`), { code: grpc.status.INVALID_ARGUMENT });
  }
  return { type: 'COMPRESSABLE', body: Buffer.alloc(size) };
}

/**
 * The requests of a bidi call. Not `for await (... of call)`: Node destroys
 * a stream whose iteration ends, which would abort the response side too.
 */
const requests = (call) => call.iterator({ destroyOnReturn: false });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Writes the responses one StreamingOutputCallRequest asks for; false if the call went away. */
async function sendResponses(call, req) {
  for (const p of req.response_parameters) {
    if (p.interval_us > 0) await sleep(p.interval_us / 1000);
    if (call.cancelled) return false;
    if (!call.write({ payload: payload(req.response_type, p.size) })) {
      await new Promise((r) => call.once('drain', r));
    }
  }
  return true;
}

/** Ends a streaming call with an error, or OK with the echoed trailers. */
function finishStream(call, err, echo) {
  if (call.cancelled) return;
  if (err) {
    call.emit('error', { code: typeof err.code === 'number' ? err.code : grpc.status.UNKNOWN, details: err.details || err.message, metadata: echo.trailing });
  } else {
    call.end(echo.trailing);
  }
}

const impl = {
  EmptyCall(call, callback) {
    const echo = echoOf(call);
    sendEcho(call, echo);
    callback(null, {}, echo.trailing);
  },

  UnaryCall(call, callback) {
    const echo = echoOf(call);
    const req = call.request;
    sendEcho(call, echo);
    const err = echoStatus(req.response_status, echo);
    if (err) return callback(err);
    let resp;
    try {
      resp = { payload: payload(req.response_type, req.response_size) };
    } catch (e) {
      return callback({ code: e.code, details: e.message, metadata: echo.trailing });
    }
    if (req.fill_server_id) resp.server_id = `grpc-core-node-interop-server-${process.pid}`;
    callback(null, resp, echo.trailing);
  },

  CacheableUnaryCall(call, callback) {
    const echo = echoOf(call);
    const md = echo.initial.clone();
    md.set('cache-control', 'max-age=60, public');
    call.sendMetadata(md);
    const now = process.hrtime.bigint().toString();
    callback(null, { payload: { type: 'COMPRESSABLE', body: Buffer.from(now) } }, echo.trailing);
  },

  StreamingOutputCall(call) {
    const echo = echoOf(call);
    sendEcho(call, echo);
    const req = call.request;
    const err = echoStatus(req.response_status, echo);
    if (err) return finishStream(call, err, echo);
    sendResponses(call, req).then(
      (ok) => ok && finishStream(call, null, echo),
      (e) => finishStream(call, e, echo),
    );
  },

  StreamingInputCall(call, callback) {
    const echo = echoOf(call);
    sendEcho(call, echo);
    let sum = 0;
    call.on('data', (req) => {
      sum += req.payload ? req.payload.body.length : 0;
    });
    call.on('end', () => {
      if (!call.cancelled) callback(null, { aggregated_payload_size: sum }, echo.trailing);
    });
  },

  FullDuplexCall(call) {
    const echo = echoOf(call);
    sendEcho(call, echo);
    (async () => {
      for await (const req of requests(call)) {
        const err = echoStatus(req.response_status, echo);
        if (err) return err;
        if (!(await sendResponses(call, req))) return null;
      }
      return null;
    })().then(
      (err) => finishStream(call, err, echo),
      (e) => finishStream(call, e, echo),
    );
  },

  HalfDuplexCall(call) {
    const echo = echoOf(call);
    sendEcho(call, echo);
    (async () => {
      const buffered = [];
      for await (const req of requests(call)) buffered.push(req);
      for (const req of buffered) {
        const err = echoStatus(req.response_status, echo);
        if (err) return err;
        if (!(await sendResponses(call, req))) return null;
      }
      return null;
    })().then(
      (err) => finishStream(call, err, echo),
      (e) => finishStream(call, e, echo),
    );
  },

  UnimplementedCall(call, callback) {
    callback({ code: grpc.status.UNIMPLEMENTED, details: 'grpc.testing.TestService/UnimplementedCall is not implemented' });
  },
};

function main() {
  const flags = parseFlags(process.argv.slice(2), ['use_tls']);
  for (const n of flags.names()) {
    if (!['port', 'use_tls', 'host'].includes(n)) console.error(`interop-server: ignoring unknown flag --${n}`);
  }
  const port = flags.int('port', 10000);
  const useTls = flags.bool('use_tls', false);
  const host = flags.string('host', '127.0.0.1');
  const creds = useTls
    ? grpc.ServerCredentials.createSsl(null, [{ cert_chain: readCert('server1.pem'), private_key: readCert('server1.key') }])
    : grpc.ServerCredentials.createInsecure();
  const testing = loadTesting(grpc);
  const server = new grpc.Server({ 'grpc.max_receive_message_length': MAX_MESSAGE_SIZE, 'grpc.max_send_message_length': MAX_MESSAGE_SIZE });
  server.addService(testing.TestService.service, impl);
  server.bindAsync(`${host}:${port}`, creds, (err, bound) => {
    if (err) {
      console.error(`interop-server: cannot listen on ${host}:${port}: ${err.message}`);
      process.exit(1);
    }
    console.log(`grpc-core Node interop server listening on ${host}:${bound} (tls: ${useTls})`);
  });
  const stop = () => {
    server.tryShutdown(() => process.exit(0));
    setTimeout(() => server.forceShutdown(), 2000).unref();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main();
