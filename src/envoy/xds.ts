import { createHash } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import type protobuf from 'protobufjs';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { Metrics } from '../observability/metrics.js';
import { envoyResources } from './bootstrap.js';
import { encodeMessage, xdsRoot } from './xds-proto.js';

/**
 * The processor as Envoy's control plane: the Aggregated Discovery Service (state of the world,
 * over the ext_proc gRPC server) for the listeners, routes and clusters the gateway config makes.
 * A config swapped in by a reload is pushed to every Envoy connected, clusters first (so a route
 * never names a cluster Envoy does not have yet), then listeners, then routes. Each type's version
 * is the hash of its encoded resources: replicas on the same config serve the same versions, and
 * an Envoy that moves to another replica is sent nothing new.
 */

export const TYPE_URL = {
  cluster: 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
  listener: 'type.googleapis.com/envoy.config.listener.v3.Listener',
  route: 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration',
} as const;

/** The order a change is pushed in. */
const PUSH_ORDER: readonly string[] = [TYPE_URL.cluster, TYPE_URL.listener, TYPE_URL.route];

interface Resource {
  readonly name: string;
  readonly any: { readonly type_url: string; readonly value: Uint8Array };
}

interface TypeSnapshot {
  readonly version: string;
  readonly resources: readonly Resource[];
}

/** Every type's resources for one config. */
type Snapshot = ReadonlyMap<string, TypeSnapshot>;

interface DiscoveryRequest {
  version_info?: string;
  node?: { id?: string };
  resource_names?: string[];
  type_url?: string;
  response_nonce?: string;
  error_detail?: { code?: number; message?: string };
}

interface DiscoveryResponse {
  version_info: string;
  resources: { type_url: string; value: Uint8Array }[];
  type_url: string;
  nonce: string;
}

type AdsCall = grpc.ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>;

/** One Envoy's ADS stream: what it subscribed to and what it was last sent. */
interface Subscriber {
  readonly call: AdsCall;
  readonly node: string;
  /** By type: the resource names asked for (empty: all). */
  readonly names: Map<string, readonly string[]>;
  /** By type: the nonce and version of the last response sent. */
  readonly sent: Map<string, { nonce: string; version: string }>;
  nonces: number;
}

/** How long a push waits for every Envoy to accept it. */
const ACK_WAIT_MS = 10_000;

/** Builds one config's resources, by type. */
export function buildSnapshot(config: Config): Snapshot {
  const r = envoyResources(config);
  const of = (typeUrl: string, typeName: string, items: readonly Record<string, unknown>[]): [string, TypeSnapshot] => {
    const hash = createHash('sha256');
    const resources = items.map((item) => {
      const name = String(item['name']);
      const value = encodeMessage(typeName, item);
      hash.update(name).update('\0').update(value).update('\0');
      return { name, any: { type_url: typeUrl, value } };
    });
    return [typeUrl, { version: `sha256:${hash.digest('hex').slice(0, 16)}`, resources }];
  };
  return new Map([
    of(TYPE_URL.cluster, 'envoy.config.cluster.v3.Cluster', r.clusters),
    of(TYPE_URL.listener, 'envoy.config.listener.v3.Listener', r.listeners),
    of(TYPE_URL.route, 'envoy.config.route.v3.RouteConfiguration', r.routes),
  ]);
}

export class XdsServer {
  private snapshot: Snapshot | null = null;
  private config: Config;
  private readonly subscribers = new Set<Subscriber>();

  constructor(
    config: Config,
    private readonly log: Logger,
    private readonly metrics: Metrics,
  ) {
    this.config = config;
  }

  /** How many Envoys take their configuration from this processor now. */
  get connected(): number {
    return this.subscribers.size;
  }

  /**
   * Envoy's configuration is now this config's: what changed goes to every Envoy connected.
   * Resolves once each has accepted it (or refused it, or after ACK_WAIT_MS): a reload puts the
   * clusters and routes of a new server in Envoy before the processor routes anything there.
   */
  async setConfig(config: Config): Promise<void> {
    if (this.snapshot === null) {
      this.config = config;
      return;
    }
    // Built before anything changes: a config that cannot be turned into resources leaves the
    // ones served as they were (the caller refuses the reload).
    const snap = buildSnapshot(config);
    this.config = config;
    this.snapshot = snap;
    const waits: Promise<void>[] = [];
    for (const sub of this.subscribers) {
      for (const type of PUSH_ORDER) {
        if (!sub.names.has(type) || sub.sent.get(type)?.version === snap.get(type)!.version) continue;
        this.send(sub, type, snap);
        waits.push(this.accepted(sub, type, snap.get(type)!.version));
      }
    }
    await Promise.all(waits);
  }

  private readonly waiting = new Set<{ sub: Subscriber; type: string; version: string; done: () => void }>();

  /** Resolves when the subscriber ACKs (or NACKs) the version, or ends, or the wait is over. */
  private accepted(sub: Subscriber, type: string, version: string): Promise<void> {
    return new Promise<void>((resolve) => {
      const w = {
        sub,
        type,
        version,
        done: () => {
          clearTimeout(timer);
          this.waiting.delete(w);
          resolve();
        },
      };
      const timer = setTimeout(() => {
        this.log.warn({ type: shortType(type), version, node: sub.node }, 'xds: Envoy did not answer a configuration push in time');
        w.done();
      }, ACK_WAIT_MS);
      timer.unref();
      this.waiting.add(w);
    });
  }

