// Type definitions for grpc-core (Node): the @grpc/grpc-js API plus `promisify`.
/// <reference types="node" />
import { EventEmitter } from 'node:events';
import { Duplex, Readable, Writable } from 'node:stream';

export declare enum status {
  OK = 0,
  CANCELLED = 1,
  UNKNOWN = 2,
  INVALID_ARGUMENT = 3,
  DEADLINE_EXCEEDED = 4,
  NOT_FOUND = 5,
  ALREADY_EXISTS = 6,
  PERMISSION_DENIED = 7,
  RESOURCE_EXHAUSTED = 8,
  FAILED_PRECONDITION = 9,
  ABORTED = 10,
  OUT_OF_RANGE = 11,
  UNIMPLEMENTED = 12,
  INTERNAL = 13,
  UNAVAILABLE = 14,
  DATA_LOSS = 15,
  UNAUTHENTICATED = 16,
}

export declare enum compressionAlgorithms {
  identity = 0,
  deflate = 1,
  gzip = 2,
  zstd = 3,
}

export declare enum connectivityState {
  IDLE = 0,
  CONNECTING = 1,
  READY = 2,
  TRANSIENT_FAILURE = 3,
  SHUTDOWN = 4,
}

/** grpc-js's `LogVerbosity`: the least severe records `setLogVerbosity` lets through. */
export declare enum logVerbosity {
  DEBUG = 0,
  INFO = 1,
  ERROR = 2,
  NONE = 3,
}

/**
 * As in grpc-js: the engine's records go to `logger` (`debug`, `info` or
 * `error` by severity, else `error`). Enables engine logging, which is off
 * until this, `setLogVerbosity` or GRPC_VERBOSITY / GRPC_NODE_VERBOSITY.
 */
export declare function setLogger(logger: Partial<Console>): void;
/** As in grpc-js: records at `verbosity` and above reach the logger; NONE turns engine logging off. */
export declare function setLogVerbosity(verbosity: logVerbosity): void;

export { HealthImplementation, ServingStatus, ServingStatusMap } from './health';

export type MetadataValue = string | Buffer;
export type MetadataObject = Map<string, MetadataValue[]>;

export interface MetadataOptions {
  idempotentRequest?: boolean;
  waitForReady?: boolean;
  cacheableRequest?: boolean;
  corked?: boolean;
}

export declare class Metadata {
  protected internalRepr: MetadataObject;
  constructor(options?: MetadataOptions);
  set(key: string, value: MetadataValue): void;
  add(key: string, value: MetadataValue): void;
  remove(key: string): void;
  get(key: string): MetadataValue[];
  getMap(): { [key: string]: MetadataValue };
  clone(): Metadata;
  merge(other: Metadata): void;
  setOptions(options: MetadataOptions): void;
  getOptions(): MetadataOptions;
  toJSON(): { [key: string]: MetadataValue[] };
}

export interface StatusObject {
  code: status;
  details: string;
  metadata: Metadata;
}

export type ServiceError = StatusObject & Error;

export interface ServerErrorResponse extends Partial<Error> {
  code?: status;
  details?: string;
  metadata?: Metadata | null;
}
export type ServerStatusResponse = Partial<StatusObject>;

export interface CallMetadataOptions {
  /** `https://<host>/<package.Service>` (the port dropped, as grpc-js does). */
  service_url: string;
  /** The full method path (`/helloworld.Greeter/SayHello`), as grpc-js gives it. */
  method_name: string;
}
/** An error may carry a `code` (else UNKNOWN); codes gRFC A54 forbids become INTERNAL. */
export type CallMetadataGenerator = (options: CallMetadataOptions, cb: (err: (Error & { code?: number }) | null, metadata?: Metadata) => void) => void;

/**
 * Run by the engine for every call. Refused on plaintext channels with
 * UNAUTHENTICATED unless the channel option
 * `'grpc-core.allow_insecure_call_credentials'` is true.
 */
