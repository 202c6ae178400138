'use strict';
// grpc.health.v1.Health with the API of the npm package grpc-health-check
// (`HealthImplementation`, `service`, `protoPath`), so
// `require('grpc-core/health')` can replace `require('grpc-health-check')`.
//
// On this package's Server, Check and Watch are the engine's health service
// (core/src/health.rs): answered on the engine's threads without entering
// JavaScript, and Watch streams each change. setStatus forwards to the
// engine. List, which the engine does not have, is an ordinary JS handler.
// On any other server (a @grpc/grpc-js Server) the three methods are plain
// JavaScript handlers, as grpc-health-check has them.

const path = require('node:path');

const NOT_FOUND = 5;
const RESOURCE_EXHAUSTED = 8;
const LIST_LIMIT = 100;

/** HealthCheckResponse.ServingStatus: name → number, as the engine numbers them. */
const STATUS = Object.freeze({ UNKNOWN: 0, SERVING: 1, NOT_SERVING: 2, SERVICE_UNKNOWN: 3 });
const STATUS_NAME = Object.keys(STATUS);

// ---------------------------------------------------------------- protobuf, by hand
// The three messages are tiny; coding them here keeps @grpc/proto-loader a
// development dependency only. Decoded objects look like proto-loader's with
// `enums: String, defaults: true`.

function varint(n, out) {
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
}

function lengthDelimited(field, bytes, out) {
  varint((field << 3) | 2, out);
  varint(bytes.length, out);
  for (const b of bytes) out.push(b);
}

/** Calls `fn(field, wireType, value)` for each field; value is a number (varint) or a Buffer. */
function eachField(buf, fn) {
  let i = 0;
  const readVarint = () => {
    let n = 0;
    let mul = 1;
    for (;;) {
      if (i >= buf.length) throw new Error('truncated protobuf message');
      const b = buf[i++];
      n += (b & 0x7f) * mul;
      if (b < 0x80) return n;
      mul *= 128;
    }
  };
  while (i < buf.length) {
    const key = readVarint();
    const field = Math.floor(key / 8);
    const wire = key & 7;
    if (wire === 0) fn(field, wire, readVarint());
    else if (wire === 2) {
      const len = readVarint();
      if (i + len > buf.length) throw new Error('truncated protobuf message');
      fn(field, wire, buf.subarray(i, i + len));
      i += len;
    } else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else throw new Error(`unsupported protobuf wire type ${wire}`);
  }
}

function encodeRequest(req) {
  const out = [];
  const service = req && req.service ? Buffer.from(String(req.service), 'utf8') : null;
  if (service && service.length) lengthDelimited(1, service, out);
  return Buffer.from(out);
}

function decodeRequest(buf) {
  let service = '';
  eachField(buf, (f, w, v) => {
    if (f === 1 && w === 2) service = v.toString('utf8');
  });
  return { service };
}

function statusNumber(s) {
  if (typeof s === 'number') return s;
  const n = STATUS[s];
  if (n === undefined) throw new TypeError(`unknown serving status ${JSON.stringify(s)}`);
  return n;
}

function encodeResponse(res) {
  const out = [];
  const n = statusNumber(res && res.status !== undefined ? res.status : 0);
  if (n !== 0) {
    varint(1 << 3, out);
    varint(n, out);
  }
  return Buffer.from(out);
}

function decodeResponse(buf) {
  let n = 0;
  eachField(buf, (f, w, v) => {
    if (f === 1 && w === 0) n = v;
  });
  return { status: STATUS_NAME[n] !== undefined ? STATUS_NAME[n] : n };
}

function encodeListResponse(res) {
  const out = [];
  for (const [name, value] of Object.entries((res && res.statuses) || {})) {
    const entry = [];
    const key = Buffer.from(name, 'utf8');
    if (key.length) lengthDelimited(1, key, entry);
    lengthDelimited(2, encodeResponse(value), entry);
    lengthDelimited(1, entry, out);
  }
  return Buffer.from(out);
}

