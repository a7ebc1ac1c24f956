/**
 * Token-bucket arithmetic, shared by the in-memory store and (transcribed to Lua) the Redis store.
 *
 * A bucket holds at most `burst` tokens and gains `count` tokens every `periodMs`; a request
 * spends `cost` tokens (normally 1) or is refused. To keep the arithmetic exact, the level is kept
 * in *units* of `1 / periodMs` token: refilling for `t` ms adds exactly `t * count` units, so with
 * integer times and rules every value is an integer and no rounding drift builds up — the same
 * numbers come out of JavaScript and Redis's Lua, and tests can assert exact refill times.
 */

/** A bucket's shape: `count` tokens per `periodMs`, holding at most `burst`. All positive integers. */
export interface BucketRule {
  readonly count: number;
  readonly periodMs: number;
  readonly burst: number;
}

/** What a store remembers per bucket. No state means a full bucket. */
export interface BucketState {
  /** Tokens × periodMs (an integer). */
  readonly units: number;
  /** When `units` was computed (ms since the epoch). */
  readonly at: number;
}

/** The outcome of one {@link takeTokens}. */
export interface BucketResult {
  readonly allowed: boolean;
  /** Whole tokens left after this request. */
  readonly remaining: number;
  /** 0 when allowed; otherwise how long until `cost` tokens are there. */
  readonly retryAfterMs: number;
  /** How long until the bucket is full again (then its state may be forgotten). */
  readonly resetMs: number;
  /** The state to store; equal to the refilled input state when refused. */
  readonly newState: BucketState;
}

/** Throws unless `rule` and `cost` keep the arithmetic in exact integers. */
export function assertValidRule(rule: BucketRule, cost = 1): void {
  for (const [k, v] of [
    ['count', rule.count],
    ['periodMs', rule.periodMs],
    ['burst', rule.burst],
    ['cost', cost],
  ] as const) {
    if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`bucket ${k} must be a positive integer, got ${v}`);
  }
  if (cost > rule.burst) throw new RangeError(`cost ${cost} exceeds burst ${rule.burst}: the request could never pass`);
  if (rule.burst * rule.periodMs > 2 ** 52) throw new RangeError('burst × period is too large for exact arithmetic');
}

/**
 * Takes `cost` tokens from a bucket at time `now`.
 *
 * Pure: the clock is an argument, so callers (and tests) decide what time it is. A clock that
 * runs backwards (`now` before `state.at`) adds no tokens and the wait is measured from `state.at`.
 */
export function takeTokens(state: BucketState | null, now: number, rule: BucketRule, cost = 1): BucketResult {
  const cap = rule.burst * rule.periodMs;
  const need = cost * rule.periodMs;
  let units = cap;
  let at = now;
  if (state !== null) {
    const elapsed = now - state.at;
    units = elapsed > 0 ? Math.min(cap, state.units + elapsed * rule.count) : Math.min(cap, state.units);
    at = Math.max(now, state.at);
  }
  const lag = at - now;
  const allowed = units >= need;
  const after = allowed ? units - need : units;
  return {
    allowed,
    remaining: Math.floor(after / rule.periodMs),
    retryAfterMs: allowed ? 0 : lag + Math.ceil((need - units) / rule.count),
    resetMs: lag + Math.ceil((cap - after) / rule.count),
    newState: { units: after, at },
  };
}

/** Milliseconds in a UTC day; quotas reset at every multiple of it since the epoch (00:00 UTC). */
export const DAY_MS = 86_400_000;

/** Days since 1970-01-01 (UTC) at `now`. */
export function utcDay(now: number): number {
  return Math.floor(now / DAY_MS);
}

/** `YYYY-MM-DD` of UTC day number `day` (what quota keys are suffixed with). */
export function utcDateOf(day: number): string {
  return new Date(day * DAY_MS).toISOString().slice(0, 10);
}

/** The outcome of one {@link countQuota}. */
export interface QuotaResult {
  readonly allowed: boolean;
  readonly remaining: number;
  readonly retryAfterMs: number;
  /** Until the next 00:00 UTC. */
  readonly resetMs: number;
  /** The count to store for the current day. */
  readonly used: number;
}

/**
 * Counts `cost` requests against a daily quota. `used` is the count already spent on the UTC day
 * of `now`; a refused request is not counted.
 */
export function countQuota(used: number, now: number, limit: number, cost = 1): QuotaResult {
  const resetMs = (utcDay(now) + 1) * DAY_MS - now;
  const allowed = used + cost <= limit;
  const after = allowed ? used + cost : used;
  return { allowed, remaining: Math.max(0, limit - after), retryAfterMs: allowed ? 0 : resetMs, resetMs, used: after };
}