export declare class CallCredentials {
  static createFromMetadataGenerator(generator: CallMetadataGenerator): CallCredentials;
  /** Beyond grpc-js: `authorization: Bearer <token>` without a JS round trip per call. */
  static createFromAccessToken(token: string): CallCredentials;
  static createEmpty(): CallCredentials;
  compose(other: CallCredentials): CallCredentials;
}

export declare class ChannelCredentials {
  static createInsecure(): ChannelCredentials;
  static createSsl(rootCerts?: Buffer | null, privateKey?: Buffer | null, certChain?: Buffer | null, verifyOptions?: object): ChannelCredentials;
  compose(callCredentials: CallCredentials): ChannelCredentials;
  _isSecure(): boolean;
}

export interface KeyCertPair {
  private_key: Buffer;
  cert_chain: Buffer;
}

export declare class ServerCredentials {
  static createInsecure(): ServerCredentials;
  static createSsl(rootCerts: Buffer | null, keyCertPairs: KeyCertPair[], checkClientCertificate?: boolean): ServerCredentials;
  _isSecure(): boolean;
}

export declare const credentials: {
  createInsecure: typeof ChannelCredentials.createInsecure;
  createSsl: typeof ChannelCredentials.createSsl;
  createFromMetadataGenerator: typeof CallCredentials.createFromMetadataGenerator;
  combineChannelCredentials(channelCredentials: ChannelCredentials, ...callCredentials: CallCredentials[]): ChannelCredentials;
  combineCallCredentials(first: CallCredentials, ...additional: CallCredentials[]): CallCredentials;
  createFromAccessToken: typeof CallCredentials.createFromAccessToken;
};

export interface ChannelOptions {
  'grpc.ssl_target_name_override'?: string;
  'grpc.primary_user_agent'?: string;
  'grpc.default_authority'?: string;
  'grpc.max_send_message_length'?: number;
  'grpc.max_receive_message_length'?: number;
  'grpc.default_compression_algorithm'?: compressionAlgorithms;
  /** Send call credentials over plaintext too (else such calls fail with UNAUTHENTICATED). */
  'grpc-core.allow_insecure_call_credentials'?: boolean;
  /** Service config JSON: loadBalancingConfig, methodConfig (timeout, waitForReady, retryPolicy, hedgingPolicy), retryThrottling, healthCheckConfig. */
  'grpc.service_config'?: string;
  /** `pick_first` (default) or `round_robin`, when the service config names no policy. */
  'grpc.lb_policy_name'?: string;
  /** 0 removes the service config's retry and hedging policies. */
  'grpc.enable_retries'?: number;
  /** With no call for this long the channel goes IDLE (0: never; default 30 min). */
  'grpc.client_idle_timeout_ms'?: number;
  /** How often a `dns:` target is re-resolved (default 30 s). */
  'grpc.dns_min_time_between_resolutions_ms'?: number;
  /** The resolver for a `manual:///name` target. */
  'grpc-core.manual_resolver'?: ManualResolver;
  [key: string]: any;
}

/**
 * A resolver the application feeds addresses to (grpc-core's addition):
 * pass it as `grpc-core.manual_resolver` with a `manual:///name` target.
 */
export declare class ManualResolver {
  constructor(addresses?: string[]);
  /** Replaces the backends: `ip:port`, `[ipv6]:port` or `unix:/path`. */
  update(addresses: string[]): void;
  /** Calls fail fast with UNAVAILABLE and this message until the next update. */
  reportError(message: string): void;
}

export declare class Channel {
  constructor(target: string, credentials: ChannelCredentials, options?: ChannelOptions);
  getTarget(): string;
  getConnectivityState(tryToConnect: boolean): connectivityState;
  watchConnectivityState(currentState: connectivityState, deadline: Deadline, callback: (error?: Error) => void): void;
  close(): void;
}

export type Deadline = Date | number;

export interface CallOptions {
  deadline?: Deadline;
  waitForReady?: boolean;
  /** Per-call credentials, after the channel's. */
  credentials?: CallCredentials;
  /** Replace the client's interceptors for this call. */
  interceptors?: Interceptor[];
  interceptor_providers?: InterceptorProvider[];
  [key: string]: any;
}

