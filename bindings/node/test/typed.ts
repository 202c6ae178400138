// Type-checked (tsc --noEmit) against index.d.ts: the grpc-js style API and
// the Promise API. Not executed.
import * as grpc from '..';
import * as protoLoader from '@grpc/proto-loader';
import * as healthPkg from '../health';
import * as telemetryPkg from '../telemetry';

interface Req {
  name?: string;
  n?: number;
}
interface Resp {
  message: string;
  n: number;
}

const def = protoLoader.loadSync('test.proto');
const pkg = grpc.loadPackageDefinition(def) as any;
const Tester = pkg.test.v1.Tester as grpc.ServiceClientConstructor;

const md = new grpc.Metadata();
md.set('x-key', 'v');
md.add('x-bin', Buffer.from([1]));
const first: grpc.MetadataValue[] = md.get('x-key');
const map: { [k: string]: grpc.MetadataValue } = md.clone().getMap();
md.remove('x-key');
void first;
void map;

const creds: grpc.ChannelCredentials = grpc.credentials.createSsl(Buffer.from(''), null, null);
const insecure = grpc.credentials.createInsecure();
const withToken = grpc.credentials.combineChannelCredentials(
  creds,
  grpc.credentials.createFromMetadataGenerator((_opts, cb) => cb(null, new grpc.Metadata())),
);
void withToken;

const client = new Tester('localhost:50051', insecure, { 'grpc.max_receive_message_length': 1 << 20 });
const resolver = new grpc.ManualResolver(['127.0.0.1:50051']);
resolver.update(['127.0.0.1:50052', '[::1]:50053']);
const balanced = new grpc.Channel('manual:///typed', insecure, {
  'grpc-core.manual_resolver': resolver,
  'grpc.lb_policy_name': 'round_robin',
  'grpc.service_config': '{}',
  'grpc.enable_retries': 0,
  'grpc.client_idle_timeout_ms': 60_000,
});
void balanced;
const unary: grpc.ClientUnaryCall = client.makeUnaryRequest<Req, Resp>(
  '/test.v1.Tester/Unary',
  (r) => Buffer.from(JSON.stringify(r)),
  (b) => JSON.parse(b.toString()) as Resp,
  { name: 'x' },
  md,
  { deadline: Date.now() + 1000 },
  (err: grpc.ServiceError | null, value?: Resp) => {
    if (err) {
      const code: grpc.status = err.code;
      const details: string = err.details;
      const trailers: grpc.Metadata = err.metadata;
      void [code, details, trailers, err.message];
    } else if (value) {
      const m: string = value.message;
      void m;
    }
  },
);
unary.on('metadata', (m: grpc.Metadata) => void m);
unary.on('status', (s: grpc.StatusObject) => void s.code);
unary.cancel();

const ss: grpc.ClientReadableStream<Resp> = client.makeServerStreamRequest<Req, Resp>('/test.v1.Tester/ServerStream', (r) => Buffer.from(JSON.stringify(r)), (b) => JSON.parse(b.toString()), { n: 2 });
ss.on('data', (r: Resp) => void r.n);
const cs: grpc.ClientWritableStream<Req> = client.makeClientStreamRequest<Req, Resp>('/x/Y', (r) => Buffer.from(JSON.stringify(r)), (b) => JSON.parse(b.toString()), (err, v) => void [err, v]);
cs.write({ n: 1 });
cs.end();
const bidi: grpc.ClientDuplexStream<Req, Resp> = client.makeBidiStreamRequest<Req, Resp>('/x/Z', (r) => Buffer.from(JSON.stringify(r)), (b) => JSON.parse(b.toString()));
bidi.write({ n: 1 });
client.waitForReady(Date.now() + 100, (e?: Error) => void e);
client.close();

async function promiseApi(): Promise<void> {
  const p = grpc.promisify(client);
  const r: Resp = await p.unary({ name: 'a' });
  for await (const m of p.serverStream({ n: 2 }) as grpc.ClientReadableStream<Resp>) void m.n;
  void r;
  p.close();
}
void promiseApi;

