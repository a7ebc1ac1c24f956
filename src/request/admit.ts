import { authFailureOf, type Identity } from '../auth/identity.js';
import { requestTarget } from '../auth/resource-metadata.js';
import { pathOf } from '../lib/url.js';
import type { RuntimeServer, RuntimeView } from '../config/runtime.js';
import { AGGREGATED_PATH } from '../config/runtime.js';
import { GatewayError } from '../errors/gateway-error.js';
import type { RequestContext } from './context.js';
import type { RespondDecision } from './decision.js';
import { auditAuthFailure, resolveTenant } from './guard.js';
import type { Caller, Headers, RequestState } from './state.js';

/** Where an admitted request goes. */
export type Destination =
  | { readonly endpoint: 'aggregated'; readonly view: RuntimeView | null }
  | { readonly endpoint: 'passthrough'; readonly server: RuntimeServer }
  /** Answered at once (public documents such as RFC 9728 metadata). */
  | { readonly endpoint: 'answered'; readonly decision: RespondDecision };

/**
 * The first look at a request: Host and Origin (DNS-rebinding protection), then the path picks
 * the endpoint. Throws the error to answer with.
 */
export function admit(ctx: RequestContext, headers: Headers, method: string): Destination {
  const rc = ctx.rc;
  if (rc.hostAllowed !== null && !rc.hostAllowed(headers.get(':authority') ?? '')) throw new GatewayError('GW_ERR_HTTP_BAD_HOST');
  const origin = headers.get('origin');
  if (origin !== undefined && !rc.originAllowed(origin)) throw new GatewayError('GW_ERR_HTTP_BAD_ORIGIN');

  const path = pathOf(headers.get(':path') ?? '/');
  if (path === AGGREGATED_PATH) return { endpoint: 'aggregated', view: null };
  const server = rc.passthroughPaths.get(path);
  if (server !== undefined) return { endpoint: 'passthrough', server };
  const view = rc.viewPaths.get(path);
  if (view !== undefined) return { endpoint: 'aggregated', view };
  // RFC 9728 protected-resource metadata is public: served before authentication.
  const meta = ctx.guard.auth.resource?.respond(path, method, requestTarget(headers).origin) ?? null;
  if (meta !== null) {
    const headers = Object.entries(meta.headers).map(([key, value]) => ({ key, value }));
    return { endpoint: 'answered', decision: { kind: 'respond', status: meta.status, headers, body: meta.body, details: 'mcpgw_resource_metadata' } };
  }
  throw new GatewayError('GW_ERR_HTTP_NOT_FOUND', `Not Found: ${path}`);
}

/**
 * Authenticates the caller and resolves its tenant (cheap when neither is configured). Failures
 * are audited and metered; `server` names the passthrough server the request was for, if any.
 */
export async function authenticate(ctx: RequestContext, state: RequestState, server: string | null): Promise<Caller> {
  let identity: Identity;
  try {
    identity = await ctx.guard.auth.authenticate(state.headers);
  } catch (err) {
    const failure = authFailureOf(err);
    if (failure !== null) auditAuthFailure(ctx, state, failure, server);
    throw err;
  }
  return resolveTenant(ctx, state, identity);
}

/** A POST must announce a body the gateway accepts, and have one. */
export function checkPostBody(ctx: RequestContext, state: RequestState, endOfStream: boolean): void {
  if (state.method !== 'POST') return;
  const len = Number(state.headers.get('content-length') ?? '0');
  if (len > ctx.rc.maxBodyBytes) throw new GatewayError('GW_ERR_BODY_TOO_LARGE');
  if (endOfStream) throw new GatewayError('GW_ERR_PARSE', 'Parse error: empty body');
}

/** Whether an Accept header admits both media types a Streamable HTTP POST needs. */
export function acceptsMcp(accept: string): boolean {
  // Clients send the same Accept on every request: remember the verdict for a few values.
  let verdict = ACCEPT_VERDICTS.get(accept);
  if (verdict === undefined) {
    verdict = accepts(accept, 'application/json') && accepts(accept, 'text/event-stream');
    if (ACCEPT_VERDICTS.size >= 64) ACCEPT_VERDICTS.clear();
    ACCEPT_VERDICTS.set(accept, verdict);
  }
  return verdict;
}

const ACCEPT_VERDICTS = new Map<string, boolean>();

/** Whether an Accept header admits a media type (wildcards included). */
export function accepts(accept: string, type: string): boolean {
  const [major] = type.split('/');
  for (const part of accept.split(',')) {
    const media = part.split(';')[0]!.trim().toLowerCase();
    if (media === type || media === '*/*' || media === `${major}/*`) return true;
  }
  return false;
}
