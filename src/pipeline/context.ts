import type { Logger } from 'pino';
import type { Authenticator } from '../auth/identity.js';
import type { UpstreamCredentials } from '../auth/upstream-credentials.js';
import type { AccessControl } from '../policy/access.js';
import type { TenantDirectory } from '../tenancy/tenants.js';
import type { Catalog } from '../aggregation/catalog.js';
import type { RuntimeConfig, RuntimeServer } from '../config/runtime.js';
import type { JsonObject } from '../jsonrpc/message.js';
import type { Metrics } from '../observability/metrics.js';
import type { OperationObserver } from '../observability/operations.js';
import type { Limiter } from '../ratelimit/limiter.js';
import type { GatewaySession, SessionStore, UpstreamSession } from '../sessions/store.js';
import { UpstreamSessionGone, type UpstreamClient } from '../upstream/client.js';

/** Everything the per-request handlers share; built once per loaded config. */
export interface GatewayContext {
  readonly rc: RuntimeConfig;
  readonly sessions: SessionStore;
  readonly catalog: Catalog;
  readonly upstream: UpstreamClient;
  readonly upstreamSessions: UpstreamSessions;
  /** In-flight client requests on the aggregated endpoint: `<session>\n<id>` → server (for cancellation). */
  readonly inflight: Map<string, string>;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly observer: OperationObserver;
  readonly limiter: Limiter;
  readonly guard: Guard;
  /** Debug option: tools/call arguments go into operation log lines. */
  readonly logArguments: boolean;
}

/** Identity, tenancy and access policy, compiled once per config. */
export interface Guard {
  readonly auth: Authenticator;
  readonly tenants: TenantDirectory;
  readonly access: AccessControl;
  readonly credentials: UpstreamCredentials;
  /** Whether per-name rules (policies, blocked_tools) exist, so lists need filtering per caller. */
  readonly filtersNames: boolean;
  /** Whether access decisions are written as audit lines (any identity or policy feature configured). */
  readonly auditing: boolean;
}

/**
 * Creates, per (gateway session, server), the upstream session that carries that client's calls,
 * on first use. Concurrent first uses share one initialize.
 */
export class UpstreamSessions {
  private readonly pending = new Map<string, Promise<UpstreamSession>>();

  constructor(
    private readonly upstream: UpstreamClient,
    private readonly sessions: SessionStore,
    private readonly log: Logger,
  ) {}

  /** The upstream session for this client session and server, created if needed. */
  async get(session: GatewaySession, server: RuntimeServer): Promise<UpstreamSession> {
    const existing = session.upstream.get(server.name);
    if (existing !== undefined) return existing;
    return this.create(session, server);
  }

  /** Forgets a session the upstream lost and creates a new one. */
  async renew(session: GatewaySession, server: RuntimeServer, stale: UpstreamSession): Promise<UpstreamSession> {
    if (session.upstream.get(server.name) === stale) await this.sessions.setUpstream(session, server.name, null);
    return this.get(session, server);
  }

  private create(session: GatewaySession, server: RuntimeServer): Promise<UpstreamSession> {
    const key = `${session.id}\n${server.name}`;
    let p = this.pending.get(key);
    if (p === undefined) {
      p = this.initialize(session, server).finally(() => this.pending.delete(key));
      this.pending.set(key, p);
    }
    return p;
  }

  private async initialize(session: GatewaySession, server: RuntimeServer): Promise<UpstreamSession> {
    // Advertise upstream only what the downstream client can do, so server→client requests
    // are only sent when the client can answer them.
    const { result, reply } = await this.upstream.call(server, 'initialize', {
      protocolVersion: session.protocolVersion,
      capabilities: session.clientCapabilities,
      clientInfo: session.clientInfo,
    });
    const protocolVersion = typeof result['protocolVersion'] === 'string' ? result['protocolVersion'] : session.protocolVersion;
    const up: UpstreamSession = { sessionId: reply.sessionId, protocolVersion };
    await this.upstream.notify(server, 'notifications/initialized', undefined, {
      sessionId: up.sessionId,
      protocolVersion,
    });
    if (session.logLevel !== null) {
      await this.upstream
        .call(server, 'logging/setLevel', { level: session.logLevel }, { sessionId: up.sessionId, protocolVersion })
        .catch((err: unknown) => this.log.debug({ server: server.name, err }, 'logging/setLevel not accepted'));
    }
    // Another replica may have set one up for this session meanwhile: first writer wins, and
    // the loser's upstream session is ended rather than leaked.
    const winner = await this.sessions.claimUpstream(session, server.name, up);
    if (winner.sessionId !== up.sessionId && up.sessionId !== null) {
      void this.upstream.terminate(server, up.sessionId, up.protocolVersion).catch(() => undefined);
    }
    this.log.debug({ server: server.name }, 'upstream session created');
    return winner;
  }

  /** Sends a notification to every upstream session this client has; failures are logged only. */
  async broadcast(rc: RuntimeConfig, session: GatewaySession, method: string, params: JsonObject | undefined): Promise<void> {
    await Promise.all(
      [...session.upstream.entries()].map(async ([name, up]) => {
        const server = rc.servers.get(name);
        if (server === undefined) return;
        try {
          await this.upstream.notify(server, method, params, { sessionId: up.sessionId, protocolVersion: up.protocolVersion });
        } catch (err) {
          if (!(err instanceof UpstreamSessionGone)) this.log.debug({ server: name, err }, `${method} not delivered`);
        }
      }),
    );
  }

  /** Ends all upstream sessions of a client session (best effort, bounded by the upstream timeout). */
  async terminateAll(rc: RuntimeConfig, session: GatewaySession): Promise<void> {
    await Promise.all(
      [...session.upstream.entries()].map(async ([name, up]) => {
        const server = rc.servers.get(name);
        if (server === undefined || up.sessionId === null) return;
        await this.upstream.terminate(server, up.sessionId, up.protocolVersion).catch((err: unknown) => {
          this.log.debug({ server: name, err }, 'upstream session DELETE failed');
        });
      }),
    );
  }
}
