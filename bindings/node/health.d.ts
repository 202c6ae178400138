// Type definitions for grpc-core/health: grpc-health-check's API.
import type { ServiceDefinition, UntypedServiceImplementation } from './index';

export type ServingStatus = 'UNKNOWN' | 'SERVING' | 'NOT_SERVING';

export interface ServingStatusMap {
  [serviceName: string]: ServingStatus;
}

/** As grpc-health-check's; on this package's Server the engine serves Check and Watch. */
export declare class HealthImplementation {
  constructor(initialStatusMap?: ServingStatusMap);
  /** Sets a service's status (`''` is the whole server); `'SERVICE_UNKNOWN'` forgets the service. */
  setStatus(service: string, status: ServingStatus | 'SERVICE_UNKNOWN'): void;
  /** Adds grpc.health.v1.Health to a server (this package's, before bindAsync, or a @grpc/grpc-js one). */
  addToServer(server: { addService(service: ServiceDefinition, implementation: UntypedServiceImplementation): void }): void;
}

/** The grpc.health.v1.Health service definition (for makeGenericClientConstructor). */
export declare const service: ServiceDefinition;

/** The absolute path of health.proto. */
export declare const protoPath: string;