export interface ClientOptions extends ChannelOptions {
  channelOverride?: Channel;
  /** At most one of `interceptors` and `interceptor_providers`. */
  interceptors?: Interceptor[];
  interceptor_providers?: InterceptorProvider[];
}

// ---- client interceptors (as @grpc/grpc-js)

export interface ClientMethodDefinition<RequestType, ResponseType> {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  requestSerialize: Serialize<RequestType>;
  responseDeserialize: Deserialize<ResponseType>;
}

export interface InterceptorOptions extends CallOptions {
  method_definition: ClientMethodDefinition<any, any>;
}

export type MetadataListener = (metadata: Metadata, next: (metadata: Metadata) => void) => void;
export type MessageListener = (message: any, next: (message: any) => void) => void;
export type StatusListener = (status: StatusObject, next: (status: StatusObject) => void) => void;

export interface FullListener {
  onReceiveMetadata: MetadataListener;
  onReceiveMessage: MessageListener;
  onReceiveStatus: StatusListener;
}
export type Listener = Partial<FullListener>;

/** What the next link of a chain is told (already processed values). */
export interface InterceptingListener {
  onReceiveMetadata(metadata: Metadata): void;
  onReceiveMessage(message: any): void;
  onReceiveStatus(status: StatusObject): void;
}

export type MetadataRequester = (metadata: Metadata, listener: InterceptingListener, next: (metadata: Metadata, listener?: InterceptingListener | Listener) => void) => void;
export type MessageRequester = (message: any, next: (message: any) => void) => void;
export type CloseRequester = (next: () => void) => void;
export type CancelRequester = (next: () => void) => void;

export interface FullRequester {
  start: MetadataRequester;
  sendMessage: MessageRequester;
  halfClose: CloseRequester;
  cancel: CancelRequester;
}
export type Requester = Partial<FullRequester>;

export interface MessageContext {
  callback?: (error?: Error | null) => void;
  flags?: number;
}

export interface InterceptingCallInterface {
  cancelWithStatus(status: status, details: string): void;
  getPeer(): string;
  start(metadata: Metadata, listener?: Partial<InterceptingListener>): void;
  sendMessageWithContext(context: MessageContext, message: any): void;
  sendMessage(message: any): void;
  startRead(): void;
  halfClose(): void;
}

export declare class InterceptingCall implements InterceptingCallInterface {
  constructor(nextCall: InterceptingCallInterface, requester?: Requester);
  cancelWithStatus(status: status, details: string): void;
  getPeer(): string;
  start(metadata: Metadata, listener?: Partial<InterceptingListener>): void;
  sendMessageWithContext(context: MessageContext, message: any): void;
  sendMessage(message: any): void;
  startRead(): void;
  halfClose(): void;
}

export type NextCall = (options: InterceptorOptions) => InterceptingCallInterface;
export type Interceptor = (options: InterceptorOptions, nextCall: NextCall) => InterceptingCall;
export type InterceptorProvider = (methodDefinition: ClientMethodDefinition<any, any>) => Interceptor | null | undefined;

export declare class ListenerBuilder {
  withOnReceiveMetadata(onReceiveMetadata: MetadataListener): this;
  withOnReceiveMessage(onReceiveMessage: MessageListener): this;
  withOnReceiveStatus(onReceiveStatus: StatusListener): this;
  build(): Listener;
}

export declare class RequesterBuilder {
  withStart(start: MetadataRequester): this;
  withSendMessage(sendMessage: MessageRequester): this;
  withHalfClose(halfClose: CloseRequester): this;
  withCancel(cancel: CancelRequester): this;
  build(): Requester;
}

export declare class InterceptorConfigurationError extends Error {}

export type requestCallback<ResponseType> = (err: ServiceError | null, value?: ResponseType) => void;
export type UnaryCallback<ResponseType> = requestCallback<ResponseType>;

