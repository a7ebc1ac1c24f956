import { z } from 'zod';
import { CacheSchema, ServerCacheSchema } from '../cache/schema.js';
import { AuthSchema, ClientIdSchema, KeySha256Schema, UpstreamHeadersSchema } from '../auth/schema.js';
import { DurationSchema } from '../lib/duration.js';
import type { ConfigIssue } from '../lib/config-issue.js';
import { FiltersSchema, PinsSchema } from '../filters/schema.js';
import { TOOL_NAME } from '../mcp/protocol.js';
import { globMatches } from '../lib/glob.js';
import { HostPortSchema, splitHostPort } from '../lib/host-port.js';
import { urlSchema } from '../lib/url.js';
import { BlockedToolsSchema, PoliciesSchema, TenantsSchema, accessConfigIssues } from '../policy/schema.js';
import { RateLimitsSchema, rateLimitConfigIssues } from '../ratelimit/schema.js';
import { RedisSchema } from '../state/schema.js';
import { DEFAULT_MAX_CLIENT_METADATA_BYTES, DEFAULT_MAX_SESSIONS, DEFAULT_MAX_SESSIONS_PER_CLIENT } from '../sessions/limits.js';

/**
 * The one source of truth for the gateway's configuration file.
 *
 * Every object is strict (unknown keys are rejected with their path); every field carries a
 * `.describe()` text that ends up in `deploy/config.schema.json` and the README.
 */

/**
 * Server names become tool-name prefixes (`<server><sep><tool>`) and URI-scheme prefixes
 * (`<server>+<uri>`), so they must be valid in both: lowercase letters, digits and `-`.
 */
export const ServerNameSchema = z
  .string()
  .regex(/^[a-z][a-z0-9-]{0,47}$/, 'server names are 1-48 chars of a-z, 0-9 and "-", starting with a letter');

const HttpUrlSchema = urlSchema((u) => u.protocol === 'http:' || u.protocol === 'https:', 'expected an absolute http:// or https:// URL');

/** `100/min` style rate shorthand from the seed. */
export const RateShorthandSchema = z
  .string()
  .regex(/^[1-9][0-9]*\/(s|sec|second|m|min|minute|h|hour|d|day)$/, 'expected N/unit, e.g. 100/min');

/** Where an upstream's MCP endpoint is when its URL names no path (`http://mcp-db:3000`). */
export const DEFAULT_SERVER_PATH = '/mcp';

/** A server URL with DEFAULT_SERVER_PATH when it names no path at all (`/` itself is a path). */
export function withDefaultPath(url: string): string {
  return /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*$/i.test(url) ? url + DEFAULT_SERVER_PATH : url;
}

/** Relative share of one endpoint's traffic under `strategy: weighted`. */
const WeightSchema = z.number().int().min(1).max(1000);

/** One fallback endpoint: its URL, or (for `strategy: weighted`) its URL and weight. */
const EndpointSchema = z.union([HttpUrlSchema, z.strictObject({ url: HttpUrlSchema, weight: WeightSchema.describe('Its share of the traffic, relative to the others') })]);

/** The URL of a fallback entry, whichever form it takes. */
export function endpointUrl(e: z.infer<typeof EndpointSchema>): string {
  return typeof e === 'string' ? e : e.url;
}

/** How /mcp names what a server has. */
export const PrefixModeSchema = z.enum(['always', 'never', 'on-collision']);

/** `servers.<name>.tools.<tool>`. */
const ToolOverrideSchema = z
  .strictObject({
    name: z
      .string()
      .regex(TOOL_NAME, 'tool names are 1-128 characters of A-Z, a-z, 0-9, _, - and .')
      .optional()
      .describe('The name /mcp shows (and takes in calls) for the tool, without a prefix'),
    description: z.string().max(16_384).optional().describe('The description /mcp shows instead of the server\'s'),
    title: z.string().max(1024).optional().describe('The title /mcp shows instead of the server\'s'),
  })
  .refine((o) => o.name !== undefined || o.description !== undefined || o.title !== undefined, 'give name, description or title');

