import { GlobSet } from '../lib/glob.js';
import { assertValidRule, type BucketRule } from './bucket.js';
import { parseRateShorthand, type LimitKey, type RateLimitsConfig, type TenantQuotasConfig } from './schema.js';
import type { BatchDecision, Decision, LimitCheck, LimiterStore } from './store.js';

/** The parts of the loaded config the limiter reads (structural: `Config` fits once it has these keys). */
export interface LimiterConfigView {
  /** `gateway.rate_limit`: each client's limit on what the gateway answers itself (`off`: none). */
  readonly gateway?: { readonly rate_limit?: string | undefined } | undefined;
  readonly servers: Readonly<Record<string, { readonly rate_limit?: string | undefined }>>;
  readonly rate_limits?: RateLimitsConfig | undefined;
  readonly tenants?:
    | Readonly<Record<string, { readonly quotas?: TenantQuotasConfig | undefined; readonly namespace?: string | undefined }>>
    | undefined;
}

/** Told what each decision left in each bucket and quota it looked at (key, the limit's description, the verdict). */
export type BucketWatch = (key: string, limit: string, decision: Decision) => void;

/** Who is asking for what: everything a limit may be keyed on. Unknown parts are null. */
export interface LimitRequest {
  /** The upstream server the request goes to; null on /mcp when it is not routed to one (initialize, lists, ping). */
  readonly server: string | null;
  /** For tools/call: the server's own (unprefixed) tool name. */
  readonly tool: string | null;
  /** JSON-RPC method. */
  readonly method: string;
  readonly clientId: string | null;
  readonly ip: string | null;
  readonly userId: string | null;
  readonly tenant: string | null;
}

/** Response headers, by name. */
export type LimitHeaders = Readonly<Record<string, string>>;

/** The request may proceed; `headers` go on its response. */
export interface LimitAllowed {
  readonly allowed: true;
  readonly headers: LimitHeaders;
}

/** The request must be answered with an error instead. */
export interface LimitDenied {
  readonly allowed: false;
  /**
   * `GW_ERR_RATE_LIMITED` (429): a limit or quota is used up.
   * `GW_ERR_STATE_UNAVAILABLE` (503): Redis is down and `limits_on_error` is fail-closed.
   */
  readonly code: 'GW_ERR_RATE_LIMITED' | 'GW_ERR_STATE_UNAVAILABLE';
  /** Which limit refused the request, human-readable. */
  readonly limit: string;
  /** The JSON-RPC error message for the client. */
  readonly message: string;
  readonly retryAfterSeconds: number;
  /** `Retry-After` and the `RateLimit-*` headers of the refusing limit. */
  readonly headers: LimitHeaders;
}

export type LimitOutcome = LimitAllowed | LimitDenied;

/** The answer whenever no limit applies: shared, so an unlimited request allocates nothing. */
export const UNLIMITED: LimitAllowed = Object.freeze({ allowed: true, headers: Object.freeze({}) });
const UNLIMITED_PROMISE: Promise<LimitOutcome> = Promise.resolve(UNLIMITED);

/**
 * Methods never limited: notifications (including `notifications/initialized`, without which a
 * session cannot start, and `notifications/cancelled`, which reduces load) and `ping` (refusing a
 * liveness check makes clients reconnect, which costs more). Everything else is limited,
 * `initialize` and the list methods included.
 */
export function isLimitedMethod(method: string): boolean {
  return method !== 'ping' && !method.startsWith('notifications/');
}

interface CompiledLimit {
  readonly rule: BucketRule;
  readonly by: LimitKey;
  /** Key up to the caller identity, e.g. `rl:github:` or `rl:github:t0:`. */
  readonly keyBase: string;
  readonly description: string;
  /** This limit's part of `RateLimit-Policy`. */
  readonly policy: string;
}

interface ServerLimits {
  readonly server: CompiledLimit | null;
  readonly tools: readonly { readonly match: GlobSet; readonly limit: CompiledLimit }[];
}

interface CompiledQuota {
  /** Store key, under the tenant's namespace (its isolation key). */
  readonly key: string;
  readonly limit: number;
  readonly description: string;
  readonly policy: string;
}

/** One check with the text that explains it if it refuses. */
interface Applied {
  readonly check: LimitCheck;
  readonly description: string;
  readonly policy: string;
  readonly kind: 'rate' | 'quota';
}

const BY_TEXT: Readonly<Record<LimitKey, string>> = { client: 'client', ip: 'IP address', user: 'user', tenant: 'tenant' };

function rateText(count: number, unit: string): string {
  return `${count} request${count === 1 ? '' : 's'} per ${unit}`;
}

function compileLimit(
  rule: BucketRule,
  unit: string,
  by: LimitKey,
  keyBase: string,
  subject: string,
): CompiledLimit {
  assertValidRule(rule);
  // The window in which a full bucket refills: the draft's `w`; burst and w together give the rate.
  const w = Math.max(1, Math.ceil((rule.burst * rule.periodMs) / rule.count / 1000));
  return {
    rule,
    by,
    keyBase,
    description: `${subject}: ${rateText(rule.count, unit)} per ${BY_TEXT[by]} (burst ${rule.burst})`,
    policy: `${rule.burst};w=${w}`,
  };
}

