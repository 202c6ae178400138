// Type definitions for grpc-core/telemetry (also exported by grpc-core).
// Structural types only: @opentelemetry/* is an optional peer dependency.

/** An @opentelemetry/api MeterProvider. */
export interface MeterProviderLike {
  getMeter(name: string, version?: string, options?: object): any;
}

/** An @opentelemetry/sdk-trace-base SpanProcessor (only `onEnd` is called). */
export interface SpanProcessorLike {
  onEnd(span: any): void;
}

export interface OpenTelemetryPluginOptions {
  /** Records the gRFC A66 metrics into instruments of `meterProvider.getMeter('grpc-core')`. */
  meterProvider?: MeterProviderLike;
  /**
   * An @opentelemetry/sdk-trace-base BasicTracerProvider (or one built on it, such as
   * NodeTracerProvider): the engine's spans go to its span processors.
   */
  tracerProvider?: object;
  /** Instead of (or where the processors of) `tracerProvider` are not reachable: processors for the spans. */
  spanProcessors?: SpanProcessorLike[];
  /** The resource of spans given to `spanProcessors` (default: the tracer provider's). */
  resource?: object;
}

/**
 * The engine's metrics and spans into OpenTelemetry: channels and servers
 * created while a plugin is registered record into it.
 */
export declare class OpenTelemetryPlugin {
  constructor(options?: OpenTelemetryPluginOptions);
  readonly meterProvider: MeterProviderLike | null;
  readonly tracerProvider: object | null;
  /** Channels and servers created from now on record into this plugin. Throws if one is registered. */
  registerGlobal(): void;
  /** Channels and servers created from now on record nothing. Throws if this plugin is not registered. */
  deregisterGlobal(): void;
  /** Resolves true once every record handed over so far is recorded, false after `timeoutMs` (default 5000). */
  flush(timeoutMs?: number): Promise<boolean>;
  /** Stops recording; deregisters the plugin if it is registered. */
  shutdown(): void;
}