/** One entry of `routes`. */
const RouteSchema = z
  .strictObject({
    tools: z.string().min(1).max(1024).optional().describe('Glob (`*`, `?`) on tool names, e.g. search_*'),
    prompts: z.string().min(1).max(1024).optional().describe('Glob (`*`, `?`) on prompt names'),
    resources: z.string().min(1).max(4096).optional().describe('Glob (`*`; `?` is literal) on resource URIs and templates, e.g. file://*'),
    server: ServerNameSchema.describe('The server those names or URIs belong to'),
  })
  .refine((r) => [r.tools, r.prompts, r.resources].filter((x) => x !== undefined).length === 1, 'give exactly one of tools, prompts and resources');
export type RouteConfig = z.infer<typeof RouteSchema>;

/** A list of globs on names, or on `<server-glob>/<name-glob>`. */
const SelectionSchema = z.array(z.string().min(1).max(1024)).min(1);

/** `virtual_servers.<name>`: a curated endpoint `/v/<name>/mcp`. */
const VirtualServerSchema = z.strictObject({
  servers: z
    .array(z.string().min(1).max(256))
    .min(1)
    .describe('The servers it draws from: names or globs (`*`, `?`)'),
  tools: SelectionSchema.optional().describe(
    "Tools it shows and takes calls of: globs on the server's own tool name, or `<server-glob>/<tool-glob>`; absent: all of its servers' tools",
  ),
  prompts: SelectionSchema.optional().describe("Prompts it shows, as `tools` does for tools; absent: all"),
  resources: SelectionSchema.optional().describe('Resources it shows and reads: globs (`*`) on their URIs and templates; absent: all'),
  prefix: PrefixModeSchema.optional().describe("How it names what its servers have (default: each server's prefix, else gateway.prefix)"),
  tool_overrides: z
    .record(ServerNameSchema, z.record(z.string().min(1).max(256), ToolOverrideSchema))
    .optional()
    .describe("Per server and tool (its own name): the name, description or title this endpoint shows, over servers.<name>.tools"),
  auth_required: z.boolean().default(false).describe('Only authenticated callers may use it'),
  allowed_clients: z
    .array(z.string().min(1))
    .optional()
    .describe('Client ids or groups allowed to use it; unauthenticated callers never match'),
  tenants: z.array(z.string().min(1)).optional().describe('Tenants allowed to use it (absent: every tenant); others get 404'),
});
export type VirtualServerConfig = z.infer<typeof VirtualServerSchema>;

export const CapabilitySchema = z.enum(['tools', 'resources', 'prompts', 'completions', 'logging']);
export type Capability = z.infer<typeof CapabilitySchema>;

