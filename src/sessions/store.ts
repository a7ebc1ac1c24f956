import { randomBytes } from 'node:crypto';
import {
  DEFAULT_MAX_SESSIONS,
  DEFAULT_MAX_SESSIONS_PER_CLIENT,
  sessionLimitError,
  type SessionLimits,
} from './limits.js';

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
  /**
   * The client's `capabilities` and `clientInfo` from initialize, as JSON text (see
   * `clientMetadataText`): replayed to each upstream session the gateway opens for the client.
   * Kept as text, bounded by `gateway.max_client_metadata_bytes`: a parsed object can take many
   * times its JSON size in memory.
   */
  readonly clientMetadata: string;
  /** Identity the session is bound to (null until authentication is configured). */
  readonly identity: string | null;
  /** The caller's tenant when tenants are configured (the console counts sessions per tenant). */
  readonly tenant?: string | null;
  /** When the session was opened (ms since the epoch; absent on sessions stored before it was kept). */
  readonly createdAt?: number;
  logLevel: string | null;
  lastSeen: number;
  /** Upstream sessions by server name, created lazily. */
  readonly upstream: Map<string, UpstreamSession>;
  /**
   * Lists a server keeps for this session only, by `<server>\n<kind>` (see `ownListKey`): the
   * generation of the latest change the server announced or showed. Empty for most sessions.
   */
  readonly ownLists: Map<string, number>;
  /**
   * Resources the client subscribed to on servers of the sessionless revision, which keep no
   * subscriptions of sessions: the server's own URIs, by server. The client's stream carries their
   * updates (server-stream.ts). Empty for most sessions.
   */
  readonly subscriptions: Map<string, Set<string>>;
}

/** The key of a session's own list of one kind from one server. */
export function ownListKey(server: string, kind: string): string {
  return `${server}\n${kind}`;
}

/** Applies a subscription change to the session's own copy. */
export function changeSubscription(session: GatewaySession, server: string, uri: string, subscribed: boolean): void {
  const uris = session.subscriptions.get(server);
  if (subscribed) {
    if (uris === undefined) session.subscriptions.set(server, new Set([uri]));
    else uris.add(uri);
  } else if (uris !== undefined) {
    uris.delete(uri);
    if (uris.size === 0) session.subscriptions.delete(server);
  }
}

/** What an upstream's own id names, when the gateway binds it to the identity that created it. */
export type BindingKind = 'passthrough' | 'task';

/** What `SessionStore.create` needs to open a session. */
export interface SessionInit {
  readonly protocolVersion: string;
  readonly clientMetadata: string;
  readonly identity: string | null;
  /** The caller's tenant, when tenants are configured. */
  readonly tenant?: string | null;
  /** Whose `max_sessions_per_client` quota the session counts against (`sessionOwner`). */
  readonly owner: string;
}

/**
 * Where gateway sessions live. Async on purpose so a shared store (Redis) can stand behind the
 * same interface; the in-memory store resolves immediately.
 */
export interface SessionStore {
  /** Whether other replicas serve the same sessions (so a request may be running on another one). */
  readonly shared: boolean;
  /**
   * Opens a session. At its owner's `maxSessionsPerClient` the owner's least recently used live
   * session is ended to make room (reported to `onEvict`); at `maxSessions` live sessions overall
   * it rejects with a `GW_ERR_SESSION_LIMIT` GatewayError (`Retry-After`) and ends nothing. Idle
   * sessions in the way are ended as expired (reported to `onExpire`) and never count.
   */
  create(init: SessionInit): Promise<GatewaySession>;
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
  /**
   * Records that a server keeps a list of `kind` for this session only, or changed it: bumps the
   * generation (every replica then refetches its copy of the session's list). Resolves to it.
   */
  markOwnList(session: GatewaySession, server: string, kind: string): Promise<number>;
  /** Records (or, with false, drops) the client's subscription to a server's own resource URI. */
  setSubscribed(session: GatewaySession, server: string, uri: string, subscribed: boolean): Promise<void>;
  delete(id: string): Promise<GatewaySession | null>;
  /**
   * Binds an upstream's own id to the identity that created it through the gateway (null:
   * anonymous): a passthrough session (the upstream's session id on `/servers/<name>/mcp`) or a
   * task an upstream created for a call on `/mcp`. A binding idles out like a session does. An id
   * already bound to another identity stays theirs: resolves to false.
   */
  bind(kind: BindingKind, server: string, id: string, identity: string | null): Promise<boolean>;
  /** The identity an upstream id is bound to (null: anonymous), marking it used; undefined if unknown. */
  boundOwner(kind: BindingKind, server: string, id: string): Promise<string | null | undefined>;
  /**
   * Questions the gateway put to a session's client for a server of the sessionless revision
   * (aggregated/asks.ts): `record` (what to retry, and for whom) under `id`, for `ttlMs`; a
   * new record replaces the old one and its answers.
   */
  putAsk(id: string, record: string, ttlMs: number): Promise<void>;
  /** Files the client's answer to question `key` (the first one stands); false when `id` is unknown (or expired), or `key` was answered. */
  answerAsk(id: string, key: string, answer: string): Promise<boolean>;
  /** The record and the answers filed so far, by key; null when unknown (or expired). */
  getAsk(id: string): Promise<{ readonly record: string; readonly answers: ReadonlyMap<string, string> } | null>;
  dropAsk(id: string): Promise<void>;
  /** Sessions that live only in this process and end with it (none in a shared store). */
  localSessions(): Iterable<GatewaySession>;
  /**
   * Live sessions for the admin console, the most recently used first, at most `max`, without
   * marking them used; `total` counts every live one.
   */
  list(max: number): Promise<{ readonly total: number; readonly sessions: readonly GatewaySession[] }>;
  /** The ids of live sessions, the most recently used first, at most `max` (nothing else is read). */
  liveIds(max: number): Promise<readonly string[]>;
  close(): void;
}

