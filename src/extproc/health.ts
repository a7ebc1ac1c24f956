import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const PROTO_PATH = fileURLToPath(new URL('../../../protos/health.proto', import.meta.url));

/** The service names the processor answers for: "" (the whole server) and the ext_proc service. */
export const HEALTH_SERVICES: readonly string[] = ['', 'envoy.service.ext_proc.v3.ExternalProcessor'];

/** A replica's status as the gRPC health service reports it. */
export type ServingStatus = 'SERVING' | 'NOT_SERVING';

interface HealthRequest {
  service?: string;
}
interface HealthResponse {
  status: ServingStatus | 'SERVICE_UNKNOWN';
}

/** The `grpc.health.v1.Health` service definition, loaded once. */
export function loadHealthService(): grpc.ServiceDefinition {
  const def = protoLoader.loadSync(PROTO_PATH, { keepCase: true, enums: String, defaults: true, oneofs: true });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
  };
  return pkg.grpc.health.v1.Health.service;
}

/**
 * Whether this replica takes new ext_proc streams, as `grpc.health.v1.Health` reports it to
 * Envoy's active health check. It starts NOT_SERVING, turns SERVING once the replica is ready,
 * and NOT_SERVING again when it drains: Envoy then stops sending it new streams while the ones it
 * has finish. Every Watch stream gets the current status and then each change.
 */
export class HealthState {
  private current: ServingStatus = 'NOT_SERVING';
  private readonly watchers = new Map<(s: ServingStatus) => void, grpc.ServerWritableStream<HealthRequest, HealthResponse>>();

  get status(): ServingStatus {
    return this.current;
  }

  set(status: ServingStatus): void {
    if (status === this.current) return;
    this.current = status;
    for (const w of this.watchers.keys()) w(status);
  }

  /** The handlers of `grpc.health.v1.Health` over this state. */
  handlers(): grpc.UntypedServiceImplementation {
    return {
      Check: (call: grpc.ServerUnaryCall<HealthRequest, HealthResponse>, callback: grpc.sendUnaryData<HealthResponse>) => {
        const service = call.request.service ?? '';
        if (!HEALTH_SERVICES.includes(service)) {
          callback({ code: grpc.status.NOT_FOUND, details: `unknown service "${service}"` });
          return;
        }
        callback(null, { status: this.current });
      },
      Watch: (call: grpc.ServerWritableStream<HealthRequest, HealthResponse>) => {
        const service = call.request.service ?? '';
        if (!HEALTH_SERVICES.includes(service)) {
          // The protocol answers a Watch of an unknown service with a status, not an error: the
          // service may appear later. This server's set never changes, so the stream just idles.
          call.write({ status: 'SERVICE_UNKNOWN' });
        } else {
          const send = (status: ServingStatus): void => {
            call.write({ status });
          };
          send(this.current);
          this.watchers.set(send, call);
          const stop = (): void => {
            this.watchers.delete(send);
          };
          call.on('cancelled', stop);
          call.on('close', stop);
          call.on('error', stop);
        }
      },
    };
  }

  /** Ends every Watch stream, so a graceful server shutdown does not wait for them. */
  endWatches(): void {
    for (const call of this.watchers.values()) call.end();
    this.watchers.clear();
  }
}
