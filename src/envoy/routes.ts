import type { RuntimeServer } from '../config/runtime.js';
import { durationMs } from '../lib/duration.js';
import { CLIENT_CREDENTIAL_HEADERS, credentialMetadataKey, METADATA_NAMESPACE, ROUTE_METADATA_KEYS, ROUTE_METADATA_NAMESPACE } from './contract.js';
import { MCP_METHOD_HEADER, MCP_NAME_HEADER, PROTOCOL_VERSION_HEADER, SESSION_HEADER } from '../mcp/headers.js';
import { endpointPriorities, hasSeveralEndpoints } from './clusters.js';
import { seconds } from './common.js';

/**
 * The pieces routes are built of: how a request reaches an upstream (timeouts, safe retries),
 * which phases of it the processor sees (processing modes per route), the upstream headers a
 * route sets from what the processor decided, and session affinity for servers with several
 * endpoints. bootstrap.ts assembles them into listeners.
 */

/** Retries that are safe for non-idempotent MCP POSTs: only when the request never reached a host. */
export const SAFE_RETRY = {
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
export function upstreamRetryPolicy(server: RuntimeServer): Record<string, unknown> {
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

export function upstreamRoute(server: RuntimeServer): Record<string, unknown> {
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

export const STATEFUL_SESSION = 'envoy.filters.http.stateful_session';
export const HEADER_MUTATION = 'envoy.filters.http.header_mutation';

export type ProcessingMode = Record<string, string>;

/** /mcp POSTs and open passthrough POSTs: one message, the body, with the headers as attributes. */
export const DECIDED_AT_BODY: ProcessingMode = {
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
export const OPEN_PASSTHROUGH_POST: ProcessingMode = { ...DECIDED_AT_BODY, response_header_mode: 'SKIP' };
/** A POST something guards: every phase, so nothing (an empty POST included) passes unchecked. */
export const GUARDED_POST: ProcessingMode = { ...DECIDED_AT_BODY, request_header_mode: 'SEND' };
/** Requests without a body the processor answers itself: headers only. */
export const ANSWERED_AT_HEADERS: ProcessingMode = { ...DECIDED_AT_BODY, request_header_mode: 'SEND', request_body_mode: 'BUFFERED', response_header_mode: 'SKIP' };

/** GET on /mcp: headers only; the processor streams the response itself. */
export const STREAMED_AT_HEADERS: ProcessingMode = { ...DECIDED_AT_BODY, request_header_mode: 'SEND', request_body_mode: 'NONE', response_header_mode: 'SKIP' };

/**
 * subscriptions/listen on /mcp: the processor holds the request (its headers unanswered) while the
 * body streams in full-duplex, then answers with the stream itself. Envoy requires trailers to be
 * sent in this body mode.
 */
export const HELD_FOR_STREAM: ProcessingMode = {
  ...DECIDED_AT_BODY,
  request_header_mode: 'SEND',
  request_body_mode: 'FULL_DUPLEX_STREAMED',
  request_trailer_mode: 'SEND',
  response_header_mode: 'SKIP',
};

/** GET and DELETE on passthrough: headers; the response too unless nothing guards the server. */
export function headersPhase(server: RuntimeServer): ProcessingMode {
  return { ...DECIDED_AT_BODY, request_header_mode: 'SEND', request_body_mode: 'NONE', response_header_mode: server.openPassthrough ? 'SKIP' : 'SEND' };
}

/** The route's ext_proc settings: the processing mode of requests that first match it. */
export function extProcMode(mode: ProcessingMode): Record<string, unknown> {
  return {
    'envoy.filters.http.ext_proc': {
      '@type': 'type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute',
      overrides: { processing_mode: mode },
    },
  };
}

/** A route with per-filter configs merged in. */
export function withPerFilter(route: Record<string, unknown>, ...configs: Record<string, unknown>[]): Record<string, unknown> {
  const merged: Record<string, unknown> = {};
  for (const c of configs) Object.assign(merged, (c['typed_per_filter_config'] as Record<string, unknown> | undefined) ?? c);
  return Object.keys(merged).length === 0 ? route : { ...route, typed_per_filter_config: merged };
}

/** Route metadata naming the server (local replies about it read it). */
export function routeMetadata(server: RuntimeServer): Record<string, unknown> {
  return { filter_metadata: { [METADATA_NAMESPACE]: { server: server.name } } };
}

export function fromRouteMetadata(header: string, key: string): Record<string, unknown> {
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
export function headersFromRouteMetadata(server: RuntimeServer, aggregated: boolean): Record<string, unknown> {
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
      ? [
          fromRouteMetadata(SESSION_HEADER, ROUTE_METADATA_KEYS.upstreamSession),
          fromRouteMetadata(PROTOCOL_VERSION_HEADER, ROUTE_METADATA_KEYS.protocolVersion),
          // For servers of the sessionless revisions: the routing headers of the rewritten body.
          fromRouteMetadata(MCP_METHOD_HEADER, ROUTE_METADATA_KEYS.mcpMethod),
          fromRouteMetadata(MCP_NAME_HEADER, ROUTE_METADATA_KEYS.mcpName),
        ]
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
export function statefulSessionFilter(): Record<string, unknown> {
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
export function affinityPerRoute(server: RuntimeServer): Record<string, unknown> {
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
export function internalMs(server: RuntimeServer, upstreamMs: number): number {
  return Math.max(upstreamMs, server.replayTimeoutMs);
}
