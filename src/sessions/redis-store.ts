import { createHash, randomBytes } from 'node:crypto';
import type { RedisClient } from '../state/redis.js';
import { StateUnavailableError } from '../state/errors.js';
import { errorSummary, OutageTracker, SILENT_STATE_LOGGER, type StateLogger } from '../state/outage.js';
import { LuaScript } from '../state/script.js';
import { keySlot } from '../state/slot.js';
import {
  decodeSession,
  decodeUpstream,
  encodeMeta,
  encodeUpstream,
  LOG_LEVEL_FIELD,
  META_FIELD,
  OWNER_FIELD,
  ownListField,
  subscriptionField,
  UPSTREAM_FIELD_PREFIX,
} from './serialize.js';
import { DEFAULT_MAX_SESSIONS, DEFAULT_MAX_SESSIONS_PER_CLIENT, sessionLimitError, type SessionLimits } from './limits.js';
import { changeSubscription, ownListKey, type BindingKind, type GatewaySession, type SessionInit, type SessionStore, type UpstreamSession } from './store.js';

/*
 * Layout (P = redis.key_prefix, T = the hash tag {P sessions}):
 *   P sessions   sorted set: session id → lastSeen (ms); idle expiry is decided on this score
 *   P T:s:<id>   hash, see serialize.ts; a backstop TTL removes it if no replica is left to sweep
 *   P T:owner:<digest>  sorted set: one owner's session ids → lastSeen, a copy of their index
 *                scores (digest: the session hash's `o` field). Every path that takes a session
 *                out of the index takes it out here too, so the set goes with the owner's last
 *                session; a backstop TTL, refreshed with the session hashes', covers the case no
 *                replica is left to sweep.
 *   P p:<server>:<id>  string: identity a passthrough session is bound to ('' = anonymous); PX idleMs
 *   P t:<server>:<id>  string: identity an upstream task is bound to, the same way
 *
 * All session keys but the bindings share one Redis Cluster hash slot (the tag T is the
 * index's own name): every script below touches the index, the owners' sets and session hashes
 * together, and a script may only touch keys of one slot. Session state therefore lives on one
 * Cluster primary (and its replicas); that keeps `max_sessions` exact and each decision atomic.
 *
 * A session id starts with its owner's digest (then 120 random bits), so every script gets every
 * key it touches from the caller, as Redis Cluster requires: a script never builds a key name.
 *
 * Caps (see limits.ts): ADMIT decides, atomically and so across replicas, whether a new session
 * fits (the owner's set against max_sessions_per_client, the index's size against max_sessions)
 * and takes the sessions it ends out of the index. Their
 * hashes are claimed afterwards with DELETE, by the replica that ended them, for `onEvict` /
 * `onExpire`. A new session's hash is written before ADMIT and is invisible until ADMIT indexes it
 * (GET looks at the index first); a refused one is deleted.
 *
 * Idle expiry is logical (score older than idleMs) rather than a plain key TTL so that an expired
 * session can still be read once: exactly one replica claims it (ZREM + HGETALL + DEL in one
 * script) and hands it to `onExpire`, which ends its upstream sessions — as MemorySessionStore does.
 *
 * The clock is Redis's TIME unless the store is given one: with N replicas there is then one
 * notion of "idle for an hour".
 */

const CLOCK = `
local function clock(arg)
  if arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`;


/** Sets a field only while the hash exists, and only once (1), else nothing (0). */
const ANSWER_ASK = "if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) end return 0";

/** KEYS: hash. ARGV: meta, owner digest, backstopTtlMs. Writes a new session's hash. Reply: 1, or 0 if the id is taken. */
const WRITE = new LuaScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], '${META_FIELD}', ARGV[1], '${OWNER_FIELD}', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`);

/**
 * KEYS: index, owner set (one hash slot). ARGV: now, id, idleMs, maxPerClient, maxSessions,
 * batch, backstopTtlMs.
 *
 * The owner's idle sessions are taken out (expired; the index has the last word on idleness, the
 * owner set's copy of lastSeen only finds the candidates). Beyond maxPerClient - 1 sessions, the
 * owner's least recently used are picked (evicted). If the index would then still hold
 * maxSessions, up to `batch` idle sessions of anyone are taken out; if it still would, nothing is
 * evicted and the session is refused. Cost: O(log n) plus the sessions it ends.
 * Reply: {now, evicted ids, expired ids} when admitted; {-1, ms until the least recently used
 * session idles out, expired ids} when refused; {-2} if the id is already indexed.
 */
const ADMIT = new LuaScript(`${CLOCK}
local now = clock(ARGV[1])
local idle = tonumber(ARGV[3])
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then return {-2} end
local cutoff = '(' .. string.format('%.0f', now - idle)
local expired = {}
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', cutoff)) do
  local seen = redis.call('ZSCORE', KEYS[1], m)
  if not seen then
    redis.call('ZREM', KEYS[2], m)
  elseif now - tonumber(seen) > idle then
    redis.call('ZREM', KEYS[1], m)
    redis.call('ZREM', KEYS[2], m)
    table.insert(expired, m)
  else
    redis.call('ZADD', KEYS[2], seen, m)
  end
