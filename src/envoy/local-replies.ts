/** How Envoy's own answers become JSON-RPC errors: the client listener's local_reply_config. */
import { ERROR_TABLE, type GatewayErrorCode } from '../errors/codes.js';
import { METADATA_NAMESPACE } from './contract.js';

function celFilter(expression: string): Record<string, unknown> {
  return {
    extension_filter: {
      name: 'envoy.access_loggers.extension_filters.cel',
      typed_config: { '@type': 'type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter', expression },
    },
  };
}

function statusFilter(status: number): Record<string, unknown> {
  return { status_code_filter: { comparison: { op: 'EQ', value: { default_value: status, runtime_key: `mcpgw.local_reply.${status}` } } } };
}

/** A local reply rewritten as the JSON-RPC error of `code` (its status, message and, when given, headers). */
function jsonRpcLocalReply(
  filter: Record<string, unknown>,
  code: GatewayErrorCode,
  headers: Record<string, string> = {},
  message: string = ERROR_TABLE[code].message,
): Record<string, unknown> {
  const e = ERROR_TABLE[code];
  return {
    filter,
    status_code: e.http,
    headers_to_add: Object.entries(headers).map(([key, value]) => ({ header: { key, value }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' })),
    body_format_override: {
      json_format: { jsonrpc: '2.0', id: null, error: { code: e.jsonrpc, message } },
      content_type: 'application/json',
    },
  };
}

/**
 * Every answer Envoy writes itself becomes a JSON-RPC error with the right status; the id is null,
 * because Envoy answers without reading the body. The processor's own answers (details `gw_err_*`,
 * `mcpgw_*`) and the routes' direct responses already are JSON-RPC, and are left as they are.
 * Order matters: the first mapper that matches decides.
 *
 * - The processor failed: ext_proc could not reach a replica, or lost the stream mid-request
 *   (503 with `Retry-After`, a retry lands on a live replica), or it did not answer within the
 *   message timeout (504).
 * - An upstream failed on a route whose response the processor does not see (an open passthrough
 *   POST, a passthrough GET stream): 503 or 504, as the processor would have said it.
 * - Envoy refused the request before any route: bad HTTP (400), HTTP/1.0 (426), headers over the
 *   limits (431), a body over `max_body_bytes` (413), a path Envoy cannot normalise (400),
 *   CONNECT (405) or an `Upgrade:` (400).
 * - Anything else keeps its status and gets Envoy's own short text as the message.
 */
export function localReplyMappers(opts: { serverInRouteMetadata: boolean } = { serverInRouteMetadata: true }): Record<string, unknown>[] {
  const retry = { 'retry-after': '1' };
  const details = (prefix: string): string => `response.code_details.startsWith('${prefix}')`;
  // The server a passthrough route serves, from the route's metadata (see routeMetadata); routes
  // that carry none (Istio's VirtualServices) get the message without it.
  const server = (message: string): string => (opts.serverInRouteMetadata ? `${message}: %METADATA(ROUTE:${METADATA_NAMESPACE}:server)%` : message);
  return [
    { filter: celFilter(`${details('gw_err_')} || ${details('mcpgw_')} || response.code_details == 'direct_response'`) },
    // A message timeout is Envoy's 504; a deadline the gRPC stream itself hit is gRPC status 4.
    jsonRpcLocalReply(celFilter(`response.code == 504 && ${details('ext_proc')} || ${details('ext_proc_error_gRPC_error_4{')}`), 'GW_ERR_PROCESSOR_TIMEOUT'),
    jsonRpcLocalReply(celFilter(details('ext_proc')), 'GW_ERR_PROCESSOR_UNAVAILABLE', retry),
    jsonRpcLocalReply({ response_flag_filter: { flags: ['UT'] } }, 'GW_ERR_UPSTREAM_TIMEOUT', {}, server(ERROR_TABLE.GW_ERR_UPSTREAM_TIMEOUT.message)),
    jsonRpcLocalReply(
      { response_flag_filter: { flags: ['UH', 'UF', 'UO', 'URX', 'UC', 'UR', 'NC'] } },
      'GW_ERR_UPSTREAM_UNAVAILABLE',
      retry,
      server(ERROR_TABLE.GW_ERR_UPSTREAM_UNAVAILABLE.message),
    ),
    // CONNECT and `Upgrade:` ask for a tunnel or another protocol, which the gateway never opens.
    jsonRpcLocalReply(celFilter("response.code_details == 'upgrade_failed' && request.method == 'CONNECT'"), 'GW_ERR_HTTP_METHOD_NOT_ALLOWED', { allow: 'GET, POST, DELETE' }),
    jsonRpcLocalReply(celFilter("response.code_details == 'upgrade_failed'"), 'GW_ERR_HTTP_BAD_REQUEST', {}, 'Bad Request: the gateway does not upgrade connections'),
    jsonRpcLocalReply(statusFilter(413), 'GW_ERR_BODY_TOO_LARGE'),
    jsonRpcLocalReply(statusFilter(431), 'GW_ERR_HTTP_HEADERS_TOO_LARGE'),
    jsonRpcLocalReply(statusFilter(426), 'GW_ERR_HTTP_VERSION'),
    jsonRpcLocalReply(statusFilter(405), 'GW_ERR_HTTP_METHOD_NOT_ALLOWED'),
    jsonRpcLocalReply(statusFilter(404), 'GW_ERR_HTTP_NOT_FOUND'),
    jsonRpcLocalReply(statusFilter(400), 'GW_ERR_HTTP_BAD_REQUEST'),
    {
      filter: { status_code_filter: { comparison: { op: 'GE', value: { default_value: 0, runtime_key: 'mcpgw.local_reply.any' } } } },
      body_format_override: {
        json_format: { jsonrpc: '2.0', id: null, error: { code: -32000, message: '%LOCAL_REPLY_BODY%' } },
        content_type: 'application/json',
      },
    },
  ];
}
