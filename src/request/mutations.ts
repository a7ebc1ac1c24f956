import type { RuntimeServer } from '../config/runtime.js';
import { BACKEND_HEADER, CLIENT_CREDENTIAL_HEADERS, credentialMetadataKey, ROUTE_METADATA_KEYS } from '../envoy/contract.js';
import { MCP_METHOD_HEADER, MCP_NAME_HEADER, PROTOCOL_VERSION_HEADER, SESSION_HEADER } from '../mcp/headers.js';
import { isObject, type JsonObject } from '../mcp/message.js';
import { childTraceparent } from '../observability/trace.js';
import type { RequestContext } from './context.js';
import type { ContinueDecision, Decision, HeaderSet } from './decision.js';
import type { RequestState } from './state.js';

/**
 * Every header and body change the processor asks Envoy to make, in one place: what is stripped
 * from client requests, what an upstream request carries (route, session, credentials, trace
 * context), and what responses get (session id, rate-limit headers, body rewriting).
 */

/** Headers a client must never set for us, plus credentials that must never reach an upstream. */
const STRIPPED_REQUEST_HEADERS: readonly string[] = [BACKEND_HEADER, ...CLIENT_CREDENTIAL_HEADERS, 'x-forwarded-client-cert'];

/**
 * The same, minus the routing header (set, not removed, when the processor routes), plus the
 * client's 2026-07-28 routing headers: they name what the client sees (prefixed names), not what
 * the server has, and the request goes out in the server's own session-based revision.
 */
const STRIPPED_ON_ROUTE: readonly string[] = [...STRIPPED_REQUEST_HEADERS.filter((h) => h !== BACKEND_HEADER), MCP_METHOD_HEADER, MCP_NAME_HEADER];

/**
 * A body we may rewrite must not carry a length: if the whole body reached Envoy before our header
 * reply, Envoy hands it over buffered and rejects a changed body whose length no longer matches.
 */
const LENGTH_HEADER: readonly string[] = ['content-length'];

/** An admitted request goes on with what clients must not send stripped. */
export const ADMITTED: ContinueDecision = Object.freeze({ kind: 'continue', removeHeaders: STRIPPED_REQUEST_HEADERS });

/**
 * The `traceparent` an upstream gets for this request: one child span of the request's trace,
 * the same in the header and in `_meta`, however often it is asked for.
 */
export function upstreamTraceparent(state: RequestState): string {
  state.upstreamTraceparent ??= childTraceparent(state.trace);
  return state.upstreamTraceparent;
}

/** Headers every request to an upstream carries: the trace context and the gateway's own credentials for it. */
function upstreamHeaders(ctx: RequestContext, state: RequestState, server: RuntimeServer): HeaderSet[] {
  return [{ key: 'traceparent', value: upstreamTraceparent(state) }, ...ctx.guard.credentials.headersFor(server.name)];
}

/**
 * A passthrough request at its headers: stripped, and given the upstream's credentials and the
 * trace context. Set here, so requests without a body (the GET stream, DELETE) carry them too.
 */
export function passthroughRequest(ctx: RequestContext, state: RequestState, server: RuntimeServer): ContinueDecision {
  return { kind: 'continue', removeHeaders: STRIPPED_REQUEST_HEADERS, setHeaders: upstreamHeaders(ctx, state, server) };
}

/** A buffered request or response body replaced as a whole (it keeps a length Envoy checks). */
export function replaceBody(body: string | Buffer): ContinueDecision {
  const bytes = typeof body === 'string' ? Buffer.from(body) : body;
  return { kind: 'continue', setHeaders: [{ key: 'content-length', value: String(bytes.length) }], body: bytes };
}

/** What an aggregated request needs to reach one upstream session. */
export interface UpstreamTarget {
  readonly server: RuntimeServer;
  /** The upstream's session id (null: the upstream runs stateless). */
  readonly sessionId: string | null;
  readonly protocolVersion: string;
  /** The routing headers a server of a sessionless revision reads (its `Mcp-Method` and `Mcp-Name`). */
  readonly routing?: { readonly method: string; readonly name: string | null };
}

/**
 * Sends a rewritten aggregated request to one server: the routing header picks its route and
 * cluster (route cache cleared), the upstream's own session replaces the client's, the body is
 * the upstream's own names.
 */
