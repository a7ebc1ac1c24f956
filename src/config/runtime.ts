import { durationMs } from '../lib/duration.js';
import { GlobSet } from '../lib/glob.js';
import { authorityHost, isLoopbackHostPort } from '../lib/host-port.js';
import type { CatalogKind } from '../mcp/protocol.js';
import { viewServers, type Capability, type Config, type ServerConfig } from './schema.js';

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
  /** `timeout`: longest one request may take (0: no limit on streams). */
  readonly timeoutMs: number;
  /** Longest the processor waits on its own replay of a request to this server (a bounded `timeout`). */
  readonly replayTimeoutMs: number;
  /**
   * Nothing guards this server's passthrough endpoint: no identity, tenancy, policy or limit
   * applies to it. Envoy then hands the processor its POSTs at the body only (one message) and
   * none of its responses; any of those features makes it send headers and responses again, so
   * no request (an empty POST included) can pass unchecked.
   */
  readonly openPassthrough: boolean;
  readonly source: ServerConfig;
}

/** What a replay waits at most when the server's `timeout` is 0 (unbounded streams). */
const UNBOUNDED_REPLAY_MS = 300_000;

/** The frozen, compiled form of a Config: everything the request path needs, built once. */
export interface RuntimeConfig {
  readonly source: Config;
  readonly servers: ReadonlyMap<string, RuntimeServer>;
  readonly serverList: readonly RuntimeServer[];
  /** `/servers/<name>/mcp` → server. */
  readonly passthroughPaths: ReadonlyMap<string, RuntimeServer>;
  readonly pageSize: number;
  readonly maxBodyBytes: number;
  /** Largest upstream response the processor holds whole (list filtering, replays). */
  readonly maxBufferedResponseBytes: number;
  readonly upstreamTimeoutMs: number;
  /** The ext_proc timeouts Envoy is configured with, and when the processor asks for more. */
  readonly extProc: ExtProcTimeouts;
  readonly sessionIdleMs: number;
  /** `gateway.stream_idle_timeout`: idle bound of long-lived client streams on passthrough. */
  readonly streamIdleMs: number;
  /** `gateway.input_required_timeout`: how long a held call waits for the client's retry. */
  readonly inputRequiredMs: number;
  /** `gateway.max_sessions` and `gateway.max_sessions_per_client`. */
  readonly maxSessions: number;
  readonly maxSessionsPerClient: number;
  /** Largest capabilities + clientInfo a session keeps (JSON bytes). */
  readonly maxClientMetadataBytes: number;
  readonly catalogTtlMs: Readonly<Record<CatalogKind, number>>;
  /** Base URL of Envoy's internal listener for the processor's own upstream calls. */
  readonly internalBaseUrl: string;
  readonly originAllowed: (origin: string) => boolean;
  /** null: any Host is accepted. */
  readonly hostAllowed: ((host: string) => boolean) | null;
  /** `virtual_servers`, by the path of each (`/v/<name>/mcp`). */
  readonly viewPaths: ReadonlyMap<string, RuntimeView>;
}

/** One virtual server (`virtual_servers.<name>`), compiled. */
export interface RuntimeView {
  readonly name: string;
  readonly path: string;
  /** Its servers, in config order. */
  readonly servers: readonly string[];
  readonly authRequired: boolean;
  /** Client ids or groups allowed (null: any). */
  readonly allowedClients: ReadonlySet<string> | null;
  /** Tenants allowed (null: any). */
  readonly tenants: ReadonlySet<string> | null;
}

/** The path of a virtual server's endpoint. */
export function viewPath(name: string): string {
  return `/v/${name}/mcp`;
}

/** The path clients use for the aggregated endpoint. */
export const AGGREGATED_PATH = '/mcp';

const LOOPBACK_HOSTS = ['localhost', '127.0.0.1', '[::1]'];

