'use strict';
// grpc-core for Node: the @grpc/grpc-js API over the grpc-core Rust engine,
// plus a Promise / async-iterator API (`promisify`).
//
// Every native operation completes as an event on one queue; the addon wakes
// this thread once per batch (`dispatch`). A ref'd timer keeps the process
// alive while calls, binds or servers are open, and is unref'd otherwise.

const { EventEmitter } = require('node:events');
const { Readable, Writable, Duplex } = require('node:stream');
const path = require('node:path');
const { X509Certificate } = require('node:crypto');

const native = require(path.join(__dirname, 'lib', 'grpc_core_node.node'));
const logging = require('./logging');
const health = require('./health');
const telemetry = require('./telemetry');

// ---------------------------------------------------------------- events

const handlers = new Map();
let nextId = 1;

function dispatch(batch) {
  for (const ev of batch) {
    const h = handlers.get(ev.id);
    if (h === undefined) {
      // Cannot happen while the credentials exist; never leave the engine waiting.
      if (ev.auth) native.credsReply(ev.auth.req, undefined, status.UNAVAILABLE, 'call credentials are gone');
      continue;
    }
    try {
      h(ev);
    } catch (e) {
      process.nextTick(() => {
        throw e;
      });
    }
  }
}
native.init(dispatch);

function newId() {
  const id = nextId++;
  if (nextId >= 0x7fffffff) nextId = 1;
  return id;
}

/** Registers a one-shot completion handler; returns its id. */
function once(fn) {
  const id = newId();
  handlers.set(id, (ev) => {
    handlers.delete(id);
    fn(ev);
  });
  return id;
}

let active = 0;
let keeper = null;
function hold() {
  if (active++ === 0) {
    if (keeper === null) keeper = setInterval(() => {}, 1 << 30);
    keeper.ref();
  }
}
function release() {
  if (--active === 0) keeper.unref();
}

// ---------------------------------------------------------------- status

const status = Object.freeze({
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
  0: 'OK',
  1: 'CANCELLED',
  2: 'UNKNOWN',
  3: 'INVALID_ARGUMENT',
  4: 'DEADLINE_EXCEEDED',
  5: 'NOT_FOUND',
  6: 'ALREADY_EXISTS',
  7: 'PERMISSION_DENIED',
  8: 'RESOURCE_EXHAUSTED',
  9: 'FAILED_PRECONDITION',
  10: 'ABORTED',
  11: 'OUT_OF_RANGE',
  12: 'UNIMPLEMENTED',
  13: 'INTERNAL',
  14: 'UNAVAILABLE',
  15: 'DATA_LOSS',
  16: 'UNAUTHENTICATED',
});

const compressionAlgorithms = Object.freeze({ identity: 0, deflate: 1, gzip: 2, zstd: 3, 0: 'identity', 1: 'deflate', 2: 'gzip', 3: 'zstd' });
const connectivityState = Object.freeze({ IDLE: 0, CONNECTING: 1, READY: 2, TRANSIENT_FAILURE: 3, SHUTDOWN: 4 });

// ---------------------------------------------------------------- metadata

const KEY_RE = /^[0-9a-z_.-]+$/;
const RESERVED = new Set(['content-type', 'te', 'user-agent', 'host', 'connection', 'transfer-encoding', 'upgrade']);

function checkKey(key) {
  if (!KEY_RE.test(key)) throw new Error(`Metadata key "${key}" contains illegal characters`);
}
function checkValue(key, value) {
  if (key.endsWith('-bin')) {
    if (!Buffer.isBuffer(value)) throw new Error("keys that end with '-bin' must have Buffer values");
  } else {
    if (Buffer.isBuffer(value)) throw new Error("keys that don't end with '-bin' must have String values");
    if (!/^[\x20-\x7e]*$/.test(value)) throw new Error(`Metadata string value "${value}" contains illegal characters`);
  }
}

class Metadata {
  constructor(options = {}) {
    this.internalRepr = new Map();
    this.options = options;
  }
  set(key, value) {
    key = key.toLowerCase();
    checkKey(key);
    checkValue(key, value);
    this.internalRepr.set(key, [value]);
  }
  add(key, value) {
    key = key.toLowerCase();
    checkKey(key);
    checkValue(key, value);
    const cur = this.internalRepr.get(key);
    if (cur === undefined) this.internalRepr.set(key, [value]);
    else cur.push(value);
  }
  remove(key) {
    this.internalRepr.delete(key.toLowerCase());
  }
  get(key) {
    return this.internalRepr.get(key.toLowerCase()) || [];
  }
  getMap() {
    const out = {};
    for (const [k, v] of this.internalRepr) if (v.length > 0) out[k] = v[0];
    return out;
  }
  clone() {
    const m = new Metadata(this.options);
    for (const [k, v] of this.internalRepr) m.internalRepr.set(k, v.map((x) => (Buffer.isBuffer(x) ? Buffer.from(x) : x)));
    return m;
  }
  merge(other) {
    for (const [k, v] of other.internalRepr) this.internalRepr.set(k, (this.internalRepr.get(k) || []).concat(v));
  }
  setOptions(options) {
    this.options = options;
  }
  getOptions() {
    return this.options;
  }
  toJSON() {
    const out = {};
    for (const [k, v] of this.internalRepr) out[k] = v;
    return out;
  }
  /** Flat `[key, value, ...]` for the addon; reserved keys are dropped. */
  _toList() {
    const out = [];
    for (const [k, vs] of this.internalRepr) {
      if (k.startsWith('grpc-') || RESERVED.has(k)) continue;
      for (const v of vs) out.push(k, v);
    }
    return out;
  }
  static _fromList(list) {
    const m = new Metadata();
    if (list) {
      for (let i = 0; i + 1 < list.length; i += 2) {
        const cur = m.internalRepr.get(list[i]);
        if (cur === undefined) m.internalRepr.set(list[i], [list[i + 1]]);
        else cur.push(list[i + 1]);
      }
    }
    return m;
  }
}

/**
 * Whether a read event carries response headers to report (the engine sends
 * none for a trailers-only response, which grpc-js reports no headers for).
 */
function hasHeaders(ev) {
  return !!ev.md;
}

function statusFromEvent(ev) {
  return { code: ev.code, details: ev.details || '', metadata: Metadata._fromList(ev.trailers) };
}

/** An Error shaped like grpc-js's ServiceError. */
function callErrorFromStatus(st) {
  const err = new Error(`${st.code} ${status[st.code] || 'UNKNOWN'}: ${st.details}`);
  return Object.assign(err, { code: st.code, details: st.details, metadata: st.metadata });
}

// ---------------------------------------------------------------- credentials

class ChannelCredentials {
  constructor(secure, rootCerts, privateKey, certChain, callCreds) {
    this._secure = secure;
    this._rootCerts = rootCerts || null;
    this._privateKey = privateKey || null;
    this._certChain = certChain || null;
    this._callCreds = callCreds || null; // a CallCredentials, or null
  }
  _isSecure() {
    return this._secure;
  }
  compose(callCredentials) {
    if (!this._secure) throw new Error('Cannot compose insecure credentials');
    if (!(callCredentials instanceof CallCredentials)) throw new TypeError('callCredentials must be a CallCredentials object');
    const c = this._callCreds ? this._callCreds.compose(callCredentials) : callCredentials;
    return new ChannelCredentials(true, this._rootCerts, this._privateKey, this._certChain, c);
  }
  static createInsecure() {
    return new ChannelCredentials(false);
  }
  static createSsl(rootCerts, privateKey, certChain) {
    if (privateKey && !certChain) throw new Error('Private key must be given with accompanying certificate chain');
    if (!privateKey && certChain) throw new Error('Certificate chain must be given with accompanying private key');
    return new ChannelCredentials(true, rootCerts, privateKey, certChain);
  }
}

/**
 * Call credentials are the engine's: it runs them for every call, after
 * refusing plaintext channels (UNAUTHENTICATED, unless the channel option
 * 'grpc-core.allow_insecure_call_credentials' is set), and asks each
 * generator through an event; the generator's callback answers it.
 */
class CallCredentials {
  constructor(nativeCreds, parts) {
    this._native = nativeCreds; // a CallCredsNative, or null (empty)
    // What this one is made of, kept alive as long as it is: the engine may
    // ask any of their generators while this object is in use.
    this._parts = parts || null;
    this._generator = null;
  }
  static createFromMetadataGenerator(generator) {
    if (typeof generator !== 'function') throw new TypeError('generator must be a function');
    const id = newId();
    const creds = new CallCredentials(new native.CallCredsNative(id));
    creds._generator = generator;
    // Requests come as `auth` events; a status means the engine dropped the
    // provider. The handler holds the credentials weakly: a generator often
    // closes over its own credentials object, and a strong reference from
    // this table would keep both forever. Channels, compositions and calls
    // in flight hold the object strongly instead.
    const ref = new WeakRef(creds);
    handlers.set(id, (ev) => {
      if (!ev.auth) return handlers.delete(id);
      const c = ref.deref();
      if (c === undefined) return native.credsReply(ev.auth.req, undefined, status.UNAVAILABLE, 'call credentials are gone');
      runGenerator(c._generator, ev.auth);
    });
    return creds;
  }
  /** Beyond grpc-js: `authorization: Bearer <token>` on every call, without a JS round trip. */
  static createFromAccessToken(token) {
    return new CallCredentials(native.CallCredsNative.accessToken(String(token)));
  }
  static createEmpty() {
    return new CallCredentials(null);
  }
  compose(other) {
    if (!(other instanceof CallCredentials)) throw new TypeError('other must be a CallCredentials object');
    if (this._native === null) return other;
    if (other._native === null) return this;
    return new CallCredentials(this._native.compose(other._native), [this, other]);
  }
}