export function routeToServer(ctx: RequestContext, state: RequestState, target: UpstreamTarget, body: string): ContinueDecision {
  const bytes = Buffer.from(body);
  const setHeaders: HeaderSet[] = [
    { key: BACKEND_HEADER, value: target.server.name },
    { key: PROTOCOL_VERSION_HEADER, value: target.protocolVersion },
    { key: 'content-length', value: String(bytes.length) },
    ...upstreamHeaders(ctx, state, target.server),
  ];
  let removeHeaders = STRIPPED_ON_ROUTE;
  if (target.routing !== undefined) {
    const named = target.routing.name !== null;
    removeHeaders = removeHeaders.filter((h) => h !== MCP_METHOD_HEADER && (h !== MCP_NAME_HEADER || !named));
    setHeaders.push({ key: MCP_METHOD_HEADER, value: target.routing.method });
    if (target.routing.name !== null) setHeaders.push({ key: MCP_NAME_HEADER, value: target.routing.name });
  }
  if (target.sessionId !== null) setHeaders.push({ key: SESSION_HEADER, value: target.sessionId });
  else removeHeaders = [...removeHeaders, SESSION_HEADER];
  return { kind: 'continue', setHeaders, removeHeaders, body: bytes, clearRouteCache: true };
}

/** Request params with the W3C trace context added to `_meta` (the MCP convention for propagation). */
export function withTraceMeta(state: RequestState, params: JsonObject | undefined): JsonObject {
  const p = params ?? {};
  const meta: JsonObject = { ...(isObject(p['_meta']) ? p['_meta'] : {}), traceparent: upstreamTraceparent(state) };
  if (state.trace.tracestate !== null) meta['tracestate'] = state.trace.tracestate;
  return { ...p, _meta: meta };
}

/** The gateway's session id on an aggregated response (it replaces the upstream's). */
export function gatewaySessionHeader(sessionId: string): HeaderSet {
  return { key: SESSION_HEADER, value: sessionId };
}

/** Response headers that hand the body to the processor chunk by chunk for rewriting. */
export function rewriteResponseBody(setHeaders: readonly HeaderSet[]): ContinueDecision {
  return { kind: 'continue', setHeaders, removeHeaders: LENGTH_HEADER, responseBodyMode: 'STREAMED' };
}

/** Response headers changed, body untouched. */
export function setResponseHeaders(setHeaders: readonly HeaderSet[]): ContinueDecision {
  return setHeaders.length === 0 ? { kind: 'continue' } : { kind: 'continue', setHeaders };
}

/** Adds the `RateLimit-*` headers of an allowed request to the decision that answers it. */
export function withLimitHeaders(d: Decision, limitHeaders: readonly HeaderSet[]): Decision {
  if (d.kind === 'respond') return d.errorCode === undefined ? { ...d, headers: [...d.headers, ...limitHeaders] } : d;
  if (d.kind === 'stream') return { ...d, headers: [...d.headers, ...limitHeaders] };
  return { ...d, setHeaders: [...(d.setHeaders ?? []), ...limitHeaders] };
}

/** A header that forces a route re-selection: Envoy clears its route cache only beside a header change. */
const REROUTE_MARK = ['x-mcpgw-reroute'];

/** Route-metadata keys of the headers the processor sets upstream. */
const HEADER_TO_ROUTE_KEY: ReadonlyMap<string, string> = new Map([
  [BACKEND_HEADER, ROUTE_METADATA_KEYS.backend],
  [SESSION_HEADER, ROUTE_METADATA_KEYS.upstreamSession],
  [PROTOCOL_VERSION_HEADER, ROUTE_METADATA_KEYS.protocolVersion],
  ['traceparent', ROUTE_METADATA_KEYS.traceparent],
  [MCP_METHOD_HEADER, ROUTE_METADATA_KEYS.mcpMethod],
  [MCP_NAME_HEADER, ROUTE_METADATA_KEYS.mcpName],
]);

/**
 * One reply for a request decided at its body (Envoy skipped its headers message, so header
 * changes in a body reply would be dropped): what the headers phase and the body phase set
 * becomes route metadata, which the route turns into upstream headers; what they removed the
 * route removes itself; Envoy's buffer filter fixes the length.
 */
export function decidedAtBody(ctx: RequestContext, head: ContinueDecision, body: ContinueDecision): ContinueDecision {
  const md: Record<string, string> = {};
  for (const h of [...(head.setHeaders ?? []), ...(body.setHeaders ?? [])]) {
    const name = h.key.toLowerCase();
    if (name === 'content-length') continue;
    const key = HEADER_TO_ROUTE_KEY.get(name) ?? (ctx.guard.credentials.headerNames.has(name) ? credentialMetadataKey(name) : null);
    if (key === null) throw new Error(`no route header carries ${name} for a request decided at its body`);
    md[key] = h.value;
  }
  const out: ContinueDecision = { kind: 'continue', routeMetadata: md };
  if (body.body !== undefined) Object.assign(out, { body: body.body });
  if (body.clearRouteCache === true) Object.assign(out, { clearRouteCache: true, removeHeaders: REROUTE_MARK });
  return out;
}
