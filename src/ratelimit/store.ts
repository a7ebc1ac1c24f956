import type { RedisClient } from '../state/redis.js';
import { OutageTracker, SILENT_STATE_LOGGER, type StateLogger } from '../state/outage.js';
import { LuaScript } from '../state/script.js';
import { keySlot } from '../state/slot.js';
import { DECIDE_LUA, REFUND_LUA } from './lua.js';
import {
  assertValidRule,
  countQuota,
  takeTokens,
  utcDateOf,
  utcDay,
  type BucketRule,
  type BucketState,
} from './bucket.js';

/** One limit a request must pass. `key` is logical; a store may prefix it. */
export type LimitCheck =
  | { readonly kind: 'bucket'; readonly key: string; readonly rule: BucketRule; readonly cost?: number }
  | { readonly kind: 'quota'; readonly key: string; readonly limit: number; readonly cost?: number };

/** The verdict of one check. */
export interface Decision {
  readonly allowed: boolean;
  /** Bucket size, or the daily quota. */
  readonly limit: number;
  /** Budget left after this request (before it, when the request as a whole was refused). */
  readonly remaining: number;
  /** 0 when allowed; otherwise how long until this check would pass. */
  readonly retryAfterMs: number;
  /** Until the budget is whole again: bucket full, or next 00:00 UTC. */
  readonly resetMs: number;
  /**
   * The store could not decide (Redis unreachable or too slow); `allowed` is the configured
   * fail-open/fail-closed answer and the numbers mean nothing.
   */
  readonly degraded: boolean;
}

/** The verdict on all checks of one request. */
export interface BatchDecision {
  /** True only if every check allowed it; only then was anything spent. */
  readonly allowed: boolean;
  readonly degraded: boolean;
  /** One per check, in order. */
  readonly results: readonly Decision[];
}

/**
 * Where token buckets and quota counters live.
 *
 * `now` (ms since the epoch) overrides the store's clock for one call; tests use it to step time.
 */
export interface LimiterStore {
  /** Takes `cost` (default 1) tokens from one bucket. */
  take(key: string, rule: BucketRule, now?: number): Promise<Decision>;
  /**
   * Counts one request against a daily quota. The day is the UTC day of the store's clock (or
   * `now`); counts reset at 00:00 UTC, so no boundary argument is needed.
   */
  quota(key: string, limit: number, now?: number): Promise<Decision>;
  /**
   * All-or-nothing over several checks (distinct keys), in one atomic step. Rejects only on
   * invalid checks (a programming error), never on store trouble.
   */
  decide(checks: readonly LimitCheck[], now?: number): Promise<BatchDecision>;
  close(): void;
}

/** What a refusing or degraded store reports for a check's limit. */
function limitOf(c: LimitCheck): number {
  return c.kind === 'bucket' ? c.rule.burst : c.limit;
}

function validate(checks: readonly LimitCheck[]): void {
  // Each check reads its state before any is written, so a key listed twice would be spent once.
  if (new Set(checks.map((c) => c.key)).size !== checks.length) throw new RangeError('a key appears twice in one decision');
  for (const c of checks) {
    if (c.kind === 'bucket') assertValidRule(c.rule, c.cost ?? 1);
    else if (!Number.isSafeInteger(c.limit) || c.limit < 1 || !Number.isSafeInteger(c.cost ?? 1) || (c.cost ?? 1) < 1) {
      throw new RangeError(`quota limit and cost must be positive integers (${c.key})`);
    }
  }
}

async function single(store: LimiterStore, check: LimitCheck, now: number | undefined): Promise<Decision> {
  const d = await store.decide([check], now);
  const r = d.results[0];
  if (r === undefined) throw new Error('decide returned no result');
  return r;
}

/** One check evaluated but not yet applied (the memory store's all-or-nothing step). */
interface Evaluated {
  readonly allowed: boolean;
  /** The verdict if the whole request passes (budget after spending). */
  readonly spent: Decision;
  /** The verdict if some check refuses the request (nothing spent). */
  readonly unspent: Decision;
  readonly commit: () => void;
}

interface MemoryBucket {
  state: BucketState;
  /** When the bucket is full again and can be dropped. */
  fullAt: number;
}

/**
 * Buckets and quotas in this process's memory: the default, exact for one processor replica.
 * Full buckets and past days are dropped by a periodic sweep.
 */