/** Metadata from a generator: ours, or one with grpc-js's shape. */
function generatedList(md) {
  if (md instanceof Metadata) return md._toList();
  if (md && md.internalRepr instanceof Map) {
    const m = new Metadata();
    for (const [k, vs] of md.internalRepr) for (const v of vs) m.add(k, v);
    return m._toList();
  }
  throw new TypeError('the metadata generator must give a Metadata object');
}

/** Runs a grpc-js metadata generator for one engine request (`ev.auth`) and answers it once. */
function runGenerator(generator, req) {
  let answered = false;
  const fail = (err) => {
    const code = err && typeof err.code === 'number' && err.code > 0 && err.code <= 16 ? err.code : status.UNKNOWN;
    const msg = err && err.message !== undefined ? err.message : String(err);
    native.credsReply(req.req, undefined, code, `Getting metadata from plugin failed with error: ${msg}`);
  };
  const callback = (err, md) => {
    if (answered) return;
    answered = true;
    // As grpc-js: metadata, when given, wins over the error.
    if (md === undefined || md === null) return fail(err || new Error('no metadata'));
    let list;
    try {
      list = generatedList(md);
    } catch (e) {
      return fail(e);
    }
    native.credsReply(req.req, list, 0, '');
  };
  try {
    // As grpc-js: the service URL without the port, the full method path as method_name.
    const serviceUrl = req.serviceUrl.replace(/^(https?:\/\/)(\[[^\]]*\]|[^/:]*)(:\d+)?\//, '$1$2/');
    generator({ service_url: serviceUrl, method_name: req.method }, callback);
  } catch (e) {
    if (!answered) {
      answered = true;
      fail(e);
    }
  }
}

class ServerCredentials {
  constructor(tls) {
    this._tls = tls;
  }
  _isSecure() {
    return this._tls !== null;
  }
  static createInsecure() {
    return new ServerCredentials(null);
  }
  static createSsl(rootCerts, keyCertPairs, checkClientCertificate = false) {
    if (!Array.isArray(keyCertPairs) || keyCertPairs.length === 0) throw new TypeError('keyCertPairs must be a non-empty array');
    const pair = keyCertPairs[0];
    return new ServerCredentials({
      certChain: pair.cert_chain,
      privateKey: pair.private_key,
      rootCerts: rootCerts || undefined,
      requireClientCert: !!checkClientCertificate,
    });
  }
}

const credentials = {
  createInsecure: ChannelCredentials.createInsecure,
  createSsl: ChannelCredentials.createSsl,
  createFromMetadataGenerator: CallCredentials.createFromMetadataGenerator,
  combineChannelCredentials(channelCredentials, ...callCredentials) {
    return callCredentials.reduce((acc, c) => acc.compose(c), channelCredentials);
  },
  combineCallCredentials(first, ...rest) {
    return rest.reduce((acc, c) => acc.compose(c), first);
  },
  createFromAccessToken: CallCredentials.createFromAccessToken,
};

// ---------------------------------------------------------------- channel

function sizeOption(v) {
  return typeof v === 'number' ? v : undefined;
}

