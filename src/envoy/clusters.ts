/** The clusters of the generated Envoy config: one per upstream server, and the gRPC ones (processor, OTLP). */
import type { RuntimeServer } from '../config/runtime.js';
import { endpointUrl } from '../config/schema.js';
import { PROCESSOR_HEALTH_CHECK } from './contract.js';
import { seconds, socketAddress } from './common.js';

export function hasSeveralEndpoints(server: RuntimeServer): boolean {
  return (server.source.fallback ?? []).length > 0;
}

/** One endpoint of a server's cluster. */
interface Endpoint {
  readonly url: URL;
  /** Its share of the traffic (strategy weighted); null: an even share. */
  readonly weight: number | null;
}

/**
 * Endpoints by Envoy priority: failover puts the primary at 0 and its fallbacks at 1; round-robin
 * and weighted all at 0 (weighted with each endpoint's weight, 1 unless given).
 */
export function endpointsByPriority(server: RuntimeServer): Map<number, Endpoint[]> {
  const s = server.source;
  const weighted = s.strategy === 'weighted';
  const endpoints: Endpoint[] = [
    { url: new URL(s.url), weight: weighted ? (s.weight ?? 1) : null },
    ...(s.fallback ?? []).map((f) => ({ url: new URL(endpointUrl(f)), weight: weighted ? (typeof f === 'string' ? 1 : f.weight) : null })),
  ];
  const failover = s.strategy === 'failover';
  const byPriority = new Map<number, Endpoint[]>();
  endpoints.forEach((e, i) => {
    const priority = failover ? Math.min(i, 1) : 0;
    byPriority.set(priority, [...(byPriority.get(priority) ?? []), e]);
  });
  return byPriority;
}

export function endpointPriorities(server: RuntimeServer): number {
  return endpointsByPriority(server).size;
}

/**
 * How Envoy tells a live endpoint from a dead one, for servers with several endpoints: `HEAD` on
 * the server's own path, and any HTTP answer of the server itself counts as alive. MCP servers
 * have no health path of their own and answer a bare `HEAD /mcp` with 405 (or 400, 401, 404, 406
 * ...), which is as good as 200 here: the process runs and serves HTTP. What counts as dead: no
 * connection (the process is gone), no answer within the timeout (hung), or 502/503/504 (a proxy
 * in front of a server that is gone, or the server saying it cannot serve). HEAD, because its
 * answer never has a body: a server that would open an SSE stream for `GET` cannot hold the check
 * open. A TCP check would only prove that something accepts connections, which a hung process or
 * a TLS proxy in front of a dead one still does.
 *
 * Timing: a check a second per endpoint (every half second while it is out, or while a check
 * disagreed with its state); 2 failed checks in a row take an endpoint out, 2 passed ones bring it
 * back. A dead process is out within about 1.7 s, a hung one within about 6 s, a restarted one
 * back within about 1.1 s of answering. The check's connection is kept alive between checks.
 */
function healthCheck(server: RuntimeServer): Record<string, unknown> {
  return {
    timeout: '2s',
    interval: '1s',
    interval_jitter_percent: 10,
    // While an endpoint is out, and after the first check that disagrees with its state (so the
    // second, deciding one follows quickly in either direction).
    unhealthy_interval: '0.5s',
    unhealthy_edge_interval: '0.5s',
    healthy_edge_interval: '0.5s',
    unhealthy_threshold: 2,
    healthy_threshold: 2,
    // Envoy's default is a check a minute until the cluster has carried a request; an endpoint
    // that dies in that time would go unnoticed for as long.
    no_traffic_interval: '1s',
    http_health_check: {
      path: server.path,
      method: 'HEAD',
      expected_statuses: [
        { start: 200, end: 502 },
        { start: 505, end: 600 },
      ],
    },
  };
}

/**
 * Outlier detection: a live endpoint that keeps failing requests (5 consecutive 5xx, or 3
 * consecutive 502/503/504) is taken out for 15 s, longer on repeats. Locally originated failures
 * (refused or reset connections, timeouts) are counted apart and eject nothing: whether the
 * process is alive is the active health check's call, which lets a restarted endpoint back as
 * soon as it answers instead of after an ejection time, and keeps a dead one out however long it
 * stays dead.
 */
function outlierDetection(severalEndpoints: boolean): Record<string, unknown> {
  return {
    split_external_local_origin_errors: true,
    consecutive_5xx: 5,
    consecutive_gateway_failure: 3,
    enforcing_consecutive_gateway_failure: 100,
    enforcing_consecutive_local_origin_failure: 0,
    enforcing_local_origin_success_rate: 0,
    interval: '5s',
    base_ejection_time: '15s',
    ...(severalEndpoints
      ? {
          // Never eject every endpoint: with no panic mode (see cluster()) that would refuse all
          // traffic although some endpoint still answers.
          max_ejection_percent: 50,
          // Passing health checks (the process answers HTTP) do not cut an ejection short.
          successful_active_health_check_uneject_host: false,
        }
      : { max_ejection_percent: 100 }),
  };
}