end
local victims = {}
local excess = redis.call('ZCARD', KEYS[2]) - (tonumber(ARGV[4]) - 1)
if excess > 0 then victims = redis.call('ZRANGE', KEYS[2], 0, excess - 1) end
local max = tonumber(ARGV[5])
if redis.call('ZCARD', KEYS[1]) - #victims >= max then
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff, 'LIMIT', 0, tonumber(ARGV[6]))) do
    redis.call('ZREM', KEYS[1], m)
    table.insert(expired, m)
  end
  if redis.call('ZCARD', KEYS[1]) - #victims >= max then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    local wait = idle
    if oldest[2] then wait = tonumber(oldest[2]) + idle - now end
    return {-1, wait, expired}
  end
end
for _, m in ipairs(victims) do
  redis.call('ZREM', KEYS[1], m)
  redis.call('ZREM', KEYS[2], m)
end
redis.call('ZADD', KEYS[1], now, ARGV[2])
redis.call('ZADD', KEYS[2], now, ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[7])
return {now, victims, expired}
`);

/** Lua: the owner digest in a flat HGETALL reply, or nil. */
const OWNER_OF = `
local function owner_of(fields)
  for i = 1, #fields, 2 do
    if fields[i] == '${OWNER_FIELD}' then return fields[i + 1] end
  end
  return nil
end
`;

/**
 * KEYS: hash, index, owner set. ARGV: now, id, idleMs, backstopTtlMs.
 * Reply: nil (unknown), {1, now, fields} (live, now marked used), {0, now, fields} (expired and
 * claimed by this call).
 */
const GET = new LuaScript(`${CLOCK}${OWNER_OF}
local now = clock(ARGV[1])
local seen = redis.call('ZSCORE', KEYS[2], ARGV[2])
if not seen then return false end
local fields = redis.call('HGETALL', KEYS[1])
local owner = owner_of(fields)
if now - tonumber(seen) > tonumber(ARGV[3]) or #fields == 0 then
  redis.call('ZREM', KEYS[2], ARGV[2])
  redis.call('DEL', KEYS[1])
  if owner then redis.call('ZREM', KEYS[3], ARGV[2]) end
  if #fields == 0 then return false end
  return {0, now, fields}
end
if now > tonumber(seen) then redis.call('ZADD', KEYS[2], now, ARGV[2]) end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if owner then
  if now > tonumber(seen) then redis.call('ZADD', KEYS[3], 'XX', now, ARGV[2]) end
  redis.call('PEXPIRE', KEYS[3], ARGV[4])
end
return {1, now, fields}
`);

/** KEYS: hash. ARGV: field, value. Sets the field only on a live session (never resurrects one). Reply: 1 or 0. */
const SET_FIELD = new LuaScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
`);

/** KEYS: hash. ARGV: field. Reply: the field's value plus one, or nil if the session is gone. */
const INCREMENT_FIELD = new LuaScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
return redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
`);

/** KEYS: hash. ARGV: field, value. First writer wins. Reply: the stored value, or nil if the session is gone. */
const CLAIM_FIELD = new LuaScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
return redis.call('HGET', KEYS[1], ARGV[1])
`);

/** KEYS: hash. ARGV: field, expected ('' = any). Deletes the field if it still holds `expected`. */
const CLEAR_FIELD = new LuaScript(`
if ARGV[2] == '' or redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
`);

/**
 * KEYS: hash, index, owner set. ARGV: id. Reply: the deleted fields (empty if unknown).
 * Also claims the hash of a session ADMIT or SWEEP took out of the index.
 */
const DELETE = new LuaScript(`${OWNER_OF}
redis.call('ZREM', KEYS[2], ARGV[1])
local fields = redis.call('HGETALL', KEYS[1])
redis.call('DEL', KEYS[1])
local owner = owner_of(fields)
if owner then redis.call('ZREM', KEYS[3], ARGV[1]) end
return fields
`);

/**
 * KEYS: index. ARGV: now, idleMs, batch. Takes up to `batch` expired sessions out of the index;
 * the caller then claims each one's hash with DELETE. Reply: {now, id, id, …}.
 */
