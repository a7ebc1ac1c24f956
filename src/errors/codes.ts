/**
 * The one table of errors a client may see. Every code maps to an HTTP status, a JSON-RPC error
 * code and a default message; `satisfies` makes a missing entry a compile error.
 */
export const GATEWAY_ERROR_CODES = [
  'GW_ERR_PARSE',
  'GW_ERR_INVALID_REQUEST',
  'GW_ERR_HTTP_BAD_ORIGIN',
  'GW_ERR_HTTP_BAD_HOST',
  'GW_ERR_HTTP_NOT_ACCEPTABLE',
  'GW_ERR_HTTP_UNSUPPORTED_MEDIA_TYPE',
  'GW_ERR_HTTP_METHOD_NOT_ALLOWED',
  'GW_ERR_HTTP_NOT_FOUND',
  'GW_ERR_HTTP_BAD_REQUEST',
  'GW_ERR_HTTP_VERSION',
  'GW_ERR_HTTP_HEADERS_TOO_LARGE',
  'GW_ERR_PROTOCOL_VERSION_UNSUPPORTED',
  'GW_ERR_SESSION_MISSING',
  'GW_ERR_SESSION_UNKNOWN',
  'GW_ERR_BODY_TOO_LARGE',
  'GW_ERR_AUTH_UNAUTHENTICATED',
  'GW_ERR_AUTH_FORBIDDEN',
  'GW_ERR_RATE_LIMITED',
  'GW_ERR_SESSION_LIMIT',
  'GW_ERR_STATE_UNAVAILABLE',
  'GW_ERR_PROCESSOR_UNAVAILABLE',
  'GW_ERR_PROCESSOR_TIMEOUT',
  'GW_ERR_UPSTREAM_UNAVAILABLE',
  'GW_ERR_UPSTREAM_TIMEOUT',
  'GW_ERR_UPSTREAM_TOO_LARGE',
  'GW_ERR_METHOD_UNKNOWN',
  'GW_ERR_PARAMS_INVALID',
  'GW_ERR_TOOL_UNKNOWN',
  'GW_ERR_PROMPT_UNKNOWN',
  'GW_ERR_RESOURCE_UNKNOWN',
  'GW_ERR_TASK_UNKNOWN',
  'GW_ERR_TASK_CONFLICT',
  'GW_ERR_HEADER_MISMATCH',
  'GW_ERR_ENVELOPE_INVALID',
  'GW_ERR_VERSION_UNSUPPORTED',
  'GW_ERR_METHOD_NOT_FOUND',
  'GW_ERR_INTERNAL',
] as const;

export type GatewayErrorCode = (typeof GATEWAY_ERROR_CODES)[number];

/** How each code is rendered: HTTP status, JSON-RPC error code, default message. */
export interface ErrorSpec {
  readonly http: number;
  readonly jsonrpc: number;
  readonly message: string;
}

