'use strict';
// Shared by the Node interop client and server: Go-style flags (what the
// interop runners pass), the grpc.testing protos through @grpc/proto-loader,
// and the interop certificates.
const path = require('node:path');
const fs = require('node:fs');
const protoLoader = require('@grpc/proto-loader');

/**
 * Parses flags as Go's `flag` package does: `-name` and `--name` are the
 * same, values come as `--name=value` or `--name value`, and a boolean flag
 * given alone means true. Unknown flags are kept (and reported by the caller).
 */
function parseFlags(argv, bools) {
  const values = new Map();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') break;
    const m = /^--?([^=]+)(?:=(.*))?$/s.exec(arg);
    if (!m) throw new Error(`unexpected argument ${JSON.stringify(arg)}`);
    const name = m[1];
    let value = m[2];
    if (value === undefined) {
      if (bools.includes(name)) {
        value = i + 1 < argv.length && parseBool(argv[i + 1]) !== undefined ? argv[++i] : 'true';
      } else {
        value = i + 1 < argv.length ? argv[++i] : '';
      }
    }
    values.set(name, value);
  }
  return {
    has: (n) => values.has(n),
    names: () => [...values.keys()],
    string: (n, d) => (values.has(n) ? values.get(n) : d),
    int(n, d) {
      if (!values.has(n)) return d;
      const v = Number(values.get(n));
      if (!Number.isInteger(v)) throw new Error(`invalid integer value ${JSON.stringify(values.get(n))} for flag --${n}`);
      return v;
    },
    bool(n, d) {
      if (!values.has(n)) return d;
      const v = parseBool(values.get(n));
      if (v === undefined) throw new Error(`invalid boolean value ${JSON.stringify(values.get(n))} for flag --${n}`);
      return v;
    },
  };
}

function parseBool(v) {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(v)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(v)) return false;
  return undefined;
}

/** Loads grpc.testing with the given library (grpc-core, or grpc-js for comparison). */
function loadTesting(grpc) {
  const def = protoLoader.loadSync('grpc/testing/test.proto', {
    includeDirs: [path.join(__dirname, 'proto')],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  return grpc.loadPackageDefinition(def).grpc.testing;
}

function certsDir() {
  const d = process.env.GRPC_INTEROP_CERTS_DIR;
  if (!d) throw new Error('GRPC_INTEROP_CERTS_DIR is not set (it must hold ca.pem, server1.pem, server1.key)');
  return d;
}

function readCert(name) {
  return fs.readFileSync(path.join(certsDir(), name));
}

/** Request metadata keys the server echoes (initial metadata and trailers). */
const ECHO_INITIAL_KEY = 'x-grpc-test-echo-initial';
const ECHO_TRAILING_KEY = 'x-grpc-test-echo-trailing-bin';
/** The largest message both sides accept (grpc-java's interop peers use 16 MiB). */
const MAX_MESSAGE_SIZE = 16 * 1024 * 1024;

module.exports = { parseFlags, loadTesting, readCert, ECHO_INITIAL_KEY, ECHO_TRAILING_KEY, MAX_MESSAGE_SIZE };
