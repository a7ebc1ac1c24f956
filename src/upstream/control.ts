import type { Logger } from 'pino';
import type { RuntimeConfig, RuntimeServer } from '../config/runtime.js';
import { isObject, type JsonObject } from '../mcp/message.js';
import { GATEWAY_INFO, LATEST_PROTOCOL_VERSION } from '../mcp/protocol.js';
import { META, MODERN_PROTOCOL_VERSIONS, isModernVersion } from '../mcp/modern.js';
import { UpstreamBadReply, UpstreamRpcError, UpstreamSessionGone, type UpstreamClient, type UpstreamReply } from './client.js';
import { NO_CAPABILITIES, type ClientProfile } from './profiles.js';

/** What the gateway presents when it opens a session with an upstream. */
export interface Handshake {
  readonly protocolVersion: string;
  readonly capabilities: JsonObject;
  readonly clientInfo: JsonObject;
  /** Log level to set right after opening (a client's `logging/setLevel`); null leaves the server's own. */
  readonly logLevel?: string | null;
}

/** A session the gateway opened with an upstream. */
export interface OpenedSession {
  /** null: the upstream runs stateless and issued no session id. */
  readonly sessionId: string | null;
  readonly protocolVersion: string;
  readonly capabilities: JsonObject;
  readonly serverInfo: JsonObject;
  /** What the server tells clients to read (its `instructions`), or null. */
  readonly instructions: string | null;
}

/**
 * The MCP initialize handshake with one upstream: `initialize`, then `notifications/initialized`,
 * then the log level if one is asked for. Every session the gateway opens (its own, and each
 * client's per upstream) is opened here.
 */
export async function openSession(client: UpstreamClient, server: RuntimeServer, h: Handshake, log: Logger): Promise<OpenedSession> {
  if (SPEAKS_MODERN_ONLY.has(server)) return discover(client, server, h);
  let opened: { result: JsonObject; reply: UpstreamReply };
  try {
    opened = await client.call(server, 'initialize', {
      protocolVersion: h.protocolVersion,
      capabilities: h.capabilities,
      clientInfo: h.clientInfo,
    });
  } catch (err) {
    // A server of the sessionless revisions only refuses the handshake with -32022.
    if (!(err instanceof UpstreamRpcError) || err.rpcCode !== UNSUPPORTED_VERSION) throw err;
    const session = await discover(client, server, h);
    SPEAKS_MODERN_ONLY.add(server);
    log.info({ server: server.name, protocol_version: session.protocolVersion }, 'upstream speaks only sessionless MCP; the gateway speaks it there');
    return session;
  }
  const { result, reply } = opened;
  const protocolVersion = typeof result['protocolVersion'] === 'string' ? result['protocolVersion'] : h.protocolVersion;
  const opts = { sessionId: reply.sessionId, protocolVersion };
  await client.notify(server, 'notifications/initialized', undefined, opts);
  if (h.logLevel !== undefined && h.logLevel !== null) {
    await client
      .call(server, 'logging/setLevel', { level: h.logLevel }, opts)
      .catch((err: unknown) => log.debug({ server: server.name, err }, 'logging/setLevel not accepted'));
  }
  return {
    sessionId: reply.sessionId,
    protocolVersion,
    capabilities: isObject(result['capabilities']) ? result['capabilities'] : {},
    serverInfo: isObject(result['serverInfo']) ? result['serverInfo'] : {},
    instructions: typeof result['instructions'] === 'string' && result['instructions'] !== '' ? result['instructions'] : null,
  };
}

/** The error a server gives a request in a revision it does not speak (2026-07-28). */
const UNSUPPORTED_VERSION = -32022;

/**
 * Servers found to speak only a sessionless revision (they refused `initialize` with -32022):
 * the gateway skips the handshake with them from then on. Per configured server object, so a
 * reload starts afresh.
 */
const SPEAKS_MODERN_ONLY = new WeakSet<RuntimeServer>();

/**
 * `server/discover` with a sessionless server: what `initialize` tells of a session-based one. The
 * "session" has no id; each request carries the revision and the client (client.ts).
 */
async function discover(client: UpstreamClient, server: RuntimeServer, h: Handshake): Promise<OpenedSession> {
  const version = MODERN_PROTOCOL_VERSIONS[0]!;
  let result: JsonObject;
  try {
    ({ result } = await client.call(server, 'server/discover', undefined, { protocolVersion: version, client: { capabilities: h.capabilities, clientInfo: h.clientInfo } }));
  } catch (err) {
    // Not (or no longer) a sessionless server: the next session starts with the handshake again.
    SPEAKS_MODERN_ONLY.delete(server);
    throw err;
  }
  const meta = isObject(result['_meta']) ? result['_meta'] : {};
  const info = meta[META.serverInfo];
  return {
    sessionId: null,
    protocolVersion: version,
    capabilities: isObject(result['capabilities']) ? result['capabilities'] : {},
    serverInfo: isObject(info) ? info : {},
    instructions: typeof result['instructions'] === 'string' && result['instructions'] !== '' ? result['instructions'] : null,
  };
}