function numOption(v) {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

/**
 * The service config JSON for the engine: `grpc.service_config`, with
 * `grpc.lb_policy_name` as the policy when the config names none, and
 * retry/hedging policies removed under `grpc.enable_retries: 0` (as grpc-js).
 */
function serviceConfigOf(options) {
  const text = options['grpc.service_config'];
  const lb = options['grpc.lb_policy_name'];
  const noRetries = options['grpc.enable_retries'] === 0;
  if (text === undefined && lb === undefined) return undefined;
  let cfg = {};
  if (text !== undefined) {
    if (!noRetries && lb === undefined) return String(text);
    cfg = JSON.parse(String(text));
  }
  if (lb !== undefined && cfg.loadBalancingConfig === undefined && cfg.loadBalancingPolicy === undefined) {
    cfg.loadBalancingConfig = [{ [String(lb)]: {} }];
  }
  if (noRetries && Array.isArray(cfg.methodConfig)) {
    for (const m of cfg.methodConfig) {
      delete m.retryPolicy;
      delete m.hedgingPolicy;
    }
  }
  return JSON.stringify(cfg);
}

/**
 * A resolver the application feeds addresses to (grpc-core's addition to
 * the grpc-js API): pass it as the channel option `grpc-core.manual_resolver`
 * with a `manual:///name` target, then `update(['127.0.0.1:50051', ...])`
 * whenever the backends change.
 */
class ManualResolver {
  constructor(addresses) {
    this._native = new native.ManualResolverNative();
    if (addresses !== undefined) this.update(addresses);
  }
  update(addresses) {
    if (!Array.isArray(addresses)) throw new TypeError('addresses must be an array of strings');
    this._native.update(addresses.map(String));
  }
  reportError(message) {
    this._native.reportError(String(message));
  }
}

class Channel {
  constructor(target, creds, options = {}) {
    if (!(creds instanceof ChannelCredentials)) throw new TypeError('Channel credentials must be a ChannelCredentials object');
    this._target = target;
    this._creds = creds;
    const cfg = {
      secure: creds._secure,
      serverNameOverride: options['grpc.ssl_target_name_override'],
      authority: options['grpc.default_authority'],
      userAgent: options['grpc.primary_user_agent'],
      maxRecv: sizeOption(options['grpc.max_receive_message_length']),
      maxSend: sizeOption(options['grpc.max_send_message_length']),
      compression: options['grpc.default_compression_algorithm'],
      allowInsecureCreds: !!options['grpc-core.allow_insecure_call_credentials'],
      serviceConfig: serviceConfigOf(options),
      idleTimeoutMs: numOption(options['grpc.client_idle_timeout_ms']),
      dnsRefreshMs: numOption(options['grpc.dns_min_time_between_resolutions_ms']),
    };
    const resolver = options['grpc-core.manual_resolver'];
    if (resolver !== undefined && !(resolver instanceof ManualResolver)) throw new TypeError('grpc-core.manual_resolver must be a ManualResolver');
    if (creds._secure) {
      if (creds._rootCerts) cfg.rootCerts = creds._rootCerts;
      if (creds._privateKey) cfg.privateKey = creds._privateKey;
      if (creds._certChain) cfg.certChain = creds._certChain;
    }
    // An OpenTelemetryPlugin registered now records this channel's calls.
    const otel = telemetry._internal.current();
    this._tracing = otel !== null && otel._tracing;
    this._native = new native.ChannelNative(
      target,
      cfg,
      creds._callCreds ? creds._callCreds._native || undefined : undefined,
      resolver ? resolver._native : undefined,
      otel !== null ? otel._native : undefined,
    );
  }
  getTarget() {
    return this._target;
  }
  getConnectivityState(tryToConnect) {
    return this._native.state(!!tryToConnect);
  }
  close() {
    this._native.close();
  }
  watchConnectivityState(currentState, deadline, callback) {
    hold();
    this._native.watchState(
      once((ev) => {
        release();
        if (ev.code === 0) callback();
        else callback(new Error('Deadline passed without connectivity state change'));
      }),
      currentState,
      timeoutOf(deadline),
    );
  }
  /** Connects and calls back once ready or when `deadline` passes. */
  _waitReady(deadline, callback) {
    hold();
    this._native.waitReady(
      once((ev) => {
        release();
        if (ev.code === 0) callback();
        else callback(new Error(ev.code === status.DEADLINE_EXCEEDED ? 'Failed to connect before the deadline' : ev.details));
      }),
      timeoutOf(deadline),
    );
  }
}

/** A call's metadata for the engine: with the active span as `traceparent` when the channel traces. */
function mdOut(channel, md) {
  const list = md._toList();
  return channel._tracing ? telemetry._internal.inject(list) : list;
}

function timeoutOf(deadline) {
  if (deadline === undefined || deadline === null || deadline === Infinity) return undefined;
  const at = deadline instanceof Date ? deadline.getTime() : Number(deadline);
  if (!Number.isFinite(at)) return undefined;
  return Math.max(0, at - Date.now());
}

// ---------------------------------------------------------------- client calls

function normalizeArgs(metadata, options, callback) {
  if (typeof metadata === 'function') return { metadata: new Metadata(), options: {}, callback: metadata };
  if (typeof options === 'function') {
    if (metadata instanceof Metadata) return { metadata, options: {}, callback: options };
    return { metadata: new Metadata(), options: metadata || {}, callback: options };
  }
  if (!(metadata instanceof Metadata)) return { metadata: new Metadata(), options: metadata || {}, callback };
  return { metadata, options: options || {}, callback };
}

/** The engine credentials of a call's `credentials` option (grpc-js CallOptions.credentials). */
function credsOf(options) {
  const c = options && options.credentials;
  if (c === undefined || c === null) return undefined;
  if (!(c instanceof CallCredentials)) throw new TypeError('the credentials call option must be a CallCredentials object');
  return c._native || undefined;
}

class ClientUnaryCallImpl extends EventEmitter {
  constructor(peer) {
    super();
    this._native = null;
    this._peer = peer;
    this._cancelled = false;
  }
  cancel() {
    this._cancelled = true;
    if (this._native) this._native.cancel();
  }
  getPeer() {
    return nativePeer(this._native, this._peer);
  }
}

/** The connected server address from the engine once the call started, else `fallback`. */
function nativePeer(n, fallback) {
  const p = n && typeof n.peer === 'function' ? n.peer() : null;
  return p || fallback;
}

function fixCancelDetails(call, st) {
  if (call._cancelled && st.code === status.CANCELLED) st.details = 'Cancelled on client';
  return st;
}

const READ_CREDIT = 64;
const WRITE_WINDOW = 64;

/**
 * A client stream's writes: one native write in flight at a time (so they
 * stay in order), the writes made meanwhile going together in the next
 * (`writeMany`). The Writable's callback is called at once while fewer than
 * WRITE_WINDOW messages are unsent, which is the back-pressure; the
 * half-close waits for every write to complete.
 */
class ClientWriter {
  constructor() {
    this.native = null;
    this.queue = [];
    this.unsent = 0;
    this.busy = false;
    this.deferredCb = null;
    this.finalCb = null;
  }
  attach(nativeCall) {
    this.native = nativeCall;
    this.flush();
  }
  push(buf, cb) {
    this.queue.push(buf);
    this.unsent++;
    this.flush();
    if (this.unsent < WRITE_WINDOW) cb();
    else this.deferredCb = cb;
  }
  final(cb) {
    this.finalCb = cb;
    this.flush();
  }
  flush() {
    if (this.busy || this.native === null) return;
    if (this.queue.length === 0) {
      if (this.finalCb !== null) {
        const f = this.finalCb;
        this.finalCb = null;
        this.native.writesDone(0);
        f();
      }
      return;
    }
    const bufs = this.queue;
    this.queue = [];
    this.busy = true;
    const id = once(() => {
      this.busy = false;
      this.unsent -= bufs.length;
      if (this.deferredCb !== null) {
        const d = this.deferredCb;
        this.deferredCb = null;
        d();
      }
      this.flush();
    });
    if (bufs.length === 1) this.native.write(id, bufs[0], false);
    else this.native.writeMany(id, bufs, false);
  }
}

/** The state machine shared by the three streaming kinds on the client. */
class StreamCall {
  constructor(stream, deserialize) {
    this.stream = stream;
    this.deserialize = deserialize;
    this.native = null;
    this.reading = false;
    this.done = false;
    this.wantRead = false;
    this.writer = new ClientWriter();
  }
  attach(nativeCall) {
    this.native = nativeCall;
    this.writer.attach(nativeCall);
    if (this.wantRead) this.pull();
  }
  pull() {
    if (this.done || this.reading) return;
    if (this.native === null) {
      this.wantRead = true;
      return;
    }
    // One native read delivers up to READ_CREDIT messages as they arrive
    // (batched into few wake-ups); `more` marks the end of the credit.
    this.reading = true;
    this.paused = false;
    const id = newId();
    handlers.set(id, (ev) => {
      if (hasHeaders(ev)) this.stream.emit('metadata', Metadata._fromList(ev.md));
      const msgs = ev.msgs || (ev.msg ? [ev.msg] : null);
      if (msgs !== null) {
        if (ev.more) {
          handlers.delete(id);
          this.reading = false;
        }
        for (const m of msgs) {
          if (this.done) return;
          let value;
          try {
            value = this.deserialize(m);
          } catch (e) {
            handlers.delete(id);
            this.native.cancel();
            return this.end({ code: status.INTERNAL, details: 'Failed to parse server response', metadata: new Metadata() });
          }
          if (!this.stream.push(value)) this.paused = true;
        }
        if (ev.more && !this.paused) this.pull();
      } else if (ev.code !== undefined && ev.code !== null) {
        handlers.delete(id);
        this.reading = false;
        this.end(fixCancelDetails(this.stream, statusFromEvent(ev)));
      }
    });
    this.native.read(id, READ_CREDIT);
  }
  end(st) {
    if (this.done) return;
    this.done = true;
    release();
    this.stream.push(null);
    if (st.code !== status.OK) this.stream.emit('error', callErrorFromStatus(st));
    this.stream.emit('status', st);
  }
  fail(st) {
    this.end(st);
  }
  write(chunk, serialize, cb) {
    let buf;
    try {
      buf = serialize(chunk);
    } catch (e) {
      return cb(e);
    }
    this.writer.push(buf, cb);
  }
  final(cb) {
    this.writer.final(cb);
  }
  cancel() {
    this.stream._cancelled = true;
    if (this.native) {
      this.native.cancel();
      this.reading = this.reading && true;
      this.pull();
    }
  }
}

class ClientReadableStreamImpl extends Readable {
  constructor(deserialize, peer) {
    super({ objectMode: true });
    this._call = new StreamCall(this, deserialize);
    this._peer = peer;
    this._cancelled = false;
  }
  _read() {
    this._call.pull();
  }
  cancel() {
    this._call.cancel();
  }
  getPeer() {
    return nativePeer(this._call.native, this._peer);
  }
}

class ClientWritableStreamImpl extends Writable {
  constructor(serialize, peer) {
    super({ objectMode: true });
    this._serialize = serialize;
    this._peer = peer;
    this._native = null;
    this._cancelled = false;
    this._writer = new ClientWriter();
  }
  _attach(n) {
    this._native = n;
    this._writer.attach(n);
  }
  _write(chunk, _enc, cb) {
    let buf;
    try {
      buf = this._serialize(chunk);
    } catch (e) {
      return cb(e);
    }
    this._writer.push(buf, cb);
  }
  _final(cb) {
    this._writer.final(cb);
  }
  cancel() {
    this._cancelled = true;
    if (this._native) this._native.cancel();
  }
  getPeer() {
    return nativePeer(this._native, this._peer);
  }
}

class ClientDuplexStreamImpl extends Duplex {
  constructor(serialize, deserialize, peer) {
    super({ objectMode: true });
    this._serialize = serialize;
    this._call = new StreamCall(this, deserialize);
    this._peer = peer;
    this._cancelled = false;
  }
  _read() {
    this._call.pull();
  }
  _write(chunk, _enc, cb) {
    this._call.write(chunk, this._serialize, cb);
  }
  _final(cb) {
    this._call.final(cb);
  }
  cancel() {
    this._call.cancel();
  }
  getPeer() {
    return nativePeer(this._call.native, this._peer);
  }
}

// ---------------------------------------------------------------- client interceptors
//
// grpc-js's client interceptor API, in JavaScript over the same native call
// objects: an interceptor is `(options, nextCall) => InterceptingCall`, and
// the chain ends in a BaseInterceptingCall that (de)serializes messages and
// drives one native call. Calls without interceptors skip all of this.

class InterceptorConfigurationError extends Error {
  constructor(message) {
    super(message);
    this.name = 'InterceptorConfigurationError';
    Error.captureStackTrace(this, InterceptorConfigurationError);
  }
}

class ListenerBuilder {
  constructor() {
    this.metadata = undefined;
    this.message = undefined;
    this.status = undefined;
  }
  withOnReceiveMetadata(onReceiveMetadata) {
    this.metadata = onReceiveMetadata;
    return this;
  }
  withOnReceiveMessage(onReceiveMessage) {
    this.message = onReceiveMessage;
    return this;
  }
  withOnReceiveStatus(onReceiveStatus) {
    this.status = onReceiveStatus;
    return this;
  }
  build() {
    return { onReceiveMetadata: this.metadata, onReceiveMessage: this.message, onReceiveStatus: this.status };
  }
}

class RequesterBuilder {
  constructor() {
    this.start = undefined;
    this.message = undefined;
    this.halfClose = undefined;
    this.cancel = undefined;
  }
  withStart(start) {
    this.start = start;
    return this;
  }
  withSendMessage(sendMessage) {
    this.message = sendMessage;
    return this;
  }
  withHalfClose(halfClose) {
    this.halfClose = halfClose;
    return this;
  }
  withCancel(cancel) {
    this.cancel = cancel;
    return this;
  }
  build() {
    return { start: this.start, sendMessage: this.message, halfClose: this.halfClose, cancel: this.cancel };
  }
}

/** A listener that passes everything on unchanged. */
const defaultListener = {
  onReceiveMetadata: (metadata, next) => next(metadata),
  onReceiveMessage: (message, next) => next(message),
  onReceiveStatus: (status, next) => next(status),
};

/** A requester that passes everything on unchanged. */
const defaultRequester = {
  start: (metadata, listener, next) => next(metadata, listener),
  sendMessage: (message, next) => next(message),
  halfClose: (next) => next(),
  cancel: (next) => next(),
};

const kIntercepting = Symbol('interceptingListener');

/**
 * Runs a Listener (the `(value, next)` form) in front of the next
 * InterceptingListener, keeping the order metadata, messages, status even
 * when the listener calls `next` later.
 */
class InterceptingListenerImpl {
  constructor(listener, nextListener) {
    this[kIntercepting] = true;
    this.listener = listener;
    this.nextListener = nextListener;
    this.processingMetadata = false;
    this.hasPendingMessage = false;
    this.pendingMessage = null;
    this.processingMessage = false;
    this.pendingStatus = null;
  }
  processPendingMessage() {
    if (this.hasPendingMessage) {
      this.nextListener.onReceiveMessage(this.pendingMessage);
      this.pendingMessage = null;
      this.hasPendingMessage = false;
    }
  }
  processPendingStatus() {
    if (this.pendingStatus) this.nextListener.onReceiveStatus(this.pendingStatus);
  }
  onReceiveMetadata(metadata) {
    this.processingMetadata = true;
    this.listener.onReceiveMetadata(metadata, (md) => {
      this.processingMetadata = false;
      this.nextListener.onReceiveMetadata(md);
      this.processPendingMessage();
      this.processPendingStatus();
    });
  }
  onReceiveMessage(message) {
    this.processingMessage = true;
    this.listener.onReceiveMessage(message, (msg) => {
      this.processingMessage = false;
      if (this.processingMetadata) {
        this.pendingMessage = msg;
        this.hasPendingMessage = true;
      } else {
        this.nextListener.onReceiveMessage(msg);
        this.processPendingStatus();
      }
    });
  }
  onReceiveStatus(status) {
    this.listener.onReceiveStatus(status, (st) => {
      if (this.processingMetadata || this.processingMessage) this.pendingStatus = st;
      else this.nextListener.onReceiveStatus(st);
    });
  }
}

/**
 * One link of the chain: runs a Requester in front of `nextCall`, holding a
 * message or half-close back while the start (or a message) is still being
 * processed, as grpc-js does.
 */
class InterceptingCall {
  constructor(nextCall, requester) {
    this.nextCall = nextCall;
    const r = requester || {};
    this.requester = {
      start: r.start || defaultRequester.start,
      sendMessage: r.sendMessage || defaultRequester.sendMessage,
      halfClose: r.halfClose || defaultRequester.halfClose,
      cancel: r.cancel || defaultRequester.cancel,
    };
    this.processingMetadata = false;
    this.pendingMessageContext = null;
    this.pendingMessage = undefined;
    this.processingMessage = false;
    this.pendingHalfClose = false;
  }
  cancelWithStatus(code, details) {
    this.requester.cancel(() => this.nextCall.cancelWithStatus(code, details));
  }
  getPeer() {
    return this.nextCall.getPeer();
  }
  processPendingMessage() {
    if (this.pendingMessageContext) {
      this.nextCall.sendMessageWithContext(this.pendingMessageContext, this.pendingMessage);
      this.pendingMessageContext = null;
      this.pendingMessage = undefined;
    }
  }
  processPendingHalfClose() {
    if (this.pendingHalfClose) this.nextCall.halfClose();
  }
  start(metadata, interceptingListener) {
    const l = interceptingListener || {};
    const full = {
      onReceiveMetadata: l.onReceiveMetadata ? l.onReceiveMetadata.bind(l) : () => {},
      onReceiveMessage: l.onReceiveMessage ? l.onReceiveMessage.bind(l) : () => {},
      onReceiveStatus: l.onReceiveStatus ? l.onReceiveStatus.bind(l) : () => {},
    };
    this.processingMetadata = true;
    this.requester.start(metadata, full, (md, listener) => {
      this.processingMetadata = false;
      let next;
      if (listener && listener[kIntercepting]) {
        next = listener;
      } else {
        const li = listener || {};
        next = new InterceptingListenerImpl(
          {
            onReceiveMetadata: li.onReceiveMetadata || defaultListener.onReceiveMetadata,
            onReceiveMessage: li.onReceiveMessage || defaultListener.onReceiveMessage,
            onReceiveStatus: li.onReceiveStatus || defaultListener.onReceiveStatus,
          },
          full,
        );
      }
      this.nextCall.start(md, next);
      this.processPendingMessage();
      this.processPendingHalfClose();
    });
  }
  sendMessageWithContext(context, message) {
    this.processingMessage = true;
    this.requester.sendMessage(message, (finalMessage) => {
      this.processingMessage = false;
      if (this.processingMetadata) {
        this.pendingMessageContext = context;
        this.pendingMessage = finalMessage;
      } else {
        this.nextCall.sendMessageWithContext(context, finalMessage);
        this.processPendingHalfClose();
      }
    });
  }
  sendMessage(message) {
    this.sendMessageWithContext({}, message);
  }
  startRead() {
    this.nextCall.startRead();
  }
  halfClose() {
    this.requester.halfClose(() => {
      if (this.processingMetadata || this.processingMessage) this.pendingHalfClose = true;
      else this.nextCall.halfClose();
    });
  }
}

/**
 * The end of the chain: one native call, messages as serialized bytes.
 * Nothing goes to the engine before `start`, so an interceptor that never
 * calls `next` in its start short-circuits the call. Responses are read
 * ahead READ_CREDIT at a time and handed on one per `startRead`; the status
 * goes out once every received message has been handed on.
 */
class NativeInterceptingCall {
  constructor(channel, method, options) {
    this.channel = channel;
    this.method = method;
    this.options = options;
    this.native = null;
    this.listener = null;
    this.ops = []; // writes ({context, buf}) and the half-close ({}) not sent yet
    this.busy = false;
    this.halfClosed = false;
    this.queue = []; // received messages not yet asked for
    this.wanted = 0; // startRead calls not yet answered
    this.reading = false;
    this.status = null; // the status from the engine, held back until the queue is empty
    this.done = false;
    this.held = false;
  }
  getPeer() {
    return nativePeer(this.native, literalPeer(this.channel.getTarget()));
  }
  start(metadata, listener) {
    if (this.done || this.listener !== null) return;
    this.listener = listener;
    hold();
    this.held = true;
    const o = this.options;
    let creds;
    try {
      creds = credsOf(o);
    } catch (e) {
      return process.nextTick(() => this.finish({ code: status.INTERNAL, details: e.message, metadata: new Metadata() }));
    }
    this.native = this.channel._native.start(this.method, mdOut(this.channel, metadata), timeoutOf(o.deadline), !!o.waitForReady, creds);
    this.readAhead();
    this.pump();
  }
  readAhead() {
    if (this.reading || this.done || this.status !== null || this.native === null) return;
    if (this.queue.length >= READ_CREDIT) return;
    this.reading = true;
    const id = newId();
    handlers.set(id, (ev) => {
      if (hasHeaders(ev) && !this.done) this.listener.onReceiveMetadata(Metadata._fromList(ev.md));
      const msgs = ev.msgs || (ev.msg ? [ev.msg] : null);
      if (msgs !== null) {
        if (ev.more) {
          handlers.delete(id);
          this.reading = false;
        }
        if (this.done) return;
        for (const m of msgs) this.queue.push(m);
        this.deliver();
        if (ev.more) this.readAhead();
      } else if (ev.code !== undefined && ev.code !== null) {
        handlers.delete(id);
        this.reading = false;
        if (this.done) return;
        this.status = statusFromEvent(ev);
        this.deliver();
      }
    });
    this.native.read(id, READ_CREDIT);
  }
  deliver() {
    while (this.wanted > 0 && this.queue.length > 0 && !this.done) {
      this.wanted--;
      this.listener.onReceiveMessage(this.queue.shift());
    }
    if (this.queue.length === 0 && this.status !== null) {
      // After the stream above has emitted what it buffered, as grpc-js
      // reports the status only after the last message went through.
      const st = this.status;
      return setImmediate(() => this.finish(st));
    }
    this.readAhead();
  }
  finish(st) {
    if (this.done) return;
    this.done = true;
    this.queue = [];
    if (this.held) release();
    if (this.listener) this.listener.onReceiveStatus(st);
  }
  /**
   * Sends queued writes and the half-close one native operation at a time,
   * each after the previous one completed (the engine runs operations as
   * separate tasks, so two in flight could overtake each other): the
   * messages queued meanwhile go together, and a half-close right behind
   * them goes with the last.
   */
  pump() {
    if (this.busy || this.native === null || this.done || this.ops.length === 0) return;
    if (this.ops[0].buf === undefined) {
      this.ops.shift();
      this.busy = true;
      return this.native.writesDone(
        once(() => {
          this.busy = false;
          this.pump();
        }),
      );
    }
    // Every message queued meanwhile goes in this one write.
    let n = 0;
    while (n < this.ops.length && this.ops[n].buf !== undefined) n++;
    const batch = this.ops.splice(0, n);
    const last = this.ops.length > 0;
    if (last) this.ops.shift();
    this.busy = true;
    const id = once(() => {
      this.busy = false;
      for (const op of batch) if (op.context && typeof op.context.callback === 'function') op.context.callback();
      this.pump();
    });
    if (batch.length === 1) this.native.write(id, batch[0].buf, last);
    else this.native.writeMany(id, batch.map((op) => op.buf), last);
  }
  sendMessageWithContext(context, buf) {
    if (this.done) return;
    this.ops.push({ context, buf });
    this.pump();
  }
  startRead() {
    this.wanted++;
    if (this.native !== null) this.deliver();
  }
  halfClose() {
    if (this.done || this.halfClosed) return;
    this.halfClosed = true;
    this.ops.push({});
    this.pump();
  }
  cancelWithStatus(code, details) {
    if (this.done) return;
    if (this.native !== null) this.native.cancel();
    this.finish({ code, details, metadata: new Metadata() });
  }
}

/** Serialization and deserialization around the native call (grpc-js's BaseInterceptingCall). */
class BaseInterceptingCall {
  constructor(call, methodDefinition) {
    this.call = call;
    this.methodDefinition = methodDefinition;
  }
  cancelWithStatus(code, details) {
    this.call.cancelWithStatus(code, details);
  }
  getPeer() {
    return this.call.getPeer();
  }
  sendMessageWithContext(context, message) {
    let buf;
    try {
      buf = this.methodDefinition.requestSerialize(message);
    } catch (e) {
      this.call.cancelWithStatus(status.INTERNAL, `Request message serialization failure: ${e && e.message}`);
      return;
    }
    this.call.sendMessageWithContext(context, buf);
  }
  sendMessage(message) {
    this.sendMessageWithContext({}, message);
  }
  start(metadata, listener) {
    const l = listener || {};
    let readError = null;
    this.call.start(metadata, {
      onReceiveMetadata: (md) => l.onReceiveMetadata && l.onReceiveMetadata(md),
      onReceiveMessage: (buf) => {
        let value;
        try {
          value = this.methodDefinition.responseDeserialize(buf);
        } catch (e) {
          readError = { code: status.INTERNAL, details: `Response message parsing error: ${e && e.message}`, metadata: new Metadata() };
          this.call.cancelWithStatus(readError.code, readError.details);
          return;
        }
        if (l.onReceiveMessage) l.onReceiveMessage(value);
      },
      onReceiveStatus: (st) => l.onReceiveStatus && l.onReceiveStatus(readError || st),
    });
  }
  startRead() {
    this.call.startRead();
  }
  halfClose() {
    this.call.halfClose();
  }
}

/** For unary responses: reads at once, and reports a missing message as `null`. */
class BaseUnaryInterceptingCall extends BaseInterceptingCall {
  start(metadata, listener) {
    const l = listener || {};
    let received = false;
    super.start(metadata, {
      onReceiveMetadata: (md) => l.onReceiveMetadata && l.onReceiveMetadata(md),
      onReceiveMessage: (m) => {
        received = true;
        if (l.onReceiveMessage) l.onReceiveMessage(m);
      },
      onReceiveStatus: (st) => {
        if (!received && l.onReceiveMessage) l.onReceiveMessage(null);
        if (l.onReceiveStatus) l.onReceiveStatus(st);
      },
    });
    this.call.startRead();
  }
}

function getInterceptingCall(client, methodDefinition, options) {
  const clientInterceptors = client[kInterceptors];
  const clientProviders = client[kInterceptorProviders];
  const callInterceptors = options.interceptors || [];
  const callProviders = options.interceptor_providers || [];
  if (callInterceptors.length > 0 && callProviders.length > 0) {
    throw new InterceptorConfigurationError('Both interceptors and interceptor_providers were passed as call options. Only one of these is allowed.');
  }
  // Interceptors given to the call replace the client's.
  const interceptors = (callInterceptors.length > 0 || callProviders.length > 0
    ? callInterceptors.concat(callProviders.map((p) => p(methodDefinition)))
    : clientInterceptors.concat(clientProviders.map((p) => p(methodDefinition)))
  ).filter((i) => i);
  const channel = client[kChannel];
  const bottom = (finalOptions) => {
    const call = new NativeInterceptingCall(channel, methodDefinition.path, finalOptions);
    return methodDefinition.responseStream ? new BaseInterceptingCall(call, methodDefinition) : new BaseUnaryInterceptingCall(call, methodDefinition);
  };
  const getCall = interceptors.reduceRight((nextCall, interceptor) => (opts) => interceptor(opts, nextCall), bottom);
  return getCall(Object.assign({}, options, { method_definition: methodDefinition }));
}

function hasInterceptors(client, options) {
  return (
    client[kInterceptors].length > 0 ||
    client[kInterceptorProviders].length > 0 ||
    (options.interceptors && options.interceptors.length > 0) ||
    (options.interceptor_providers && options.interceptor_providers.length > 0)
  );
}

/** Call objects of intercepted calls: the grpc-js shapes over an InterceptingCall. */
class InterceptedUnaryCall extends EventEmitter {
  constructor() {
    super();
    this.call = null;
  }
  cancel() {
    if (this.call) this.call.cancelWithStatus(status.CANCELLED, 'Cancelled on client');
  }
  getPeer() {
    return this.call ? this.call.getPeer() : 'unknown';
  }
}

class InterceptedReadable extends Readable {
  constructor() {
    super({ objectMode: true });
    this.call = null;
  }
  cancel() {
    if (this.call) this.call.cancelWithStatus(status.CANCELLED, 'Cancelled on client');
  }
  getPeer() {
    return this.call ? this.call.getPeer() : 'unknown';
  }
  _read() {
    if (this.call) this.call.startRead();
  }
}

class InterceptedWritable extends Writable {
  constructor() {
    super({ objectMode: true });
    this.call = null;
  }
  cancel() {
    if (this.call) this.call.cancelWithStatus(status.CANCELLED, 'Cancelled on client');
  }
  getPeer() {
    return this.call ? this.call.getPeer() : 'unknown';
  }
  _write(chunk, _enc, cb) {
    if (this.call) this.call.sendMessageWithContext({ callback: cb }, chunk);
    else cb();
  }
  _final(cb) {
    if (this.call) this.call.halfClose();
    cb();
  }
}

class InterceptedDuplex extends Duplex {
  constructor() {
    super({ objectMode: true });
    this.call = null;
  }
  cancel() {
    if (this.call) this.call.cancelWithStatus(status.CANCELLED, 'Cancelled on client');
  }
  getPeer() {
    return this.call ? this.call.getPeer() : 'unknown';
  }
  _read() {
    if (this.call) this.call.startRead();
  }
  _write(chunk, _enc, cb) {
    if (this.call) this.call.sendMessageWithContext({ callback: cb }, chunk);
    else cb();
  }
  _final(cb) {
    if (this.call) this.call.halfClose();
    cb();
  }
}

/** A listener for calls with one response (unary, client streaming). */
function unaryResponseListener(call, emitter, callback, readMore) {
  let response = null;
  let received = false;
  return {
    onReceiveMetadata: (md) => emitter.emit('metadata', md),
    onReceiveMessage(message) {
      if (response !== null) call.cancelWithStatus(status.UNIMPLEMENTED, 'Too many responses received');
      response = message;
      if (readMore) call.startRead();
    },
    onReceiveStatus(st) {
      if (received) return;
      received = true;
      if (st.code === status.OK) {
        if (response === null) callback(callErrorFromStatus({ code: status.UNIMPLEMENTED, details: 'No message received', metadata: st.metadata }));
        else callback(null, response);
      } else {
        callback(callErrorFromStatus(st));
      }
      emitter.emit('status', st);
    },
  };
}

/** A listener for calls with a response stream. */
function streamResponseListener(stream) {
  let received = false;
  return {
    onReceiveMetadata: (md) => stream.emit('metadata', md),
    onReceiveMessage: (message) => stream.push(message),
    onReceiveStatus(st) {
      if (received) return;
      received = true;
      stream.push(null);
      if (st.code !== status.OK) stream.emit('error', callErrorFromStatus(st));
      stream.emit('status', st);
    },
  };
}

const kInterceptors = Symbol('interceptors');
const kInterceptorProviders = Symbol('interceptorProviders');

/**
 * A client call's peer before the engine reports the connected address
 * (streaming calls report it once started; see nativePeer), and for unary
 * calls, whose engine path does not: the target itself when it is a single
 * literal `ip:port`, else 'unknown'.
 */
function literalPeer(target) {
  const t = String(target).replace(/^ipv[46]:/, '');
  if (/^\d{1,3}(\.\d{1,3}){3}:\d+$/.test(t) || /^\[[0-9a-fA-F:.]+\]:\d+$/.test(t)) return t;
  return 'unknown';
}

// ---------------------------------------------------------------- Client

const kChannel = Symbol('channel');

class Client {
  constructor(address, creds, options = {}) {
    this[kChannel] = options.channelOverride || new Channel(address, creds, options);
    this[kInterceptors] = options.interceptors || [];
    this[kInterceptorProviders] = options.interceptor_providers || [];
    if (this[kInterceptors].length > 0 && this[kInterceptorProviders].length > 0) {
      throw new Error('Both interceptors and interceptor_providers were passed as options to the client constructor. Only one of these is allowed.');
    }
  }
  close() {
    this[kChannel].close();
  }
  getChannel() {
    return this[kChannel];
  }
  waitForReady(deadline, callback) {
    this[kChannel]._waitReady(deadline, callback);
  }

  makeUnaryRequest(method, serialize, deserialize, argument, metadata, options, callback) {
    ({ metadata, options, callback } = normalizeArgs(metadata, options, callback));
    if (typeof callback !== 'function') throw new Error('callback must be a function');
    if (hasInterceptors(this, options)) {
      const emitter = new InterceptedUnaryCall();
      const def = { path: method, requestStream: false, responseStream: false, requestSerialize: serialize, responseDeserialize: deserialize };
      const call = getInterceptingCall(this, def, options);
      emitter.call = call;
      call.start(metadata, unaryResponseListener(call, emitter, callback, false));
      call.sendMessage(argument);
      call.halfClose();
      return emitter;
    }
    const channel = this[kChannel];
    const creds = credsOf(options);
    const call = new ClientUnaryCallImpl(literalPeer(channel.getTarget()));
    call._credentials = options.credentials; // alive while the call is
    const onStatus = (st, msg) => {
      fixCancelDetails(call, st);
      if (st.code === status.OK) {
        let value;
        try {
          value = deserialize(msg);
        } catch (e) {
          const bad = { code: status.INTERNAL, details: 'Failed to parse server response', metadata: st.metadata };
          callback(callErrorFromStatus(bad));
          return call.emit('status', bad);
        }
        callback(null, value);
      } else {
        callback(callErrorFromStatus(st));
      }
      call.emit('status', st);
    };
    let buf;
    try {
      buf = serialize(argument);
    } catch (e) {
      process.nextTick(onStatus, { code: status.INTERNAL, details: `Request message serialization failure: ${e.message}`, metadata: new Metadata() });
      return call;
    }
    hold();
    const start = (md) => {
      if (call._cancelled) {
        release();
        return onStatus({ code: status.CANCELLED, details: 'Cancelled on client', metadata: new Metadata() });
      }
      const id = once((ev) => {
        release();
        if (ev.md) call.emit('metadata', Metadata._fromList(ev.md));
        onStatus(statusFromEvent(ev), ev.msg);
      });
      call._native = channel._native.unary(id, method, buf, mdOut(channel, md), timeoutOf(options.deadline), !!options.waitForReady, creds);
    };
    start(metadata);
    return call;
  }

  makeClientStreamRequest(method, serialize, deserialize, metadata, options, callback) {
    ({ metadata, options, callback } = normalizeArgs(metadata, options, callback));
    if (typeof callback !== 'function') throw new Error('callback must be a function');
    if (hasInterceptors(this, options)) {
      const emitter = new InterceptedWritable();
      const def = { path: method, requestStream: true, responseStream: false, requestSerialize: serialize, responseDeserialize: deserialize };
      const call = getInterceptingCall(this, def, options);
      emitter.call = call;
      call.start(metadata, unaryResponseListener(call, emitter, callback, true));
      return emitter;
    }
    const channel = this[kChannel];
    const creds = credsOf(options);
    const stream = new ClientWritableStreamImpl(serialize, literalPeer(channel.getTarget()));
    stream._credentials = options.credentials; // alive while the call is
    const onStatus = (st, msg) => {
      fixCancelDetails(stream, st);
      if (st.code === status.OK) {
        let value;
        try {
          value = deserialize(msg);
        } catch (e) {
          const bad = { code: status.INTERNAL, details: 'Failed to parse server response', metadata: st.metadata };
          callback(callErrorFromStatus(bad));
          return stream.emit('status', bad);
        }
        callback(null, value);
      } else {
        callback(callErrorFromStatus(st));
      }
      stream.emit('status', st);
    };
    hold();
    const start = (md) => {
      const n = channel._native.start(method, mdOut(channel, md), timeoutOf(options.deadline), !!options.waitForReady, creds);
      if (stream._cancelled) n.cancel();
      n.readUnary(
        once((ev) => {
          release();
          if (hasHeaders(ev)) stream.emit('metadata', Metadata._fromList(ev.md));
          onStatus(statusFromEvent(ev), ev.msg);
        }),
      );
      stream._attach(n);
    };
    start(metadata);
    return stream;
  }

  makeServerStreamRequest(method, serialize, deserialize, argument, metadata, options) {
    ({ metadata, options } = normalizeArgs(metadata, options, undefined));
    if (hasInterceptors(this, options)) {
      const stream = new InterceptedReadable();
      const def = { path: method, requestStream: false, responseStream: true, requestSerialize: serialize, responseDeserialize: deserialize };
      const call = getInterceptingCall(this, def, options);
      stream.call = call;
      call.start(metadata, streamResponseListener(stream));
      call.sendMessage(argument);
      call.halfClose();
      return stream;
    }
    const channel = this[kChannel];
    const creds = credsOf(options);
    const stream = new ClientReadableStreamImpl(deserialize, literalPeer(channel.getTarget()));
    stream._credentials = options.credentials; // alive while the call is
    hold();
    let buf;
    try {
      buf = serialize(argument);
    } catch (e) {
      process.nextTick(() => stream._call.end({ code: status.INTERNAL, details: `Request message serialization failure: ${e.message}`, metadata: new Metadata() }));
      return stream;
    }
    const start = (md) => {
      const n = channel._native.start(method, mdOut(channel, md), timeoutOf(options.deadline), !!options.waitForReady, creds);
      if (stream._cancelled) n.cancel();
      n.write(0, buf, true);
      stream._call.attach(n);
      stream._call.pull();
    };
    start(metadata);
    return stream;
  }

  makeBidiStreamRequest(method, serialize, deserialize, metadata, options) {
    ({ metadata, options } = normalizeArgs(metadata, options, undefined));
    if (hasInterceptors(this, options)) {
      const stream = new InterceptedDuplex();
      const def = { path: method, requestStream: true, responseStream: true, requestSerialize: serialize, responseDeserialize: deserialize };
      const call = getInterceptingCall(this, def, options);
      stream.call = call;
      call.start(metadata, streamResponseListener(stream));
      return stream;
    }
    const channel = this[kChannel];
    const creds = credsOf(options);
    const stream = new ClientDuplexStreamImpl(serialize, deserialize, literalPeer(channel.getTarget()));
    stream._credentials = options.credentials; // alive while the call is
    hold();
    const start = (md) => {
      const n = channel._native.start(method, mdOut(channel, md), timeoutOf(options.deadline), !!options.waitForReady, creds);
      if (stream._cancelled) n.cancel();
      stream._call.attach(n);
      stream._call.pull();
    };
    start(metadata);
    return stream;
  }
}

function makeClientConstructor(methods, serviceName, _classOptions) {
  class ServiceClientImpl extends Client {}
  for (const name of Object.keys(methods)) {
    if (['__proto__', 'prototype', 'constructor'].includes(name)) continue;
    const def = methods[name];
    let fn;
    if (def.requestStream && def.responseStream) {
      fn = function (metadata, options) {
        return this.makeBidiStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, metadata, options);
      };
    } else if (def.requestStream) {
      fn = function (metadata, options, callback) {
        return this.makeClientStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, metadata, options, callback);
      };
    } else if (def.responseStream) {
      fn = function (argument, metadata, options) {
        return this.makeServerStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, argument, metadata, options);
      };
    } else {
      fn = function (argument, metadata, options, callback) {
        return this.makeUnaryRequest(def.path, def.requestSerialize, def.responseDeserialize, argument, metadata, options, callback);
      };
    }
    ServiceClientImpl.prototype[name] = fn;
    if (def.originalName && !ServiceClientImpl.prototype[def.originalName]) ServiceClientImpl.prototype[def.originalName] = fn;
  }
  ServiceClientImpl.service = methods;
  ServiceClientImpl.serviceName = serviceName;
  return ServiceClientImpl;
}