export class MemoryLimiterStore implements LimiterStore {
  private readonly buckets = new Map<string, MemoryBucket>();
  private readonly quotas = new Map<string, { day: number; used: number }>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly clock: () => number = Date.now, sweepIntervalMs = 60_000) {
    this.sweeper = setInterval(() => this.sweep(), sweepIntervalMs);
    this.sweeper.unref();
  }

  take(key: string, rule: BucketRule, now?: number): Promise<Decision> {
    return single(this, { kind: 'bucket', key, rule }, now);
  }

  quota(key: string, limit: number, now?: number): Promise<Decision> {
    return single(this, { kind: 'quota', key, limit }, now);
  }

  async decide(checks: readonly LimitCheck[], now?: number): Promise<BatchDecision> {
    return this.decideSync(checks, Math.floor(now ?? this.clock()));
  }

  /** Synchronous {@link decide} (the memory store never waits). */
  decideSync(checks: readonly LimitCheck[], now: number): BatchDecision {
    validate(checks);
    const evaluated = checks.map((c) => (c.kind === 'bucket' ? this.evalBucket(c, now) : this.evalQuota(c, now)));
    const allowed = evaluated.every((e) => e.allowed);
    if (allowed) for (const e of evaluated) e.commit();
    return { allowed, degraded: false, results: evaluated.map((e) => (allowed ? e.spent : e.unspent)) };
  }

  private evalBucket(c: LimitCheck & { kind: 'bucket' }, now: number): Evaluated {
    const prior = this.buckets.get(c.key)?.state ?? null;
    const r = takeTokens(prior, now, c.rule, c.cost ?? 1);
    // What the bucket reports when another check refuses the request: nothing was spent.
    const peek = r.allowed ? takeTokens(prior, now, c.rule, 0) : r;
    const decision = (x: typeof r): Decision => ({
      allowed: r.allowed,
      limit: c.rule.burst,
      remaining: x.remaining,
      retryAfterMs: r.retryAfterMs,
      resetMs: x.resetMs,
      degraded: false,
    });
    return {
      allowed: r.allowed,
      spent: decision(r),
      unspent: decision(peek),
      commit: () => this.buckets.set(c.key, { state: r.newState, fullAt: now + r.resetMs }),
    };
  }

  private evalQuota(c: LimitCheck & { kind: 'quota' }, now: number): Evaluated {
    const day = utcDay(now);
    const q = this.quotas.get(c.key);
    const used = q !== undefined && q.day === day ? q.used : 0;
    const r = countQuota(used, now, c.limit, c.cost ?? 1);
    const decision = (remaining: number): Decision => ({
      allowed: r.allowed,
      limit: c.limit,
      remaining,
      retryAfterMs: r.retryAfterMs,
      resetMs: r.resetMs,
      degraded: false,
    });
    return {
      allowed: r.allowed,
      spent: decision(r.remaining),
      unspent: decision(Math.max(0, c.limit - used)),
      commit: () => this.quotas.set(c.key, { day, used: r.used }),
    };
  }

  /** Number of buckets and quota counters held (for tests and metrics). */
  size(): number {
    return this.buckets.size + this.quotas.size;
  }

  private sweep(): void {
    const now = this.clock();
    const day = utcDay(now);
    for (const [k, b] of this.buckets) if (b.fullAt <= now) this.buckets.delete(k);
    for (const [k, q] of this.quotas) if (q.day !== day) this.quotas.delete(k);
  }

  close(): void {
    clearInterval(this.sweeper);
  }
}

/** What the Redis store does when Redis cannot answer. */
export type LimitsOnError = 'fail-open' | 'fail-closed';

/** Options of {@link RedisLimiterStore}. */
export interface RedisLimiterStoreOptions {
  /** Prepended to every key (`redis.key_prefix`). */
  readonly keyPrefix: string;
  /** fail-open: allow requests while Redis is down; fail-closed: refuse them. */
  readonly onError: LimitsOnError;
  /** Outage start and end are logged here, once each. */
  readonly log?: StateLogger;
  /** Redis's address for log lines (no credentials), e.g. from `describeRedisTarget`. */
  readonly target?: string;
  /**
   * `'redis'` (default): the script reads Redis's `TIME`, one clock for all replicas. A function:
   * this process's clock, passed to the script (for tests, or a Redis that forbids `TIME`).
   */
  readonly clock?: 'redis' | (() => number);
  /** While Redis is down, at most one call per interval tries it; the rest fail at once. */
  readonly probeIntervalMs?: number;
}