export const ServerSchema = z
  .strictObject({
    url: HttpUrlSchema.optional().describe(
      `Upstream MCP endpoint (Streamable HTTP), e.g. http://127.0.0.1:3001/mcp; a URL without a path (http://mcp-db:3000) means ${DEFAULT_SERVER_PATH} on it. Give url or primary`,
    ),
    primary: HttpUrlSchema.optional().describe('Another name for url (the primary endpoint beside its fallbacks); give one of the two'),
    weight: WeightSchema.optional().describe("The primary endpoint's share of the traffic under strategy weighted (default 1)"),
    capabilities: z
      .array(CapabilitySchema)
      .optional()
      .describe('Capabilities the gateway exposes from this server on /mcp; omitted means all the server offers'),
    auth_required: z
      .boolean()
      .default(false)
      .describe('Only authenticated callers may see or reach this server (fails closed: with no auth method configured, nobody can)'),
    rate_limit: RateShorthandSchema.optional().describe('Request rate shorthand for this server, e.g. 100/min'),
    allowed_clients: z
      .array(z.string().min(1))
      .optional()
      .describe('Client ids, or groups of clients, allowed to reach this server (an entry matches a client of that id or in that group); unauthenticated callers never match'),
    fallback: z
      .array(EndpointSchema)
      .optional()
      .describe('More endpoints of the same server (same scheme and path), used per `strategy`: URLs, or {url, weight} under strategy weighted'),
    strategy: z
      .enum(['failover', 'round-robin', 'weighted'])
      .default('failover')
      .describe(
        'failover: fallbacks take traffic only when the primary is unhealthy; round-robin: all share it evenly; weighted: all share it by their weight',
      ),
    headers: UpstreamHeadersSchema.optional(),
    timeout: DurationSchema.default('300s').describe(
      'Longest a single request to this server may take through Envoy (SSE streams included); 0s disables',
    ),
    prefix: PrefixModeSchema.optional().describe(
      'How /mcp names what this server has (default gateway.prefix): always `<server><sep><name>` and `<server>+<uri>`; never: its own names and URIs; on-collision: its own, except a name or URI another server has too, which keeps the prefix',
    ),
    filters: FiltersSchema.optional().describe('Filters on tool calls to this server (each of context and defaults replaces the global one)'),
    cache: ServerCacheSchema.optional(),
    tools: z
      .record(z.string().min(1).max(256), ToolOverrideSchema)
      .optional()
      .describe("Per tool (the server's own name): the name, description or title /mcp shows instead of the server's; policies still judge the server's own name"),
  })
  .superRefine((s, ctx) => {
    if ((s.url === undefined) === (s.primary === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['url'], message: 'give the server\'s endpoint as exactly one of url and primary' });
      return;
    }
    const weighted = s.strategy === 'weighted';
    if (s.weight !== undefined && !weighted) ctx.addIssue({ code: 'custom', path: ['weight'], message: 'weight needs strategy: weighted' });
    if (s.fallback === undefined) return;
    // A URL the field checks already refused is not judged again here.
    const primary = parsedUrl(withDefaultPath((s.url ?? s.primary)!));
    if (primary === null) return;
    s.fallback.forEach((f, i) => {
      const u = parsedUrl(withDefaultPath(endpointUrl(f)));
      if (u === null) return;
      if (u.protocol !== primary.protocol || u.pathname !== primary.pathname) {
        ctx.addIssue({
          code: 'custom',
          path: ['fallback', i],
          message: 'fallback endpoints must use the same scheme and path as url',
        });
      }
      if (typeof f !== 'string' && !weighted) ctx.addIssue({ code: 'custom', path: ['fallback', i, 'weight'], message: 'weight needs strategy: weighted' });
    });
  })
  // One shape for everything downstream: `url` (never `primary`), paths defaulted.
  .transform(({ primary, ...s }) => ({
    ...s,
    url: withDefaultPath((s.url ?? primary)!),
    ...(s.fallback === undefined ? {} : { fallback: s.fallback.map((f) => (typeof f === 'string' ? withDefaultPath(f) : { ...f, url: withDefaultPath(f.url) })) }),
  }));
export type ServerConfig = z.infer<typeof ServerSchema>;

/** `gateway.tls`: the certificate Envoy serves and, for mTLS, the CA client certificates must chain to. */
export const GatewayTlsSchema = z
  .strictObject({
    cert_file: z.string().min(1).describe('PEM certificate chain Envoy presents to clients'),
    key_file: z.string().min(1).describe('PEM private key for cert_file'),
    client_ca_file: z
      .string()
      .min(1)
      .optional()
      .describe('PEM CA bundle client certificates are verified against; enables mTLS'),
    require_client_cert: z
      .boolean()
      .default(false)
      .describe('Refuse TLS connections without a valid client certificate'),
  })
  .superRefine((t, ctx) => {
    if (t.require_client_cert && t.client_ca_file === undefined) {
      ctx.addIssue({ code: 'custom', path: ['client_ca_file'], message: 'require_client_cert needs client_ca_file' });
    }
  });
/** A validated `gateway.tls` block. */
export type GatewayTlsConfig = z.infer<typeof GatewayTlsSchema>;

