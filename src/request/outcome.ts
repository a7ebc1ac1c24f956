import type { RuntimeServer } from '../config/runtime.js';
import { GatewayError, toGatewayError } from '../errors/gateway-error.js';
import type { AuditRecord } from '../policy/audit.js';
import { StateUnavailableError } from '../state/errors.js';
import {
  UpstreamBadReply,
  UpstreamReplyTooLarge,
  UpstreamRpcError,
  UpstreamSessionGone,
  UpstreamUnreachable,
} from '../upstream/client.js';
import type { RequestContext } from './context.js';
import { tenantLabel } from './guard.js';
import { rpcMethod, type Headers, type RequestState } from './state.js';

/**
 * How a request ends up in the record: the operation's metrics and log line, the metadata
 * Envoy's access log carries, and the one mapping from anything thrown on the request path to
 * the error a client may see.
 */

/** Anything thrown on the request path, as the GatewayError the client gets. */
export function clientError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  if (err instanceof StateUnavailableError) {
    return new GatewayError('GW_ERR_STATE_UNAVAILABLE', undefined, { headers: { 'retry-after': '1' }, cause: err });
  }
  if (err instanceof UpstreamUnreachable) {
    return err.timedOut
      ? new GatewayError('GW_ERR_UPSTREAM_TIMEOUT', `Upstream server timed out: ${err.server}`, { cause: err })
      : new GatewayError('GW_ERR_UPSTREAM_UNAVAILABLE', `Upstream server unavailable: ${err.server}`, { cause: err });
  }
  if (err instanceof UpstreamRpcError) {
    return new GatewayError('GW_ERR_UPSTREAM_UNAVAILABLE', `Upstream server ${err.server} refused the session: ${err.message}`, { cause: err });
  }
  if (err instanceof UpstreamSessionGone) {
    return new GatewayError('GW_ERR_UPSTREAM_UNAVAILABLE', `Upstream server unavailable: ${err.server}`, { cause: err });
  }
  if (err instanceof UpstreamBadReply) {
    return new GatewayError('GW_ERR_UPSTREAM_UNAVAILABLE', `Upstream server unavailable: ${err.server} answered ${err.method} with HTTP ${err.status}`, {
      cause: err,
    });
  }
  if (err instanceof UpstreamReplyTooLarge) {
    return new GatewayError('GW_ERR_UPSTREAM_TOO_LARGE', `Upstream response too large: ${err.server} sent more than ${err.limitBytes} bytes`, {
      cause: err,
    });
  }
  return toGatewayError(err);
}

/** Dynamic metadata for Envoy's access log (namespace mcp.gateway). */
export function accessLogMetadata(ctx: RequestContext, state: RequestState): Record<string, string> {
  const md: Record<string, string> = { trace_id: state.trace.traceId };
  const method = rpcMethod(state);
  if (method !== null) md['method'] = wellFormed(method.slice(0, 100));
  if (state.server !== null) md['server'] = state.server;
  if (state.tool !== null) md['tool'] = wellFormed(state.tool.slice(0, 128));
  const client = state.caller?.identity.clientId;
  if (client) md['client'] = wellFormed(client);
  const tenant = tenantLabel(ctx, state);
  if (tenant !== null) md['tenant'] = tenant;
  return md;
}

/** Client-chosen text as valid UTF-8 (Envoy refuses metadata with lone surrogates). */
function wellFormed(text: string): string {
  return text.isWellFormed() ? text : text.toWellFormed();
}

/** What an operation line adds of the access decision that let it through. */
function allowedFields(a: AuditRecord): Readonly<Record<string, string | null>> {
  return {
    decision: a.decision,
    reason: a.reason,
    auth_method: a.auth_method,
    ...(a.tool === undefined ? {} : { tool: a.tool }),
    ...(a.prompt === undefined ? {} : { prompt: a.prompt }),
    ...(a.uri === undefined ? {} : { uri: a.uri }),
  };
}

/** Records the finished operation: metrics, and its log line. */
export function recordOperation(ctx: RequestContext, state: RequestState, now: number): void {
  const msg = state.message;
  const method = rpcMethod(state);
  const { server, tool } = state;
  let status = state.status;
  // An allowed decision rides on the operation line: the console keeps it now.
  if (state.allowed !== null) ctx.recent?.audit(state.allowed);
  if (status === 'success' && state.httpStatus !== null && state.httpStatus >= 400) status = 'error';
  ctx.observer.record({
    method,
    server,
    tool,
    toolKnown: tool !== null && server !== null && (state.toolKnown || ctx.knownTool(server, tool)),
    clientId: state.caller?.identity.clientId ?? null,
    tenant: tenantLabel(ctx, state),
    status,
    httpStatus: state.httpStatus,
    errorCode: state.errorCode,
    traceId: state.trace.traceId,
    durationMs: now - state.startedAt,
    requestBytes: state.requestBytes,
    endpoint: state.endpoint,
    ...(state.allowed === null ? {} : { access: allowedFields(state.allowed) }),
    ...(ctx.logArguments && msg?.kind === 'request' && method === 'tools/call' ? { arguments: msg.params?.['arguments'] } : {}),
    ...(state.filters === null ? {} : { filters: state.filters }),
    ...(state.cache === null ? {} : { cache: state.cache }),
  });
}

/**
 * A 5xx that is not an MCP reply is Envoy's own (no healthy host, connect failure, timeout): the
 * client gets a JSON-RPC error naming the server instead. null when the reply is the upstream's.
 */
export function envoyFailure(ctx: RequestContext, server: RuntimeServer, headers: Headers): GatewayError | null {
  const status = Number(headers.get(':status') ?? '0');
  if (status < 500) return null;
  const ct = headers.get('content-type') ?? '';
  if (ct.includes('application/json') || ct.includes('text/event-stream')) return null;
  if (status === 504) return new GatewayError('GW_ERR_UPSTREAM_TIMEOUT', `Upstream server timed out: ${server.name}`);
  ctx.reportUnreachable(server);
  return new GatewayError('GW_ERR_UPSTREAM_UNAVAILABLE', `Upstream server unavailable: ${server.name}`);
}