/** A session id: 192 random bits, base64url (visible ASCII as the spec requires). */
export function newSessionId(): string {
  return randomBytes(24).toString('base64url');
}

/** Options of {@link MemorySessionStore}. */
export interface MemorySessionStoreOptions {
  /** A session unused this long is ended (`gateway.session_idle_timeout`). */
  readonly idleMs: number;
  /** `gateway.max_sessions`. */
  readonly maxSessions?: number;
  /** `gateway.max_sessions_per_client`. */
  readonly maxSessionsPerClient?: number;
  /** Called for every session that idles out (to end its upstream sessions). Not for `delete`. */
  readonly onExpire?: (s: GatewaySession) => void;
  /** Called for every session ended to make room for a newer one of the same client. */
  readonly onEvict?: (s: GatewaySession) => void;
  readonly now?: () => number;
}

interface Entry {
  readonly session: GatewaySession;
  readonly owner: string;
}

/**
 * In-process session store with idle expiry and the session caps.
 *
 * Both maps are kept in least-recently-used order (a use moves the session to the end), so the
 * session to evict, the next to idle out and the `Retry-After` of a refusal are found at the
 * front without a scan.
 */
export class MemorySessionStore implements SessionStore {
  readonly shared = false;
  private readonly sessions = new Map<string, Entry>();
  /** Session ids by owner, least recently used first. */
  private readonly owners = new Map<string, Set<string>>();
  /** Upstream ids bound to identities (`bind`), by `<kind>\n<server>\n<id>`. */
  private readonly bindings = new Map<string, { readonly identity: string | null; lastSeen: number }>();
  /** Questions put to clients (`putAsk`), by id. */
  private readonly asks = new Map<string, { record: string; answers: Map<string, string>; expiresAt: number }>();
  private readonly sweeper: NodeJS.Timeout;
  private readonly idleMs: number;
  private readonly limits: SessionLimits;
  private readonly onExpire: (s: GatewaySession) => void;
  private readonly onEvict: (s: GatewaySession) => void;
  private readonly now: () => number;

  constructor(opts: MemorySessionStoreOptions) {
    this.idleMs = opts.idleMs;
    this.limits = {
      maxSessions: opts.maxSessions ?? DEFAULT_MAX_SESSIONS,
      maxSessionsPerClient: opts.maxSessionsPerClient ?? DEFAULT_MAX_SESSIONS_PER_CLIENT,
    };
    this.onExpire = opts.onExpire ?? (() => {});
    this.onEvict = opts.onEvict ?? (() => {});
    this.now = opts.now ?? Date.now;
    this.sweeper = setInterval(() => this.sweep(), Math.min(this.idleMs, 60_000));
    this.sweeper.unref();
  }

  async create(init: SessionInit): Promise<GatewaySession> {
    const now = this.now();
    const { owner, ...fields } = init;
    // This client's idle sessions are ended; beyond its cap, its least recently used ones make room.
    const mine = this.owners.get(owner);
    const victims: Entry[] = [];
    if (mine !== undefined) {
      for (const id of mine) {
        const e = this.sessions.get(id)!;
        if (!this.idle(e.session, now)) break;
        this.expire(e);
      }
      const excess = mine.size - (this.limits.maxSessionsPerClient - 1);
      for (const id of mine) {
        if (victims.length >= excess) break;
        victims.push(this.sessions.get(id)!);
      }
    }
    // Overall: idle sessions never count; live ones are never ended for someone else.
    if (this.sessions.size - victims.length >= this.limits.maxSessions) {
      for (const e of this.sessions.values()) {
        if (!this.idle(e.session, now)) break;
        this.expire(e);
      }
      if (this.sessions.size - victims.length >= this.limits.maxSessions) {
        const oldest = this.sessions.values().next().value!;
        throw sessionLimitError(this.limits.maxSessions, oldest.session.lastSeen + this.idleMs - now);
      }
    }
    for (const e of victims) {
      this.remove(e);
      this.onEvict(e.session);
    }
    const s: GatewaySession = { ...fields, id: newSessionId(), createdAt: now, lastSeen: now, logLevel: null, upstream: new Map(), ownLists: new Map(), subscriptions: new Map() };
    this.sessions.set(s.id, { session: s, owner });
    const set = this.owners.get(owner) ?? new Set<string>();
    set.add(s.id);
    this.owners.set(owner, set);
    return s;
  }

