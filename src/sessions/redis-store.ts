import type { Redis } from 'ioredis';
import { StateUnavailableError } from '../state/errors.js';
import { errorSummary, OutageTracker, SILENT_STATE_LOGGER, type StateLogger } from '../state/outage.js';
import { LuaScript } from '../state/script.js';
import {
  decodeSession,
  decodeUpstream,
  encodeMeta,
  encodeUpstream,
  LOG_LEVEL_FIELD,
  META_FIELD,
  UPSTREAM_FIELD_PREFIX,
  type SessionInit,
} from './serialize.js';
import { newSessionId, type GatewaySession, type SessionStore, type UpstreamSession } from './store.js';

/*
 * Layout (P = redis.key_prefix):
 *   P s:<id>     hash, see serialize.ts; a backstop TTL removes it if no replica is left to sweep
 *   P sessions   sorted set: session id → lastSeen (ms); idle expiry is decided on this score
 *   P p:<server>:<id>  string: identity a passthrough session is bound to ('' = anonymous); PX idleMs
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

/** KEYS: hash, index. ARGV: now, id, meta, backstopTtlMs. Reply: now, or -1 if the id is taken. */
const CREATE = new LuaScript(`${CLOCK}
local now = clock(ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('ZSCORE', KEYS[2], ARGV[2]) then return -1 end
redis.call('HSET', KEYS[1], '${META_FIELD}', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[2], now, ARGV[2])
return now
`);

/**
 * KEYS: hash, index. ARGV: now, id, idleMs, backstopTtlMs.
 * Reply: nil (unknown), {1, now, fields} (live, now marked used), {0, now, fields} (expired and
 * claimed by this call).
 */
const GET = new LuaScript(`${CLOCK}
local now = clock(ARGV[1])
local seen = redis.call('ZSCORE', KEYS[2], ARGV[2])
if not seen then return false end
local fields = redis.call('HGETALL', KEYS[1])
if now - tonumber(seen) > tonumber(ARGV[3]) or #fields == 0 then
  redis.call('ZREM', KEYS[2], ARGV[2])
  redis.call('DEL', KEYS[1])
  if #fields == 0 then return false end
  return {0, now, fields}
end
if now > tonumber(seen) then redis.call('ZADD', KEYS[2], now, ARGV[2]) end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {1, now, fields}
`);

/** KEYS: hash. ARGV: field, value. Sets the field only on a live session (never resurrects one). Reply: 1 or 0. */
const SET_FIELD = new LuaScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
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

/** KEYS: hash, index. ARGV: id. Reply: the deleted fields (empty if unknown). */
const DELETE = new LuaScript(`
redis.call('ZREM', KEYS[2], ARGV[1])
local fields = redis.call('HGETALL', KEYS[1])
redis.call('DEL', KEYS[1])
return fields
`);

/**
 * KEYS: index. ARGV: now, idleMs, hashKeyPrefix, batch. Claims up to `batch` expired sessions.
 * Reply: {now, id, fields, id, fields, …}. (Builds hash keys in the script: single Redis only.)
 */
const SWEEP = new LuaScript(`${CLOCK}
local now = clock(ARGV[1])
local cutoff = '(' .. string.format('%.0f', now - tonumber(ARGV[2]))
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff, 'LIMIT', 0, tonumber(ARGV[4]))
local out = {now}
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  local k = ARGV[3] .. id
  local fields = redis.call('HGETALL', k)
  redis.call('DEL', k)
  if #fields > 0 then
    table.insert(out, id)
    table.insert(out, fields)
  end
end
return out
`);