export interface SurfaceCall {
  cancel(): void;
  getPeer(): string;
}

export interface ClientUnaryCall extends EventEmitter, SurfaceCall {
  on(event: 'metadata', listener: (metadata: Metadata) => void): this;
  on(event: 'status', listener: (status: StatusObject) => void): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this;
}

export interface ClientReadableStream<ResponseType> extends Readable, SurfaceCall {
  read(size?: number): any;
  on(event: 'data', listener: (data: ResponseType) => void): this;
  on(event: 'metadata', listener: (metadata: Metadata) => void): this;
  on(event: 'status', listener: (status: StatusObject) => void): this;
  on(event: 'error', listener: (err: ServiceError) => void): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this;
  [Symbol.asyncIterator](): AsyncIterableIterator<ResponseType>;
}

export interface ClientWritableStream<RequestType> extends Writable, SurfaceCall {
  write(message: RequestType, cb?: (error: Error | null | undefined) => void): boolean;
  write(message: RequestType, encoding: BufferEncoding, cb?: (error: Error | null | undefined) => void): boolean;
  on(event: 'metadata', listener: (metadata: Metadata) => void): this;
  on(event: 'status', listener: (status: StatusObject) => void): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this;
}

export interface ClientDuplexStream<RequestType, ResponseType> extends Duplex, SurfaceCall {
  write(message: RequestType, cb?: (error: Error | null | undefined) => void): boolean;
  write(message: RequestType, encoding: BufferEncoding, cb?: (error: Error | null | undefined) => void): boolean;
  read(size?: number): any;
  on(event: 'data', listener: (data: ResponseType) => void): this;
  on(event: 'metadata', listener: (metadata: Metadata) => void): this;
  on(event: 'status', listener: (status: StatusObject) => void): this;
  on(event: 'error', listener: (err: ServiceError) => void): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this;
  [Symbol.asyncIterator](): AsyncIterableIterator<ResponseType>;
}

export type Serialize<T> = (value: T) => Buffer;
export type Deserialize<T> = (bytes: Buffer) => T;

export declare class Client {
  constructor(address: string, credentials: ChannelCredentials, options?: ClientOptions);
  close(): void;
  getChannel(): Channel;
  waitForReady(deadline: Deadline, callback: (error?: Error) => void): void;
  makeUnaryRequest<RequestType, ResponseType>(method: string, serialize: Serialize<RequestType>, deserialize: Deserialize<ResponseType>, argument: RequestType, metadata: Metadata, options: CallOptions, callback: UnaryCallback<ResponseType>): ClientUnaryCall;
  makeUnaryRequest<RequestType, ResponseType>(method: string, serialize: Serialize<RequestType>, deserialize: Deserialize<ResponseType>, argument: RequestType, metadata: Metadata, callback: UnaryCallback<ResponseType>): ClientUnaryCall;
  makeUnaryRequest<RequestType, ResponseType>(method: string, serialize: Serialize<RequestType>, deserialize: Deserialize<ResponseType>, argument: RequestType, options: CallOptions, callback: UnaryCallback<ResponseType>): ClientUnaryCall;
  makeUnaryRequest<RequestType, ResponseType>(method: string, serialize: Serialize<RequestType>, deserialize: Deserialize<ResponseType>, argument: RequestType, callback: UnaryCallback<ResponseType>): ClientUnaryCall;
  makeClientStreamRequest<RequestType, ResponseType>(method: string, serialize: Serialize<RequestType>, deserialize: Deserialize<ResponseType>, metadata: Metadata, options: CallOptions, callback: UnaryCallback<ResponseType>): ClientWritableStream<RequestType>;
  makeClientStreamRequest<RequestType, ResponseType>(method: string, serialize: Serialize<RequestType>, deserialize: Deserialize<ResponseType>, metadata: Metadata, callback: UnaryCallback<ResponseType>): ClientWritableStream<RequestType>;
  makeClientStreamRequest<RequestType, ResponseType>(method: string, serialize: Serialize<RequestType>, deserialize: Deserialize<ResponseType>, options: CallOptions, callback: UnaryCallback<ResponseType>): ClientWritableStream<RequestType>;
  makeClientStreamRequest<RequestType, ResponseType>(method: string, serialize: Serialize<RequestType>, deserialize: Deserialize<ResponseType>, callback: UnaryCallback<ResponseType>): ClientWritableStream<RequestType>;
  makeServerStreamRequest<RequestType, ResponseType>(method: string, serialize: Serialize<RequestType>, deserialize: Deserialize<ResponseType>, argument: RequestType, metadata?: Metadata, options?: CallOptions): ClientReadableStream<ResponseType>;
  makeServerStreamRequest<RequestType, ResponseType>(method: string, serialize: Serialize<RequestType>, deserialize: Deserialize<ResponseType>, argument: RequestType, options?: CallOptions): ClientReadableStream<ResponseType>;
  makeBidiStreamRequest<RequestType, ResponseType>(method: string, serialize: Serialize<RequestType>, deserialize: Deserialize<ResponseType>, metadata?: Metadata, options?: CallOptions): ClientDuplexStream<RequestType, ResponseType>;
  makeBidiStreamRequest<RequestType, ResponseType>(method: string, serialize: Serialize<RequestType>, deserialize: Deserialize<ResponseType>, options?: CallOptions): ClientDuplexStream<RequestType, ResponseType>;
}