/**
 * Rate limits and quotas compiled from config, checked once per JSON-RPC request.
 *
 * Which limits a request spends from:
 * - to a known server: that server's limit (`servers.<name>.rate_limit` or
 *   `rate_limits.<name>`), and for `tools/call` the first `rate_limits.<name>.tools` entry whose
 *   glob matches the tool name; so a server's limit counts exactly what reaches that server;
 * - on /mcp but answered by the gateway (`initialize`, the lists, …): the gateway's own limit
 *   (`gateway.rate_limit`, per client);
 * - with a tenant that has `quotas.requests_per_day`: that quota.
 * All of them pass or none is spent (one atomic store call).
 *
 * Headers (draft-ietf-httpapi-ratelimit-headers, the widely implemented separate-field form):
 * `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (seconds until the budget is whole
 * again) describe the applied limit with the least budget left; `RateLimit-Policy` lists every
 * applied limit as `limit;w=seconds`. Refusals add `Retry-After`. The newer combined
 * `RateLimit: …` structured-field syntax changed between draft revisions, so it is not sent.
 */
export class Limiter {
  /** False when nothing is configured: `check` then always returns {@link UNLIMITED}. */
  readonly enabled: boolean;

  private constructor(
    private readonly store: LimiterStore | null,
    private readonly servers: ReadonlyMap<string, ServerLimits>,
    /** The gateway's own limit on what it answers itself; null when off. */
    private readonly own: CompiledLimit | null,
    private readonly quotas: ReadonlyMap<string, CompiledQuota>,
    private readonly spent: BucketWatch | null,
  ) {
    this.enabled = servers.size > 0 || quotas.size > 0 || own !== null;
  }

  /**
   * Builds the limiter for a config. `store` may be null only when nothing is configured (an
   * error otherwise), so callers can skip creating a store, or a Redis connection, for nothing.
   */
  static compile(cfg: LimiterConfigView, store: LimiterStore | null, spent: BucketWatch | null = null): Limiter {
    const servers = new Map<string, ServerLimits>();
    for (const [name, s] of Object.entries(cfg.servers)) {
      const rl = cfg.rate_limits?.[name];
      const by: LimitKey = rl?.by ?? 'client';
      let server: CompiledLimit | null = null;
      if (rl?.requests_per_minute !== undefined) {
        const rpm = rl.requests_per_minute;
        server = compileLimit({ count: rpm, periodMs: 60_000, burst: rl.burst_size ?? rpm }, 'minute', by, `rl:${name}:`, `server "${name}"`);
      } else if (s.rate_limit !== undefined) {
        const p = parseRateShorthand(s.rate_limit);
        server = compileLimit({ count: p.count, periodMs: p.periodMs, burst: p.burst }, p.unit, by, `rl:${name}:`, `server "${name}"`);
      }
      const tools = (rl?.tools ?? []).map((t, i) => {
        // Tool names are client-chosen: matched by the linear glob engine, `*` only (`?` is literal).
        const match = new GlobSet([t.match], { questionMark: false });
        const rule = { count: t.requests_per_minute, periodMs: 60_000, burst: t.burst_size ?? t.requests_per_minute };
        const subject = `server "${name}", tools matching "${t.match}"`;
        return { match, limit: compileLimit(rule, 'minute', t.by ?? by, `rl:${name}:t${i}:`, subject) };
      });
      if (server !== null || tools.length > 0) servers.set(name, { server, tools });
    }
    const ownRate = cfg.gateway?.rate_limit;
    let own: CompiledLimit | null = null;
    if (ownRate !== undefined && ownRate !== 'off') {
      const p = parseRateShorthand(ownRate);
      // `~` is in no server name: the gateway's buckets never share a key with a server's.
      own = compileLimit({ count: p.count, periodMs: p.periodMs, burst: p.burst }, p.unit, 'client', 'rl:~gateway:', 'the gateway\'s own answers');
    }

    const quotas = new Map<string, CompiledQuota>();
    for (const [tenant, t] of Object.entries(cfg.tenants ?? {})) {
      const perDay = t.quotas?.requests_per_day;
      if (perDay === undefined) continue;
      quotas.set(tenant, {
        key: `q:${t.namespace ?? tenant}`,
        limit: perDay,
        description: `tenant "${tenant}": quota of ${rateText(perDay, 'day')} (resets at 00:00 UTC)`,
        policy: `${perDay};w=86400`,
      });
    }

    const limiter = new Limiter(store, servers, own, quotas, spent);
    if (limiter.enabled && store === null) throw new Error('rate limits are configured but no limiter store was given');
    return limiter;
  }