export const GatewaySchema = z.strictObject({
  listen: HostPortSchema.default('127.0.0.1:8080').describe('Where MCP clients connect to Envoy'),
  processor: z
    .union([HostPortSchema, z.array(HostPortSchema).min(1)])
    .default('127.0.0.1:9001')
    .describe('The ext_proc gRPC address of the processor (or a list of replicas)'),
  admin: HostPortSchema.default('127.0.0.1:9090').describe("The processor's admin HTTP (/healthz, /readyz)"),
  envoy_admin: HostPortSchema.default('127.0.0.1:9901').describe("Envoy's admin interface"),
  internal: HostPortSchema.default('127.0.0.1:9081').describe(
    "Envoy's internal listener that carries the processor's own upstream calls (catalogs, session set-up)",
  ),
  prefix: PrefixModeSchema.default('always').describe(
    'How /mcp names what servers have, unless a server says otherwise: always `<server><sep><name>`; never: their own names; on-collision: their own, prefixed only where two servers share one',
  ),
  tool_separator: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,4}$/, 'separator must be 1-4 characters from [A-Za-z0-9_.-]')
    .default('__')
    .describe('Joins server and tool/prompt names on /mcp: <server><sep><name>'),
  page_size: z.number().int().min(1).max(10_000).default(100).describe('Entries per page of aggregated lists'),
  rate_limit: z
    .union([RateShorthandSchema, z.literal('off')])
    .default('3000/min')
    .describe(
      "Each client's limit on what the gateway answers itself on /mcp (initialize, lists, server/discover, subscriptions): a rate shorthand such as 600/min, or off. Requests that reach a server spend that server's limits instead",
    ),
  max_body_bytes: z
    .number()
    .int()
    .min(1024)
    .max(64 * 1024 * 1024)
    .default(4 * 1024 * 1024)
    .describe('Largest request body accepted; larger gets 413'),
  max_buffered_response_bytes: z
    .number()
    .int()
    .min(64 * 1024)
    .max(256 * 1024 * 1024)
    .default(16 * 1024 * 1024)
    .describe(
      'Largest upstream response the processor holds whole: list responses it filters by policy on passthrough, results on /mcp whose resource URIs it renames, and the replay after an upstream lost a session. Larger ones are refused with GW_ERR_UPSTREAM_TOO_LARGE, never passed unchecked',
    ),
  allowed_origins: z
    .array(z.string().min(1))
    .default(['http://localhost:*', 'http://127.0.0.1:*', 'http://[::1]:*'])
    .describe('Browser Origins allowed to call the gateway (`*` matches any run of characters); requests without Origin are allowed'),
  allowed_hosts: z
    .array(z.string().min(1))
    .optional()
    .describe('Host header names accepted (DNS-rebinding protection); default: loopback names when listen is loopback, else any'),
  session_idle_timeout: DurationSchema.default('1h').describe('A gateway session unused this long is ended'),
  max_sessions: z
    .number()
    .int()
    .min(1)
    .max(10_000_000)
    .default(DEFAULT_MAX_SESSIONS)
    .describe(
      'Most live gateway sessions on /mcp (across all replicas with redis); beyond it initialize is refused with 503 GW_ERR_SESSION_LIMIT and Retry-After, and existing sessions keep working',
    ),
  max_sessions_per_client: z
    .number()
    .int()
    .min(1)
    .max(1_000_000)
    .default(DEFAULT_MAX_SESSIONS_PER_CLIENT)
    .describe(
      "Most live gateway sessions of one client: an authenticated identity, or an anonymous caller's address (IPv6: its /64). A new session beyond it ends that client's least recently used session and its upstream sessions; also the most subscriptions/listen streams of one client per replica (a new one ends its oldest)",
    ),
  max_client_metadata_bytes: z
    .number()
    .int()
    .min(1024)
    .max(1024 * 1024)
    .default(DEFAULT_MAX_CLIENT_METADATA_BYTES)
    .describe(
      "Largest capabilities + clientInfo of an initialize (JSON bytes), which a session keeps to open the client's upstream sessions; a larger initialize is refused with -32602",
    ),
  upstream_timeout: DurationSchema.default('10s').describe(
    "Timeout for the processor's own upstream calls (initialize, catalog fetches)",
  ),
  stream_idle_timeout: DurationSchema.default('5m').describe(
    "How long a long-lived stream a client holds open on a passthrough endpoint (the server→client GET stream, a 2026-07-28 subscriptions/listen POST) may carry nothing before Envoy ends it; such streams are not bounded by the server's request timeout",
  ),
  input_required_timeout: DurationSchema.default('10m').describe(
    "How long a question a server asks a client of the other revision waits for its answer: a 2026-07-28 client's call that a session-based server paused to ask it something (sampling, elicitation, roots) waits for the client's retry, then is cancelled upstream; a session-based client's questions from a 2026-07-28 server are kept this long for its answers and its resumed stream",
  ),
  tls: GatewayTlsSchema.optional().describe('TLS (and optionally mTLS) on the client listener, terminated by Envoy'),
});
export type GatewayConfig = z.infer<typeof GatewaySchema>;