function decodeListResponse(buf) {
  const statuses = {};
  eachField(buf, (f, w, entry) => {
    if (f !== 1 || w !== 2) return;
    let key = '';
    let value = { status: 'UNKNOWN' };
    eachField(entry, (ef, ew, v) => {
      if (ef === 1 && ew === 2) key = v.toString('utf8');
      else if (ef === 2 && ew === 2) value = decodeResponse(v);
    });
    statuses[key] = value;
  });
  return { statuses };
}

const empty = () => Buffer.alloc(0);

function method(name, responseStream, requestSerialize, requestDeserialize, responseSerialize, responseDeserialize) {
  return {
    path: `/grpc.health.v1.Health/${name}`,
    requestStream: false,
    responseStream,
    requestSerialize,
    requestDeserialize,
    responseSerialize,
    responseDeserialize,
    originalName: name[0].toLowerCase() + name.slice(1),
  };
}

/** The `grpc.health.v1.Health` service definition (as grpc-health-check's `service`). */
const service = Object.freeze({
  Check: method('Check', false, encodeRequest, decodeRequest, encodeResponse, decodeResponse),
  Watch: method('Watch', true, encodeRequest, decodeRequest, encodeResponse, decodeResponse),
  List: method('List', false, empty, () => ({}), encodeListResponse, decodeListResponse),
});

/** The absolute path of health.proto (as grpc-health-check's `protoPath`). */
const protoPath = path.join(__dirname, 'proto', 'health', 'v1', 'health.proto');

// ---------------------------------------------------------------- HealthImplementation

class HealthImplementation {
  /** `initialStatusMap`: `{ [serviceName]: 'SERVING' | 'NOT_SERVING' | 'UNKNOWN' }`; `''` is the whole server. */
  constructor(initialStatusMap) {
    this._statusMap = new Map();
    this._watchers = new Map();
    this._natives = new Set();
    if (initialStatusMap) {
      for (const [name, status] of Object.entries(initialStatusMap)) {
        statusNumber(status);
        this._statusMap.set(name, status);
      }
    }
  }

  /** Sets a service's status; watchers see the change. 'SERVICE_UNKNOWN' forgets the service. */
  setStatus(name, status) {
    const n = statusNumber(status);
    if (n === STATUS.SERVICE_UNKNOWN) this._statusMap.delete(name);
    else this._statusMap.set(name, status);
    for (const s of this._natives) s.healthSet(name, n);
    for (const watcher of this._watchers.get(name) || []) watcher(n === STATUS.SERVICE_UNKNOWN ? 'SERVICE_UNKNOWN' : status);
  }

  /**
   * Adds the health service to `server`, before its first bindAsync. On
   * this package's Server, Check and Watch are served by the engine.
   */
  addToServer(server) {
    if (server && typeof server._addHealth === 'function') {
      server._addHealth(this, {
        list: (call, callback) => this._list(callback),
      });
      return;
    }
    server.addService(service, {
      check: (call, callback) => {
        const name = call.request.service;
        const status = this._statusMap.get(name);
        if (status) callback(null, { status });
        else callback({ code: NOT_FOUND, details: `Health status unknown for service ${name}` });
      },
      watch: (call) => {
        const name = call.request.service;
        const watcher = (status) => call.write({ status });
        let set = this._watchers.get(name);
        if (!set) this._watchers.set(name, (set = new Set()));
        set.add(watcher);
        call.on('cancelled', () => set.delete(watcher));
        call.write({ status: this._statusMap.get(name) || 'SERVICE_UNKNOWN' });
      },
      list: (call, callback) => this._list(callback),
    });
  }

  _list(callback) {
    if (this._statusMap.size > LIST_LIMIT) return callback({ code: RESOURCE_EXHAUSTED, details: 'Too many services to list.' }, null);
    const statuses = {};
    for (const [name, status] of this._statusMap) statuses[name] = { status };
    callback(null, { statuses });
  }

  /** Our Server built its native server: the engine's reporter takes every status from now on. */
  _attach(nativeServer) {
    this._natives.add(nativeServer);
    for (const [name, status] of this._statusMap) nativeServer.healthSet(name, statusNumber(status));
  }

  _detach(nativeServer) {
    this._natives.delete(nativeServer);
  }
}

module.exports = { HealthImplementation, service, protoPath };
