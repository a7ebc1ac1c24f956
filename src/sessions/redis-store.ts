import type { RedisClient } from '../state/redis.js';
import { StateUnavailableError } from '../state/errors.js';
import { errorSummary, OutageTracker, SILENT_STATE_LOGGER, type StateLogger } from '../state/outage.js';
import { keySlot } from '../state/slot.js';
import {
  decodeSession,
  decodeUpstream,
  encodeMeta,
  encodeUpstream,
  LOG_LEVEL_FIELD,
  ownListField,
  subscriptionField,
  UPSTREAM_FIELD_PREFIX,
} from './serialize.js';
import {
  ADMIT,
  CLAIM_FIELD,
  CLEAR_FIELD,
  DELETE,
  GET,
  INCREMENT_FIELD,
  newOwnedSessionId,
  OWNER_DIGEST_LENGTH,
  ownerDigest,
  SET_FIELD,
  SWEEP,
  WRITE,
} from './redis-layout.js';
import { RedisRecords } from './redis-records.js';
import { DEFAULT_MAX_SESSIONS, DEFAULT_MAX_SESSIONS_PER_CLIENT, sessionLimitError, type SessionLimits } from './limits.js';
import { changeSubscription, ownListKey, type BindingKind, type GatewaySession, type SessionInit, type SessionStore, type UpstreamSession } from './store.js';

/** A Lua array reply of ids. */
function ids(v: unknown): string[] {
  return Array.isArray(v) ? v.map(String) : [];
}

/** Session ids the gateway issues are 32 characters; anything much longer is not worth a round trip. */
const MAX_ID_LENGTH = 256;
const SWEEP_BATCH = 100;

/** Options of {@link RedisSessionStore}. */
export interface RedisSessionStoreOptions {
  /** `redis.key_prefix`. */
  readonly keyPrefix: string;
  /** A session unused this long is ended (`gateway.session_idle_timeout`). */
  readonly idleMs: number;
  /**
   * Called once, on one replica, for every session that idles out (to end its upstream sessions).
   * Not called for sessions removed by `delete`.
   */
  readonly onExpire?: (s: GatewaySession) => void;
  /** Called once, on the replica that admitted the newer session, for every session ended to make room for it. */
  readonly onEvict?: (s: GatewaySession) => void;
  /** `gateway.max_sessions`: live sessions across all replicas. */
  readonly maxSessions?: number;
  /** `gateway.max_sessions_per_client`: live sessions of one owner across all replicas. */
  readonly maxSessionsPerClient?: number;
  /** Outage start and end are logged here, once each. */
  readonly log?: StateLogger;
  /** Redis's address for log lines (no credentials). */
  readonly target?: string;
  /** `'redis'` (default): Redis's TIME, one clock for all replicas; or this process's clock (tests). */
  readonly clock?: 'redis' | (() => number);
  /** How often this replica looks for idle sessions; default min(idleMs, 60 s). 0 disables. */
  readonly sweepIntervalMs?: number;
  /** While Redis is down, at most one call per interval tries it; the rest fail at once. */
  readonly probeIntervalMs?: number;
}

/**
 * Gateway sessions in Redis, so any processor replica can serve any request of any session and a
 * replica restart loses none.
 *
 * Every method makes one atomic script call (`create` two: the new hash, then the admission
 * decision; plus one per session it ends), each bounded by the client's command timeout. On Redis
 * failure methods reject with {@link StateUnavailableError} (never hang); the outage is logged
 * once when it starts and once when it ends.
 *
 * There is deliberately no local cache: every `get` needs Redis anyway (to mark the session used
 * and to learn that another replica deleted it), and the same round trip returns the current
 * upstream mappings, which another replica may have replaced since (upstream session renewed
 * after a 404). A cached mapping would send requests to an upstream session that no longer
 * exists, for a saving of a few hundred bytes of JSON parsing.
 *
 * The returned `GatewaySession` is a snapshot: write through `setUpstream` / `setLogLevel`
 * (which also update the object), never by assigning its fields.
 */
export class RedisSessionStore implements SessionStore {
  readonly shared = true;
  private readonly tracker: OutageTracker;
  private readonly sweeper: NodeJS.Timeout | null;
  private readonly index: string;
  /** The index's hash slot (Redis Cluster). */
  private readonly indexSlot: number;
  /** Start of every key in the index's hash slot. */
  private readonly tagged: string;
  /** Owner sets are this plus the owner digest (in the index's hash slot). */
  private readonly ownerKeyPrefix: string;
  private readonly backstopTtlMs: number;
  private readonly limits: SessionLimits;
  /** Bindings and asks: keys of their own beside the sessions, under the same outage tracking. */
  private readonly records: RedisRecords;

