import { stringify } from 'yaml';
import { AGGREGATED_PATH, compileConfig, type RuntimeServer } from '../config/runtime.js';
import type { Config } from '../config/schema.js';
import { ERROR_TABLE } from '../errors/codes.js';
import {
  BACKEND_HEADER,
  METADATA_NAMESPACE,
  REQUEST_HEADER_ATTRIBUTES,
  ROUTE_METADATA_KEYS,
  ROUTE_METADATA_NAMESPACE,
} from './contract.js';
import { MCP_METHOD_HEADER } from '../mcp/headers.js';
import { errorBody } from '../mcp/message.js';
import { cluster, grpcCluster, hasSeveralEndpoints } from './clusters.js';
import { seconds, socketAddress } from './common.js';
import { localReplyMappers } from './local-replies.js';
import { affinityPerRoute, ANSWERED_AT_HEADERS, DECIDED_AT_BODY, extProcMode, GUARDED_POST, HEADER_MUTATION, headersFromRouteMetadata, headersPhase, HELD_FOR_STREAM, internalMs, OPEN_PASSTHROUGH_POST, routeMetadata, SAFE_RETRY, statefulSessionFilter, STREAMED_AT_HEADERS, upstreamRoute, withPerFilter } from './routes.js';

const PROCESSOR_CLUSTER = 'mcpgw_processor';
const OTLP_CLUSTER = 'mcpgw_otlp_collector';
const ACCESS_LOG_FORMAT = {
  timestamp: '%START_TIME%',
  listener: 'client',
  method: '%REQ(:METHOD)%',
  path: '%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%',
  status: '%RESPONSE_CODE%',
  response_flags: '%RESPONSE_FLAGS%',
  details: '%RESPONSE_CODE_DETAILS%',
  upstream_cluster: '%UPSTREAM_CLUSTER%',
  duration_ms: '%DURATION%',
  bytes_received: '%BYTES_RECEIVED%',
  bytes_sent: '%BYTES_SENT%',
  request_id: '%REQ(X-REQUEST-ID)%',
  mcp: `%DYNAMIC_METADATA(${METADATA_NAMESPACE})%`,
};




function httpConnectionManager(statPrefix: string, routeConfig: Record<string, unknown>, filters: Record<string, unknown>[], extra: Record<string, unknown>): Record<string, unknown> {
  return {
    name: 'envoy.filters.network.http_connection_manager',
    typed_config: {
      '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
      stat_prefix: statPrefix,
      codec_type: 'AUTO',
      normalize_path: true,
      // Envoy appends the peer it saw to X-Forwarded-For; the processor keys per-IP limits on it.
      use_remote_address: true,
      merge_slashes: true,
      path_with_escaped_slashes_action: 'REJECT_REQUEST',
      route_config: routeConfig,
      http_filters: [
        ...filters,
        { name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } },
      ],
      ...extra,
    },
  };
}

/** Envoy terminates TLS for clients; with a client CA it verifies client certificates (mTLS). */
function downstreamTls(tls: NonNullable<Config['gateway']['tls']>): Record<string, unknown> {
  const context: Record<string, unknown> = {
    tls_certificates: [{ certificate_chain: { filename: tls.cert_file }, private_key: { filename: tls.key_file } }],
  };
  if (tls.client_ca_file !== undefined) context['validation_context'] = { trusted_ca: { filename: tls.client_ca_file } };
  return {
    name: 'envoy.transport_sockets.tls',
    typed_config: {
      '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext',
      common_tls_context: context,
      require_client_certificate: tls.require_client_cert,
    },
  };
}


/**
 * Renders a complete Envoy bootstrap for a gateway config:
 * - the client listener (`gateway.listen`): ext_proc (BUFFERED request bodies so the processor
 *   can route on them) then the router; per server one route chosen by the processor's backend
 *   header on `/mcp`, and one for the passthrough path `/servers/<name>/mcp`;
 * - the internal listener (`gateway.internal`, no ext_proc) that carries the processor's own
 *   upstream calls onto the same clusters;
 * - on both listeners, when some server has fallback endpoints, the stateful session filter that
 *   keeps each upstream session on its host (see statefulSessionFilter);
 * - one cluster per upstream server, the processor cluster over HTTP/2, and the admin interface.
 */
