import { randomBytes } from 'node:crypto';
import type { JsonObject } from '../mcp/message.js';

/** One upstream session that belongs to a gateway session. */
export interface UpstreamSession {
  /** null: the upstream runs stateless and issued no session id. */
  readonly sessionId: string | null;
  readonly protocolVersion: string;
}

/** What the gateway remembers about one client session on the aggregated endpoint. */
export interface GatewaySession {
  readonly id: string;
  readonly protocolVersion: string;
  readonly clientCapabilities: JsonObject;
  readonly clientInfo: JsonObject;
  /** Identity the session is bound to (null until authentication is configured). */
  readonly identity: string | null;
  logLevel: string | null;
  lastSeen: number;
  /** Upstream sessions by server name, created lazily. */
  readonly upstream: Map<string, UpstreamSession>;
}

/**
 * Where gateway sessions live. Async on purpose so a shared store (Redis) can stand behind the
 * same interface; the in-memory store resolves immediately.
 */
export interface SessionStore {
  create(init: Omit<GatewaySession, 'id' | 'lastSeen' | 'upstream' | 'logLevel'>): Promise<GatewaySession>;
  /** Returns the session and marks it used, or null if unknown or expired. */
  get(id: string): Promise<GatewaySession | null>;
  /**
   * Sets (or, with null, drops) the upstream session for a server. Dropping is conditional in a
   * shared store: it only removes the mapping the caller's snapshot holds.
   */
  setUpstream(session: GatewaySession, server: string, upstream: UpstreamSession | null): Promise<void>;
  /**
   * Records a newly created upstream session unless one is already there (another replica may
   * have set one up concurrently); returns the one that won.
   */
  claimUpstream(session: GatewaySession, server: string, upstream: UpstreamSession): Promise<UpstreamSession>;
  setLogLevel(session: GatewaySession, level: string): Promise<void>;
  delete(id: string): Promise<GatewaySession | null>;
  /**
   * Binds a passthrough session (the upstream's own id on `/servers/<name>/mcp`) to the identity
   * that created it (null: anonymous), as gateway sessions are bound; it idles out like they do.
   */
  bindPassthrough(server: string, sessionId: string, identity: string | null): Promise<void>;
  /** The identity a passthrough session is bound to (null: anonymous), marking it used; undefined if unknown. */
  passthroughOwner(server: string, sessionId: string): Promise<string | null | undefined>;
  /** Sessions that live only in this process and end with it (none in a shared store). */
  localSessions(): Iterable<GatewaySession>;
  close(): void;
}

/** A session id: 192 random bits, base64url (visible ASCII as the spec requires). */
export function newSessionId(): string {
  return randomBytes(24).toString('base64url');
}

/** In-process session store with idle expiry. */
export class MemorySessionStore implements SessionStore {
  private readonly sessions = new Map<string, GatewaySession>();
  private readonly passthrough = new Map<string, { readonly identity: string | null; lastSeen: number }>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(
    private readonly idleMs: number,
    private readonly onExpire: (s: GatewaySession) => void = () => {},
    private readonly now: () => number = Date.now,
  ) {
    this.sweeper = setInterval(() => this.sweep(), Math.min(idleMs, 60_000));
    this.sweeper.unref();
  }

  async create(init: Omit<GatewaySession, 'id' | 'lastSeen' | 'upstream' | 'logLevel'>): Promise<GatewaySession> {
    const s: GatewaySession = { ...init, id: newSessionId(), lastSeen: this.now(), logLevel: null, upstream: new Map() };
    this.sessions.set(s.id, s);
    return s;
  }

  async get(id: string): Promise<GatewaySession | null> {
    const s = this.sessions.get(id);
    if (s === undefined) return null;
    const now = this.now();
    if (now - s.lastSeen > this.idleMs) {
      this.sessions.delete(id);
      this.onExpire(s);
      return null;
    }
    s.lastSeen = now;
    return s;
  }

  async setUpstream(session: GatewaySession, server: string, upstream: UpstreamSession | null): Promise<void> {
    if (upstream === null) session.upstream.delete(server);
    else session.upstream.set(server, upstream);
  }

  async claimUpstream(session: GatewaySession, server: string, upstream: UpstreamSession): Promise<UpstreamSession> {
    const existing = session.upstream.get(server);
    if (existing !== undefined) return existing;
    session.upstream.set(server, upstream);
    return upstream;
  }

  async setLogLevel(session: GatewaySession, level: string): Promise<void> {
    session.logLevel = level;
  }

  async delete(id: string): Promise<GatewaySession | null> {
    const s = this.sessions.get(id) ?? null;
    this.sessions.delete(id);
    return s;
  }

  async bindPassthrough(server: string, sessionId: string, identity: string | null): Promise<void> {
    this.passthrough.set(`${server}\n${sessionId}`, { identity, lastSeen: this.now() });
  }

  async passthroughOwner(server: string, sessionId: string): Promise<string | null | undefined> {
    const key = `${server}\n${sessionId}`;
    const b = this.passthrough.get(key);
    if (b === undefined) return undefined;
    const now = this.now();
    if (now - b.lastSeen > this.idleMs) {
      this.passthrough.delete(key);
      return undefined;
    }
    b.lastSeen = now;
    return b.identity;
  }

  localSessions(): Iterable<GatewaySession> {
    return this.sessions.values();
  }

  /** Number of live sessions (for tests and metrics). */
  size(): number {
    return this.sessions.size;
  }

  private sweep(): void {
    const now = this.now();
    for (const s of this.sessions.values()) {
      if (now - s.lastSeen > this.idleMs) {
        this.sessions.delete(s.id);
        this.onExpire(s);
      }
    }
    for (const [key, b] of this.passthrough) if (now - b.lastSeen > this.idleMs) this.passthrough.delete(key);
  }

  close(): void {
    clearInterval(this.sweeper);
  }
}
