/**
 * The "Envoy without the processor" baseline (target b).
 *
 * Rather than hand-writing a second Envoy config that could drift from the gateway's, it is
 * derived from the gateway's own bootstrap (`renderEnvoyBootstrap`): the same upstream cluster
 * (HTTP/1.1, circuit breakers, outlier detection, idle timeout), the same HTTP connection manager
 * settings (path normalisation, timeouts, access log, local replies) and the same upstream route
 * (prefix rewrite, timeouts, retry policy, host rewrite) as the gateway's passthrough route, with
 * exactly two things removed: the ext_proc filter and everything only it needs (the filters that
 * apply its decisions, the processor cluster, the internal listener). The difference between (b)
 * and (c)/(d) is then the processor.
 *
 * The same derivation gives the native-router row: Envoy's own MCP filters (`envoy.filters.http.mcp`
 * parsing each message, `envoy.filters.http.mcp_router` routing it, both C++ in the same binary)
 * in place of the gateway's filters, on the same listener, connection manager and cluster.
 */
import { parse as parseYaml, stringify } from 'yaml';

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function need<T>(v: T | undefined | null, what: string): T {
  if (v === undefined || v === null) throw new Error(`plain Envoy bootstrap: gateway bootstrap has no ${what} (did its layout change?)`);
  return v;
}

function asArray(v: unknown, what: string): unknown[] {
  if (!Array.isArray(v)) throw new Error(`plain Envoy bootstrap: ${what} is not a list in the gateway bootstrap`);
  return v;
}

export interface PlainEnvoyOptions {
  /** The gateway's rendered bootstrap YAML. */
  gatewayYaml: string;
  /** Envoy cluster of the upstream server (e.g. `mcp_alpha`). */
  cluster: string;
  /** Name of the gateway route whose `route` action is reused (the passthrough route, e.g. `alpha_passthrough`). */
  routeName: string;
  /** Client path the plain listener serves (e.g. `/mcp`). */
  path: string;
  listenPort: number;
  adminPort: number;
  /** Serve through Envoy's native MCP filters, aggregating this one server, instead of the plain router. */
  nativeServer?: string;
}

/** Filters that exist only to carry out the processor's decisions. */
const PROCESSOR_FILTERS = new Set(['envoy.filters.http.ext_proc', 'envoy.filters.http.buffer', 'envoy.filters.http.header_mutation']);