  /** An answer (or the end) of a subscriber: the pushes waiting for it are over. */
  private answered(sub: Subscriber, type: string | null): void {
    for (const w of [...this.waiting]) if (w.sub === sub && (type === null || w.type === type)) w.done();
  }

  /** The gRPC service definition and handler, for the processor's gRPC server. */
  service(): { definition: grpc.ServiceDefinition; handlers: grpc.UntypedServiceImplementation } {
    // The API is loaded when the first Envoy asks, not before: without xDS it costs nothing.
    const req = (): protobuf.Type => xdsRoot().lookupType('envoy.service.discovery.v3.DiscoveryRequest');
    const res = (): protobuf.Type => xdsRoot().lookupType('envoy.service.discovery.v3.DiscoveryResponse');
    const definition: grpc.ServiceDefinition = {
      StreamAggregatedResources: {
        path: '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources',
        requestStream: true,
        responseStream: true,
        requestSerialize: (m: DiscoveryRequest) => Buffer.from(req().encode(req().fromObject(m)).finish()),
        requestDeserialize: (b: Buffer) => req().toObject(req().decode(b), { longs: String, enums: String, defaults: false }) as DiscoveryRequest,
        responseSerialize: (m: DiscoveryResponse) => Buffer.from(res().encode(res().fromObject(m)).finish()),
        responseDeserialize: (b: Buffer) => res().toObject(res().decode(b)) as DiscoveryResponse,
      },
    };
    return { definition, handlers: { StreamAggregatedResources: (call: AdsCall) => this.stream(call) } };
  }

  private current(): Snapshot {
    this.snapshot ??= buildSnapshot(this.config);
    return this.snapshot;
  }

  private stream(call: AdsCall): void {
    const sub: Subscriber = { call, node: '', names: new Map(), sent: new Map(), nonces: 0 };
    this.subscribers.add(sub);
    this.metrics.xdsStreamsSet(this.subscribers.size);
    const end = (): void => {
      this.answered(sub, null);
      if (!this.subscribers.delete(sub)) return;
      this.metrics.xdsStreamsSet(this.subscribers.size);
    };
    call.on('data', (req: DiscoveryRequest) => {
      try {
        this.request(sub, req);
      } catch (err) {
        this.log.error({ err: String(err) }, 'xds: the config could not be turned into Envoy resources');
        call.destroy(err instanceof Error ? err : new Error(String(err)));
      }
    });
    call.on('end', () => {
      end();
      call.end();
    });
    call.on('error', end);
    call.on('close', end);
  }

  /** One DiscoveryRequest: a subscription, an ACK or a NACK of what was sent. */
  private request(sub: Subscriber, req: DiscoveryRequest): void {
    const type = req.type_url ?? '';
    if (req.node?.id !== undefined && sub.node === '') (sub as { node: string }).node = req.node.id;
    const snap = this.current();
    const entry = snap.get(type);
    if (entry === undefined) {
      this.log.debug({ type }, 'xds: a type this control plane does not serve was asked for');
      return;
    }
    const last = sub.sent.get(type);
    const nonce = req.response_nonce ?? '';
    // An answer to a response older than the last one sent: the last one is on its way.
    if (nonce !== '' && last !== undefined && nonce !== last.nonce) return;
    if (last !== undefined && nonce === last.nonce) this.answered(sub, type);
    if (req.error_detail !== undefined && req.error_detail !== null) {
      this.metrics.xdsRejectedInc(shortType(type));
      this.log.error(
        { event: 'xds_rejected', type: shortType(type), version: last?.version ?? null, kept: req.version_info ?? null, node: sub.node, error: req.error_detail.message ?? '' },
        'Envoy refused the configuration sent; it keeps the one before',
      );
      return;
    }
    const names = req.resource_names ?? [];
    const sameNames = JSON.stringify(sub.names.get(type) ?? null) === JSON.stringify(names);
    sub.names.set(type, names);
    // The ACK of what is current, for the same resources: nothing to send.
    if (last !== undefined && nonce === last.nonce && req.version_info === entry.version && sameNames) return;
    this.send(sub, type, snap);
  }

  private send(sub: Subscriber, type: string, snap: Snapshot): void {
    const entry = snap.get(type)!;
    const names = sub.names.get(type) ?? [];
    // Listeners and clusters are always sent whole; routes as asked for.
    const resources = type === TYPE_URL.route && names.length > 0 ? entry.resources.filter((r) => names.includes(r.name)) : entry.resources;
    const nonce = String(++sub.nonces);
    sub.sent.set(type, { nonce, version: entry.version });
    sub.call.write({ version_info: entry.version, resources: resources.map((r) => r.any) as DiscoveryResponse['resources'], type_url: type, nonce });
    this.log.debug({ type: shortType(type), version: entry.version, resources: resources.length, node: sub.node }, 'xds: sent');
  }
}

function shortType(url: string): string {
  return url === TYPE_URL.cluster ? 'cluster' : url === TYPE_URL.listener ? 'listener' : url === TYPE_URL.route ? 'route' : 'other';
}