export const HealthSchema = z
  .strictObject({
    interval: DurationSchema.default('10s').describe('How often each upstream is pinged (MCP ping over the gateway session)'),
    timeout: DurationSchema.default('2s').describe('A ping slower than this counts as a failed check'),
    unhealthy_threshold: z
      .number()
      .int()
      .min(1)
      .max(100)
      .default(2)
      .describe('Consecutive failed checks after which a server is unhealthy and left out of aggregated lists'),
    degraded_latency: DurationSchema.default('1s').describe('A successful ping slower than this marks the server degraded'),
  })
  .describe('Active health checks of the upstream servers');

export const LoggingSchema = z
  .strictObject({
    level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info').describe('Processor log level'),
    operations: z.boolean().default(true).describe('Write one structured line per MCP operation'),
    arguments: z
      .boolean()
      .default(false)
      .describe('Debug only: include tools/call arguments in operation lines (they may hold secrets)'),
  })
  .describe('Processor logging (JSON lines on stdout)');

export const TracingSchema = z
  .strictObject({
    otlp_endpoint: HostPortSchema.optional().describe(
      "OTLP/gRPC collector for Envoy's own OpenTelemetry spans; omitted means Envoy does not trace",
    ),
    service_name: z.string().min(1).default('mcp-gateway').describe('service.name of Envoy spans'),
    sampling_percent: z.number().min(0).max(100).default(100).describe('Share of requests Envoy traces'),
  })
  .describe('Distributed tracing (W3C traceparent is always honoured and propagated)');

/** One admin key: who it is (audit lines of console actions) and the SHA-256 of the key. */
export const AdminKeySchema = z.strictObject({
  id: ClientIdSchema.describe('Name of the operator or automation the key belongs to (logged with every change made through the console)'),
  key_sha256: KeySha256Schema,
});

/**
 * `admin`: the operator console and its JSON API on the processor's admin port (`gateway.admin`).
 * Off unless `console: true`; when on it needs credentials of its own, never a client's.
 */