  async get(id: string): Promise<GatewaySession | null> {
    const e = this.sessions.get(id);
    if (e === undefined) return null;
    const now = this.now();
    if (this.idle(e.session, now)) {
      this.expire(e);
      return null;
    }
    e.session.lastSeen = now;
    // Most recently used goes last, in both orders.
    this.sessions.delete(id);
    this.sessions.set(id, e);
    const mine = this.owners.get(e.owner)!;
    mine.delete(id);
    mine.add(id);
    return e.session;
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

  async markOwnList(session: GatewaySession, server: string, kind: string): Promise<number> {
    const key = ownListKey(server, kind);
    const generation = (session.ownLists.get(key) ?? 0) + 1;
    session.ownLists.set(key, generation);
    return generation;
  }

  async setSubscribed(session: GatewaySession, server: string, uri: string, subscribed: boolean): Promise<void> {
    changeSubscription(session, server, uri, subscribed);
  }

  async delete(id: string): Promise<GatewaySession | null> {
    const e = this.sessions.get(id);
    if (e === undefined) return null;
    this.remove(e);
    return e.session;
  }

  async bind(kind: BindingKind, server: string, id: string, identity: string | null): Promise<boolean> {
    const key = `${kind}\n${server}\n${id}`;
    const now = this.now();
    const held = this.bindings.get(key);
    if (held !== undefined && held.identity !== identity && now - held.lastSeen <= this.idleMs) return false;
    this.bindings.set(key, { identity, lastSeen: now });
    return true;
  }

  async boundOwner(kind: BindingKind, server: string, id: string): Promise<string | null | undefined> {
    const key = `${kind}\n${server}\n${id}`;
    const b = this.bindings.get(key);
    if (b === undefined) return undefined;
    const now = this.now();
    if (now - b.lastSeen > this.idleMs) {
      this.bindings.delete(key);
      return undefined;
    }
    b.lastSeen = now;
    return b.identity;
  }

  async putAsk(id: string, record: string, ttlMs: number): Promise<void> {
    this.sweepAsks();
    this.asks.set(id, { record, answers: new Map(), expiresAt: this.now() + ttlMs });
  }

  async answerAsk(id: string, key: string, answer: string): Promise<boolean> {
    const a = this.liveAsk(id);
    if (a === null || a.answers.has(key)) return false;
    a.answers.set(key, answer);
    return true;
  }

  async getAsk(id: string): Promise<{ readonly record: string; readonly answers: ReadonlyMap<string, string> } | null> {
    const a = this.liveAsk(id);
    return a === null ? null : { record: a.record, answers: new Map(a.answers) };
  }

  async dropAsk(id: string): Promise<void> {
    this.asks.delete(id);
  }

  private liveAsk(id: string): { record: string; answers: Map<string, string>; expiresAt: number } | null {
    const a = this.asks.get(id);
    if (a === undefined) return null;
    if (a.expiresAt > this.now()) return a;
    this.asks.delete(id);
    return null;
  }

  /** Drops expired asks (insertion order is expiry order: every record lives as long). */
  private sweepAsks(): void {
    const now = this.now();
    for (const [id, a] of this.asks) {
      if (a.expiresAt > now) break;
      this.asks.delete(id);
    }
  }

  localSessions(): Iterable<GatewaySession> {
    return Array.from(this.sessions.values(), (e) => e.session);
  }

  async list(max: number): Promise<{ readonly total: number; readonly sessions: readonly GatewaySession[] }> {
    const now = this.now();
    const live = Array.from(this.sessions.values(), (e) => e.session).filter((s) => !this.idle(s, now));
    return { total: live.length, sessions: live.reverse().slice(0, max) };
  }

  async liveIds(max: number): Promise<readonly string[]> {
    return (await this.list(max)).sessions.map((s) => s.id);
  }

  /** Number of live sessions (for tests and metrics). */
  size(): number {
    return this.sessions.size;
  }

  private sweep(): void {
    const now = this.now();
    for (const e of this.sessions.values()) {
      if (!this.idle(e.session, now)) break;
      this.expire(e);
    }
    for (const [key, b] of this.bindings) if (now - b.lastSeen > this.idleMs) this.bindings.delete(key);
  }

  private idle(s: GatewaySession, now: number): boolean {
    return now - s.lastSeen > this.idleMs;
  }

  private expire(e: Entry): void {
    this.remove(e);
    this.onExpire(e.session);
  }

  private remove(e: Entry): void {
    this.sessions.delete(e.session.id);
    const mine = this.owners.get(e.owner);
    if (mine === undefined) return;
    mine.delete(e.session.id);
    if (mine.size === 0) this.owners.delete(e.owner);
  }

  close(): void {
    clearInterval(this.sweeper);
  }
}