/** KEYS: binding. ARGV: idleMs. Reply: the bound identity, or nil if unknown; a hit restarts its idle timer. */
const TOUCH_BINDING = new LuaScript(`
local v = redis.call('GET', KEYS[1])
if v then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return v
`);

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
 * Every method makes one atomic script call, bounded by the client's command timeout. On Redis
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
  private readonly tracker: OutageTracker;
  private readonly sweeper: NodeJS.Timeout | null;
  private readonly index: string;
  private readonly backstopTtlMs: number;

  constructor(
    private readonly redis: Redis,
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
    // 192-bit random ids do not collide; the loop only guards against a broken random source.
    for (let attempt = 0; attempt < 3; attempt++) {
      const id = newSessionId();
      const keys = [this.hashKey(id), this.index];
      const reply = await this.run('create', (r) => CREATE.run(r, keys, [this.now(), id, meta, this.backstopTtlMs]));
      const now = Number(reply);
      if (now >= 0) return { ...init, id, lastSeen: now, logLevel: null, upstream: new Map() };
    }
    throw new Error('could not allocate a unique session id');
  }

  async get(id: string): Promise<GatewaySession | null> {
    if (id.length === 0 || id.length > MAX_ID_LENGTH) return null;
    const keys = [this.hashKey(id), this.index];
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

  async delete(id: string): Promise<GatewaySession | null> {
    if (id.length === 0 || id.length > MAX_ID_LENGTH) return null;
    const reply = await this.run('delete', (r) => DELETE.run(r, [this.hashKey(id), this.index], [id]));
    if (!Array.isArray(reply) || reply.length === 0) return null;
    return decodeSession(id, this.localNow(), reply as string[]);
  }

  async bindPassthrough(server: string, sessionId: string, identity: string | null): Promise<void> {
    if (sessionId.length === 0 || sessionId.length > MAX_UPSTREAM_ID_LENGTH) return;
    await this.run('bindPassthrough', (r) => r.set(this.bindingKey(server, sessionId), identity ?? '', 'PX', this.opts.idleMs));
  }

  async passthroughOwner(server: string, sessionId: string): Promise<string | null | undefined> {
    if (sessionId.length === 0 || sessionId.length > MAX_UPSTREAM_ID_LENGTH) return undefined;
    const reply = await this.run('passthroughOwner', (r) => TOUCH_BINDING.run(r, [this.bindingKey(server, sessionId)], [this.opts.idleMs]));
    return typeof reply === 'string' ? (reply === '' ? null : reply) : undefined;
  }

  /**
   * Claims sessions idle longer than `idleMs` and reports each to `onExpire` (each one on exactly
   * one replica). Runs periodically; exposed for tests. Resolves to the number reported.
   */
  async sweepExpired(now?: number): Promise<number> {
    let reported = 0;
    for (;;) {
      const at = now === undefined ? this.now() : String(Math.floor(now));
      const reply = await this.run('sweep', (r) =>
        SWEEP.run(r, [this.index], [at, this.opts.idleMs, this.hashKey(''), SWEEP_BATCH]),
      );
      if (!Array.isArray(reply) || reply.length === 0) return reported;
      const sweptAt = Number(reply[0]);
      for (let i = 1; i + 1 < reply.length; i += 2) {
        const s = decodeSession(String(reply[i]), sweptAt, reply[i + 1] as string[]);
        if (s === null) continue;
        reported += 1;
        this.opts.onExpire?.(s);
      }
      // Fewer than a full batch: nothing more to claim this round.
      if ((reply.length - 1) / 2 < SWEEP_BATCH) return reported;
    }
  }

  /** Number of live (not yet swept) sessions. */
  async size(): Promise<number> {
    return Number(await this.run('size', (r) => r.zcard(this.index)));
  }

  /** Stops the sweeper. The Redis connection is shared and closed by its owner. */
  /** Sessions live in Redis, shared by every replica: none ends with this one. */
  localSessions(): Iterable<GatewaySession> {
    return [];
  }

  close(): void {
    if (this.sweeper !== null) clearInterval(this.sweeper);
  }

  private hashKey(id: string): string {
    return `${this.opts.keyPrefix}s:${id}`;
  }

  private bindingKey(server: string, sessionId: string): string {
    return `${this.opts.keyPrefix}p:${server}:${sessionId}`;
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

  /** Runs one Redis call under the outage tracker; failures become StateUnavailableError. */
  private async run(op: string, call: (redis: Redis) => Promise<unknown>): Promise<unknown> {
    if (!this.tracker.shouldTry()) throw new StateUnavailableError(`session ${op}: Redis is unreachable`);
    try {
      const reply = await call(this.redis);
      this.tracker.ok();
      return reply;
    } catch (err) {
      this.tracker.fail(err);
      throw new StateUnavailableError(`session ${op}: ${errorSummary(err)}`, { cause: err });
    }
  }
}