/** Builds the RuntimeConfig; called once per loaded config. */
export function compileConfig(config: Config): RuntimeConfig {
  const servers = new Map<string, RuntimeServer>();
  const passthroughPaths = new Map<string, RuntimeServer>();
  // Anything that judges a caller makes every passthrough request go through every phase.
  const guarded =
    config.auth !== undefined || config.tenants !== undefined || config.policies !== undefined || config.blocked_tools !== undefined;
  for (const [name, s] of Object.entries(config.servers)) {
    const url = new URL(s.url);
    const timeoutMs = durationMs(s.timeout);
    const server: RuntimeServer = Object.freeze({
      name,
      url,
      path: url.pathname + url.search,
      cluster: `mcp_${name.replace(/-/g, '_')}`,
      capabilities: s.capabilities === undefined ? null : new Set(s.capabilities),
      authRequired: s.auth_required,
      allowedClients: s.allowed_clients === undefined ? null : new Set(s.allowed_clients),
      timeoutMs,
      replayTimeoutMs: timeoutMs > 0 ? timeoutMs : UNBOUNDED_REPLAY_MS,
      openPassthrough:
        !guarded &&
        !s.auth_required &&
        s.allowed_clients === undefined &&
        s.rate_limit === undefined &&
        config.rate_limits?.[name] === undefined &&
        // Withheld tools are left out of the server's own lists too, and results are filtered there as on /mcp.
        (s.filters?.pinning ?? config.filters?.pinning)?.action !== 'enforce' &&
        (s.filters?.pii ?? config.filters?.pii)?.results !== true &&
        (s.filters?.validate ?? config.filters?.validate)?.structured_content !== true,
      source: s,
    });
    servers.set(name, server);
    passthroughPaths.set(`/servers/${name}/mcp`, server);
  }

  // Origins and hosts carry no `?` wildcard: only `*` is special in them.
  const origins = new GlobSet(config.gateway.allowed_origins, { caseInsensitive: true, questionMark: false });
  const hostPatterns =
    config.gateway.allowed_hosts ?? (isLoopbackHostPort(config.gateway.listen) ? LOOPBACK_HOSTS : null);
  const hosts = hostPatterns === null ? null : new GlobSet(hostPatterns, { caseInsensitive: true, questionMark: false });

  const ttl = (k: 'tools/list' | 'prompts/list' | 'resources/list' | 'resources/templates/list'): number => config.cache[k].ttl * 1000;
  const upstreamTimeoutMs = durationMs(config.gateway.upstream_timeout);
  const longestReplayMs = Math.max(0, ...[...servers.values()].map((s) => s.replayTimeoutMs));
  return Object.freeze({
    source: config,
    servers,
    serverList: [...servers.values()],
    passthroughPaths,
    pageSize: config.gateway.page_size,
    maxBodyBytes: config.gateway.max_body_bytes,
    maxBufferedResponseBytes: config.gateway.max_buffered_response_bytes,
    upstreamTimeoutMs,
    extProc: extProcTimeouts(upstreamTimeoutMs, longestReplayMs),
    sessionIdleMs: durationMs(config.gateway.session_idle_timeout),
    streamIdleMs: durationMs(config.gateway.stream_idle_timeout),
    inputRequiredMs: durationMs(config.gateway.input_required_timeout),
    maxSessions: config.gateway.max_sessions,
    maxSessionsPerClient: config.gateway.max_sessions_per_client,
    maxClientMetadataBytes: config.gateway.max_client_metadata_bytes,
    catalogTtlMs: {
      tools: ttl('tools/list'),
      prompts: ttl('prompts/list'),
      resources: ttl('resources/list'),
      resourceTemplates: ttl('resources/templates/list'),
    },
    internalBaseUrl: `http://${config.gateway.internal}`,
    originAllowed: (o: string) => origins.test(o),
    hostAllowed: hosts === null ? null : (h: string) => hosts.test(authorityHost(h)),
    viewPaths: new Map(
      Object.entries(config.virtual_servers ?? {}).map(([name, v]) => [
        viewPath(name),
        Object.freeze({
          name,
          path: viewPath(name),
          servers: viewServers(config, v),
          authRequired: v.auth_required,
          allowedClients: v.allowed_clients === undefined ? null : new Set(v.allowed_clients),
          tenants: v.tenants === undefined ? null : new Set(v.tenants),
        }),
      ]),
    ),
  });
}

/** The runtime config as a virtual server sees it: only its servers. */
export function viewRuntime(rc: RuntimeConfig, view: RuntimeView): RuntimeConfig {
  const servers = new Map(view.servers.map((s) => [s, rc.servers.get(s)!] as const));
  return Object.freeze({ ...rc, servers, serverList: [...servers.values()] });
}

/** How long Envoy waits on the processor per ext_proc message: one rule, read by both sides. */
export interface ExtProcTimeouts {
  /** Envoy's `message_timeout`: the ordinary work for one message. */
  readonly messageMs: number;
  /** Envoy's `max_message_timeout`: the most the processor may ask for on one message. */
  readonly maxMessageMs: number;
  /** When the processor, still working on a message, asks Envoy for more time. */
  readonly extendAfterMs: number;
  /** How much more it asks for (`override_message_timeout`; the timer restarts then). */
  readonly extendToMs: number;
  /** When the processor stops waiting and answers with a timeout error itself, before Envoy would. */
  readonly deadlineMs: number;
}

/**
 * The ext_proc timeouts for a config. The slowest message is one that opens a new upstream
 * session (initialize, notifications/initialized, logging/setLevel: three calls of up to
 * `upstreamTimeoutMs`) after a cold catalog fetch, or one that opens a new session and replays a
 * request with the server's own timeout after the upstream lost the old one.
 */
export function extProcTimeouts(upstreamTimeoutMs: number, longestReplayMs: number): ExtProcTimeouts {
  const messageMs = upstreamTimeoutMs + 5000;
  const maxMessageMs = 6 * upstreamTimeoutMs + Math.max(longestReplayMs, upstreamTimeoutMs) + 10_000;
  // Asked for a second and a half before Envoy would give up (the processor checks 4 times a second).
  const extendAfterMs = messageMs - 1500;
  return { messageMs, maxMessageMs, extendAfterMs, extendToMs: maxMessageMs - extendAfterMs, deadlineMs: maxMessageMs - 2000 };
}
