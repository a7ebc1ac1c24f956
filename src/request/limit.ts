import { GatewayError } from '../errors/gateway-error.js';
import type { RequestContext } from './context.js';
import type { HeaderSet } from './decision.js';
import { tenantLabel } from './guard.js';
import type { RequestState } from './state.js';

/** What one request spends budget on. */
export interface LimitSubject {
  /** The server it reaches; null for what the gateway answers itself (every server-wide limit applies). */
  readonly server: string | null;
  readonly tool: string | null;
  readonly method: string;
}

/**
 * Applies rate limits and quotas (nothing to do when none are configured). Returns the
 * `RateLimit-*` headers for the response of an allowed request; a refusal is a 429 naming the
 * limit, with `Retry-After` and the same headers.
 */
export async function limitRequest(ctx: RequestContext, state: RequestState, subject: LimitSubject): Promise<readonly HeaderSet[] | null> {
  const limiter = ctx.limiter;
  if (!limiter.enabled) return null;
  const clientId = state.caller?.identity.clientId ?? null;
  const tenant = tenantLabel(ctx, state);
  const outcome = await limiter.check({ ...subject, clientId, ip: clientIp(state), userId: clientId, tenant });
  if (!outcome.allowed) {
    ctx.metrics.rateLimitedInc(subject.server ?? 'none', tenant ?? 'none', outcome.limit);
    ctx.recent?.limited(outcome.limit);
    throw new GatewayError(outcome.code, outcome.message, {
      headers: outcome.headers,
      data: { limit: outcome.limit, retry_after_seconds: outcome.retryAfterSeconds },
    });
  }
  const entries = Object.entries(outcome.headers);
  return entries.length === 0 ? null : entries.map(([key, value]) => ({ key, value }));
}

/** The caller's address: Envoy appends the peer it saw to X-Forwarded-For (use_remote_address). */
export function clientIp(state: RequestState): string | null {
  const xff = state.headers.get('x-forwarded-for');
  if (xff === undefined) return null;
  const last = xff.lastIndexOf(',');
  return (last < 0 ? xff : xff.slice(last + 1)).trim() || null;
}