export function renderEnvoyBootstrap(config: Config): string {
  const rc = compileConfig(config);
  const g = config.gateway;
  const processors = Array.isArray(g.processor) ? g.processor : [g.processor];
  const upstreamMs = rc.upstreamTimeoutMs;
  const streamIdle = seconds(rc.streamIdleMs);

  // Session affinity only where there is a choice of host (see statefulSessionFilter).
  const affinity = rc.serverList.some(hasSeveralEndpoints);
  const perRoute = (s: RuntimeServer): Record<string, unknown> => (affinity ? affinityPerRoute(s) : {});
  const affinityFilters = affinity ? [statefulSessionFilter()] : [];

  // The aggregated endpoints: /mcp, and each virtual server's /v/<name>/mcp over its servers.
  const aggregated = [
    { path: AGGREGATED_PATH, suffix: '', servers: new Set(rc.servers.keys()) },
    ...[...rc.viewPaths.values()].map((v) => ({ path: v.path, suffix: `_v_${v.name}`, servers: new Set(v.servers) })),
  ];
  const clientRoutes: Record<string, unknown>[] = [];
  for (const s of rc.serverList) {
    // /mcp POSTs are decided at their body: the processor names the server in route metadata
    // and the route sets the upstream headers from it (the initial match is `mcp_post` below;
    // Envoy picks this route again once the processor clears the route cache).
    for (const a of aggregated) {
      if (!a.servers.has(s.name)) continue;
      clientRoutes.push(
        withPerFilter(
          {
            name: `${s.name}_aggregated${a.suffix}`,
            match: {
              path: a.path,
              dynamic_metadata: [{ filter: ROUTE_METADATA_NAMESPACE, path: [{ key: ROUTE_METADATA_KEYS.backend }], value: { string_match: { exact: s.name } } }],
            },
            route: upstreamRoute(s),
            metadata: routeMetadata(s),
          },
          perRoute(s),
          headersFromRouteMetadata(s, true),
        ),
      );
    }
    // The server→client GET stream lives as long as the session: only idleness ends it, and not
    // the server's request timeout but gateway.stream_idle_timeout.
    const longLived = { ...upstreamRoute(s), timeout: '0s', idle_timeout: streamIdle };
    clientRoutes.push(
      withPerFilter(
        {
          name: `${s.name}_passthrough_stream`,
          match: { path: `/servers/${s.name}/mcp`, headers: [{ name: ':method', string_match: { exact: 'GET' } }] },
          route: longLived,
          metadata: routeMetadata(s),
        },
        perRoute(s),
        extProcMode(headersPhase(s)),
      ),
    );
    // Its 2026-07-28 successor, a subscriptions/listen POST, likewise. Chosen by the Mcp-Method
    // header, which the processor checks against the body (a mismatch is refused, so no other
    // request rides this route).
    clientRoutes.push(
      withPerFilter(
        {
          name: `${s.name}_passthrough_listen`,
          match: {
            path: `/servers/${s.name}/mcp`,
            headers: [
              { name: ':method', string_match: { exact: 'POST' } },
              { name: MCP_METHOD_HEADER, string_match: { exact: 'subscriptions/listen' } },
            ],
          },
          route: longLived,
          metadata: routeMetadata(s),
        },
        perRoute(s),
        s.openPassthrough ? headersFromRouteMetadata(s, false) : {},
        extProcMode(s.openPassthrough ? OPEN_PASSTHROUGH_POST : GUARDED_POST),
      ),
    );
    // A POST to a server nothing guards goes to the processor at its body only, its response not
    // at all; any identity, policy or limit makes every phase go there (an empty POST included).
    clientRoutes.push(
      withPerFilter(
        {
          name: `${s.name}_passthrough_post`,
          match: { path: `/servers/${s.name}/mcp`, headers: [{ name: ':method', string_match: { exact: 'POST' } }] },
          route: upstreamRoute(s),
          metadata: routeMetadata(s),
        },
        perRoute(s),
        s.openPassthrough ? headersFromRouteMetadata(s, false) : {},
        extProcMode(s.openPassthrough ? OPEN_PASSTHROUGH_POST : GUARDED_POST),
      ),
    );
    clientRoutes.push(
      withPerFilter(
        { name: `${s.name}_passthrough`, match: { path: `/servers/${s.name}/mcp` }, route: upstreamRoute(s), metadata: routeMetadata(s) },
        perRoute(s),
        extProcMode(headersPhase(s)),
      ),
    );
  }
  for (const a of aggregated) {
    // A 2026-07-28 subscriptions/listen POST on /mcp: the processor holds it until its body is in and
    // then streams the answer itself, so the route is never used. Chosen by the Mcp-Method header,
    // which the processor checks against the body (a request whose body is another method is refused).
    clientRoutes.push(
      withPerFilter(
        {
          name: `mcp_listen${a.suffix}`,
          match: {
            path: a.path,
            headers: [
              { name: ':method', string_match: { exact: 'POST' } },
              { name: MCP_METHOD_HEADER, string_match: { exact: 'subscriptions/listen' } },
            ],
          },
          direct_response: {
            status: 500,
            body: { inline_string: errorBody(null, -32603, 'Internal error: stream was not served') },
          },
        },
        extProcMode(HELD_FOR_STREAM),
      ),
    );
    // The processor routes or answers every /mcp POST with a body; one without a body never reaches
    // it (there is no body to send), and lands here.
    clientRoutes.push({
      name: `mcp_post${a.suffix}`,
      match: { path: a.path, headers: [{ name: ':method', string_match: { exact: 'POST' } }] },
      direct_response: {
        status: ERROR_TABLE.GW_ERR_PARSE.http,
        body: { inline_string: errorBody(null, ERROR_TABLE.GW_ERR_PARSE.jsonrpc, 'Parse error: empty body') },
      },
      response_headers_to_add: [{ header: { key: 'content-type', value: 'application/json' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' }],
    });
  }
  // CONNECT has no path, so no other route matches it; without this one ext_proc would wait for
  // the end of a body that is the tunnel itself, and the client would get no answer. Envoy refuses
  // the tunnel (`upgrade_failed`, mapped to 405 in localReplyMappers) before the response here.
  clientRoutes.push(
    withPerFilter(
      {
        name: 'connect',
        match: { connect_matcher: {} },
        direct_response: {
          status: ERROR_TABLE.GW_ERR_HTTP_METHOD_NOT_ALLOWED.http,
          body: { inline_string: errorBody(null, ERROR_TABLE.GW_ERR_HTTP_METHOD_NOT_ALLOWED.jsonrpc, ERROR_TABLE.GW_ERR_HTTP_METHOD_NOT_ALLOWED.message) },
        },
      },
      { 'envoy.filters.http.ext_proc': { '@type': 'type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute', disabled: true } },
    ),
  );
  // The server→client stream on /mcp: the processor streams it itself (a streamed immediate
  // response, which Envoy takes only with no request body sent), so the route is never used.
  for (const a of aggregated) {
    clientRoutes.push(
      withPerFilter(
        {
          name: `mcp_stream${a.suffix}`,
          match: { path: a.path, headers: [{ name: ':method', string_match: { exact: 'GET' } }] },
          direct_response: {
            status: 500,
            body: { inline_string: errorBody(null, -32603, 'Internal error: stream was not served') },
          },
        },
        extProcMode(STREAMED_AT_HEADERS),
      ),
    );
  }
  // Everything else is answered by the processor at its headers (other methods on /mcp, unknown
  // paths, RFC 9728 metadata); this answer only fires on a bug.
  clientRoutes.push(
    withPerFilter(
      {
        name: 'unrouted',
        match: { prefix: '/' },
        direct_response: {
          status: 500,
          body: { inline_string: errorBody(null, -32603, 'Internal error: request was not routed') },
        },
      },
      extProcMode(ANSWERED_AT_HEADERS),
    ),
  );

  const extProc = {
    name: 'envoy.filters.http.ext_proc',
    // Enabled per virtual host (below), so it only runs on requests that reached routing. Replies
    // Envoy makes to requests it could not even parse (431 for oversized headers, 400 for bad
    // HTTP/1) would otherwise wait on the processor while the codec error closes the connection,
    // and the client would get no reply at all instead of the JSON-RPC error.
    disabled: true,
    typed_config: {
      '@type': 'type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor',
      grpc_service: {
        envoy_grpc: { cluster_name: PROCESSOR_CLUSTER },
        timeout: '0s',
        // A replica that just died may still be picked before Envoy notices: the stream then
        // never reached it, so trying another replica is safe. `reset` also retries a stream the
        // dying replica had not answered at all (no response headers yet): Envoy still holds
        // what it sent, and replays it on another replica.
        retry_policy: {
          retry_on: 'connect-failure,refused-stream,reset-before-request,reset',
          num_retries: 5,
          retry_back_off: { base_interval: '0.002s', max_interval: '0.02s' },
          retry_host_predicate: SAFE_RETRY.retry_host_predicate,
          host_selection_retry_max_attempts: 3,
        },
      },
      failure_mode_allow: false,
      // The default serves /mcp POSTs: decided at the body, whose headers come as attributes
      // (other routes set their own mode below).
      processing_mode: DECIDED_AT_BODY,
      request_attributes: Object.values(REQUEST_HEADER_ATTRIBUTES),
      allow_mode_override: true,
      // Ordinary work per message; a message that needs longer (a new upstream session, a
      // replay) gets it from the processor, up to the max (extProcTimeouts in src/config/runtime.ts has the rule).
      message_timeout: seconds(rc.extProc.messageMs),
      max_message_timeout: seconds(rc.extProc.maxMessageMs),
      metadata_options: { receiving_namespaces: { untyped: [METADATA_NAMESPACE, ROUTE_METADATA_NAMESPACE] } },
    },
  };
  // Holds a request the processor decided at its body until the body is complete, so the route
  // chosen then (and the headers it sets) apply; it also fixes the length of a rewritten body.
  const bufferFilter = {
    name: 'envoy.filters.http.buffer',
    typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer', max_request_bytes: g.max_body_bytes },
  };

  const tracing = config.tracing;
  const otlp = tracing.otlp_endpoint;
  const hcmTracing =
    otlp === undefined
      ? {}
      : {
          tracing: {
            random_sampling: { value: tracing.sampling_percent },
            provider: {
              name: 'envoy.tracers.opentelemetry',
              typed_config: {
                '@type': 'type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig',
                grpc_service: { envoy_grpc: { cluster_name: OTLP_CLUSTER }, timeout: '1s' },
                service_name: tracing.service_name,
              },
            },
          },
        };

  const tls = g.tls;
  const clientListener = {
    name: 'mcp_client',
    address: socketAddress(g.listen),
    // A second Envoy on the same port must fail loudly, not silently share the traffic.
    enable_reuse_port: false,
    per_connection_buffer_limit_bytes: g.max_body_bytes,
    filter_chains: [
      {
        ...(tls === undefined ? {} : { transport_socket: downstreamTls(tls) }),
        filters: [
          httpConnectionManager(
            'mcp_gateway',
            {
              name: 'mcp_client_routes',
              virtual_hosts: [
                {
                  name: 'mcp',
                  domains: ['*'],
                  routes: clientRoutes,
                  typed_per_filter_config: {
                    [extProc.name]: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute', overrides: {} },
                  },
                },
              ],
              request_headers_to_remove: [BACKEND_HEADER],
            },
            // After ext_proc: the processor sets the upstream session id in the body phase, and
            // Envoy only runs the next filter's header phase once that phase is done.
            [
              extProc,
              bufferFilter,
              // Without per-route settings it changes nothing.
              { name: HEADER_MUTATION, typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation', mutations: {} } },
              ...affinityFilters,
            ],
            {
              ...hcmTracing,
              // Never shorter than the longest the processor may take on one message.
              stream_idle_timeout: seconds(Math.max(300_000, rc.extProc.maxMessageMs)),
              request_timeout: '0s',
              // The verified client certificate reaches the processor in X-Forwarded-Client-Cert;
              // whatever a client sends in that header itself is dropped (SANITIZE_SET / SANITIZE).
              ...(tls?.client_ca_file === undefined
                ? { forward_client_cert_details: 'SANITIZE' }
                : {
                    forward_client_cert_details: 'SANITIZE_SET',
                    set_current_client_cert_details: { subject: true, uri: true, dns: true },
                  }),
              access_log: [
                {
                  name: 'envoy.access_loggers.stdout',
                  typed_config: {
                    '@type': 'type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog',
                    log_format: { json_format: ACCESS_LOG_FORMAT },
                  },
                },
              ],
              local_reply_config: { mappers: localReplyMappers() },
            },
          ),
        ],
      },
    ],
  };

  const internalListener = {
    name: 'mcp_internal',
    address: socketAddress(g.internal),
    enable_reuse_port: false,
    filter_chains: [
      {
        filters: [
          httpConnectionManager(
            'mcp_internal',
            {
              name: 'mcp_internal_routes',
              virtual_hosts: [
                {
                  name: 'internal',
                  domains: ['*'],
                  routes: rc.serverList.flatMap((s) => [
                    // The upstream session's server→client stream, held for a client's stream on
                    // /mcp: it lasts as long as the processor reads it.
                    {
                      name: `${s.name}_internal_stream`,
                      match: { prefix: '/', headers: [{ name: BACKEND_HEADER, string_match: { exact: s.name } }, { name: ':method', string_match: { exact: 'GET' } }] },
                      route: { ...upstreamRoute(s), prefix_rewrite: undefined, timeout: '0s', idle_timeout: '0s' },
                      ...perRoute(s),
                    },
                    // Its successor with a server of the sessionless revisions: a subscriptions/listen POST.
                    {
                      name: `${s.name}_internal_listen`,
                      match: {
                        prefix: '/',
                        headers: [
                          { name: BACKEND_HEADER, string_match: { exact: s.name } },
                          { name: ':method', string_match: { exact: 'POST' } },
                          { name: MCP_METHOD_HEADER, string_match: { exact: 'subscriptions/listen' } },
                        ],
                      },
                      route: { ...upstreamRoute(s), prefix_rewrite: undefined, timeout: '0s', idle_timeout: '0s' },
                      ...perRoute(s),
                    },
                    {
                    name: `${s.name}_internal`,
                    match: { prefix: '/', headers: [{ name: BACKEND_HEADER, string_match: { exact: s.name } }] },
                    // The processor bounds each of its calls itself; the route allows its longest one, the
                    // replay of a client request with the server's own timeout.
                    route: { ...upstreamRoute(s), prefix_rewrite: undefined, timeout: seconds(internalMs(s, upstreamMs)), idle_timeout: seconds(internalMs(s, upstreamMs)) },
                    ...perRoute(s),
                    },
                  ]),
                },
              ],
              request_headers_to_remove: [BACKEND_HEADER],
            },
            affinityFilters,
            {},
          ),
        ],
      },
    ],
  };

  // One gRPC stream per HTTP request: the default 1024 would cap concurrent MCP requests.
  const processorCluster = grpcCluster(PROCESSOR_CLUSTER, processors, processors.length > 1);

  const bootstrap = {
    node: { id: 'mcp-gateway', cluster: 'mcp-gateway' },
    admin: { address: socketAddress(g.envoy_admin) },
    overload_manager: {
      resource_monitors: [
        {
          name: 'envoy.resource_monitors.global_downstream_max_connections',
          typed_config: {
            '@type': 'type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig',
            max_active_downstream_connections: 50_000,
          },
        },
      ],
    },
    static_resources: {
      listeners: [clientListener, internalListener],
      clusters: [
        processorCluster,
        ...rc.serverList.map(cluster),
        ...(otlp === undefined ? [] : [grpcCluster(OTLP_CLUSTER, [otlp])]),
      ],
    },
  };
  return `# Generated by mcp-gateway envoy-config. Do not edit; change the gateway config instead.\n${stringify(bootstrap, { aliasDuplicateObjects: false, lineWidth: 0 })}`;
}