  constructor(
    private readonly redis: RedisClient,
    private readonly opts: RedisSessionStoreOptions,
  ) {
    this.tracker = new OutageTracker(
      'sessions',
      'requests that need a session get 503 (GW_ERR_STATE_UNAVAILABLE)',
      opts.log ?? SILENT_STATE_LOGGER,
      opts.target ?? 'redis',
      opts.probeIntervalMs,
    );
    this.index = `${opts.keyPrefix}sessions`;
    this.tagged = `${opts.keyPrefix}{${this.index}}:`;
    this.indexSlot = keySlot(this.index);
    this.ownerKeyPrefix = `${this.tagged}owner:`;
    this.limits = {
      maxSessions: opts.maxSessions ?? DEFAULT_MAX_SESSIONS,
      maxSessionsPerClient: opts.maxSessionsPerClient ?? DEFAULT_MAX_SESSIONS_PER_CLIENT,
    };
    this.records = new RedisRecords(opts.keyPrefix, opts.idleMs, (op, call, key) => this.run(op, call, key));
    // Long enough that a live replica always sweeps first; only cleans up if none is left.
    this.backstopTtlMs = 2 * opts.idleMs + 60_000;
    const every = opts.sweepIntervalMs ?? Math.min(opts.idleMs, 60_000);
    if (every > 0) {
      this.sweeper = setInterval(() => void this.sweepExpired().catch(() => {}), every);
      this.sweeper.unref();
    } else {
      this.sweeper = null;
    }
  }

  async create(init: SessionInit): Promise<GatewaySession> {
    const createdAt = this.localNow();
    const meta = encodeMeta(init, createdAt);
    const owner = ownerDigest(init.owner);
    const ownerKey = this.ownerKeyPrefix + owner;
    const { owner: _owner, ...fields } = init;
    // 192-bit random ids do not collide; the loop only guards against a broken random source.
    for (let attempt = 0; attempt < 3; attempt++) {
      const id = newOwnedSessionId(owner);
      const hash = this.hashKey(id);
      const wrote = await this.run('create', (r) => WRITE.run(r, [hash], [meta, owner, this.backstopTtlMs]));
      if (Number(wrote) !== 1) continue;
      let reply: unknown;
      try {
        reply = await this.run('create', (r) =>
          ADMIT.run(r, [this.index, ownerKey], [
            this.now(),
            id,
            this.opts.idleMs,
            this.limits.maxSessionsPerClient,
            this.limits.maxSessions,
            SWEEP_BATCH,
            this.backstopTtlMs,
          ]),
        );
      } catch (err) {
        await this.discard(hash);
        throw err;
      }
      const [status, a, b] = reply as [number, unknown, unknown];
      if (status === -2) {
        await this.discard(hash);
        continue;
      }
      if (status === -1) {
        await this.discard(hash);
        await this.claim(ids(b), this.opts.onExpire);
        throw sessionLimitError(this.limits.maxSessions, Number(a));
      }
      await Promise.all([this.claim(ids(a), this.opts.onEvict), this.claim(ids(b), this.opts.onExpire)]);
      return { ...fields, id, createdAt, lastSeen: Number(status), logLevel: null, upstream: new Map(), ownLists: new Map(), subscriptions: new Map() };
    }
    throw new Error('could not allocate a unique session id');
  }

  async get(id: string): Promise<GatewaySession | null> {
    if (id.length === 0 || id.length > MAX_ID_LENGTH) return null;
    const keys = this.sessionKeys(id);
    const reply = await this.run('get', (r) => GET.run(r, keys, [this.now(), id, this.opts.idleMs, this.backstopTtlMs]));
    if (!Array.isArray(reply)) return null;
    const [live, now, fields] = reply as [unknown, unknown, unknown];
    const session = Array.isArray(fields) ? decodeSession(id, Number(now), fields as string[]) : null;
    if (session === null) return null;
    if (live !== 1) {
      this.opts.onExpire?.(session);
      return null;
    }
    return session;
  }

  /**
   * Records (or with null, forgets) the upstream session for `server`.
   *
   * Forgetting is conditional: the mapping is removed only if it still is the one `session` holds,
   * so a replica dropping a stale upstream session cannot erase a fresh one that another replica
   * stored meanwhile. Storing is a no-op in Redis when the session has ended meanwhile.
   */
  async setUpstream(session: GatewaySession, server: string, upstream: UpstreamSession | null): Promise<void> {
    const field = UPSTREAM_FIELD_PREFIX + server;
    if (upstream === null) {
      const held = session.upstream.get(server);
      const expected = held === undefined ? '' : encodeUpstream(held);
      await this.run('setUpstream', (r) => CLEAR_FIELD.run(r, [this.hashKey(session.id)], [field, expected]));
      session.upstream.delete(server);
    } else {
      await this.run('setUpstream', (r) => SET_FIELD.run(r, [this.hashKey(session.id)], [field, encodeUpstream(upstream)]));
      session.upstream.set(server, upstream);
    }
  }