/** Pause after a failure before the gateway tries a server again on its own behalf. */
const RETRY_DOWN_AFTER_MS = 2000;

/** The gateway's session with one upstream for one client profile. */
interface ProfileSession {
  readonly profile: ClientProfile;
  session: OpenedSession | null;
  opening: Promise<OpenedSession> | null;
}

interface ControlState {
  /** By profile key; the default profile (no client capabilities) carries health and catalog-watch. */
  readonly sessions: Map<string, ProfileSession>;
  downSince: number | null;
  lastError: string | null;
}

/**
 * The gateway's own sessions with each upstream (never a client's): they carry the catalog's
 * list calls and the health monitor's pings. One per client profile (profiles.ts) a catalog is
 * kept for, each declaring that profile's capabilities; the default one declares none. One owner
 * opens each, renews it once when the upstream forgets it, and keeps a server that keeps failing
 * "down" (all its sessions) for a short pause so one bad server never stalls the rest.
 */
export class ControlSessions {
  private readonly state = new Map<string, ControlState>();
  private quiet = false;
  /** Whether each server answers the sessionless revision (asked once, when a client of it first needs to know). */
  private readonly modern = new Map<string, Promise<boolean>>();

  constructor(
    private readonly rc: RuntimeConfig,
    private readonly client: UpstreamClient,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    for (const s of rc.serverList) this.state.set(s.name, { sessions: new Map(), downSince: null, lastError: null });
  }

  /** The open session for a profile, opened on demand; null while the server is in its pause after a failure. */
  async session(server: RuntimeServer, profile: ClientProfile = NO_CAPABILITIES): Promise<OpenedSession | null> {
    const st = this.stateOf(server);
    const slot = slotOf(st, profile);
    if (slot.session !== null) return slot.session;
    if (st.downSince !== null && this.now() - st.downSince < RETRY_DOWN_AFTER_MS) return null;
    try {
      return await this.openShared(server, slot);
    } catch (err) {
      // A server that refuses one client profile is not down: that profile's catalog falls back.
      if (profile === NO_CAPABILITIES) this.markDown(server, err);
      else this.log.debug({ server: server.name, profile: profile.key, err }, 'session for a client profile not opened');
      return null;
    }
  }

  /**
   * Calls one method over the gateway's session. An upstream that forgot the session gets one
   * new session and the call once more; forgetting that one too marks the server down.
   * Resolves to null while the server is down.
   */
  async call(server: RuntimeServer, method: string, params: JsonObject | undefined, profile: ClientProfile = NO_CAPABILITIES): Promise<JsonObject | null> {
    const st = this.stateOf(server);
    const slot = slotOf(st, profile);
    for (let attempt = 0; ; attempt++) {
      const session = await this.session(server, profile);
      if (session === null) return null;
      try {
        const { result } = await this.client.call(server, method, params, { sessionId: session.sessionId, protocolVersion: session.protocolVersion });
        this.markUp(server, st);
        return result;
      } catch (err) {
        if (!(err instanceof UpstreamSessionGone)) throw err;
        if (slot.session === session) slot.session = null;
        if (attempt > 0) {
          const gone = new UpstreamSessionGone(server.name, 'keeps forgetting the gateway session');
          this.markDown(server, gone);
          throw gone;
        }
      }
    }
  }

  /**
   * MCP ping over the gateway's session; resolves to the latency in ms. A health check always
   * tries (no pause) and its failure is the health monitor's verdict, not a pause of its own.
   */
  async ping(server: RuntimeServer, timeoutMs: number): Promise<number> {
    const slot = slotOf(this.stateOf(server), NO_CAPABILITIES);
    const started = performance.now();
    for (let attempt = 0; attempt < 2; attempt++) {
      const session = slot.session ?? (await this.openShared(server, slot));
      try {
        // A sessionless server has no ping: discovery is its cheapest request.
        const method = isModernVersion(session.protocolVersion) ? 'server/discover' : 'ping';
        await this.client.call(server, method, undefined, { sessionId: session.sessionId, protocolVersion: session.protocolVersion, timeoutMs });
        return performance.now() - started;
      } catch (err) {
        if (!(err instanceof UpstreamSessionGone)) throw err;
        if (slot.session === session) slot.session = null;
      }
    }
    throw new UpstreamSessionGone(server.name, 'keeps forgetting the gateway session');
  }