export const AdminSchema = z
  .strictObject({
    console: z
      .boolean()
      .default(false)
      .describe('Serve the console (/admin) and its JSON API (/admin/api) on the admin port; /healthz, /readyz and /metrics are served either way'),
    api_keys: z
      .array(AdminKeySchema)
      .default([])
      .describe('Keys that open the console: HTTP Basic (any user name, the key as password), `Authorization: Bearer <key>` or `X-Admin-Key`'),
    jwt_groups: z
      .array(z.string().min(1).max(256))
      .default([])
      .describe('Groups whose members open the console with a token of one of `jwt_issuers` (`Authorization: Bearer <jwt>`); empty: tokens are not accepted there'),
    jwt_issuers: z
      .array(z.string().min(1))
      .default([])
      .describe("The `auth.jwt` issuers trusted to say who is an admin (the operators' own IdP, not a tenant's); required with jwt_groups"),
    allow_apply: z
      .boolean()
      .default(false)
      .describe('Let the config page apply a config it validated (written to the config file, then reloaded); off: validate only'),
    audit_buffer: z
      .number()
      .int()
      .min(10)
      .max(100_000)
      .default(1000)
      .describe('How many recent access decisions the audit page keeps in memory (per replica)'),
  })
  .superRefine((a, ctx) => {
    if (a.console && a.api_keys.length === 0 && a.jwt_groups.length === 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['console'],
        message: 'the console needs credentials of its own: set admin.api_keys or admin.jwt_groups (with an auth.jwt issuer)',
      });
    }
    const ids = a.api_keys.map((k) => k.id);
    for (const [i, id] of ids.entries()) {
      if (ids.indexOf(id) !== i) ctx.addIssue({ code: 'custom', path: ['api_keys', i, 'id'], message: `admin key id "${id}" is listed twice` });
    }
  })
  .describe('The operator console on the processor admin port');
export type AdminConfig = z.infer<typeof AdminSchema>;

export const ConfigSchema = z
  .strictObject({
    gateway: GatewaySchema.default(GatewaySchema.parse({})),
    servers: z
      .record(ServerNameSchema, ServerSchema)
      .refine((s) => Object.keys(s).length > 0, 'at least one server is required')
      .describe('The upstream MCP servers, by name'),
    cache: CacheSchema.default(CacheSchema.parse({})),
    health: HealthSchema.default(HealthSchema.parse({})),
    logging: LoggingSchema.default(LoggingSchema.parse({})),
    tracing: TracingSchema.default(TracingSchema.parse({})),
    admin: AdminSchema.default(AdminSchema.parse({})),
    rate_limits: RateLimitsSchema.optional(),
    redis: RedisSchema.optional(),
    auth: AuthSchema.optional(),
    tenants: TenantsSchema.optional(),
    policies: PoliciesSchema.optional(),
    blocked_tools: BlockedToolsSchema.optional(),
    filters: FiltersSchema.optional().describe('Filters on tool calls to every server, unless a server has its own'),
    pins: PinsSchema.optional(),
    virtual_servers: z
      .record(ServerNameSchema, VirtualServerSchema)
      .optional()
      .describe('Named endpoints /v/<name>/mcp, each a curated subset of the servers and their tools, with access rules of its own'),
    routes: z
      .array(RouteSchema)
      .optional()
      .describe('Which server a tool, prompt or resource URI belongs to, by pattern; the first match wins and the name is shown without a prefix'),
  })
  .superRefine((cfg, ctx) => {
    for (const issue of namingConfigIssues(cfg)) ctx.addIssue({ code: 'custom', path: issue.path, message: issue.message });
    for (const issue of virtualServerIssues(cfg)) ctx.addIssue({ code: 'custom', path: issue.path, message: issue.message });
    for (const issue of [...rateLimitConfigIssues(cfg), ...accessConfigIssues(cfg)]) {
      ctx.addIssue({ code: 'custom', path: issue.path, message: issue.message });
    }
    if (Array.isArray(cfg.gateway.processor) && cfg.gateway.processor.length > 1 && cfg.redis === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['gateway', 'processor'],
        message:
          'several processor replicas need `redis`: Envoy sends each request to any replica, and without shared state a session (and its limits) lives in one replica only, so most requests would find no session. Set redis (url, cluster or sentinel), or list one processor',
      });
    }
    if (cfg.admin.jwt_groups.length > 0 && cfg.admin.jwt_issuers.length === 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['admin', 'jwt_issuers'],
        message: "jwt_groups needs jwt_issuers: the auth.jwt issuers trusted to name admins (a tenant's own IdP must not be able to)",
      });
    }
    const issuers = new Set((cfg.auth?.jwt ?? []).map((j) => j.issuer));
    cfg.admin.jwt_issuers.forEach((iss, i) => {
      if (!issuers.has(iss)) ctx.addIssue({ code: 'custom', path: ['admin', 'jwt_issuers', i], message: `${iss} is not an auth.jwt issuer` });
    });
    const clientKeys = new Set((cfg.auth?.api_keys ?? []).map((k) => k.key_sha256.toLowerCase()));
    cfg.admin.api_keys.forEach((k, i) => {
      if (clientKeys.has(k.key_sha256.toLowerCase())) {
        ctx.addIssue({ code: 'custom', path: ['admin', 'api_keys', i, 'key_sha256'], message: 'an admin key must not also be a client key (auth.api_keys)' });
      }
    });
    if (cfg.admin.console && sameAddress(cfg.gateway.admin, cfg.gateway.listen)) {
      ctx.addIssue({ code: 'custom', path: ['gateway', 'admin'], message: 'the admin port serves the console: it cannot be the client listener (gateway.listen)' });
    }
    if (cfg.pins?.store === 'redis' && cfg.redis === undefined) {
      ctx.addIssue({ code: 'custom', path: ['pins', 'store'], message: 'store: redis needs `redis` configured (url, cluster or sentinel)' });
    }
    if (cfg.cache.store === 'redis' && cfg.redis === undefined) {
      ctx.addIssue({ code: 'custom', path: ['cache', 'store'], message: 'store: redis needs `redis` configured (url, cluster or sentinel)' });
    }
    if (cfg.gateway.max_sessions_per_client > cfg.gateway.max_sessions) {
      ctx.addIssue({
        code: 'custom',
        path: ['gateway', 'max_sessions_per_client'],
        message: `max_sessions_per_client (${cfg.gateway.max_sessions_per_client}) is more than max_sessions (${cfg.gateway.max_sessions})`,
      });
    }
    const sep = cfg.gateway.tool_separator;
    const names = Object.keys(cfg.servers);
    for (const a of names) {
      for (const b of names) {
        if (a !== b && (b + sep).startsWith(a + sep)) {
          ctx.addIssue({
            code: 'custom',
            path: ['servers', b],
            message: `server name "${b}" is ambiguous with "${a}" under tool_separator "${sep}"`,
          });
        }
      }
      if (a.length + sep.length >= 128) {
        ctx.addIssue({ code: 'custom', path: ['servers', a], message: 'server name plus separator leaves no room for tool names' });
      }
    }
  });