  /**
   * Stores `upstream` for `server` unless another replica already stored one; returns whichever is
   * stored (the caller should end its own upstream session if it lost). Returns `upstream` when
   * the session has ended meanwhile.
   */
  async claimUpstream(session: GatewaySession, server: string, upstream: UpstreamSession): Promise<UpstreamSession> {
    const field = UPSTREAM_FIELD_PREFIX + server;
    const reply = await this.run('claimUpstream', (r) =>
      CLAIM_FIELD.run(r, [this.hashKey(session.id)], [field, encodeUpstream(upstream)]),
    );
    const winner = typeof reply === 'string' ? (decodeUpstream(reply) ?? upstream) : upstream;
    session.upstream.set(server, winner);
    return winner;
  }

  async setLogLevel(session: GatewaySession, level: string): Promise<void> {
    await this.run('setLogLevel', (r) => SET_FIELD.run(r, [this.hashKey(session.id)], [LOG_LEVEL_FIELD, level]));
    session.logLevel = level;
  }

  async markOwnList(session: GatewaySession, server: string, kind: string): Promise<number> {
    const reply = await this.run('markOwnList', (r) => INCREMENT_FIELD.run(r, [this.hashKey(session.id)], [ownListField(server, kind)]));
    const generation = typeof reply === 'number' ? reply : (session.ownLists.get(ownListKey(server, kind)) ?? 0) + 1;
    session.ownLists.set(ownListKey(server, kind), generation);
    return generation;
  }

  async setSubscribed(session: GatewaySession, server: string, uri: string, subscribed: boolean): Promise<void> {
    const field = subscriptionField(server, uri);
    const hash = [this.hashKey(session.id)];
    if (subscribed) await this.run('setSubscribed', (r) => SET_FIELD.run(r, hash, [field, '1']));
    else await this.run('setSubscribed', (r) => CLEAR_FIELD.run(r, hash, [field, '']));
    changeSubscription(session, server, uri, subscribed);
  }

  async delete(id: string): Promise<GatewaySession | null> {
    if (id.length === 0 || id.length > MAX_ID_LENGTH) return null;
    const reply = await this.run('delete', (r) => DELETE.run(r, this.sessionKeys(id), [id]));
    if (!Array.isArray(reply) || reply.length === 0) return null;
    return decodeSession(id, this.localNow(), reply as string[]);
  }

  bind(kind: BindingKind, server: string, id: string, identity: string | null): Promise<boolean> {
    return this.records.bind(kind, server, id, identity);
  }

  boundOwner(kind: BindingKind, server: string, id: string): Promise<string | null | undefined> {
    return this.records.boundOwner(kind, server, id);
  }

  putAsk(id: string, record: string, ttlMs: number): Promise<void> {
    return this.records.putAsk(id, record, ttlMs);
  }

  answerAsk(id: string, key: string, answer: string): Promise<boolean> {
    return this.records.answerAsk(id, key, answer);
  }

  getAsk(id: string): Promise<{ readonly record: string; readonly answers: ReadonlyMap<string, string> } | null> {
    return this.records.getAsk(id);
  }

  dropAsk(id: string): Promise<void> {
    return this.records.dropAsk(id);
  }

  /**
   * Claims sessions idle longer than `idleMs` and reports each to `onExpire` (each one on exactly
   * one replica). Runs periodically; exposed for tests. Resolves to the number reported.
   */
  async sweepExpired(now?: number): Promise<number> {
    let reported = 0;
    for (;;) {
      const at = now === undefined ? this.now() : String(Math.floor(now));
      const reply = await this.run('sweep', (r) => SWEEP.run(r, [this.index], [at, this.opts.idleMs, SWEEP_BATCH]));
      if (!Array.isArray(reply) || reply.length === 0) return reported;
      const taken = ids(reply.slice(1));
      reported += await this.claim(taken, this.opts.onExpire, Number(reply[0]));
      // Fewer than a full batch: nothing more to claim this round.
      if (taken.length < SWEEP_BATCH) return reported;
    }
  }

  /** Number of live (not yet swept) sessions. */
  async size(): Promise<number> {
    return Number(await this.run('size', (r) => r.zcard(this.index)));
  }