export function cluster(server: RuntimeServer): Record<string, unknown> {
  const byPriority = endpointsByPriority(server);
  const several = hasSeveralEndpoints(server);
  const tls = server.url.protocol === 'https:';
  const c: Record<string, unknown> = {
    name: server.cluster,
    type: 'STRICT_DNS',
    dns_lookup_family: 'V4_PREFERRED',
    connect_timeout: '2s',
    lb_policy: 'ROUND_ROBIN',
    load_assignment: {
      cluster_name: server.cluster,
      endpoints: [...byPriority.entries()].map(([priority, endpoints]) => ({
        priority,
        lb_endpoints: endpoints.map(({ url: u, weight }) => ({
          ...(weight === null ? {} : { load_balancing_weight: weight }),
          endpoint: {
            address: { socket_address: { address: u.hostname.replace(/^\[|\]$/g, ''), port_value: Number(u.port || (tls ? 443 : 80)) } },
            // The authority the URL names (with its port unless it is the scheme's default), which
            // auto_host_rewrite sends as Host: servers that guard against DNS rebinding (the
            // Python SDK's on localhost) refuse a Host without the port they listen on.
            hostname: u.host,
            // The health check sends the Host requests get, not the cluster name.
            ...(several ? { health_check_config: { hostname: u.host } } : {}),
          },
        })),
      })),
    },
    // max_retries: Envoy's default of 3 concurrent retries per cluster would refuse the safe retry
    // of almost every request that meets a dead endpoint under load. Retries only re-send requests
    // that never reached an upstream, so they add no load on the servers.
    circuit_breakers: { thresholds: [{ max_connections: 10_000, max_pending_requests: 10_000, max_requests: 10_000, max_retries: 10_000 }] },
    outlier_detection: outlierDetection(several),
    ...(several
      ? {
          health_checks: [healthCheck(server)],
          // No panic mode: a host that failed its checks never gets traffic, even when few are
          // left (by default Envoy spreads traffic over all hosts, dead ones too, below 50 %
          // healthy). With every endpoint down, requests get 503 at once. Health changes apply
          // at once (see grpcCluster).
          common_lb_config: { healthy_panic_threshold: { value: 0 }, update_merge_window: '0s' },
        }
      : {}),
    typed_extension_protocol_options: {
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
        '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
        explicit_http_config: { http_protocol_options: {} },
        // Below the keep-alive timeout of common servers (Node's and uvicorn's 5 s): Envoy closes
        // an idle connection before the server does, so a request never goes out on a connection
        // the server is closing (that reset could not be retried safely and would fail the call).
        common_http_protocol_options: { idle_timeout: '4s' },
      },
    },
  };
  if (tls) {
    c['transport_socket'] = {
      name: 'envoy.transport_sockets.tls',
      typed_config: {
        '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext',
        sni: server.url.hostname,
        common_tls_context: {
          validation_context: { trusted_ca: { filename: '/etc/ssl/certs/ca-certificates.crt' } },
        },
      },
    };
  }
  return c;
}

/** A cluster of gRPC (HTTP/2) endpoints: the processor replicas, or the OTLP collector. */
export function grpcCluster(name: string, addresses: readonly string[], healthChecked = false): Record<string, unknown> {
  return {
    // gRPC health: a replica that dies, or drains after SIGTERM (NOT_SERVING), stops getting new
    // streams within one interval; its drain window (contract.ts) is derived from these figures.
    ...(healthChecked
      ? {
          health_checks: [
            {
              timeout: seconds(PROCESSOR_HEALTH_CHECK.timeoutMs),
              interval: seconds(PROCESSOR_HEALTH_CHECK.intervalMs),
              no_traffic_interval: seconds(PROCESSOR_HEALTH_CHECK.intervalMs),
              unhealthy_threshold: PROCESSOR_HEALTH_CHECK.unhealthyThreshold,
              healthy_threshold: PROCESSOR_HEALTH_CHECK.healthyThreshold,
              grpc_health_check: {},
            },
          ],
          // Never spread requests over dead replicas: a request sent to one fails for sure. And
          // a check's verdict applies at once: by default Envoy's workers learn of health changes
          // up to a second late (update_merge_window), so a replica just restarted gets no streams
          // for that long, and if the other one dies meanwhile every request fails.
          common_lb_config: { healthy_panic_threshold: { value: 0 }, update_merge_window: '0s' },
          // A replica that refuses a stream (killed, connection refused or reset) is ejected at
          // once, before the next health check: with two replicas, the retry's previous_hosts
          // predicate is used up once the live one was tried too, and the retry could pick the
          // dead one again until the check marks it. Only local-origin failures count (the
          // processor's gRPC statuses are answers, not failures); a passing health check brings
          // a restarted replica back (successful_active_health_check_uneject_host defaults to
          // true). Never all of them: (N-1)/N at most.
          outlier_detection: {
            split_external_local_origin_errors: true,
            consecutive_local_origin_failure: 1,
            enforcing_consecutive_local_origin_failure: 100,
            enforcing_consecutive_5xx: 0,
            enforcing_consecutive_gateway_failure: 0,
            enforcing_success_rate: 0,
            enforcing_local_origin_success_rate: 0,
            interval: '1s',
            base_ejection_time: '30s',
            max_ejection_percent: Math.ceil(((addresses.length - 1) / addresses.length) * 100),
          },
        }
      : {}),
    name,
    type: 'STRICT_DNS',
    connect_timeout: '1s',
    lb_policy: 'ROUND_ROBIN',
    load_assignment: {
      cluster_name: name,
      endpoints: [{ lb_endpoints: addresses.map((p) => ({ endpoint: { address: socketAddress(p) } })) }],
    },
    // max_retries: Envoy's default of 3 concurrent retries per cluster would refuse the retries
    // of every stream that met a replica just killed, exactly when they are needed.
    circuit_breakers: { thresholds: [{ max_connections: 100_000, max_pending_requests: 100_000, max_requests: 100_000, max_retries: 100_000 }] },
    typed_extension_protocol_options: {
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
        '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
        explicit_http_config: { http2_protocol_options: { connection_keepalive: { interval: '30s', timeout: '5s' } } },
      },
    },
  };
}