const server = new grpc.Server({ 'grpc.default_compression_algorithm': grpc.compressionAlgorithms.gzip });
const impl: grpc.UntypedServiceImplementation = {
  unary: ((call: grpc.ServerUnaryCall<Req, Resp>, callback: grpc.sendUnaryData<Resp>) => {
    const dl: grpc.Deadline = call.getDeadline();
    void dl;
    call.sendMetadata(new grpc.Metadata());
    call.on('cancelled', () => void call.cancelled);
    const auth: grpc.AuthContext = call.getAuthContext();
    const who = auth.sslPeerCertificate?.subject.CN ?? auth.commonName;
    void [auth.transportSecurityType, auth.peerIdentity, who];
    callback(null, { message: `hi ${call.request.name}`, n: 1 });
  }) as grpc.handleUnaryCall<Req, Resp>,
  clientStream: (async (call: grpc.ServerReadableStream<Req, Resp>) => {
    let n = 0;
    for await (const r of call) n += (r as Req).n ?? 0;
    return { message: '', n };
  }) as grpc.handleClientStreamingCall<Req, Resp>,
  serverStream: ((call: grpc.ServerWritableStream<Req, Resp>) => {
    call.write({ message: 'a', n: 0 });
    call.emit('error', { code: grpc.status.INTERNAL, details: 'x' });
    call.end(new grpc.Metadata());
  }) as grpc.handleServerStreamingCall<Req, Resp>,
  bidi: (async function* (call: grpc.ServerDuplexStream<Req, Resp>) {
    for await (const r of call) yield { message: String((r as Req).name), n: 0 };
  }) as grpc.handleBidiStreamingCall<Req, Resp>,
};
server.addService(Tester.service, impl);
server.addReflection(Buffer.alloc(0));
const perCall: grpc.CallOptions = {
  credentials: grpc.credentials.combineCallCredentials(
    grpc.CallCredentials.createFromMetadataGenerator((opts, cb) => {
      const md = new grpc.Metadata();
      md.set('x-method', `${opts.service_url}/${opts.method_name}`);
      cb(null, md);
    }),
    grpc.credentials.createFromAccessToken('t'),
  ),
};
void perCall;
server.bindAsync('0.0.0.0:0', grpc.ServerCredentials.createInsecure(), (err: Error | null, port: number) => {
  void [err, port];
  server.tryShutdown(() => undefined);
  server.forceShutdown();
});
const sslServerCreds = grpc.ServerCredentials.createSsl(null, [{ private_key: Buffer.from(''), cert_chain: Buffer.from('') }], true);
void sslServerCreds;
client.getChannel().watchConnectivityState(grpc.connectivityState.IDLE, Date.now() + 10, (e?: Error) => void e);

// Client interceptors, as grpc-js types them.
const auth: grpc.Interceptor = (options, nextCall) =>
  new grpc.InterceptingCall(nextCall(options), {
    start(metadata, listener, next) {
      metadata.set('x-token', 'secret');
      const path: string = options.method_definition.path;
      void path;
      next(metadata, {
        onReceiveStatus(st, nextStatus) {
          const code: grpc.status = st.code;
          void code;
          nextStatus(st);
        },
      });
    },
  });
const built: grpc.Interceptor = (options, nextCall) => {
  const listener: grpc.Listener = new grpc.ListenerBuilder().withOnReceiveMessage((m, next) => next(m)).build();
  const requester: grpc.Requester = new grpc.RequesterBuilder()
    .withStart((md, _l, next) => next(md, listener))
    .withSendMessage((m, next) => next(m))
    .withHalfClose((next) => next())
    .withCancel((next) => next())
    .build();
  return new grpc.InterceptingCall(nextCall(options), requester);
};
const provider: grpc.InterceptorProvider = (def) => (def.responseStream ? built : null);
const intercepted = new Tester('127.0.0.1:1', insecure, { interceptors: [auth, built] });
const provided = new Tester('127.0.0.1:1', insecure, { interceptor_providers: [provider] });
intercepted.makeUnaryRequest('/x/Y', (v: Req) => Buffer.from(JSON.stringify(v)), (b: Buffer) => JSON.parse(b.toString()) as Resp, { name: 'i' }, { interceptors: [auth] }, (err, v) => {
  void err;
  void v;
});
const configError: Error = new grpc.InterceptorConfigurationError('x');
void provided;
void configError;

grpc.setLogger(console);
grpc.setLogger({ error: (...args: unknown[]) => void args });
const verbosity: grpc.logVerbosity = grpc.logVerbosity.DEBUG;
grpc.setLogVerbosity(verbosity);
grpc.setLogVerbosity(grpc.logVerbosity.NONE);

const healthImpl = new grpc.HealthImplementation({ '': 'SERVING', 'svc.A': 'NOT_SERVING' });
const servingStatus: grpc.ServingStatus = 'SERVING';
healthImpl.setStatus('svc.A', servingStatus);
healthImpl.setStatus('svc.A', 'SERVICE_UNKNOWN');
healthImpl.addToServer(new grpc.Server());
const statusMap: healthPkg.ServingStatusMap = { x: 'UNKNOWN' };
new healthPkg.HealthImplementation(statusMap).addToServer(new grpc.Server());
const HealthClient = grpc.makeGenericClientConstructor(healthPkg.service, 'Health');
void HealthClient;
const protoFile: string = healthPkg.protoPath;
void protoFile;

// OpenTelemetryPlugin (grpc-core and grpc-core/telemetry).
const otelOptions: grpc.OpenTelemetryPluginOptions = { meterProvider: { getMeter: () => ({}) }, spanProcessors: [{ onEnd: () => {} }] };
const otelPlugin: telemetryPkg.OpenTelemetryPlugin = new grpc.OpenTelemetryPlugin(otelOptions);
const otelFlushed: Promise<boolean> = otelPlugin.flush(100);
void otelFlushed;
