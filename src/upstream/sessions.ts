import type { Logger } from 'pino';
import type { RuntimeConfig, RuntimeServer } from '../config/runtime.js';
import type { JsonObject } from '../mcp/message.js';
import { parseClientMetadata } from '../sessions/limits.js';
import type { GatewaySession, SessionStore, UpstreamSession } from '../sessions/store.js';
import { UpstreamSessionGone, type UpstreamClient } from './client.js';
import { openSession } from './control.js';

/**
 * Each client session's upstream sessions: created per (gateway session, server) on first use,
 * renewed when the upstream forgets one, ended with the client's session. Concurrent first uses
 * share one handshake.
 */
export class UpstreamSessions {
  private readonly pending = new Map<string, Promise<UpstreamSession>>();
  /** Told of every upstream session this replica creates (a client's open stream takes it in). */
  onCreated: (sessionId: string, server: string) => void = () => undefined;

  constructor(
    private readonly upstream: UpstreamClient,
    private readonly sessions: SessionStore,
    private readonly log: Logger,
  ) {}

  /** Whether this client session already has a session with the server (no set-up needed). */
  has(session: GatewaySession, server: RuntimeServer): boolean {
    return session.upstream.has(server.name);
  }

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
      p = this.open(session, server).finally(() => this.pending.delete(key));
      this.pending.set(key, p);
    }
    return p;
  }

  private async open(session: GatewaySession, server: RuntimeServer): Promise<UpstreamSession> {
    // Advertise upstream only what the downstream client can do, so server→client requests
    // are only sent when the client can answer them.
    const { capabilities, clientInfo } = parseClientMetadata(session.clientMetadata);
    const opened = await openSession(
      this.upstream,
      server,
      { protocolVersion: session.protocolVersion, capabilities, clientInfo, logLevel: session.logLevel },
      this.log,
    );
    const up: UpstreamSession = { sessionId: opened.sessionId, protocolVersion: opened.protocolVersion };
    // Another replica may have set one up for this session meanwhile: first writer wins, and
    // the loser's upstream session is ended rather than leaked.
    const winner = await this.sessions.claimUpstream(session, server.name, up);
    if (winner.sessionId !== up.sessionId && up.sessionId !== null) {
      void this.upstream.terminate(server, up.sessionId, up.protocolVersion).catch(() => undefined);
    }
    this.log.debug({ server: server.name }, 'upstream session created');
    this.onCreated(session.id, server.name);
    return winner;
  }

  /** Sends a notification to every upstream session this client has; failures are logged only. */
  async broadcast(rc: RuntimeConfig, session: GatewaySession, method: string, params: JsonObject | undefined): Promise<void> {
    await this.eachUpstream(rc, session, method, (server, up) =>
      this.upstream.notify(server, method, params, { sessionId: up.sessionId, protocolVersion: up.protocolVersion }),
    );
  }

  /** Calls one method in every upstream session this client has; failures are logged only. */
  async callAll(rc: RuntimeConfig, session: GatewaySession, method: string, params: JsonObject | undefined): Promise<void> {
    await this.eachUpstream(rc, session, method, async (server, up) => {
      await this.upstream.call(server, method, params, { sessionId: up.sessionId, protocolVersion: up.protocolVersion });
    });
  }

  /** Ends all upstream sessions of a client session (best effort, bounded by the upstream timeout). */
  async terminateAll(rc: RuntimeConfig, session: GatewaySession): Promise<void> {
    await this.eachUpstream(rc, session, 'DELETE', async (server, up) => {
      if (up.sessionId !== null) await this.upstream.terminate(server, up.sessionId, up.protocolVersion);
    });
  }

  private async eachUpstream(
    rc: RuntimeConfig,
    session: GatewaySession,
    what: string,
    send: (server: RuntimeServer, up: UpstreamSession) => Promise<void>,
  ): Promise<void> {
    await Promise.all(
      [...session.upstream.entries()].map(async ([name, up]) => {
        const server = rc.servers.get(name);
        if (server === undefined) return;
        try {
          await send(server, up);
        } catch (err) {
          if (!(err instanceof UpstreamSessionGone)) this.log.debug({ server: name, err }, `${what} not delivered`);
        }
      }),
    );
  }
}
