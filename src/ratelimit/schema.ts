import { z } from 'zod';
import type { ConfigIssue } from '../lib/config-issue.js';

/**
 * Configuration for rate limits and tenant quotas.
 *
 * These schemas are mounted by `src/config/schema.ts` as the top-level `rate_limits` key and
 * under `tenants.<name>.quotas`. Nothing here imports the main schema,
 * so mounting creates no import cycle; the checks that need the whole config (does a rate_limits
 * key name a configured server?) live in {@link rateLimitConfigIssues} for its `superRefine`.
 */

/** Whose budget a request spends. Callers without that identity fall back to their IP address. */
export const LimitKeySchema = z
  .enum(['client', 'ip', 'user', 'tenant'])
  .describe('Whose budget a request spends: client id, client IP, user, or tenant; callers without that identity are counted by IP');
export type LimitKey = z.infer<typeof LimitKeySchema>;

const RequestsPerMinuteSchema = z.number().int().min(1).max(1_000_000);
const BurstSchema = z.number().int().min(1).max(1_000_000);

/** One per-tool limit on a server: for expensive operations, on top of the server's own limit. */
export const ToolRateLimitSchema = z.strictObject({
  match: z
    .string()
    .min(1)
    .max(128)
    .describe("Glob on the server's own (unprefixed) tool name; `*` matches any run of characters. The first matching entry applies"),
  requests_per_minute: RequestsPerMinuteSchema.describe('Sustained rate: tokens added to the bucket per minute'),
  burst_size: BurstSchema.optional().describe('Bucket size: calls allowed at once after a quiet period; default requests_per_minute'),
  by: LimitKeySchema.optional().describe("Whose budget the call spends; default the server entry's `by`"),
});
export type ToolRateLimitConfig = z.infer<typeof ToolRateLimitSchema>;

/**
 * `rate_limits.<server>`: the seed's `{requests_per_minute, burst_size, by}` plus optional
 * per-tool limits. `requests_per_minute` may be left out when only tools are limited (the server
 * may then still carry a `servers.<name>.rate_limit` shorthand).
 */
export const ServerRateLimitSchema = z
  .strictObject({
    requests_per_minute: RequestsPerMinuteSchema.optional().describe(
      'Sustained rate for every request to this server: tokens added to the bucket per minute',
    ),
    burst_size: BurstSchema.optional().describe('Bucket size: requests allowed at once after a quiet period; default requests_per_minute'),
    by: LimitKeySchema.default('client'),
    tools: z
      .array(ToolRateLimitSchema)
      .min(1)
      .optional()
      .describe('Extra limits for tools matching a glob (each call also spends from the server-wide budget)'),
  })
  .superRefine((v, ctx) => {
    if (v.requests_per_minute === undefined && v.tools === undefined) {
      ctx.addIssue({ code: 'custom', message: 'set requests_per_minute, tools, or both', path: [] });
    }
    if (v.burst_size !== undefined && v.requests_per_minute === undefined) {
      ctx.addIssue({ code: 'custom', message: 'burst_size needs requests_per_minute', path: ['burst_size'] });
    }
  });
export type ServerRateLimitConfig = z.infer<typeof ServerRateLimitSchema>;

/** `rate_limits`: per-server token-bucket limits, keyed by server name. */
export const RateLimitsSchema = z
  .record(z.string(), ServerRateLimitSchema)
  .describe('Token-bucket rate limits per upstream server (keys are server names)');
export type RateLimitsConfig = z.infer<typeof RateLimitsSchema>;

/** `tenants.<name>.quotas`. */
export const TenantQuotasSchema = z
  .strictObject({
    requests_per_day: z
      .number()
      .int()
      .min(1)
      .max(1_000_000_000)
      .optional()
      .describe("Requests this tenant may make per UTC day (the count resets at 00:00 UTC); counted across all servers and replicas"),
  })
  .describe('Usage quotas of this tenant');
export type TenantQuotasConfig = z.infer<typeof TenantQuotasSchema>;

const UNIT_MS = {
  s: 1_000,
  sec: 1_000,
  second: 1_000,
  m: 60_000,
  min: 60_000,
  minute: 60_000,
  h: 3_600_000,
  hour: 3_600_000,
  d: 86_400_000,
  day: 86_400_000,
} as const satisfies Record<string, number>;

const UNIT_NAME: Readonly<Record<number, string>> = {
  1_000: 'second',
  60_000: 'minute',
  3_600_000: 'hour',
  86_400_000: 'day',
};

/** A parsed `N/unit` shorthand. */
export interface RateShorthand {
  /** N: tokens added per period. */
  readonly count: number;
  readonly periodMs: number;
  /** `second`, `minute`, `hour` or `day`. */
  readonly unit: string;
  /** The same rate per minute (fractional for `/h` and `/day`). */
  readonly requestsPerMinute: number;
  /** Default burst: N, i.e. a whole period's allowance may be spent at once. */
  readonly burst: number;
}

/**
 * Parses the seed's `servers.<name>.rate_limit` shorthand (`100/min`, `10/s`, `5000/day`).
 *
 * The burst defaults to N: `100/min` allows 100 requests at once, then refills at 100 per
 * minute, the usual reading of "100 per minute" without bunching every caller's budget into one
 * request per 600 ms. For a different burst use `rate_limits.<server>` instead.
 */
export function parseRateShorthand(s: string): RateShorthand {
  const m = /^([1-9][0-9]*)\/(s|sec|second|m|min|minute|h|hour|d|day)$/.exec(s);
  if (m === null) throw new Error(`bad rate shorthand ${JSON.stringify(s)}: expected N/unit, e.g. 100/min`);
  const count = Number(m[1]);
  const periodMs = UNIT_MS[m[2] as keyof typeof UNIT_MS];
  if (!Number.isSafeInteger(count) || count > 1_000_000) throw new Error(`rate ${s} is too large`);
  return {
    count,
    periodMs,
    unit: UNIT_NAME[periodMs] ?? 'period',
    requestsPerMinute: (count * 60_000) / periodMs,
    burst: count,
  };
}

/** The parts of the whole config the cross-checks read (structural, so no import of the main schema). */
export interface RateLimitConfigView {
  readonly servers: Readonly<Record<string, { readonly rate_limit?: string | undefined }>>;
  readonly rate_limits?: RateLimitsConfig | undefined;
}

/**
 * Cross-field checks for the main schema's `superRefine`:
 * - every `rate_limits` key names a configured server;
 * - a server does not get a server-wide rate from both `servers.<name>.rate_limit` and
 *   `rate_limits.<name>.requests_per_minute` (one would silently override the other). The
 *   shorthand may be combined with `rate_limits.<name>.tools`.
 */
export function rateLimitConfigIssues(cfg: RateLimitConfigView): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  for (const [name, rl] of Object.entries(cfg.rate_limits ?? {})) {
    const server = cfg.servers[name];
    if (server === undefined) {
      issues.push({ path: ['rate_limits', name], message: `rate_limits names "${name}", which is not a configured server` });
    } else if (server.rate_limit !== undefined && rl.requests_per_minute !== undefined) {
      issues.push({
        path: ['rate_limits', name, 'requests_per_minute'],
        message: `server "${name}" already has rate_limit: ${server.rate_limit}; set one or the other`,
      });
    }
  }
  return issues;
}
