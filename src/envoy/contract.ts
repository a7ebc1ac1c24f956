/**
 * Names that Envoy's generated configuration and the processor both rely on. Changing one here
 * changes both sides together.
 */

/** Prefix shared by every header the gateway owns. */
export const HEADER_PREFIX = 'x-mcpgw-';

/**
 * Set by the processor to pick an upstream; Envoy's routes match on it. Envoy removes any
 * client-sent copy before the processor sees the request, and the processor never trusts one.
 */
export const BACKEND_HEADER = `${HEADER_PREFIX}backend`;

/** Client credentials that must never reach an upstream (no token passthrough). */
export const CLIENT_CREDENTIAL_HEADERS: readonly string[] = ['authorization', 'x-api-key'];

/** Namespace of the dynamic metadata the processor writes (Envoy's access log reads it). */
export const METADATA_NAMESPACE = 'mcp.gateway';


/**
 * Namespace of the dynamic metadata that steers Envoy for a request decided in its body phase:
 * the route (`backend`) and the values of the headers the route sets upstream. Kept apart from
 * {@link METADATA_NAMESPACE} because the access log prints that one, and this one carries the
 * gateway's upstream credentials.
 */
export const ROUTE_METADATA_NAMESPACE = 'mcp.gateway.route';

/** Keys of {@link ROUTE_METADATA_NAMESPACE} and the upstream request headers they become. */
export const ROUTE_METADATA_KEYS = {
  backend: 'backend',
  upstreamSession: 'upstream_session',
  protocolVersion: 'protocol_version',
  traceparent: 'traceparent',
  mcpMethod: 'mcp_method',
  mcpName: 'mcp_name',
} as const;

/** The route-metadata key carrying the value of an injected upstream credential header. */
export function credentialMetadataKey(header: string): string {
  // No `:` in it: Envoy's %DYNAMIC_METADATA(ns:key)% reads each `:` as one more level of nesting.
  return `h.${header.toLowerCase()}`;
}

/**
 * The request headers the processor reads, as the Envoy attributes that carry them when it sees
 * a POST only at its body (request headers are not sent then; the attributes come with the body).
 */
export const REQUEST_HEADER_ATTRIBUTES: Readonly<Record<string, string>> = {
  ':authority': 'request.host',
  ':path': 'request.path',
  ':method': 'request.method',
  // Where the client sent the request (with :authority and :path): RFC 9728 metadata derived from it.
  ':scheme': 'request.scheme',
  ...Object.fromEntries(
    [
      'accept',
      'content-type',
      'content-length',
      'origin',
      'authorization',
      'x-api-key',
      'x-forwarded-client-cert',
      'x-forwarded-for',
      'mcp-session-id',
      'mcp-protocol-version',
      'traceparent',
      'tracestate',
      'last-event-id',
      'mcp-method',
      'mcp-name',
    ].map((h) => [h, `request.headers['${h}']`]),
  ),
};

/** The ext_proc filter's name: Envoy keys the attributes it sends by it. */
export const EXT_PROC_FILTER = 'envoy.filters.http.ext_proc';

/**
 * Envoy's active health check of the processor replicas (generated when `gateway.processor`
 * lists several): a `grpc.health.v1.Health/Check` every `intervalMs`, also while the cluster
 * carries no traffic, given up after `timeoutMs`. One failed check (NOT_SERVING, no answer in
 * time, a refused connection) takes a replica out, one passed check brings it back.
 */
export const PROCESSOR_HEALTH_CHECK = {
  // Also the longest time new requests can fail after a replica died: until the check marks it,
  // Envoy's retry of a stream the dead replica refused may pick it again.
  intervalMs: 250,
  // Well above a loaded machine's event-loop stalls: a replica that is merely slow must not
  // leave, since with every replica out nothing would be processed at all.
  timeoutMs: 2_000,
  unhealthyThreshold: 1,
  healthyThreshold: 1,
} as const;

/**
 * How long a replica that got SIGTERM keeps taking new ext_proc streams while it reports
 * NOT_SERVING, before it stops accepting them. The rule that ties it to the health check: Envoy
 * asks again within one interval, and the answer (or its timeout) counts at once; every failed
 * check the threshold asks for costs that again; one interval more covers Envoy handing the new
 * host set to its workers. Shorter, and requests Envoy still sends would meet a closed server.
 */
export function processorDrainMs(hc: typeof PROCESSOR_HEALTH_CHECK = PROCESSOR_HEALTH_CHECK): number {
  return hc.unhealthyThreshold * (hc.intervalMs + hc.timeoutMs) + hc.intervalMs;
}

/** {@link processorDrainMs} for the generated health check (2.5 s). */
export const PROCESSOR_DRAIN_MS = processorDrainMs();

/**
 * After the drain, how long streams already open may take to finish before the processor closes
 * them: long enough for ordinary calls; a longer stream (an open server→client SSE stream) is
 * cut, and its client reconnects.
 */
export const PROCESSOR_SHUTDOWN_GRACE_MS = 2_000;