function loadPackageDefinition(packageDef) {
  const result = {};
  for (const fqn of Object.keys(packageDef)) {
    const service = packageDef[fqn];
    const parts = fqn.split('.');
    if (parts.some((p) => ['__proto__', 'prototype', 'constructor'].includes(p))) continue;
    const name = parts[parts.length - 1];
    let cur = result;
    for (const p of parts.slice(0, -1)) {
      if (!cur[p]) cur[p] = {};
      cur = cur[p];
    }
    cur[name] = service && typeof service.format === 'string' ? service : makeClientConstructor(service, name, {});
  }
  return result;
}

// ---------------------------------------------------------------- server calls

function errorToStatus(err) {
  const code = err && typeof err.code === 'number' && err.code >= 1 && err.code <= 16 ? err.code : status.UNKNOWN;
  let details = 'Unknown Error';
  if (err && typeof err.details === 'string') details = err.details;
  else if (err && typeof err.message === 'string') details = err.message;
  const metadata = err && err.metadata instanceof Metadata ? err.metadata : null;
  return { code, details, metadata };
}

/** What every server call object has (mixed into the four classes). */
const serverCallMethods = {
  _init(nativeCall, ev) {
    this._native = nativeCall;
    this.metadata = Metadata._fromList(ev.md);
    this.cancelled = false;
    this._finished = false;
    this._deadline = ev.deadline === undefined || ev.deadline === null ? Infinity : new Date(ev.deadline);
    this._peer = ev.peer;
    this._path = ev.method;
    this._token = nativeCall.token;
    handlers.set(this._token, (e) => (e.code === 0 ? handlers.delete(this._token) : this._onCancelled()));
  },
  _onCancelled() {
    handlers.delete(this._token);
    if (this.cancelled) return;
    this._finished = true;
    this.cancelled = true;
    this.emit('cancelled', 'cancelled');
    if (typeof this.push === 'function' && !this.readableEnded) this.push(null);
  },
  getDeadline() {
    return this._deadline;
  },
  getPeer() {
    return this._peer;
  },
  getPath() {
    return this._path;
  },
  /**
   * grpc-js's AuthContext (`transportSecurityType`, `sslPeerCertificate`),
   * plus what the engine knows: `peer`, `tlsVersion`, `subject`,
   * `commonName`, `subjectAltNames`, `peerIdentity`,
   * `peerIdentityPropertyName`, `peerCertificates` (DER, leaf first) and
   * `properties` (gRPC core's names, each to a list of strings).
   */
  getAuthContext() {
    if (this._auth === undefined) this._auth = authContextFrom(this._native.authContext());
    return this._auth;
  },
  getHost() {
    return this.metadata.get(':authority')[0] || '';
  },
  sendMetadata(md) {
    if (this._finished) return;
    this._native.sendMetadata(md._toList());
  },
  _finish(code, details, trailers, msg) {
    if (this._finished) return;
    flushResponses(this); // writes queued for this tick go before the status
    this._finished = true;
    // A streaming call's token handler stays until the addon reports the
    // end, so a cancellation that races this finish is still reported.
    if (this instanceof ServerUnaryCallImpl) handlers.delete(this._token);
    this._native.finish(code, details, trailers ? trailers._toList() : undefined, msg);
  },
  _finishError(err) {
    const st = errorToStatus(err);
    // Messages written before the error go out first, as with grpc-js.
    if (typeof this.writableLength === 'number' && this.writableLength > 0 && !this._finished) {
      this._afterWrites = () => this._finish(st.code, st.details, st.metadata);
      return;
    }
    this._finish(st.code, st.details, st.metadata);
  },
  _respond(err, value, trailer, serialize) {
    if (err) return this._finishError(err);
    let buf;
    try {
      buf = serialize(value);
    } catch (e) {
      return this._finish(status.INTERNAL, `Failed to serialize response: ${e.message}`);
    }
    this._finish(status.OK, '', trailer, buf);
  },
};