export interface MethodDefinition<RequestType, ResponseType> {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  requestSerialize: Serialize<RequestType>;
  responseSerialize: Serialize<ResponseType>;
  requestDeserialize: Deserialize<RequestType>;
  responseDeserialize: Deserialize<ResponseType>;
  originalName?: string;
}

export type ServiceDefinition<Impl = UntypedServiceImplementation> = {
  readonly [index in keyof Impl]: MethodDefinition<any, any>;
};

export interface ServiceClient extends Client {
  [methodName: string]: Function;
}
export interface ServiceClientConstructor {
  new (address: string, credentials: ChannelCredentials, options?: ClientOptions): ServiceClient;
  service: ServiceDefinition;
  serviceName: string;
}

export declare function makeClientConstructor(methods: ServiceDefinition, serviceName: string, classOptions?: object): ServiceClientConstructor;
export declare const makeGenericClientConstructor: typeof makeClientConstructor;

export interface ProtobufTypeDefinition {
  format: string;
  type: object;
  fileDescriptorProtos: Buffer[];
}
export interface GrpcObject {
  [index: string]: GrpcObject | ServiceClientConstructor | ProtobufTypeDefinition;
}
export interface PackageDefinition {
  [index: string]: ServiceDefinition | ProtobufTypeDefinition | any;
}
export declare function loadPackageDefinition(packageDef: PackageDefinition): GrpcObject;

export declare function waitForClientReady(client: Client, deadline: Deadline, callback: (error?: Error) => void): void;
export declare function closeClient(client: Client): void;
export declare function getClientChannel(client: Client): Channel;

// ---------------------------------------------------------------- server

/** grpc-js's AuthContext plus what the engine knows about the peer. */
export interface AuthContext {
  /** `'ssl'` over TLS (grpc-js sets it only when the client sent a verified certificate). */
  transportSecurityType?: string;
  /** The verified client certificate, in `tls.getPeerCertificate()` form. */
  sslPeerCertificate?: import('tls').PeerCertificate;
  peer: string;
  tlsVersion?: string;
  subject?: string;
  commonName?: string;
  subjectAltNames: string[];
  /** The SANs if any, else the CN (gRPC core's peer identity). */
  peerIdentity: string[];
  peerIdentityPropertyName?: string;
  /** DER, leaf first. */
  peerCertificates: Buffer[];
  /** gRPC core's auth properties (`x509_common_name`, `x509_pem_cert`, ...). */
  properties: { [name: string]: string[] };
}