const decideScript = new LuaScript(DECIDE_LUA);
const refundScript = new LuaScript(REFUND_LUA);

/** Longest a decision may wait for a quota's day to be settled (see DECIDE_LUA's {-3, now} reply). */
const DAY_ATTEMPTS = 2;

/**
 * Buckets and quotas in Redis, shared by every processor replica: one EVALSHA per decision, atomic
 * in Redis, so N replicas enforce one limit exactly.
 *
 * Never rejects on Redis trouble and never waits longer than the client's command timeout (see
 * `createRedisClient`): when Redis fails, decisions are `degraded` and allowed or refused per
 * `onError`; the outage is logged once when it starts and once when Redis answers again.
 */
export class RedisLimiterStore implements LimiterStore {
  private readonly tracker: OutageTracker;

  constructor(
    private readonly redis: RedisClient,
    private readonly opts: RedisLimiterStoreOptions,
  ) {
    const impact =
      opts.onError === 'fail-open'
        ? 'rate limits and quotas are not enforced (fail-open)'
        : 'requests are refused with 503 (fail-closed)';
    const log = opts.log ?? SILENT_STATE_LOGGER;
    this.tracker = new OutageTracker('rate limits', impact, log, opts.target ?? 'redis', opts.probeIntervalMs);
  }

  /** True while Redis is considered unreachable. */
  get degraded(): boolean {
    return this.tracker.down;
  }

  take(key: string, rule: BucketRule, now?: number): Promise<Decision> {
    return single(this, { kind: 'bucket', key, rule }, now);
  }

  quota(key: string, limit: number, now?: number): Promise<Decision> {
    return single(this, { kind: 'quota', key, limit }, now);
  }

  async decide(checks: readonly LimitCheck[], now?: number): Promise<BatchDecision> {
    validate(checks);
    if (checks.length === 0) return { allowed: true, degraded: false, results: [] };
    // On Redis Cluster the breaker is per slot (of the first key): a failing primary holds back
    // only the decisions it would have answered.
    const first = checks[0]!;
    const scope = this.redis.isCluster && first.kind === 'bucket' ? keySlot(`${this.opts.keyPrefix}${first.key}`) : undefined;
    if (!this.tracker.shouldTry(scope)) return this.fallback(checks);
    let decision: BatchDecision | null;
    try {
      decision = this.redis.isCluster ? await this.decideSharded(checks, now) : (await this.decideIn(checks, now)).decision;
    } catch (err) {
      this.tracker.fail(err, scope);
      return this.fallback(checks);
    }
    if (decision === null) {
      this.tracker.fail(new Error('unexpected reply from the rate-limit script'), scope);
      return this.fallback(checks);
    }
    this.tracker.ok(scope);
    return decision;
  }

  /**
   * One atomic DECIDE over `checks` (all keys on one Redis node, or in one Cluster slot). Resolves
   * the decision (null for a reply it cannot read) and the keys it used; rejects on Redis errors.
   */
  private async decideIn(checks: readonly LimitCheck[], now: number | undefined): Promise<{ decision: BatchDecision | null; keys: string[] }> {
    const time = this.timeArg(now);
    // The quota day the script will most likely see; it says so if it sees another.
    let day = utcDay(now ?? this.localNow());
    let keys: string[] = [];
    for (let attempt = 0; attempt < DAY_ATTEMPTS; attempt++) {
      keys = [];
      const args: (string | number)[] = [time];
      for (const c of checks) {
        if (c.kind === 'bucket') {
          keys.push(`${this.opts.keyPrefix}${c.key}`);
          args.push('b', c.rule.count, c.rule.periodMs, c.rule.burst, c.cost ?? 1);
        } else {
          keys.push(this.dayKey(c.key, day));
          args.push('q', c.limit, c.cost ?? 1, day, 0);
        }
      }
      const reply = await decideScript.run(this.redis, keys, args);
      if (Array.isArray(reply) && reply.length === 2 && Number(reply[0]) === -3) {
        day = utcDay(Number(reply[1]));
        continue;
      }
      return { decision: parseReply(reply, checks.length), keys };
    }
    return { decision: null, keys };
  }

