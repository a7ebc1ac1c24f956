import { sessionSubject } from '../request/guard.js';
import { clientIp } from '../request/limit.js';
import type { Caller, RequestState } from '../request/state.js';
import { stringifyJson, type JsonObject } from '../mcp/message.js';
import { ANONYMOUS_CLIENT_INFO, inputCapabilities, type ClientEnvelope, type Envelope } from '../mcp/modern.js';
import { LATEST_PROTOCOL_VERSION } from '../mcp/protocol.js';
import { clientMetadataText, sessionOwner } from '../sessions/limits.js';
import type { GatewaySession, SessionStore } from '../sessions/store.js';

/** How many callers' bridge sessions one replica remembers (the store expires them anyway). */
const MAX_BRIDGES = 10_000;

/** Who a sessionless caller is to the gateway: its identity, or its address when anonymous. */
export function callerOwner(state: RequestState, caller: Caller): string {
  const identity = sessionSubject(caller);
  return sessionOwner(identity, identity === null ? clientIp(state) : null);
}

/**
 * What a sessionless (2026-07-28) client's requests use to reach the session-based servers
 * behind /mcp: a gateway session per caller (its identity, or its address when anonymous) on each
 * replica, kept in the session store like a client's own, so that the caps, idle expiry and the
 * ending of its upstream sessions are the same, but never shown to the client. The upstream
 * sessions it opens declare no client capabilities unless the client declares input ones (then
 * see {@link BridgeSessions.forServer}). Opened by the first
 * request that goes to such a server; until then a caller's requests use a stand-in that is never
 * stored.
 */
export class BridgeSessions {
  private readonly ids = new Map<string, string>();
  private readonly opening = new Map<string, Promise<GatewaySession>>();
  /** Stand-ins made for single requests (never stored). */
  private readonly standIns = new WeakSet<GatewaySession>();

  constructor(
    private readonly sessions: SessionStore,
    /** `gateway.max_client_metadata_bytes`. */
    private readonly maxClientMetadataBytes: number,
  ) {}

  /**
   * The caller's bridge session when this replica has one open, else a stand-in for this request
   * alone: nothing is stored until a request actually goes to a session-based server (then
   * {@link forServer} opens the bridge session). A request that goes straight to a server of the
   * sessionless revision, or is answered by the gateway, leaves no shared state behind.
   */
  async current(state: RequestState, caller: Caller, envelope: Pick<Envelope, 'clientInfo'>): Promise<GatewaySession> {
    const { identity, owner, session } = await this.known(state, caller);
    if (session !== null) return session;
    const standIn: GatewaySession = {
      id: `bridge-stand-in:${owner}`,
      protocolVersion: LATEST_PROTOCOL_VERSION,
      clientMetadata: clientMetadataText({ capabilities: {}, clientInfo: envelope.clientInfo ?? ANONYMOUS_CLIENT_INFO }, this.maxClientMetadataBytes),
      identity,
      logLevel: null,
      lastSeen: Date.now(),
      upstream: new Map(),
      ownLists: new Map(),
      subscriptions: new Map(),
    };
    this.standIns.add(standIn);
    return standIn;
  }

  /** Who the caller is to the bridge, and its bridge session on this replica (under `key`'s kind) if one is open. */
  private async known(state: RequestState, caller: Caller, asks: JsonObject | null = null): Promise<{ identity: string | null; owner: string; key: string; session: GatewaySession | null }> {
    const identity = sessionSubject(caller);
    const owner = callerOwner(state, caller);
    const key = asks === null ? owner : `${owner}\n${stringifyJson(asks)}`;
    const id = this.ids.get(key);
    if (id === undefined) return { identity, owner, key, session: null };
    const session = await this.sessions.get(id);
    if (session === null) this.ids.delete(key);
    return { identity, owner, key, session };
  }

  /**
   * The session a request to a session-based server goes through: the bridge session, opened if
   * `session` is a stand-in. A client that declares input capabilities (sampling, elicitation,
   * roots) gets one that declares them upstream, one per caller and set of them: the gateway
   * holds such a client's calls (held-calls.ts) and carries the servers' questions to it.
   */
  async forServer(state: RequestState, caller: Caller, session: GatewaySession, client: Pick<ClientEnvelope, 'clientInfo' | 'capabilities'>): Promise<GatewaySession> {
    const asks = inputCapabilities(client.capabilities);
    return asks === null && !this.standIns.has(session) ? session : this.sessionFor(state, caller, client, asks);
  }

  /** The bridge session for this caller (declaring `asks` upstream), opened on first use. */
  private async sessionFor(state: RequestState, caller: Caller, envelope: Pick<Envelope, 'clientInfo'>, asks: JsonObject | null): Promise<GatewaySession> {
    const { identity, owner, key, session } = await this.known(state, caller, asks);
    if (session !== null) return session;
    let p = this.opening.get(key);
    if (p === undefined) {
      const clientInfo = envelope.clientInfo ?? ANONYMOUS_CLIENT_INFO;
      p = this.sessions
        .create({
          protocolVersion: LATEST_PROTOCOL_VERSION,
          clientMetadata: clientMetadataText({ capabilities: asks ?? {}, clientInfo }, this.maxClientMetadataBytes),
          identity,
          tenant: caller.tenant.implicit ? null : caller.tenant.name,
          owner,
        })
        .then((opened) => {
          if (this.ids.size >= MAX_BRIDGES) this.ids.delete(this.ids.keys().next().value!);
          this.ids.set(key, opened.id);
          return opened;
        })
        .finally(() => this.opening.delete(key));
      this.opening.set(key, p);
    }
    return p;
  }
}