export const ERROR_TABLE = {
  GW_ERR_PARSE: { http: 400, jsonrpc: -32700, message: 'Parse error: body is not valid JSON' },
  GW_ERR_INVALID_REQUEST: { http: 400, jsonrpc: -32600, message: 'Invalid Request' },
  GW_ERR_HTTP_BAD_ORIGIN: { http: 403, jsonrpc: -32000, message: 'Forbidden: Origin not allowed' },
  GW_ERR_HTTP_BAD_HOST: { http: 403, jsonrpc: -32000, message: 'Forbidden: Host not allowed' },
  GW_ERR_HTTP_NOT_ACCEPTABLE: {
    http: 406,
    jsonrpc: -32000,
    message: 'Not Acceptable: Accept must list application/json and text/event-stream',
  },
  GW_ERR_HTTP_UNSUPPORTED_MEDIA_TYPE: {
    http: 415,
    jsonrpc: -32000,
    message: 'Unsupported Media Type: Content-Type must be application/json',
  },
  GW_ERR_HTTP_METHOD_NOT_ALLOWED: { http: 405, jsonrpc: -32000, message: 'Method Not Allowed' },
  GW_ERR_HTTP_NOT_FOUND: { http: 404, jsonrpc: -32000, message: 'Not Found' },
  GW_ERR_HTTP_BAD_REQUEST: { http: 400, jsonrpc: -32000, message: 'Bad Request: malformed HTTP request' },
  GW_ERR_HTTP_VERSION: { http: 426, jsonrpc: -32000, message: 'Upgrade Required: use HTTP/1.1 or HTTP/2' },
  GW_ERR_HTTP_HEADERS_TOO_LARGE: { http: 431, jsonrpc: -32000, message: 'Request Header Fields Too Large' },
  GW_ERR_PROTOCOL_VERSION_UNSUPPORTED: { http: 400, jsonrpc: -32000, message: 'Unsupported MCP-Protocol-Version' },
  GW_ERR_SESSION_MISSING: { http: 400, jsonrpc: -32000, message: 'Bad Request: Mcp-Session-Id header is required' },
  GW_ERR_SESSION_UNKNOWN: { http: 404, jsonrpc: -32001, message: 'Session not found' },
  GW_ERR_BODY_TOO_LARGE: { http: 413, jsonrpc: -32000, message: 'Payload Too Large' },
  GW_ERR_AUTH_UNAUTHENTICATED: { http: 401, jsonrpc: -32000, message: 'Unauthorized' },
  GW_ERR_AUTH_FORBIDDEN: { http: 403, jsonrpc: -32000, message: 'Forbidden' },
  GW_ERR_RATE_LIMITED: { http: 429, jsonrpc: -32000, message: 'Too Many Requests: rate limit exceeded' },
  GW_ERR_SESSION_LIMIT: { http: 503, jsonrpc: -32000, message: 'Service Unavailable: the gateway holds its maximum number of sessions' },
  GW_ERR_STATE_UNAVAILABLE: { http: 503, jsonrpc: -32000, message: 'Service Unavailable: shared state store unreachable' },
  GW_ERR_PROCESSOR_UNAVAILABLE: { http: 503, jsonrpc: -32000, message: 'Service Unavailable: the gateway processor cannot be reached' },
  GW_ERR_PROCESSOR_TIMEOUT: { http: 504, jsonrpc: -32000, message: 'Gateway Timeout: the gateway processor did not answer in time' },
  GW_ERR_UPSTREAM_UNAVAILABLE: { http: 503, jsonrpc: -32000, message: 'Upstream server unavailable' },
  GW_ERR_UPSTREAM_TIMEOUT: { http: 504, jsonrpc: -32000, message: 'Upstream server timed out' },
  GW_ERR_UPSTREAM_TOO_LARGE: { http: 502, jsonrpc: -32000, message: 'Upstream response too large for the gateway to check' },
  GW_ERR_METHOD_UNKNOWN: { http: 200, jsonrpc: -32601, message: 'Method not found' },
  GW_ERR_PARAMS_INVALID: { http: 200, jsonrpc: -32602, message: 'Invalid params' },
  GW_ERR_TOOL_UNKNOWN: { http: 200, jsonrpc: -32602, message: 'Unknown tool' },
  GW_ERR_PROMPT_UNKNOWN: { http: 200, jsonrpc: -32602, message: 'Unknown prompt' },
  GW_ERR_RESOURCE_UNKNOWN: { http: 200, jsonrpc: -32002, message: 'Resource not found' },
  GW_ERR_TASK_UNKNOWN: { http: 200, jsonrpc: -32602, message: 'Task not found' },
  GW_ERR_TASK_CONFLICT: { http: 502, jsonrpc: -32000, message: 'Upstream reused a task id that belongs to another caller' },
  GW_ERR_HEADER_MISMATCH: { http: 400, jsonrpc: -32020, message: 'Header mismatch' },
  GW_ERR_ENVELOPE_INVALID: { http: 400, jsonrpc: -32602, message: 'Invalid params' },
  GW_ERR_VERSION_UNSUPPORTED: { http: 400, jsonrpc: -32022, message: 'Unsupported protocol version' },
  GW_ERR_METHOD_NOT_FOUND: { http: 404, jsonrpc: -32601, message: 'Method not found' },
  GW_ERR_INTERNAL: { http: 200, jsonrpc: -32603, message: 'Internal error' },
} as const satisfies Record<GatewayErrorCode, ErrorSpec>;
