import { stringify } from 'yaml';
import { AGGREGATED_PATH, compileConfig, type RuntimeServer } from '../config/runtime.js';
import { durationMs } from '../lib/duration.js';
import type { Config } from '../config/schema.js';
import { ERROR_TABLE } from '../errors/codes.js';
import {
  BACKEND_HEADER,
  CLIENT_CREDENTIAL_HEADERS,
  credentialMetadataKey,
  METADATA_NAMESPACE,
  REQUEST_HEADER_ATTRIBUTES,
  ROUTE_METADATA_KEYS,
  ROUTE_METADATA_NAMESPACE,
} from './contract.js';
import { MCP_METHOD_HEADER, MCP_NAME_HEADER, PROTOCOL_VERSION_HEADER, SESSION_HEADER } from '../mcp/headers.js';
import { errorBody } from '../mcp/message.js';
import { cluster, endpointPriorities, grpcCluster, hasSeveralEndpoints } from './clusters.js';
import { seconds, socketAddress } from './common.js';
import { localReplyMappers } from './local-replies.js';

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


/** Retries that are safe for non-idempotent MCP POSTs: only when the request never reached a host. */
const SAFE_RETRY = {
  retry_on: 'connect-failure,refused-stream,reset-before-request',
  num_retries: 2,
  retry_host_predicate: [{ name: 'envoy.retry_host_predicates.previous_hosts', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate' } }],
  host_selection_retry_max_attempts: 3,
};

/**
 * The safe retries of a request to an upstream server. With `strategy: failover` the endpoints
 * sit at two priorities (primary, fallbacks): a retry also leaves the priority it tried, so a
 * request whose connection the dead primary refused goes to a fallback even before Envoy has
 * taken the primary out (previous_hosts alone would pick the primary again: it is the only host
 * of its priority).
 */
function upstreamRetryPolicy(server: RuntimeServer): Record<string, unknown> {
  return endpointPriorities(server) > 1
    ? {
        ...SAFE_RETRY,
        retry_priority: {
          name: 'envoy.retry_priorities.previous_priorities',
          typed_config: {
            '@type': 'type.googleapis.com/envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig',
            update_frequency: 1,
          },
        },
      }
    : SAFE_RETRY;
}

function upstreamRoute(server: RuntimeServer): Record<string, unknown> {
  const timeout = seconds(durationMs(server.source.timeout));
  return {
    cluster: server.cluster,
    prefix_rewrite: server.path,
    timeout,
    // SSE streams may sit quiet between events; the per-server timeout bounds the whole call.
    idle_timeout: timeout,
    retry_policy: upstreamRetryPolicy(server),
    auto_host_rewrite: true,
  };
}

const STATEFUL_SESSION = 'envoy.filters.http.stateful_session';
const HEADER_MUTATION = 'envoy.filters.http.header_mutation';

type ProcessingMode = Record<string, string>;

/** /mcp POSTs and open passthrough POSTs: one message, the body, with the headers as attributes. */
const DECIDED_AT_BODY: ProcessingMode = {
  request_header_mode: 'SKIP',
  request_body_mode: 'BUFFERED',
  response_header_mode: 'SEND',
  response_body_mode: 'NONE',
  request_trailer_mode: 'SKIP',
  response_trailer_mode: 'SKIP',
};
/**
 * Every phase from the request headers on. For Envoys whose routes are not the gateway's own
 * (an Istio ingress gateway routes by its VirtualServices, which cannot match route metadata):
 * the processor then changes headers directly and routes by the backend header.
 */
export const HEADERS_FIRST: ProcessingMode = { ...DECIDED_AT_BODY, request_header_mode: 'SEND' };
/** A POST to a server nothing guards: its body only, no response. */
const OPEN_PASSTHROUGH_POST: ProcessingMode = { ...DECIDED_AT_BODY, response_header_mode: 'SKIP' };
/** A POST something guards: every phase, so nothing (an empty POST included) passes unchecked. */
const GUARDED_POST: ProcessingMode = { ...DECIDED_AT_BODY, request_header_mode: 'SEND' };
/** Requests without a body the processor answers itself: headers only. */
const ANSWERED_AT_HEADERS: ProcessingMode = { ...DECIDED_AT_BODY, request_header_mode: 'SEND', request_body_mode: 'BUFFERED', response_header_mode: 'SKIP' };

/** GET on /mcp: headers only; the processor streams the response itself. */
const STREAMED_AT_HEADERS: ProcessingMode = { ...DECIDED_AT_BODY, request_header_mode: 'SEND', request_body_mode: 'NONE', response_header_mode: 'SKIP' };

/** GET and DELETE on passthrough: headers; the response too unless nothing guards the server. */
function headersPhase(server: RuntimeServer): ProcessingMode {
  return { ...DECIDED_AT_BODY, request_header_mode: 'SEND', request_body_mode: 'NONE', response_header_mode: server.openPassthrough ? 'SKIP' : 'SEND' };
}

/** The route's ext_proc settings: the processing mode of requests that first match it. */
function extProcMode(mode: ProcessingMode): Record<string, unknown> {
  return {
    'envoy.filters.http.ext_proc': {
      '@type': 'type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute',
      overrides: { processing_mode: mode },
    },
  };
}

/** A route with per-filter configs merged in. */
function withPerFilter(route: Record<string, unknown>, ...configs: Record<string, unknown>[]): Record<string, unknown> {
  const merged: Record<string, unknown> = {};
  for (const c of configs) Object.assign(merged, (c['typed_per_filter_config'] as Record<string, unknown> | undefined) ?? c);
  return Object.keys(merged).length === 0 ? route : { ...route, typed_per_filter_config: merged };
}

/** Route metadata naming the server (local replies about it read it). */
function routeMetadata(server: RuntimeServer): Record<string, unknown> {
  return { filter_metadata: { [METADATA_NAMESPACE]: { server: server.name } } };
}

function fromRouteMetadata(header: string, key: string): Record<string, unknown> {
  return {
    append: {
      header: { key: header, value: `%DYNAMIC_METADATA(${ROUTE_METADATA_NAMESPACE}:${key})%` },
      append_action: 'OVERWRITE_IF_EXISTS_OR_ADD',
      keep_empty_value: false,
    },
  };
}

/**
 * For a request decided at its body, the upstream headers the processor chose come from route
 * metadata (header changes in a body reply would be dropped). Done by the header-mutation filter,
 * which runs once the body is complete and before the stateful-session filter reads the session.
 * Client credentials and anything a client could set are removed first.
 */
function headersFromRouteMetadata(server: RuntimeServer, aggregated: boolean): Record<string, unknown> {
  const injected = Object.keys(server.source.headers ?? {}).map((h) => h.toLowerCase());
  const remove = [
    ...CLIENT_CREDENTIAL_HEADERS,
    'x-forwarded-client-cert',
    'traceparent',
    ...injected,
    // On /mcp the client's session, revision and 2026-07-28 routing headers are its own, not the server's.
    ...(aggregated ? [SESSION_HEADER, PROTOCOL_VERSION_HEADER, MCP_METHOD_HEADER, MCP_NAME_HEADER] : []),
  ];
  const set = [
    ...(aggregated
      ? [fromRouteMetadata(SESSION_HEADER, ROUTE_METADATA_KEYS.upstreamSession), fromRouteMetadata(PROTOCOL_VERSION_HEADER, ROUTE_METADATA_KEYS.protocolVersion)]
      : []),
    fromRouteMetadata('traceparent', ROUTE_METADATA_KEYS.traceparent),
    ...injected.map((h) => fromRouteMetadata(h, credentialMetadataKey(h))),
  ];
  return {
    typed_per_filter_config: {
      [HEADER_MUTATION]: {
        '@type': 'type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutationPerRoute',
        mutations: { request_mutations: [...remove.map((h) => ({ remove: h })), ...set] },
      },
    },
  };
}


/**
 * Session affinity for servers with several endpoints. A Streamable HTTP session lives on the
 * host that answered `initialize`; any other host answers 404 to its id. The envelope session
 * state makes the session id itself carry the host: on a response Envoy rewrites
 * `Mcp-Session-Id: <id>` to `<base64 host address>;UV:<base64 id>`, and on a request it restores
 * `<id>` and sends the request to that host. This covers every path into an upstream:
 * - passthrough: the client holds the enveloped id;
 * - `/mcp`: the processor holds the enveloped id it got on the internal listener and sets it in
 *   the body phase; this filter runs after ext_proc, so it sees the header the processor set;
 * - the internal listener: the processor's own calls, which create those sessions.
 * Not strict: when the host is gone (failing its health checks, ejected, or refusing connections,
 * where the retry drops the pin), the request goes to another host, whose 404 tells the client to start a new session
 * and makes the processor set up a new upstream session for `/mcp`.
 */
function statefulSessionFilter(): Record<string, unknown> {
  return {
    name: STATEFUL_SESSION,
    typed_config: {
      '@type': 'type.googleapis.com/envoy.extensions.filters.http.stateful_session.v3.StatefulSession',
      session_state: {
        name: 'envoy.http.stateful_session.envelope',
        typed_config: {
          '@type': 'type.googleapis.com/envoy.extensions.http.stateful_session.envelope.v3.EnvelopeSessionState',
          header: { name: SESSION_HEADER },
        },
      },
      strict: false,
      stat_prefix: 'mcp_session',
    },
  };
}

/** Single-endpoint servers keep their session ids untouched: there is no host to pin. */
function affinityPerRoute(server: RuntimeServer): Record<string, unknown> {
  return hasSeveralEndpoints(server)
    ? {}
    : {
        typed_per_filter_config: {
          [STATEFUL_SESSION]: {
            '@type': 'type.googleapis.com/envoy.extensions.filters.http.stateful_session.v3.StatefulSessionPerRoute',
            disabled: true,
          },
        },
      };
}

/** Route timeout on the internal listener: the processor's longest call to this server. */
function internalMs(server: RuntimeServer, upstreamMs: number): number {
  return Math.max(upstreamMs, server.replayTimeoutMs);
}



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

  const clientRoutes: Record<string, unknown>[] = [];
  for (const s of rc.serverList) {
    // /mcp POSTs are decided at their body: the processor names the server in route metadata
    // and the route sets the upstream headers from it (the initial match is `mcp_post` below;
    // Envoy picks this route again once the processor clears the route cache).
    clientRoutes.push(
      withPerFilter(
        {
          name: `${s.name}_aggregated`,
          match: {
            path: AGGREGATED_PATH,
            dynamic_metadata: [{ filter: ROUTE_METADATA_NAMESPACE, path: [{ key: ROUTE_METADATA_KEYS.backend }], value: { string_match: { exact: s.name } } }],
          },
          route: upstreamRoute(s),
          metadata: routeMetadata(s),
        },
        perRoute(s),
        headersFromRouteMetadata(s, true),
      ),
    );
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
  // The processor routes or answers every /mcp POST with a body; one without a body never reaches
  // it (there is no body to send), and lands here.
  clientRoutes.push({
    name: 'mcp_post',
    match: { path: AGGREGATED_PATH, headers: [{ name: ':method', string_match: { exact: 'POST' } }] },
    direct_response: {
      status: ERROR_TABLE.GW_ERR_PARSE.http,
      body: { inline_string: errorBody(null, ERROR_TABLE.GW_ERR_PARSE.jsonrpc, 'Parse error: empty body') },
    },
    response_headers_to_add: [{ header: { key: 'content-type', value: 'application/json' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' }],
  });
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
  clientRoutes.push(
    withPerFilter(
      {
        name: 'mcp_stream',
        match: { path: AGGREGATED_PATH, headers: [{ name: ':method', string_match: { exact: 'GET' } }] },
        direct_response: {
          status: 500,
          body: { inline_string: errorBody(null, -32603, 'Internal error: stream was not served') },
        },
      },
      extProcMode(STREAMED_AT_HEADERS),
    ),
  );
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