const SWEEP = new LuaScript(`${CLOCK}
local now = clock(ARGV[1])
local cutoff = '(' .. string.format('%.0f', now - tonumber(ARGV[2]))
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff, 'LIMIT', 0, tonumber(ARGV[3]))
local out = {now}
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  table.insert(out, id)
end
return out
`);

/** KEYS: binding. ARGV: identity ('' = anonymous), idleMs. Reply: 1 if bound to it (now or already), 0 if another identity holds it. */
const BIND = new LuaScript(`
local v = redis.call('GET', KEYS[1])
if v and v ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`);

/** KEYS: binding. ARGV: idleMs. Reply: the bound identity, or nil if unknown; a hit restarts its idle timer. */
const TOUCH_BINDING = new LuaScript(`
local v = redis.call('GET', KEYS[1])
if v then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return v
`);

/** Length of the owner digest that starts every session id. */
const OWNER_DIGEST_LENGTH = 12;

/**
 * The owner-set name of an owner: short, fixed length, whatever characters the identity holds.
 * 72 bits: owners sharing a digest (and so a per-client cap) are unlikely below billions of owners.
 */
function ownerDigest(owner: string): string {
  return createHash('sha256').update(owner).digest('base64url').slice(0, OWNER_DIGEST_LENGTH);
}

/** A new session id: the owner's digest, then 120 random bits; 32 characters of [A-Za-z0-9_-]. */
function newOwnedSessionId(digest: string): string {
  return digest + randomBytes(15).toString('base64url');
}

/** A Lua array reply of ids. */
function ids(v: unknown): string[] {
  return Array.isArray(v) ? v.map(String) : [];
}

/** Session ids the gateway issues are 32 characters; anything much longer is not worth a round trip. */
const MAX_ID_LENGTH = 256;
/** Upstreams choose their own session ids (some use signed tokens); Envoy bounds headers anyway. */
const MAX_UPSTREAM_ID_LENGTH = 8 * 1024;
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
    const meta = encodeMeta(init);
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
      return { ...fields, id, lastSeen: Number(status), logLevel: null, upstream: new Map(), ownLists: new Map(), subscriptions: new Map() };
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

  async bind(kind: BindingKind, server: string, id: string, identity: string | null): Promise<boolean> {
    if (id.length === 0 || id.length > MAX_UPSTREAM_ID_LENGTH) return false;
    const key = this.bindingKey(kind, server, id);
    const reply = await this.run('bind', (r) => BIND.run(r, [key], [identity ?? '', this.opts.idleMs]), key);
    return reply === 1;
  }

  async boundOwner(kind: BindingKind, server: string, id: string): Promise<string | null | undefined> {
    if (id.length === 0 || id.length > MAX_UPSTREAM_ID_LENGTH) return undefined;
    const key = this.bindingKey(kind, server, id);
    const reply = await this.run('boundOwner', (r) => TOUCH_BINDING.run(r, [key], [this.opts.idleMs]), key);
    return typeof reply === 'string' ? (reply === '' ? null : reply) : undefined;
  }

  async putAsk(id: string, record: string, ttlMs: number): Promise<void> {
    const key = this.askKey(id);
    await this.run('putAsk', (r) => r.multi().del(key).hset(key, 'r', record).pexpire(key, ttlMs).exec(), key);
  }

  async answerAsk(id: string, key: string, answer: string): Promise<boolean> {
    const k = this.askKey(id);
    // Only while the record lives (an answer never outlives or revives its question), and the
    // first answer stands (a request is answered once).
    const reply = await this.run('answerAsk', (r) => r.eval(ANSWER_ASK, 1, k, `a:${key}`, answer), k);
    return reply === 1;
  }

  async getAsk(id: string): Promise<{ readonly record: string; readonly answers: ReadonlyMap<string, string> } | null> {
    const key = this.askKey(id);
    const all = (await this.run('getAsk', (r) => r.hgetall(key), key)) as Record<string, string>;
    const record = all['r'];
    if (record === undefined) return null;
    const answers = new Map<string, string>();
    for (const [f, v] of Object.entries(all)) if (f.startsWith('a:')) answers.set(f.slice(2), v);
    return { record, answers };
  }

  async dropAsk(id: string): Promise<void> {
    const key = this.askKey(id);
    await this.run('dropAsk', (r) => r.del(key), key);
  }

  private askKey(id: string): string {
    return `${this.opts.keyPrefix}ask:${id}`;
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

  private bindingKey(kind: BindingKind, server: string, id: string): string {
    return `${this.opts.keyPrefix}${kind === 'passthrough' ? 'p' : 't'}:${server}:${id}`;
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
