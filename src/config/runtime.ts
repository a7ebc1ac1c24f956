import { Namespace } from '../routing/namespace.js';
import type { Capability, Config, ServerConfig } from './schema.js';

/** One upstream server, compiled for the hot path. */
export interface RuntimeServer {
  readonly name: string;
  readonly url: URL;
  /** Upstream request path (what Envoy rewrites `/mcp` and `/servers/<name>/mcp` to). */
  readonly path: string;
  /** Envoy cluster carrying this server's traffic. */
  readonly cluster: string;
  /** null: expose every capability the upstream offers. */
  readonly capabilities: ReadonlySet<Capability> | null;
  readonly authRequired: boolean;
  readonly allowedClients: ReadonlySet<string> | null;
  readonly source: ServerConfig;
}

/** Catalog kinds the processor aggregates. */
export type CatalogKind = 'tools' | 'prompts' | 'resources' | 'resourceTemplates';

/** The frozen, compiled form of a Config: everything the request path needs, built once. */
export interface RuntimeConfig {
  readonly source: Config;
  readonly servers: ReadonlyMap<string, RuntimeServer>;
  readonly serverList: readonly RuntimeServer[];
  /** `/servers/<name>/mcp` → server. */
  readonly passthroughPaths: ReadonlyMap<string, RuntimeServer>;
  readonly namespace: Namespace;
  readonly pageSize: number;
  readonly maxBodyBytes: number;
  readonly upstreamTimeoutMs: number;
  readonly sessionIdleMs: number;
  readonly catalogTtlMs: Readonly<Record<CatalogKind, number>>;
  /** Base URL of Envoy's internal listener for the processor's own upstream calls. */
  readonly internalBaseUrl: string;
  readonly originAllowed: (origin: string) => boolean;
  /** null: any Host is accepted. */
  readonly hostAllowed: ((host: string) => boolean) | null;
}

/** The path clients use for the aggregated endpoint. */
export const AGGREGATED_PATH = '/mcp';

/** Converts `250ms`, `10s`, `5m`, `1h` to milliseconds. */
export function durationMs(d: string): number {
  const m = /^([0-9]+)(ms|s|m|h)$/.exec(d);
  if (m === null) throw new Error(`bad duration ${d}`);
  const n = Number(m[1]);
  switch (m[2]) {
    case 'ms':
      return n;
    case 's':
      return n * 1000;
    case 'm':
      return n * 60_000;
    default:
      return n * 3_600_000;
  }
}

/** Compiles `*` globs into one anchored regular expression (everything else literal). */
export function compileGlobs(patterns: readonly string[], flags = ''): RegExp | null {
  if (patterns.length === 0) return null;
  const alternatives = patterns.map((p) => p.split('*').map(escapeRegExp).join('.*'));
  return new RegExp(`^(?:${alternatives.join('|')})$`, flags);
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

const LOOPBACK_HOSTS = ['localhost', '127.0.0.1', '[::1]'];

function isLoopback(hostPort: string): boolean {
  const host = hostPort.slice(0, hostPort.lastIndexOf(':'));
  return host === 'localhost' || host.startsWith('127.') || host === '[::1]';
}

/** Builds the RuntimeConfig; called once per loaded config. */
export function compileConfig(config: Config): RuntimeConfig {
  const servers = new Map<string, RuntimeServer>();
  const passthroughPaths = new Map<string, RuntimeServer>();
  for (const [name, s] of Object.entries(config.servers)) {
    const url = new URL(s.url);
    const server: RuntimeServer = Object.freeze({
      name,
      url,
      path: url.pathname + url.search,
      cluster: `mcp_${name.replace(/-/g, '_')}`,
      capabilities: s.capabilities === undefined ? null : new Set(s.capabilities),
      authRequired: s.auth_required,
      allowedClients: s.allowed_clients === undefined ? null : new Set(s.allowed_clients),
      source: s,
    });
    servers.set(name, server);
    passthroughPaths.set(`/servers/${name}/mcp`, server);
  }

  const origins = compileGlobs(config.gateway.allowed_origins, 'i');
  const hostPatterns =
    config.gateway.allowed_hosts ?? (isLoopback(config.gateway.listen) ? LOOPBACK_HOSTS : null);
  const hosts = hostPatterns === null ? null : compileGlobs(hostPatterns, 'i');

  const ttl = (k: keyof Config['cache']): number => config.cache[k].ttl * 1000;
  return Object.freeze({
    source: config,
    servers,
    serverList: [...servers.values()],
    passthroughPaths,
    namespace: new Namespace(servers.keys(), config.gateway.tool_separator),
    pageSize: config.gateway.page_size,
    maxBodyBytes: config.gateway.max_body_bytes,
    upstreamTimeoutMs: durationMs(config.gateway.upstream_timeout),
    sessionIdleMs: durationMs(config.gateway.session_idle_timeout),
    catalogTtlMs: {
      tools: ttl('tools/list'),
      prompts: ttl('prompts/list'),
      resources: ttl('resources/list'),
      resourceTemplates: ttl('resources/templates/list'),
    },
    internalBaseUrl: `http://${config.gateway.internal}`,
    originAllowed: origins === null ? () => false : (o: string) => origins.test(o),
    hostAllowed: hosts === null ? null : (h: string) => hosts.test(stripPort(h)),
  });
}

/** `host:port` → `host`, keeping IPv6 brackets. */
function stripPort(authority: string): string {
  if (authority.startsWith('[')) {
    const end = authority.indexOf(']');
    return end < 0 ? authority : authority.slice(0, end + 1);
  }
  const colon = authority.lastIndexOf(':');
  return colon < 0 ? authority : authority.slice(0, colon);
}