  /**
   * Whether a server speaks the sessionless revision (2026-07-28), so that a client of that
   * revision is served by it directly rather than through a bridge session: a server that speaks
   * only that one, or one that answers `server/discover` besides its sessions. Asked once per
   * server; an unreachable server is asked again next time.
   */
  speaksModern(server: RuntimeServer): Promise<boolean> {
    if (SPEAKS_MODERN_ONLY.has(server)) return Promise.resolve(true);
    let known = this.modern.get(server.name);
    if (known === undefined) {
      known = this.client
        .call(server, 'server/discover', undefined, { protocolVersion: MODERN_PROTOCOL_VERSIONS[0]! })
        .then(
          () => true,
          (err: unknown) => {
            // Only an answer settles it; a server that could not be asked is asked again.
            if (!(err instanceof UpstreamRpcError) && !(err instanceof UpstreamBadReply)) this.modern.delete(server.name);
            return false;
          },
        );
      this.modern.set(server.name, known);
    }
    return known;
  }

  /** Capabilities the upstream declared in the gateway's session, or null when unknown or down. */
  async capabilities(server: RuntimeServer): Promise<JsonObject | null> {
    return (await this.session(server))?.capabilities ?? null;
  }

  /** The upstream's `instructions` in the gateway's session, or null when it gave none or is down. */
  async instructions(server: RuntimeServer): Promise<string | null> {
    return (await this.session(server))?.instructions ?? null;
  }

  /** The default profile's open session, without opening one (null when none is open now). */
  current(server: RuntimeServer): OpenedSession | null {
    return this.stateOf(server).sessions.get(NO_CAPABILITIES.key)?.session ?? null;
  }

  /** The server no longer knows this session (seen outside a call): the next use opens a new one. */
  forget(server: RuntimeServer, session: OpenedSession): void {
    for (const slot of this.stateOf(server).sessions.values()) if (slot.session === session) slot.session = null;
  }

  /** A profile no catalog is kept for any more: its sessions end (best effort). */
  dropProfile(profile: ClientProfile): void {
    if (profile.key === NO_CAPABILITIES.key) return;
    for (const server of this.rc.serverList) {
      const slot = this.stateOf(server).sessions.get(profile.key);
      if (slot === undefined) continue;
      this.stateOf(server).sessions.delete(profile.key);
      const s = slot.session;
      if (s !== null && s.sessionId !== null) void this.client.terminate(server, s.sessionId, s.protocolVersion).catch(() => undefined);
    }
  }

  /** A call found the server unreachable: forget its session and pause before trying again. */
  markDown(server: RuntimeServer, err: unknown): void {
    const st = this.stateOf(server);
    const message = err instanceof Error ? err.message : String(err);
    if (st.downSince === null && !this.quiet) this.log.warn({ server: server.name, err: message }, 'upstream left out of the catalog');
    this.log.debug({ server: server.name, err }, 'upstream call failed');
    st.downSince = this.now();
    st.lastError = message;
    for (const slot of st.sessions.values()) slot.session = null;
  }

  /**
   * Runs a warm-up: failures in it are not logged as outages and leave no pause behind (at
   * start-up Envoy may not be listening yet; the first client request should try again).
   */
  async warmUp(work: () => Promise<void>): Promise<void> {
    this.quiet = true;
    try {
      await work();
    } finally {
      this.quiet = false;
    }
    for (const st of this.state.values()) st.downSince = null;
  }

  /** Ends every session the gateway holds (shutdown), bounded by the upstream timeout. */
  async close(): Promise<void> {
    await Promise.all(
      this.rc.serverList.flatMap((server) =>
        [...this.stateOf(server).sessions.values()].map(async (slot) => {
          const session = slot.session;
          slot.session = null;
          if (session === null || session.sessionId === null) return;
          await this.client.terminate(server, session.sessionId, session.protocolVersion).catch(() => undefined);
        }),
      ),
    );
  }

  /** Opens the session; everyone who needs it meanwhile waits for the same handshake. */
  private openShared(server: RuntimeServer, slot: ProfileSession): Promise<OpenedSession> {
    const handshake = { protocolVersion: LATEST_PROTOCOL_VERSION, capabilities: slot.profile.capabilities, clientInfo: GATEWAY_INFO };
    slot.opening ??= openSession(this.client, server, handshake, this.log)
      .then((session) => {
        slot.session = session;
        return session;
      })
      .finally(() => {
        slot.opening = null;
      });
    return slot.opening;
  }

  private markUp(server: RuntimeServer, st: ControlState): void {
    if (st.downSince === null) return;
    this.log.info({ server: server.name }, 'upstream is reachable again');
    st.downSince = null;
    st.lastError = null;
  }

  private stateOf(server: RuntimeServer): ControlState {
    const st = this.state.get(server.name);
    if (st === undefined) throw new Error(`unknown server ${server.name}`);
    return st;
  }
}

function slotOf(st: ControlState, profile: ClientProfile): ProfileSession {
  let slot = st.sessions.get(profile.key);
  if (slot === undefined) {
    slot = { profile, session: null, opening: null };
    st.sessions.set(profile.key, slot);
  }
  return slot;
}