export type Config = z.infer<typeof ConfigSchema>;

/** The URL, or null when it is not one. */
function parsedUrl(text: string): URL | null {
  try {
    return new URL(text);
  } catch {
    return null;
  }
}

/** Two addresses on one port (hosts aside: a pod's containers share their addresses). */
function sameAddress(a: string, b: string): boolean {
  const pa = splitHostPort(a).port;
  return pa !== 0 && pa === splitHostPort(b).port;
}

/**
 * Name collisions the config alone shows (the servers' catalogs show the rest, settled at run
 * time): two tools renamed to one name; a new name that reads as a server's prefixed one or
 * that a route gives to another server; a route to a server that is not configured.
 */
function namingConfigIssues(cfg: {
  readonly gateway: { readonly tool_separator: string; readonly prefix: string };
  readonly servers: Readonly<Record<string, { readonly prefix?: string | undefined; readonly tools?: Readonly<Record<string, { readonly name?: string | undefined }>> | undefined }>>;
  readonly routes?: readonly RouteConfig[] | undefined;
}): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const sep = cfg.gateway.tool_separator;
  const servers = Object.keys(cfg.servers);
  (cfg.routes ?? []).forEach((r, i) => {
    if (cfg.servers[r.server] === undefined) issues.push({ path: ['routes', i, 'server'], message: `"${r.server}" is not a configured server` });
  });
  const toolRoutes = (cfg.routes ?? []).filter((r) => r.tools !== undefined);
  const named = new Map<string, string>();
  for (const [server, s] of Object.entries(cfg.servers)) {
    for (const [tool, o] of Object.entries(s.tools ?? {})) {
      if (o.name === undefined) continue;
      const path = ['servers', server, 'tools', tool, 'name'];
      const other = named.get(o.name);
      if (other !== undefined) issues.push({ path, message: `"${o.name}" is already the new name of ${other}: two tools cannot share one name` });
      named.set(o.name, `${server}'s ${tool}`);
      const prefixedBy = servers.find((p) => o.name!.startsWith(p + sep) && (cfg.servers[p]!.prefix ?? cfg.gateway.prefix) !== 'never');
      if (prefixedBy !== undefined) issues.push({ path, message: `"${o.name}" reads as ${prefixedBy}'s prefixed name of a tool` });
      const route = toolRoutes.find((r) => globMatches(r.tools!, o.name!));
      if (route !== undefined && route.server !== server) issues.push({ path, message: `"${o.name}" matches the route ${route.tools} to ${route.server}` });
    }
  }
  return issues;
}