function nativeMcpFilters(server: string, cluster: string, path: string, authority: string): Obj[] {
  return [
    { name: 'envoy.filters.http.mcp', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.mcp.v3.Mcp' } },
    {
      name: 'envoy.filters.http.mcp_router',
      typed_config: {
        '@type': 'type.googleapis.com/envoy.extensions.filters.http.mcp_router.v3.McpRouter',
        // The router's own calls carry the authority the gateway's route sends (auto_host_rewrite).
        servers: [{ name: server, mcp_cluster: { cluster, path, host_rewrite_literal: authority } }],
      },
    },
  ];
}

/** Builds the plain Envoy bootstrap: listener → HCM (no ext_proc) → router → the upstream cluster. */
export function renderPlainEnvoyBootstrap(o: PlainEnvoyOptions): string {
  const gw = parseYaml(o.gatewayYaml) as Obj;
  const resources = need(isObj(gw['static_resources']) ? gw['static_resources'] : null, 'static_resources');
  const listeners = asArray(resources['listeners'], 'static_resources.listeners');
  const clusters = asArray(resources['clusters'], 'static_resources.clusters');

  const cluster = need(clusters.find((c) => isObj(c) && c['name'] === o.cluster) as Obj | undefined, `cluster ${o.cluster}`);
  const protocol = JSON.stringify(cluster['typed_extension_protocol_options'] ?? {});
  if (protocol.includes('http2_protocol_options')) throw new Error(`plain Envoy bootstrap: cluster ${o.cluster} is not HTTP/1.1`);

  // The client listener is the one whose HCM carries the ext_proc filter.
  let hcm: Obj | undefined;
  let clientListener: Obj | undefined;
  for (const l of listeners) {
    if (!isObj(l)) continue;
    for (const chain of asArray(l['filter_chains'] ?? [], 'filter_chains')) {
      if (!isObj(chain)) continue;
      for (const f of asArray(chain['filters'] ?? [], 'filters')) {
        if (!isObj(f) || f['name'] !== 'envoy.filters.network.http_connection_manager' || !isObj(f['typed_config'])) continue;
        const filters = asArray(f['typed_config']['http_filters'] ?? [], 'http_filters');
        if (filters.some((hf) => isObj(hf) && hf['name'] === 'envoy.filters.http.ext_proc')) {
          hcm = f;
          clientListener = l;
        }
      }
    }
  }
  const hcmFilter = need(hcm, 'HTTP connection manager with an ext_proc filter');
  const listener = need(clientListener, 'client listener');
  const tc = hcmFilter['typed_config'] as Obj;

  const routeConfig = need(isObj(tc['route_config']) ? tc['route_config'] : null, 'route_config on the client listener');
  let routeAction: Obj | undefined;
  for (const vh of asArray(routeConfig['virtual_hosts'], 'virtual_hosts')) {
    if (!isObj(vh)) continue;
    for (const r of asArray(vh['routes'], 'routes')) {
      if (isObj(r) && r['name'] === o.routeName && isObj(r['route'])) routeAction = r['route'];
    }
  }
  const route = need(routeAction, `route ${o.routeName}`);
  if (route['cluster'] !== o.cluster) throw new Error(`plain Envoy bootstrap: route ${o.routeName} does not go to ${o.cluster}`);

  // Tracing (if the gateway config ever turns it on) points at a collector cluster the plain
  // bootstrap does not carry; the bench's own gateway config leaves it off anyway.
  const { tracing: _tracing, ...tcWithoutTracing } = tc;
  const plainHcm: Obj = {
    ...hcmFilter,
    typed_config: {
      ...tcWithoutTracing,
      stat_prefix: 'plain',
      route_config: {
        ...routeConfig,
        name: 'plain_routes',
        virtual_hosts: [
          {
            name: 'plain',
            domains: ['*'],
            routes: [{ name: 'plain_upstream', match: { path: o.path }, route }],
          },
        ],
      },
      http_filters:
        o.nativeServer !== undefined
          ? nativeMcpFilters(o.nativeServer, o.cluster, upstreamPath(route), endpointAuthority(cluster))
          : asArray(tc['http_filters'], 'http_filters').filter((hf) => !(isObj(hf) && PROCESSOR_FILTERS.has(String(hf['name'])))),
    },
  };

  const bootstrap = {
    node: { id: o.nativeServer !== undefined ? 'mcp-bench-native' : 'mcp-bench-plain', cluster: 'mcp-bench-plain' },
    admin: { address: { socket_address: { address: '127.0.0.1', port_value: o.adminPort } } },
    static_resources: {
      listeners: [
        {
          ...listener,
          name: o.nativeServer !== undefined ? 'native_client' : 'plain_client',
          address: { socket_address: { address: '127.0.0.1', port_value: o.listenPort } },
          filter_chains: [{ filters: [plainHcm] }],
        },
      ],
      clusters: [cluster],
    },
  };
  const what = o.nativeServer !== undefined ? "with Envoy's native MCP filters in place of ext_proc" : 'minus ext_proc';
  return `# Generated by test/bench: the gateway's bootstrap ${what}.\n${stringify(bootstrap, { aliasDuplicateObjects: false, lineWidth: 0 })}`;
}

/** The authority (`hostname` of the first endpoint) the gateway's route rewrites Host to. */
function endpointAuthority(cluster: Obj): string {
  const found = /"hostname":"([^"]+)"/.exec(JSON.stringify(cluster['load_assignment'] ?? {}));
  if (found?.[1] === undefined) throw new Error('plain Envoy bootstrap: the upstream cluster names no endpoint hostname');
  return found[1];
}

/** The path the route sends upstream: its prefix rewrite (the upstream's MCP path). */
function upstreamPath(route: Obj): string {
  const rewrite = route['prefix_rewrite'];
  if (typeof rewrite === 'string' && rewrite !== '') return rewrite;
  throw new Error('plain Envoy bootstrap: the passthrough route has no prefix_rewrite to take the upstream path from');
}

/** The cluster the gateway's ext_proc filter talks to (the processor), or null if there is none. */
export function extProcCluster(gatewayYaml: string): string | null {
  let found: string | null = null;
  const visit = (v: unknown): void => {
    if (found !== null) return;
    if (Array.isArray(v)) {
      v.forEach(visit);
      return;
    }
    if (!isObj(v)) return;
    if (v['name'] === 'envoy.filters.http.ext_proc' && isObj(v['typed_config'])) {
      const gs = v['typed_config']['grpc_service'];
      const eg = isObj(gs) ? gs['envoy_grpc'] : undefined;
      if (isObj(eg) && typeof eg['cluster_name'] === 'string') found = eg['cluster_name'];
      return;
    }
    Object.values(v).forEach(visit);
  };
  visit(parseYaml(gatewayYaml));
  return found;
}