  /** Decides one request. Never rejects (a failing store answers per `limits_on_error`). */
  check(req: LimitRequest): Promise<LimitOutcome> {
    if (!this.enabled || !isLimitedMethod(req.method)) return UNLIMITED_PROMISE;
    const applied: Applied[] = [];
    if (req.server !== null) {
      const s = this.servers.get(req.server);
      if (s !== undefined) {
        if (s.server !== null) applied.push(this.bucket(s.server, req));
        if (req.tool !== null) {
          const tool = req.tool;
          const hit = s.tools.find((t) => t.match.test(tool));
          if (hit !== undefined) applied.push(this.bucket(hit.limit, req));
        }
      }
    } else if (this.own !== null) {
      applied.push(this.bucket(this.own, req));
    }
    if (req.tenant !== null) {
      const q = this.quotas.get(req.tenant);
      if (q !== undefined) {
        applied.push({
          check: { kind: 'quota', key: q.key, limit: q.limit },
          description: q.description,
          policy: q.policy,
          kind: 'quota',
        });
      }
    }
    if (applied.length === 0 || this.store === null) return UNLIMITED_PROMISE;
    return this.store.decide(applied.map((a) => a.check)).then((d) => {
      const spent = this.spent;
      if (spent !== null && !d.degraded) d.results.forEach((r, i) => spent(applied[i]!.check.key, applied[i]!.description, r));
      return outcome(d, applied);
    });
  }

  /** Every configured limit and quota, as its refusals name it. */
  describe(): string[] {
    const out: string[] = [];
    if (this.own !== null) out.push(this.own.description);
    for (const s of this.servers.values()) {
      if (s.server !== null) out.push(s.server.description);
      for (const t of s.tools) out.push(t.limit.description);
    }
    for (const q of this.quotas.values()) out.push(q.description);
    return out;
  }

  /** Closes the store (not a shared Redis connection; see RedisLimiterStore). */
  close(): void {
    this.store?.close();
  }

  private bucket(l: CompiledLimit, req: LimitRequest): Applied {
    return {
      // The caller's identity is the key's hash tag: on Redis Cluster the buckets of one caller
      // share a slot, so the usual decision (server limit and tool limit) is one atomic script.
      check: { kind: 'bucket', key: `${l.keyBase}{${identity(l.by, req)}}`, rule: l.rule },
      description: l.description,
      policy: l.policy,
      kind: 'rate',
    };
  }
}

/**
 * The caller's identity of kind `by`, or its IP address when it has none (an anonymous caller
 * must neither escape a per-user limit nor share one bucket with every other anonymous caller).
 */
function identity(by: LimitKey, req: LimitRequest): string {
  const v = by === 'client' ? req.clientId : by === 'user' ? req.userId : by === 'tenant' ? req.tenant : req.ip;
  if (v !== null && v !== '') return `${by}:${v}`;
  return req.ip !== null && req.ip !== '' ? `ip:${req.ip}` : 'ip:unknown';
}

const STATE_UNAVAILABLE: LimitDenied = Object.freeze({
  allowed: false,
  code: 'GW_ERR_STATE_UNAVAILABLE',
  limit: 'rate-limit state unavailable',
  message: 'Service Unavailable: rate limits cannot be checked right now; retry shortly',
  retryAfterSeconds: 1,
  headers: Object.freeze({ 'Retry-After': '1' }),
});

function outcome(d: BatchDecision, applied: readonly Applied[]): LimitOutcome {
  if (d.degraded) return d.allowed ? UNLIMITED : STATE_UNAVAILABLE;
  const policy = applied.map((a) => a.policy).join(', ');
  if (d.allowed) {
    let best = 0;
    for (let i = 1; i < d.results.length; i++) {
      const r = d.results[i]!;
      const b = d.results[best]!;
      if (r.remaining < b.remaining || (r.remaining === b.remaining && r.resetMs > b.resetMs)) best = i;
    }
    return { allowed: true, headers: headersFor(d.results[best]!, policy) };
  }
  let worst = -1;
  for (let i = 0; i < d.results.length; i++) {
    const r = d.results[i]!;
    if (!r.allowed && (worst < 0 || r.retryAfterMs > d.results[worst]!.retryAfterMs)) worst = i;
  }
  const r = d.results[worst]!;
  const a = applied[worst]!;
  const retryAfterSeconds = Math.max(1, Math.ceil(r.retryAfterMs / 1000));
  const what = a.kind === 'quota' ? 'Quota exceeded' : 'Rate limit exceeded';
  return {
    allowed: false,
    code: 'GW_ERR_RATE_LIMITED',
    limit: a.description,
    message: `${what}: ${a.description}; retry after ${retryAfterSeconds} s`,
    retryAfterSeconds,
    headers: { ...headersFor(r, policy), 'Retry-After': String(retryAfterSeconds) },
  };
}

function headersFor(r: Decision, policy: string): Record<string, string> {
  return {
    'RateLimit-Limit': String(r.limit),
    'RateLimit-Remaining': String(r.remaining),
    'RateLimit-Reset': String(Math.ceil(r.resetMs / 1000)),
    'RateLimit-Policy': policy,
  };
}