function authContextFrom(a) {
  const out = {};
  if (a.transportSecurityType === 'ssl') out.transportSecurityType = 'ssl';
  if (a.peerCertificates.length > 0) {
    try {
      out.sslPeerCertificate = new X509Certificate(a.peerCertificates[0]).toLegacyObject();
    } catch (e) {
      // The engine verified it; a certificate node cannot parse just has no legacy object.
    }
  }
  const properties = {};
  for (let i = 0; i + 1 < a.properties.length; i += 2) (properties[a.properties[i]] = properties[a.properties[i]] || []).push(a.properties[i + 1]);
  return Object.assign(out, {
    peer: a.peer,
    tlsVersion: a.tlsVersion === null ? undefined : a.tlsVersion,
    subject: a.subject === null ? undefined : a.subject,
    commonName: a.commonName === null ? undefined : a.commonName,
    subjectAltNames: a.subjectAltNames,
    peerIdentity: a.peerIdentity,
    peerIdentityPropertyName: a.peerIdentityPropertyName === null ? undefined : a.peerIdentityPropertyName,
    peerCertificates: a.peerCertificates,
    properties,
  });
}

class ServerUnaryCallImpl extends EventEmitter {
  constructor(nativeCall, ev, request) {
    super();
    this._init(nativeCall, ev);
    this.request = request;
  }
}
Object.assign(ServerUnaryCallImpl.prototype, serverCallMethods);

