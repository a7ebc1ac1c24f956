/**
 * The two log methods state stores need; a pino `Logger` satisfies it.
 */
export interface StateLogger {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

/** A logger that drops everything (the default when a store is built without one). */
export const SILENT_STATE_LOGGER: StateLogger = Object.freeze({ warn: () => {}, info: () => {} });

/** A failing scope that saw no failure for this many probe intervals counts as recovered. */
const STALE_SCOPE_PROBES = 8;

/**
 * When calls are held back: after this many failed calls in a row, the first of them at least
 * {@link HOLD_BACK_AFTER_MS} ago, with no success in between. A Redis that stalls for a moment
 * (it, or the whole machine, briefly starved of CPU) then costs only the calls it left waiting,
 * not every request of the next probe interval as well; one that stays down is held back after a
 * second, during which each request waited at most one command timeout.
 */
export const HOLD_BACK_AFTER_FAILURES = 3;
/** See {@link HOLD_BACK_AFTER_FAILURES}. */
export const HOLD_BACK_AFTER_MS = 1_000;

/**
 * Tracks whether a Redis-backed component is healthy, so an outage is logged once when it starts
 * and once when it ends instead of once per request.
 *
 * While down it also acts as a small circuit breaker: once calls have kept failing (see
 * {@link HOLD_BACK_AFTER_FAILURES}), only one call per `probeIntervalMs` goes to Redis, the
 * others fail at once. Commands to a dead *connection* already fail immediately (the
 * client has no offline queue); this matters when the connection looks alive but Redis does not
 * answer, where every request would otherwise wait for the full command timeout.
 *
 * On Redis Cluster a failing primary takes only its own hash slots away. Callers then pass the
 * slot as `scope`: the breaker holds back calls to failing slots only, and the outage ends (and
 * is logged as ended) once no slot has failed for a while, not at the first answer from a
 * healthy primary.
 */
export class OutageTracker {
  private isDown = false;
  /** Failing scopes (Cluster slots): when each was last tried and last failed, and failures in a row. */
  private readonly failing = new Map<number, { lastProbe: number; lastFailure: number; inARow: number; rowSince: number }>();
  private since = 0;
  private lastProbe = 0;
  private failures = 0;
  /** Failed calls since the last successful one, and when the first of them failed. */
  private inARow = 0;
  private rowSince = 0;

  constructor(
    private readonly component: string,
    private readonly impact: string,
    private readonly log: StateLogger,
    private readonly target: string,
    private readonly probeIntervalMs = 250,
    private readonly clock: () => number = Date.now,
    private readonly holdBackAfter: number = HOLD_BACK_AFTER_FAILURES,
    private readonly holdBackAfterMs: number = HOLD_BACK_AFTER_MS,
  ) {}

  /** Whether a row of failures is long enough, in count and in time, to hold calls back. */
  private holding(inARow: number, rowSince: number): boolean {
    return inARow >= this.holdBackAfter && this.clock() - rowSince >= this.holdBackAfterMs;
  }

  /** True while the last call failed and no call has succeeded since. */
  get down(): boolean {
    return this.isDown;
  }

  /**
   * Whether a call should go to Redis now (always while healthy; one probe per interval while
   * down). With a `scope`, only that scope's failures count.
   */
  shouldTry(scope?: number): boolean {
    if (scope !== undefined) {
      const f = this.failing.get(scope);
      if (f === undefined || !this.holding(f.inARow, f.rowSince)) return true;
      const now = this.clock();
      if (now - f.lastProbe < this.probeIntervalMs) return false;
      f.lastProbe = now;
      return true;
    }
    if (!this.isDown || !this.holding(this.inARow, this.rowSince)) return true;
    const now = this.clock();
    if (now - this.lastProbe < this.probeIntervalMs) return false;
    this.lastProbe = now;
    return true;
  }

  /** Records a successful call; logs the recovery if this ends an outage. */
  ok(scope?: number): void {
    this.inARow = 0;
    if (scope !== undefined) this.failing.delete(scope);
    if (!this.isDown) return;
    const now = this.clock();
    if (scope !== undefined) {
      // A scope that has not failed for a while is no longer known to fail (it may see no calls).
      for (const [s, f] of this.failing) if (now - f.lastFailure > STALE_SCOPE_PROBES * this.probeIntervalMs) this.failing.delete(s);
      if (this.failing.size > 0) return;
    }
    this.isDown = false;
    this.log.info(
      { component: this.component, redis: this.target, outage_ms: now - this.since, failed_calls: this.failures },
      `${this.component}: Redis reachable again, shared state restored`,
    );
    this.failures = 0;
  }

  /** Records a failed call; logs the start of an outage once. */
  fail(err: unknown, scope?: number): void {
    if (scope !== undefined) {
      const at = this.clock();
      const prev = this.failing.get(scope);
      this.failing.set(scope, { lastProbe: at, lastFailure: at, inARow: (prev?.inARow ?? 0) + 1, rowSince: prev?.rowSince ?? at });
    }
    this.failures += 1;
    if (this.inARow === 0) this.rowSince = this.clock();
    this.inARow += 1;
    if (this.isDown) return;
    const now = this.clock();
    this.isDown = true;
    this.since = now;
    this.lastProbe = now;
    this.log.warn(
      { component: this.component, redis: this.target, err: errorSummary(err) },
      `${this.component}: Redis unavailable, ${this.impact}`,
    );
  }
}

/** A short, credential-free description of a Redis failure for the log. */
export function errorSummary(err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${err.message}`;
  return String(err);
}