/** The servers a virtual server draws from, in config order. */
export function viewServers(cfg: { readonly servers: Readonly<Record<string, unknown>> }, view: { readonly servers: readonly string[] }): string[] {
  return Object.keys(cfg.servers).filter((s) => view.servers.some((g) => globMatches(g, s)));
}

/**
 * A virtual server draws from at least one configured server, overrides only tools of its own
 * servers, names only configured tenants, and shows no two tools under one name.
 */
function virtualServerIssues(cfg: Config): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  if (cfg.virtual_servers === undefined) return issues;
  const global = new Set(namingConfigIssues(cfg).map((i) => JSON.stringify(i)));
  for (const [name, v] of Object.entries(cfg.virtual_servers ?? {})) {
    const servers = viewServers(cfg, v);
    if (servers.length === 0) issues.push({ path: ['virtual_servers', name, 'servers'], message: 'matches no configured server' });
    for (const server of Object.keys(v.tool_overrides ?? {})) {
      if (!servers.includes(server)) issues.push({ path: ['virtual_servers', name, 'tool_overrides', server], message: `"${server}" is not one of this virtual server's servers` });
    }
    v.tenants?.forEach((t, i) => {
      if (cfg.tenants?.[t] === undefined) issues.push({ path: ['virtual_servers', name, 'tenants', i], message: `"${t}" is not a configured tenant` });
    });
    // Its tools as it names them (the servers' own overrides with its own over them): a clash the
    // config already has is reported once, at the servers.
    for (const issue of namingConfigIssues(viewConfig(cfg, name))) {
      const [section, server, , tool, field] = issue.path;
      if (section !== 'servers' || global.has(JSON.stringify(issue))) continue;
      issues.push({ path: ['virtual_servers', name, 'tool_overrides', server!, tool!, field!], message: issue.message });
    }
  }
  return issues;
}

/**
 * The config as one virtual server sees it: only its servers, each with its prefix mode (the
 * virtual server's, else the server's own) and its tool overrides (the virtual server's over the
 * server's), and only the routes to its servers.
 */
export function viewConfig(cfg: Config, name: string): Config {
  const v = cfg.virtual_servers![name]!;
  const servers: Record<string, ServerConfig> = {};
  for (const s of viewServers(cfg, v)) {
    const own = cfg.servers[s]!;
    const tools: Record<string, { name?: string | undefined; description?: string | undefined; title?: string | undefined }> = { ...(own.tools ?? {}) };
    for (const [tool, o] of Object.entries(v.tool_overrides?.[s] ?? {})) tools[tool] = { ...(tools[tool] ?? {}), ...o };
    servers[s] = { ...own, prefix: v.prefix ?? own.prefix, ...(Object.keys(tools).length === 0 ? {} : { tools }) };
  }
  return { ...cfg, servers, routes: (cfg.routes ?? []).filter((r) => servers[r.server] !== undefined) };
}