/** Reads requests in credits of READ_CREDIT, as the client side does. */
function readRequests(stream, deserialize) {
  if (stream._reading || stream._finished) return;
  stream._reading = true;
  let paused = false;
  const id = newId();
  handlers.set(id, (ev) => {
    const msgs = ev.msgs || (ev.msg ? [ev.msg] : null);
    if (msgs !== null) {
      if (ev.more) {
        handlers.delete(id);
        stream._reading = false;
      }
      for (const m of msgs) {
        if (stream.readableEnded) return;
        let v;
        try {
          v = deserialize(m);
        } catch (e) {
          handlers.delete(id);
          stream._finish(status.INTERNAL, 'Failed to parse request');
          return stream.push(null);
        }
        if (!stream.push(v)) paused = true;
      }
      if (ev.more && !paused) readRequests(stream, deserialize);
    } else {
      handlers.delete(id);
      stream._reading = false;
      if (ev.code !== 0) stream._onCancelled();
      if (!stream.readableEnded) stream.push(null);
    }
  });
  stream._native.read(id, READ_CREDIT);
}

class ServerReadableStreamImpl extends Readable {
  constructor(nativeCall, ev, deserialize) {
    super({ objectMode: true });
    this._init(nativeCall, ev);
    this._deserialize = deserialize;
    this._reading = false;
  }
  _read() {
    readRequests(this, this._deserialize);
  }
}
Object.assign(ServerReadableStreamImpl.prototype, serverCallMethods);