  /**
   * The live sessions every replica shares: the index's most recent scores, then each one's hash
   * (all in the index's hash slot, so one pipeline on Redis Cluster too).
   */
  async list(max: number): Promise<{ readonly total: number; readonly sessions: readonly GatewaySession[] }> {
    const since = await this.liveSince();
    const [total, flat] = (await this.run('list', (r) =>
      Promise.all([r.zcount(this.index, since, '+inf'), r.zrevrangebyscore(this.index, '+inf', since, 'WITHSCORES', 'LIMIT', 0, max)]),
    )) as [number, string[]];
    const entries: [string, number][] = [];
    for (let i = 0; i + 1 < flat.length; i += 2) entries.push([flat[i]!, Number(flat[i + 1])]);
    const hashes = (await this.run('list', (r) => Promise.all(entries.map(([id]) => r.hgetall(this.hashKey(id)))))) as Record<string, string>[];
    const sessions: GatewaySession[] = [];
    entries.forEach(([id, lastSeen], i) => {
      const s = decodeSession(id, lastSeen, Object.entries(hashes[i] ?? {}).flat());
      if (s !== null) sessions.push(s);
    });
    return { total: Number(total), sessions };
  }

  async liveIds(max: number): Promise<readonly string[]> {
    const since = await this.liveSince();
    return (await this.run('liveIds', (r) => r.zrevrangebyscore(this.index, '+inf', since, 'LIMIT', 0, max))) as string[];
  }

  /** The index score a live session is above (exclusive, as ZRANGEBYSCORE takes it), by the store's clock. */
  private async liveSince(): Promise<string> {
    const clock = this.now();
    let now = Number(clock);
    if (clock === '') {
      const [s, us] = (await this.run('time', (r) => r.time())) as [string | number, string | number];
      now = Number(s) * 1000 + Math.floor(Number(us) / 1000);
    }
    return `(${now - this.opts.idleMs}`;
  }

  /** Sessions live in Redis, shared by every replica: none ends with this one. */
  localSessions(): Iterable<GatewaySession> {
    return [];
  }

  /** Stops the sweeper. The Redis connection is shared and closed by its owner. */
  close(): void {
    if (this.sweeper !== null) clearInterval(this.sweeper);
  }

  /**
   * Claims the hashes of sessions ADMIT took out of the index and reports each to `report`. Best
   * effort: if Redis fails now, the sessions are ended all the same (no longer indexed), their
   * hashes go with the backstop TTL, and only their upstream sessions are not ended.
   */
  private async claim(idList: readonly string[], report: ((s: GatewaySession) => void) | undefined, at?: number): Promise<number> {
    let claimed = 0;
    await Promise.all(
      idList.map(async (id) => {
        try {
          const reply = await this.run('claim', (r) => DELETE.run(r, this.sessionKeys(id), [id]));
          if (!Array.isArray(reply) || reply.length === 0) return;
          const s = decodeSession(id, at ?? this.localNow(), reply as string[]);
          if (s === null) return;
          claimed += 1;
          report?.(s);
        } catch {
          // see above
        }
      }),
    );
    return claimed;
  }

  /** Removes the hash of a session that was not admitted (best effort: it has a backstop TTL). */
  private async discard(hash: string): Promise<void> {
    await this.redis.del(hash).catch(() => undefined);
  }

  private hashKey(id: string): string {
    return `${this.tagged}s:${id}`;
  }

  /** KEYS of GET and DELETE: the session's hash, the index and its owner's set (one hash slot). */
  sessionKeys(id: string): [string, string, string] {
    return [this.hashKey(id), this.index, this.ownerKeyPrefix + id.slice(0, OWNER_DIGEST_LENGTH)];
  }

  /** The time argument for scripts: '' lets the script use Redis's TIME. */
  private now(): string {
    const c = this.opts.clock;
    return c === undefined || c === 'redis' ? '' : String(Math.floor(c()));
  }

  private localNow(): number {
    const c = this.opts.clock;
    return c === undefined || c === 'redis' ? Date.now() : c();
  }

  /**
   * Runs one Redis call under the outage tracker; failures become StateUnavailableError. `key`
   * (default: any key of the index's slot) scopes the breaker to its slot on Redis Cluster, so a
   * failing primary holds back only the calls it would have answered.
   */
  private async run(op: string, call: (redis: RedisClient) => Promise<unknown>, key?: string): Promise<unknown> {
    const scope = this.redis.isCluster ? (key === undefined ? this.indexSlot : keySlot(key)) : undefined;
    if (!this.tracker.shouldTry(scope)) throw new StateUnavailableError(`session ${op}: Redis is unreachable`);
    try {
      const reply = await call(this.redis);
      this.tracker.ok(scope);
      return reply;
    } catch (err) {
      this.tracker.fail(err, scope);
      throw new StateUnavailableError(`session ${op}: ${errorSummary(err)}`, { cause: err });
    }
  }
}