  /**
   * A decision on Redis Cluster, where a script may only touch keys of one hash slot. Checks are
   * grouped by slot (limits keyed on the same caller share one through their hash tag, so most
   * decisions are one group; a quota is a group of its own, since its key's slot changes with the
   * day) and the groups decided at once, each atomically. If one refuses, what the others spent is
   * given back, so all-or-nothing still holds; meanwhile a concurrent request may find a budget
   * lower than it will be, never higher: the limit is not exceeded. If one group fails, the others'
   * spending is given back too and the whole decision fails.
   */
  private async decideSharded(checks: readonly LimitCheck[], now: number | undefined): Promise<BatchDecision | null> {
    const groups = new Map<string, number[]>();
    checks.forEach((c, i) => {
      const group = c.kind === 'quota' ? `q${i}` : String(keySlot(`${this.opts.keyPrefix}${c.key}`));
      const members = groups.get(group);
      if (members === undefined) groups.set(group, [i]);
      else members.push(i);
    });
    if (groups.size === 1) return (await this.decideIn(checks, now)).decision;
    const parts = [...groups.values()];
    const settled = await Promise.allSettled(parts.map((idx) => this.decideIn(idx.map((i) => checks[i]!), now)));
    const spent = settled.flatMap((r, g) =>
      r.status === 'fulfilled' && r.value.decision !== null && r.value.decision.allowed ? [{ idx: parts[g]!, keys: r.value.keys }] : [],
    );
    const failed = settled.find((r) => r.status === 'rejected');
    const unreadable = settled.some((r) => r.status === 'fulfilled' && r.value.decision === null);
    const allowed = failed === undefined && !unreadable && spent.length === parts.length;
    if (!allowed) await Promise.all(spent.map((p) => this.refund(p.idx.map((i) => checks[i]!), p.keys)));
    if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
    if (unreadable) return null;
    const results: Decision[] = new Array<Decision>(checks.length);
    settled.forEach((r, g) => {
      const d = (r as PromiseFulfilledResult<{ decision: BatchDecision }>).value.decision;
      parts[g]!.forEach((i, k) => (results[i] = d.results[k]!));
    });
    return { allowed, degraded: false, results };
  }

  /** Gives back what one group of a refused sharded decision spent (best effort: a failure only under-admits). */
  private async refund(checks: readonly LimitCheck[], keys: readonly string[]): Promise<void> {
    const args: (string | number)[] = [];
    for (const c of checks) {
      if (c.kind === 'bucket') args.push('b', (c.cost ?? 1) * c.rule.periodMs, c.rule.burst * c.rule.periodMs);
      else args.push('q', c.cost ?? 1, 0);
    }
    await refundScript.run(this.redis, keys, args).catch(() => undefined);
  }

  private fallback(checks: readonly LimitCheck[]): BatchDecision {
    const allowed = this.opts.onError === 'fail-open';
    return {
      allowed,
      degraded: true,
      results: checks.map((c) => ({
        allowed,
        limit: limitOf(c),
        remaining: 0,
        retryAfterMs: allowed ? 0 : 1_000,
        resetMs: 0,
        degraded: true,
      })),
    };
  }

  /** The script's time argument: the caller's `now`, this process's clock, or '' for Redis's TIME. */
  private timeArg(now: number | undefined): string {
    if (now !== undefined) return String(Math.floor(now));
    const c = this.opts.clock;
    return c === undefined || c === 'redis' ? '' : String(Math.floor(c()));
  }

  /** The Redis key a quota counter uses on the UTC day of `now` (for operators and tests). */
  quotaKey(key: string, now: number): string {
    return this.dayKey(key, utcDay(now));
  }

  private dayKey(key: string, day: number): string {
    return `${this.opts.keyPrefix}${key}:${utcDateOf(day)}`;
  }

  private localNow(): number {
    const c = this.opts.clock;
    return c === undefined || c === 'redis' ? Date.now() : c();
  }

  /** The store does not own the connection; closing it is the caller's job. */
  close(): void {}
}

function parseReply(reply: unknown, n: number): BatchDecision | null {
  if (!Array.isArray(reply) || reply.length !== 2 + 5 * n) return null;
  const nums = reply.map((v) => (typeof v === 'number' ? v : Number(v)));
  if (nums.some((v) => !Number.isFinite(v))) return null;
  const results: Decision[] = [];
  for (let i = 0; i < n; i++) {
    const o = 2 + i * 5;
    results.push({
      allowed: nums[o] === 1,
      limit: nums[o + 1]!,
      remaining: nums[o + 2]!,
      retryAfterMs: nums[o + 3]!,
      resetMs: nums[o + 4]!,
      degraded: false,
    });
  }
  return { allowed: nums[0] === 1, degraded: false, results };
}