/**
 * Server writes are pipelined: the addon runs them in order, and the
 * Writable's callback is called at once while fewer than WRITE_WINDOW are
 * in flight (else when one completes), which gives back-pressure without a
 * round trip per message.
 */
function writeResponse(stream, chunk, cb) {
  if (stream._finished) return cb();
  let buf;
  try {
    buf = stream._serialize(chunk);
  } catch (e) {
    stream._finish(status.INTERNAL, `Failed to serialize response: ${e.message}`);
    return cb();
  }
  stream._inflight = (stream._inflight || 0) + 1;
  if (stream._outq === undefined) stream._outq = [];
  stream._outq.push(buf);
  if (stream._outq.length === 1) process.nextTick(flushResponses, stream);
  if (stream._inflight < WRITE_WINDOW) cb();
  else stream._deferredCb = cb;
}

/** Sends the responses written since the last flush in one crossing. */
function flushResponses(stream) {
  const bufs = stream._outq;
  if (bufs === undefined || bufs.length === 0) return;
  stream._outq = [];
  const n = bufs.length;
  const id = once(() => {
    stream._inflight -= n;
    if (stream._deferredCb) {
      const d = stream._deferredCb;
      stream._deferredCb = null;
      d();
    }
    if (stream._afterWrites && stream.writableLength === 0) {
      const f = stream._afterWrites;
      stream._afterWrites = null;
      f();
    }
  });
  if (n === 1) stream._native.write(id, bufs[0]);
  else stream._native.writeMany(id, bufs);
}

class ServerWritableStreamImpl extends Writable {
  constructor(nativeCall, ev, request, serialize) {
    super({ objectMode: true });
    this._init(nativeCall, ev);
    this.request = request;
    this._serialize = serialize;
    this._trailers = null;
    this.on('error', (err) => this._finishError(err));
  }
  _write(chunk, _enc, cb) {
    writeResponse(this, chunk, cb);
  }
  _final(cb) {
    this._finish(status.OK, '', this._trailers);
    cb();
  }
  end(metadata, ...rest) {
    if (metadata instanceof Metadata) {
      this._trailers = metadata;
      return super.end(...rest);
    }
    return super.end(metadata, ...rest);
  }
}
Object.assign(ServerWritableStreamImpl.prototype, serverCallMethods);

class ServerDuplexStreamImpl extends Duplex {
  constructor(nativeCall, ev, serialize, deserialize) {
    super({ objectMode: true });
    this._init(nativeCall, ev);
    this._serialize = serialize;
    this._deserialize = deserialize;
    this._reading = false;
    this._trailers = null;
    this.on('error', (err) => this._finishError(err));
  }
  _read() {
    readRequests(this, this._deserialize);
  }
  _write(chunk, _enc, cb) {
    writeResponse(this, chunk, cb);
  }
  _final(cb) {
    this._finish(status.OK, '', this._trailers);
    cb();
  }
  end(metadata, ...rest) {
    if (metadata instanceof Metadata) {
      this._trailers = metadata;
      return super.end(...rest);
    }
    return super.end(metadata, ...rest);
  }
}
Object.assign(ServerDuplexStreamImpl.prototype, serverCallMethods);

function isThenable(v) {
  return v !== null && typeof v === 'object' && typeof v.then === 'function';
}

// ---------------------------------------------------------------- Server

/**
 * A FileDescriptorSet from a proto-loader package definition: every
 * `fileDescriptorProtos` entry once, each as field 1 of the set.
 */
function descriptorSetFromPackageDefinition(def) {
  const seen = new Set();
  const parts = [];
  const add = (fds) => {
    for (const fd of fds || []) {
      const b = Buffer.from(fd);
      const key = b.toString('base64');
      if (seen.has(key)) continue;
      seen.add(key);
      const len = [];
      let n = b.length;
      while (n > 0x7f) {
        len.push((n & 0x7f) | 0x80);
        n >>>= 7;
      }
      len.push(n);
      parts.push(Buffer.from([0x0a, ...len]), b);
    }
  };
  for (const v of Object.values(def)) {
    if (v && v.fileDescriptorProtos) add(v.fileDescriptorProtos);
    else if (v && typeof v === 'object') for (const m of Object.values(v)) if (m && m.requestType) add(m.requestType.fileDescriptorProtos);
  }
  if (parts.length === 0) throw new TypeError('the package definition has no file descriptors');
  return Buffer.concat(parts);
}

const KIND = { unary: 0, clientStream: 1, serverStream: 2, bidi: 3 };
const HEALTH_ENGINE_PATHS = [health.service.Check.path, health.service.Watch.path];

class Server {
  constructor(options = {}) {
    this._options = options;
    this._handlers = new Map();
    this._native = null;
    this._id = 0;
    this._listening = false;
    this._shutdown = false;
    this._reflection = [];
    this._health = null; // a HealthImplementation served by the engine
    // An OpenTelemetryPlugin registered now records this server's calls.
    this._otel = telemetry._internal.current();
  }

  /**
   * HealthImplementation.addToServer lands here: the engine serves Check
   * and Watch (the statuses come from `h`), List stays a JS handler.
   */
  _addHealth(h, impl) {
    if (this._native !== null) throw new Error('grpc-core: register services before the first bindAsync');
    for (const p of HEALTH_ENGINE_PATHS) {
      if (this._health !== null || this._handlers.has(p)) throw new Error(`Method handler for ${p} already provided.`);
    }
    this._health = h;
    const list = health.service.List;
    this.register(list.path, impl.list, list.responseSerialize, list.requestDeserialize, 'unary');
  }

  /**
   * Beyond grpc-js: serves server reflection (grpc.reflection.v1 and
   * v1alpha, for grpcurl and Postman) from an encoded FileDescriptorSet
   * (a Buffer, e.g. from `protoc --descriptor_set_out --include_imports`) or
   * from a @grpc/proto-loader package definition. Call before the first
   * bindAsync; call again to add more.
   */
  addReflection(descriptors) {
    if (this._native !== null) throw new Error('grpc-core: add reflection before the first bindAsync');
    if (Buffer.isBuffer(descriptors) || descriptors instanceof Uint8Array) {
      this._reflection.push(Buffer.from(descriptors));
    } else if (descriptors !== null && typeof descriptors === 'object') {
      this._reflection.push(descriptorSetFromPackageDefinition(descriptors));
    } else {
      throw new TypeError('addReflection takes a FileDescriptorSet Buffer or a package definition');
    }
  }