interface ServerSurfaceCall extends EventEmitter {
  readonly cancelled: boolean;
  readonly metadata: Metadata;
  getPeer(): string;
  getAuthContext(): AuthContext;
  sendMetadata(responseMetadata: Metadata): void;
  getDeadline(): Deadline;
  getPath(): string;
  on(event: 'cancelled', listener: (reason: string) => void): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this;
}

export type ServerUnaryCall<RequestType, ResponseType> = ServerSurfaceCall & { request: RequestType };
export type ServerReadableStream<RequestType, ResponseType> = ServerSurfaceCall & Readable & AsyncIterable<RequestType>;
export type ServerWritableStream<RequestType, ResponseType> = ServerSurfaceCall &
  Writable & {
    request: RequestType;
    end: (metadata?: Metadata) => void;
  };
export type ServerDuplexStream<RequestType, ResponseType> = ServerSurfaceCall &
  Duplex &
  AsyncIterable<RequestType> & {
    end: (metadata?: Metadata) => void;
  };

export type sendUnaryData<ResponseType> = (error: ServerErrorResponse | ServerStatusResponse | null, value?: ResponseType | null, trailer?: Metadata, flags?: number) => void;

/** Handlers may also return a Promise of the response (beyond grpc-js). */
export type handleUnaryCall<RequestType, ResponseType> = (call: ServerUnaryCall<RequestType, ResponseType>, callback: sendUnaryData<ResponseType>) => void | Promise<ResponseType | void>;
export type handleClientStreamingCall<RequestType, ResponseType> = (call: ServerReadableStream<RequestType, ResponseType>, callback: sendUnaryData<ResponseType>) => void | Promise<ResponseType | void>;
/** Server-streaming handlers may also be async generators (beyond grpc-js). */
export type handleServerStreamingCall<RequestType, ResponseType> = (call: ServerWritableStream<RequestType, ResponseType>) => void | AsyncIterable<ResponseType> | Promise<void>;
export type handleBidiStreamingCall<RequestType, ResponseType> = (call: ServerDuplexStream<RequestType, ResponseType>) => void | AsyncIterable<ResponseType> | Promise<void>;

export type HandleCall<RequestType, ResponseType> =
  | handleUnaryCall<RequestType, ResponseType>
  | handleClientStreamingCall<RequestType, ResponseType>
  | handleServerStreamingCall<RequestType, ResponseType>
  | handleBidiStreamingCall<RequestType, ResponseType>;

export type UntypedHandleCall = HandleCall<any, any>;
export interface UntypedServiceImplementation {
  [name: string]: UntypedHandleCall;
}

export interface ServerOptions extends ChannelOptions {}

export declare class Server {
  constructor(options?: ServerOptions);
  addService(service: ServiceDefinition, implementation: UntypedServiceImplementation): void;
  removeService(service: ServiceDefinition): void;
  register<RequestType, ResponseType>(name: string, handler: HandleCall<RequestType, ResponseType>, serialize: Serialize<ResponseType>, deserialize: Deserialize<RequestType>, type: 'unary' | 'clientStream' | 'serverStream' | 'bidi'): boolean;
  unregister(name: string): boolean;
  /** Beyond grpc-js: serve server reflection from a FileDescriptorSet or a proto-loader package definition (before bindAsync). */
  addReflection(descriptors: Buffer | Uint8Array | object): void;
  bindAsync(port: string, creds: ServerCredentials, callback: (error: Error | null, port: number) => void): void;
  /** @deprecated bindAsync already starts serving. */
  start(): void;
  tryShutdown(callback: (error?: Error) => void): void;
  forceShutdown(): void;
}

// ---------------------------------------------------------------- Promise API (beyond grpc-js)

/**
 * Wraps a generated client: unary and client-streaming methods return
 * Promises (client streaming takes an iterable or async iterable of
 * requests); server-streaming and bidi methods return async-iterable streams.
 */
export interface PromiseClient {
  client: Client;
  close(): void;
  [methodName: string]: any;
}
export declare function promisify(client: Client): PromiseClient;

export { OpenTelemetryPlugin } from './telemetry';
export type { OpenTelemetryPluginOptions } from './telemetry';
