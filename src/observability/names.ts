/** Every metric name the gateway exports (the seed's names, exactly). */
export const METRIC = {
  requestsTotal: 'mcp_gateway_requests_total',
  requestDuration: 'mcp_gateway_request_duration_seconds',
  requestSize: 'mcp_gateway_request_size_bytes',
  serverUp: 'mcp_server_up',
  serverLatency: 'mcp_server_latency_seconds',
  rateLimitedTotal: 'mcp_gateway_rate_limited_total',
  authFailuresTotal: 'mcp_gateway_auth_failures_total',
  nameCollisions: 'mcp_gateway_name_collisions',
  filterDecisionsTotal: 'mcp_gateway_filter_decisions_total',
  cacheLookupsTotal: 'mcp_gateway_cache_lookups_total',
  cacheInvalidationsTotal: 'mcp_gateway_cache_invalidations_total',
  toolDriftTotal: 'mcp_gateway_tool_drift_total',
  toolsFlagged: 'mcp_gateway_tools_flagged',
  configInfo: 'mcp_gateway_config_info',
  configLoadedTimestamp: 'mcp_gateway_config_loaded_timestamp_seconds',
  configReloadsTotal: 'mcp_gateway_config_reloads_total',
  configReloadFailuresTotal: 'mcp_gateway_config_reload_failures_total',
  xdsStreams: 'mcp_gateway_xds_streams',
  xdsRejectedTotal: 'mcp_gateway_xds_rejected_total',
} as const;

/** Label names (snake_case, shared by metrics and log lines). */
export const LABEL = {
  method: 'mcp_method',
  server: 'server',
  tool: 'tool',
  tenant: 'tenant',
  status: 'status',
  reason: 'reason',
  limit: 'limit',
  kind: 'kind',
  filter: 'filter',
  action: 'action',
  result: 'result',
  flag: 'flag',
  hash: 'hash',
  type: 'type',
} as const;

/** The label value for anything outside a bounded set (hostile input never mints new series). */
export const OTHER = 'other';

/** The label value where a dimension does not apply (no server, no tool, no tenant). */
export const NONE = 'none';

/** MCP methods that get their own label value; anything else is `other`. */
export const KNOWN_METHODS: ReadonlySet<string> = new Set([
  'initialize',
  'ping',
  'tools/list',
  'tools/call',
  'prompts/list',
  'prompts/get',
  'resources/list',
  'resources/templates/list',
  'resources/read',
  'resources/subscribe',
  'resources/unsubscribe',
  'completion/complete',
  'logging/setLevel',
  'notifications/initialized',
  'notifications/cancelled',
  'notifications/progress',
  'notifications/roots/list_changed',
  'response',
  'session/delete',
  'stream/get',
]);

/** The log `event` for each method, in the seed's vocabulary. */
export function eventFor(method: string | null): string {
  switch (method) {
    case 'tools/call':
      return 'tool_call';
    case 'resources/read':
      return 'resource_read';
    case 'prompts/get':
      return 'prompt_get';
    case 'tools/list':
    case 'prompts/list':
    case 'resources/list':
    case 'resources/templates/list':
      return 'list';
    case 'initialize':
      return 'initialize';
    case 'completion/complete':
      return 'completion';
    case 'resources/subscribe':
    case 'resources/unsubscribe':
      return 'subscription';
    case 'response':
      return 'client_response';
    case 'session/delete':
      return 'session_end';
    case null:
      return 'http';
    default:
      return method.startsWith('notifications/') ? 'notification' : 'request';
  }
}