  addService(service, implementation) {
    if (service === null || typeof service !== 'object' || implementation === null || typeof implementation !== 'object') {
      throw new Error('addService() requires two objects as arguments');
    }
    const names = Object.keys(service);
    if (names.length === 0) throw new Error('Cannot add an empty service to a server');
    for (const name of names) {
      const def = service[name];
      let impl = implementation[name];
      if (impl === undefined && def.originalName) impl = implementation[def.originalName];
      const type = def.requestStream ? (def.responseStream ? 'bidi' : 'clientStream') : def.responseStream ? 'serverStream' : 'unary';
      const handler =
        impl !== undefined
          ? impl.bind(implementation)
          : (call, callback) => {
              const err = { code: status.UNIMPLEMENTED, details: `The server does not implement the method ${name}` };
              if (callback) callback(err);
              else call.emit('error', err);
            };
      this.register(def.path, handler, def.responseSerialize, def.requestDeserialize, type);
    }
  }

  removeService(service) {
    for (const name of Object.keys(service)) this.unregister(service[name].path);
  }

  register(name, handler, serialize, deserialize, type) {
    if (this._handlers.has(name)) return false;
    if (this._health !== null && HEALTH_ENGINE_PATHS.includes(name)) return false;
    if (this._native !== null) throw new Error('grpc-core: register services before the first bindAsync');
    this._handlers.set(name, { handler, serialize, deserialize, type });
    return true;
  }

  unregister(name) {
    if (this._native === null && this._health !== null && HEALTH_ENGINE_PATHS.includes(name)) {
      this._health = null;
      return true;
    }
    if (this._native !== null) this._native.removeMethod(name);
    return this._handlers.delete(name);
  }

  bindAsync(port, creds, callback) {
    if (typeof callback !== 'function') throw new TypeError('callback must be a function');
    if (!(creds instanceof ServerCredentials)) throw new TypeError('creds must be a ServerCredentials object');
    if (this._shutdown) return process.nextTick(callback, new Error('bindAsync called after shutdown'), -1);
    if (this._native === null) {
      this._id = newId();
      handlers.set(this._id, (ev) => this._onCall(ev));
      const o = this._options;
      this._native = new native.ServerNative(this._id, {
        maxRecv: sizeOption(o['grpc.max_receive_message_length']),
        maxSend: sizeOption(o['grpc.max_send_message_length']),
        compression: o['grpc.default_compression_algorithm'],
        reflection: this._reflection.length > 0 ? this._reflection : undefined,
        health: this._health !== null,
      });
      if (this._health !== null) this._health._attach(this._native);
      if (this._otel !== null) this._native.setTelemetry(this._otel._native);
      for (const [p, h] of this._handlers) this._native.addMethod(p, KIND[h.type]);
    }
    let addr = String(port);
    if (addr.startsWith('dns:')) addr = addr.replace(/^dns:(\/\/\/)?/, '');
    if (addr.startsWith('[::]:')) addr = `0.0.0.0:${addr.slice(5)}`;
    hold();
    try {
      this._native.bind(
        once((ev) => {
          release();
          if (ev.code !== undefined && ev.code !== null) return callback(new Error(`No address added out of total 1 resolved: ${ev.details}`), -1);
          if (!this._listening) {
            this._listening = true;
            hold();
          }
          callback(null, ev.port);
        }),
        addr,
        creds._tls,
      );
    } catch (e) {
      release();
      process.nextTick(callback, e, -1);
    }
  }

  /** Kept for grpc-js compatibility: bindAsync already starts serving. */
  start() {}

  _stop(graceMs, callback) {
    const wasListening = this._listening;
    this._listening = false;
    this._shutdown = true;
    if (this._health !== null && this._native !== null) this._health._detach(this._native);
    if (this._native === null) {
      if (callback) process.nextTick(callback);
      return;
    }
    hold();
    this._native.shutdown(
      once(() => {
        release();
        if (wasListening) release();
        handlers.delete(this._id);
        if (callback) callback();
      }),
      graceMs,
    );
  }

  tryShutdown(callback) {
    this._stop(2 ** 31, callback);
  }

  forceShutdown() {
    this._stop(0);
  }

  _onCall(ev) {
    if (ev.traceparent) return telemetry._internal.runIn(ev.traceparent, () => this._serveCall(ev));
    return this._serveCall(ev);
  }

  _serveCall(ev) {
    const h = this._handlers.get(ev.method);
    const call = ev.call;
    if (h === undefined) {
      call.finish(status.UNIMPLEMENTED, `The server does not implement the method ${ev.method}`);
      return;
    }
    try {
      switch (h.type) {
        case 'unary': {
          let request;
          try {
            request = h.deserialize(ev.msg);
          } catch (e) {
            return call.finish(status.INTERNAL, 'Failed to parse request');
          }
          const c = new ServerUnaryCallImpl(call, ev, request);
          const cb = (err, value, trailer) => c._respond(err, value, trailer, h.serialize);
          const r = h.handler(c, cb);
          if (isThenable(r)) r.then((v) => v !== undefined && cb(null, v), cb);
          break;
        }
        case 'clientStream': {
          const c = new ServerReadableStreamImpl(call, ev, h.deserialize);
          const cb = (err, value, trailer) => c._respond(err, value, trailer, h.serialize);
          const r = h.handler(c, cb);
          if (isThenable(r)) r.then((v) => v !== undefined && cb(null, v), cb);
          break;
        }
        case 'serverStream': {
          let request;
          try {
            request = h.deserialize(ev.msg);
          } catch (e) {
            return call.finish(status.INTERNAL, 'Failed to parse request');
          }
          const c = new ServerWritableStreamImpl(call, ev, request, h.serialize);
          const r = h.handler(c);
          if (r && typeof r[Symbol.asyncIterator] === 'function') pipeAsyncIterable(r, c);
          else if (isThenable(r)) r.catch((e) => c._finishError(e));
          break;
        }
        default: {
          const c = new ServerDuplexStreamImpl(call, ev, h.serialize, h.deserialize);
          const r = h.handler(c);
          if (r && typeof r[Symbol.asyncIterator] === 'function') pipeAsyncIterable(r, c);
          else if (isThenable(r)) r.catch((e) => c._finishError(e));
        }
      }
    } catch (e) {
      call.finish(status.UNKNOWN, e && e.message ? e.message : String(e));
    }
  }
}

/** Server streaming from an async generator (beyond grpc-js). */
async function pipeAsyncIterable(iterable, call) {
  try {
    for await (const v of iterable) {
      if (call._finished) return;
      if (!call.write(v)) await new Promise((r) => call.once('drain', r));
    }
    call.end();
  } catch (e) {
    call._finishError(e);
  }
}

// ---------------------------------------------------------------- Promise API

/**
 * Wraps a generated client: unary and client-streaming methods return
 * Promises (client streaming takes an iterable or async iterable of
 * requests); streaming responses are async-iterable Node streams.
 */
function promisify(client) {
  const service = client.constructor.service;
  if (!service) throw new TypeError('promisify() needs a client made by makeGenericClientConstructor or loadPackageDefinition');
  // Optional arguments are passed on only when given, so that a grpc-js
  // client (whose Metadata class differs) can be wrapped too.
  const extra = (metadata, options) => (metadata ? (options ? [metadata, options] : [metadata]) : options ? [options] : []);
  const out = { client };
  for (const name of Object.keys(service)) {
    const def = service[name];
    let fn;
    if (!def.requestStream && !def.responseStream) {
      fn = (req, metadata, options) =>
        new Promise((resolve, reject) => {
          client.makeUnaryRequest(def.path, def.requestSerialize, def.responseDeserialize, req, ...extra(metadata, options), (err, v) => (err ? reject(err) : resolve(v)));
        });
    } else if (def.requestStream && !def.responseStream) {
      fn = (requests, metadata, options) =>
        new Promise((resolve, reject) => {
          const call = client.makeClientStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, ...extra(metadata, options), (err, v) => (err ? reject(err) : resolve(v)));
          (async () => {
            for await (const r of requests) {
              if (!call.write(r)) await new Promise((ok) => call.once('drain', ok));
            }
            call.end();
          })().catch((e) => {
            call.cancel();
            reject(e);
          });
        });
    } else if (!def.requestStream) {
      fn = (req, metadata, options) => client.makeServerStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, req, ...extra(metadata, options));
    } else {
      fn = (metadata, options) => client.makeBidiStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, ...extra(metadata, options));
    }
    out[name] = fn;
    if (def.originalName && !out[def.originalName]) out[def.originalName] = fn;
  }
  out.close = () => client.close();
  return out;
}

module.exports = {
  OpenTelemetryPlugin: telemetry.OpenTelemetryPlugin,
  /** Diagnostics for tests: how many completion handlers are registered. */
  _handlerCount: () => handlers.size,
  Metadata,
  status,
  credentials,
  ChannelCredentials,
  CallCredentials,
  ServerCredentials,
  Channel,
  ManualResolver,
  Client,
  Server,
  makeClientConstructor,
  makeGenericClientConstructor: makeClientConstructor,
  loadPackageDefinition,
  compressionAlgorithms,
  connectivityState,
  promisify,
  InterceptingCall,
  InterceptorConfigurationError,
  ListenerBuilder,
  RequesterBuilder,
  logVerbosity: logging.logVerbosity,
  setLogger: logging.setLogger,
  setLogVerbosity: logging.setLogVerbosity,
  HealthImplementation: health.HealthImplementation,
  waitForClientReady(client, deadline, callback) {
    client.waitForReady(deadline, callback);
  },
  closeClient(client) {
    client.close();
  },
  getClientChannel(client) {
    return client.getChannel();
  },
};
