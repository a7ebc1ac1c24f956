import { z } from 'zod';
import { urlSchema } from '../config/url.js';
import { globMatches } from '../policy/glob.js';
import { TenantQuotasSchema } from '../ratelimit/schema.js';

/**
 * Configuration for identity, tenants and access policy: `auth`, `tenants`, `policies`,
 * `blocked_tools`, `gateway.tls` and `servers.<name>.headers`.
 *
 * These schemas are plugged into the gateway's ConfigSchema; checks that need the whole document
 * (a tenant naming a server, a key naming a tenant) live in {@link accessConfigIssues} so the
 * config schema's own `superRefine` can report them with their paths.
 */

// Duplicated from the config schema on purpose: importing it would create an import cycle once
// the config schema imports this module.
const DURATION = /^[0-9]+(ms|s|m|h)$/;
const DurationSchema = z.string().regex(DURATION, 'expected a duration such as 250ms, 10s, 5m or 1h');

/** Tenant names: what keys, tokens and certificates name, and what audit logs show. */
export const TenantNameSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'tenant names are 1-64 chars of A-Z, a-z, 0-9, "_", "." and "-"');

/** Client ids configured by hand (API key ids, mTLS mappings). */
export const ClientIdSchema = z
  .string()
  .regex(/^[\x21-\x7e]{1,256}$/, 'client ids are 1-256 visible ASCII characters without spaces');

const GroupsSchema = z.array(z.string().min(1).max(256)).default([]);

const HttpsUrlSchema = urlSchema(
  (u) => u.protocol === 'https:' || (u.protocol === 'http:' && isLoopbackHost(u.hostname)),
  'expected an https:// URL (http:// only for loopback hosts)',
);

/** Whether a URL host is loopback (plain http is tolerated there, for development and tests). */
export function isLoopbackHost(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}

/** JWS algorithms a JWT issuer may be configured with. Symmetric (HS*) and `none` are not offered. */
export const JwtAlgorithmSchema = z.enum([
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
]);
/** One accepted JWS algorithm name. */
export type JwtAlgorithm = z.infer<typeof JwtAlgorithmSchema>;

/** One entry of `auth.api_keys`: a client id and the hash of its key. */
export const ApiKeySchema = z.strictObject({
  id: ClientIdSchema.describe('Client id the key authenticates as (audit logs, allowed_clients)'),
  key_sha256: z
    .string()
    .regex(/^[0-9a-fA-F]{64}$/, 'expected 64 hex digits (the output of `mcp-gateway hash-key`)')
    .describe('SHA-256 of the key in hex, from `mcp-gateway hash-key`; the key itself is never stored'),
  tenant: TenantNameSchema.optional().describe('Tenant the key belongs to'),
  groups: GroupsSchema.describe('Groups the key belongs to (carried into audit logs)'),
});
/** A validated `auth.api_keys` entry. */
export type ApiKeyConfig = z.infer<typeof ApiKeySchema>;

/** The JWKS as JSON (`{"keys": [...]}`); a foreign format, so unknown members are tolerated. */
export const JwksDocumentSchema = z
  .object({
    keys: z.array(z.record(z.string(), z.unknown())).min(1).describe('Public JSON Web Keys'),
  })
  .describe('A JSON Web Key Set document');

/** One entry of `auth.jwt`: an issuer, where its keys are, what it must say, and how its claims map. */
export const JwtIssuerSchema = z
  .strictObject({
    issuer: z.string().min(1).describe('Expected `iss` claim, compared exactly'),
    audiences: z
      .array(z.string().min(1))
      .min(1)
      .optional()
      .describe('Accepted `aud` values; default: auth.oauth.resource (tokens must name the gateway)'),
    jwks_uri: HttpsUrlSchema.optional().describe('Where the issuer publishes its keys; fetched, cached and refreshed on an unknown `kid`'),
    jwks_file: z.string().min(1).optional().describe('A local JWKS file, read at load'),
    jwks: JwksDocumentSchema.optional().describe('An inline JWKS'),
    algorithms: z
      .array(JwtAlgorithmSchema)
      .min(1)
      .default(['RS256', 'ES256'])
      .describe('Signature algorithms accepted; `none` and HS* are never accepted'),
    client_claim: z.string().min(1).default('sub').describe('Claim naming the client (dotted path for nested claims)'),
    tenant_claim: z.string().min(1).optional().describe('Claim naming the tenant (a string; dotted path for nested claims)'),
    tenant: TenantNameSchema.optional().describe('Tenant for tokens whose tenant_claim is absent (or for every token without tenant_claim)'),
    groups_claim: z
      .string()
      .min(1)
      .optional()
      .describe('Claim listing groups (array, or space-separated string; dotted path for nested claims)'),
    clock_skew: DurationSchema.default('30s').describe('Tolerance for exp/nbf/iat against the local clock'),
    jwks_cache_ttl: DurationSchema.default('10m').describe('Age after which fetched keys are refreshed in the background'),
    jwks_refresh_cooldown: DurationSchema.default('30s').describe(
      'Shortest interval between two fetches of jwks_uri, however many unknown `kid`s arrive',
    ),
    jwks_timeout: DurationSchema.default('5s').describe('Timeout of one jwks_uri fetch'),
  })
  .superRefine((j, ctx) => {
    const sources = [j.jwks_uri, j.jwks_file, j.jwks].filter((s) => s !== undefined).length;
    if (sources !== 1) {
      ctx.addIssue({ code: 'custom', path: ['jwks_uri'], message: 'exactly one of jwks_uri, jwks_file, jwks is required' });
    }
  });
/** A validated `auth.jwt` entry (defaults filled). */
export type JwtIssuerConfig = z.infer<typeof JwtIssuerSchema>;

/** `auth.oauth`: the gateway as an OAuth 2.1 protected resource (RFC 9728 metadata). */
export const OAuthResourceSchema = z.strictObject({
  resource: HttpsUrlSchema.describe(
    "The gateway's canonical resource URI as clients reach it, e.g. https://mcp.example.com/mcp; tokens must name it as audience",
  ),
  authorization_servers: z
    .array(HttpsUrlSchema)
    .min(1)
    .describe('Issuer URLs of the authorization servers clients should obtain tokens from'),
  scopes_supported: z.array(z.string().min(1)).optional().describe('Scopes advertised in the protected-resource metadata'),
  resource_name: z.string().min(1).optional().describe('Human-readable name advertised in the metadata'),
  resource_documentation: HttpsUrlSchema.optional().describe('Documentation URL advertised in the metadata'),
});
/** A validated `auth.oauth` block. */
export type OAuthResourceConfig = z.infer<typeof OAuthResourceSchema>;

/** One entry of `auth.mtls.clients`: which certificates are accepted and what they map to. */
export const MtlsClientSchema = z.strictObject({
  match: z.string().min(1).describe('Glob (`*`, `?`) on the certificate identity, e.g. spiffe://example.org/ns/acme/*'),
  client_id: ClientIdSchema.optional().describe('Client id to use instead of the certificate identity'),
  tenant: TenantNameSchema.optional().describe('Tenant of matching clients (overrides auth.mtls.tenant)'),
  groups: GroupsSchema.describe('Groups of matching clients'),
});

/** `auth.mtls`: client identity from the certificate Envoy verified. */
export const MtlsSchema = z.strictObject({
  identity: z
    .enum(['uri_san', 'dns_san', 'subject'])
    .default('uri_san')
    .describe('Which part of the verified client certificate names the client'),
  tenant: TenantNameSchema.optional().describe('Tenant of certificate clients not given one by a `clients` entry'),
  groups: GroupsSchema.describe('Groups of certificate clients not given any by a `clients` entry'),
  clients: z
    .array(MtlsClientSchema)
    .optional()
    .describe('Accepted certificate identities, first match wins; when set, certificates matching none are refused'),
});
/** A validated `auth.mtls` block. */
export type MtlsConfig = z.infer<typeof MtlsSchema>;

/** The `auth` section: every authentication method, combinable. */
export const AuthSchema = z
  .strictObject({
    api_keys: z.array(ApiKeySchema).default([]).describe('API keys, presented as `Authorization: Bearer <key>` or `X-API-Key: <key>`'),
    jwt: z.array(JwtIssuerSchema).default([]).describe('JWT access-token issuers'),
    oauth: OAuthResourceSchema.optional().describe(
      'OAuth 2.1 resource-server metadata (RFC 9728), served at /.well-known/oauth-protected-resource',
    ),
    mtls: MtlsSchema.optional().describe("Client identity from the client certificate Envoy verified (needs gateway.tls.client_ca_file)"),
    allow_anonymous: z
      .boolean()
      .default(false)
      .describe('Let callers without credentials in (they never reach auth_required servers); without it they get 401'),
    anonymous_tenant: TenantNameSchema.optional().describe('Tenant of anonymous callers'),
  })
  .superRefine((a, ctx) => {
    dupes(a.api_keys.map((k) => k.id)).forEach((i) =>
      ctx.addIssue({ code: 'custom', path: ['api_keys', i, 'id'], message: 'duplicate API key id' }),
    );
    dupes(a.api_keys.map((k) => k.key_sha256.toLowerCase())).forEach((i) =>
      ctx.addIssue({ code: 'custom', path: ['api_keys', i, 'key_sha256'], message: 'duplicate API key hash' }),
    );
    dupes(a.jwt.map((j) => j.issuer)).forEach((i) =>
      ctx.addIssue({ code: 'custom', path: ['jwt', i, 'issuer'], message: 'duplicate JWT issuer' }),
    );
    a.jwt.forEach((j, i) => {
      if (j.audiences === undefined && a.oauth === undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['jwt', i, 'audiences'],
          message: 'set audiences, or auth.oauth.resource (the default audience)',
        });
      }
    });
    if (a.api_keys.length === 0 && a.jwt.length === 0 && a.mtls === undefined && !a.allow_anonymous) {
      ctx.addIssue({
        code: 'custom',
        path: [],
        message: 'auth configures no method: add api_keys, jwt or mtls, or set allow_anonymous: true',
      });
    }
    if (a.anonymous_tenant !== undefined && !a.allow_anonymous) {
      ctx.addIssue({ code: 'custom', path: ['anonymous_tenant'], message: 'anonymous_tenant needs allow_anonymous: true' });
    }
  });
/** A validated `auth` section (defaults filled). */
export type AuthConfig = z.infer<typeof AuthSchema>;

/** One tenant: the servers it sees, its isolation namespace and its quotas. */
export const TenantSchema = z.strictObject({
  servers: z.array(z.string().min(1)).describe('Servers the tenant sees and reaches (names, or globs such as `*`)'),
  namespace: z
    .string()
    .regex(/^[a-z][a-z0-9-]{0,47}$/, 'namespaces are 1-48 chars of a-z, 0-9 and "-", starting with a letter')
    .describe("Isolation key for the tenant's catalogs and sessions; unique per tenant"),
  // Quotas belong to the rate limiter, which owns their schema; tenancy only carries them.
  quotas: TenantQuotasSchema.optional(),
});
/** A validated tenant. */
export type TenantConfig = z.infer<typeof TenantSchema>;

/** The `tenants` section, by tenant name; namespaces must be unique. */
export const TenantsSchema = z
  .record(TenantNameSchema, TenantSchema)
  .superRefine((t, ctx) => {
    const seen = new Map<string, string>();
    for (const [name, tenant] of Object.entries(t)) {
      const other = seen.get(tenant.namespace);
      if (other !== undefined) {
        ctx.addIssue({
          code: 'custom',
          path: [name, 'namespace'],
          message: `namespace "${tenant.namespace}" is already used by tenant "${other}"`,
        });
      }
      seen.set(tenant.namespace, name);
    }
  })
  .describe('Tenants by name; every caller resolves to exactly one');
/** A validated `tenants` section. */
export type TenantsConfig = z.infer<typeof TenantsSchema>;

const GlobListSchema = z.array(z.string().min(1).max(1024));

const NameRulesSchema = z.strictObject({
  allowed: GlobListSchema.optional().describe('Only these (globs `*`, `?`, exact case) are usable; absent means all'),
  denied: GlobListSchema.optional().describe('Never usable (case-insensitive, spoof-folded); wins over allowed'),
});

const UriRulesSchema = z.strictObject({
  allowed: GlobListSchema.optional().describe('Only URIs matching these (glob `*`; `?` is literal) are usable; absent means all'),
  denied: GlobListSchema.optional().describe('URIs matching these are never usable (case-insensitive); wins over allowed'),
});

/** One access policy: which tenant and servers it governs, and its tool, prompt and resource rules. */
export const AccessPolicySchema = z.strictObject({
  tenant: z
    .union([TenantNameSchema, z.literal('*')])
    .default('*')
    .describe('Tenant the policy applies to, or `*` for every tenant'),
  servers: z.array(z.string().min(1)).default(['*']).describe('Servers the policy applies to (names or globs)'),
  tools: NameRulesSchema.optional().describe('Tool rules, on the upstream tool name'),
  prompts: NameRulesSchema.optional().describe('Prompt rules, on the upstream prompt name'),
  resources: UriRulesSchema.optional().describe('Resource rules, on the upstream URI'),
});
/** A validated access policy (defaults filled). */
export type AccessPolicyConfig = z.infer<typeof AccessPolicySchema>;

/** The `policies` section. */
export const PoliciesSchema = z
  .array(AccessPolicySchema)
  .describe('Access policies; every matching policy applies, allow lists add up, any deny wins');
/** A validated `policies` section. */
export type PoliciesConfig = z.infer<typeof PoliciesSchema>;

/** The global `blocked_tools` list. */
export const BlockedToolsSchema = z
  .array(z.string().min(1).max(1024))
  .describe('Tools nobody may see or call: a glob on the upstream tool name, or `<server-glob>/<tool-glob>`');
/** A validated `blocked_tools` list. */
export type BlockedToolsConfig = z.infer<typeof BlockedToolsSchema>;

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

// Header names the gateway or HTTP itself owns: injecting them would break routing or framing.
const RESERVED_UPSTREAM_HEADERS = new Set([
  'host',
  'content-length',
  'content-type',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'upgrade',
  'te',
  'trailer',
  'proxy-connection',
  'mcp-session-id',
  'mcp-protocol-version',
  'x-forwarded-client-cert',
]);

/** `servers.<name>.headers`: credentials injected towards one upstream. */
export const UpstreamHeadersSchema = z
  .record(
    z
      .string()
      .regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, 'expected an HTTP header name')
      .refine((n) => !RESERVED_UPSTREAM_HEADERS.has(n.toLowerCase()) && !n.toLowerCase().startsWith('x-mcpgw-'), {
        message: 'this header is managed by the gateway',
      })
      .describe('Header name, e.g. Authorization'),
    z
      .string()
      .refine((v) => !/[\r\n\0]/.test(v), 'header values must not contain CR, LF or NUL')
      .describe('Literal value, `${ENV}` (substituted at load) or `file:<path>` (read once at load, trimmed)'),
  )
  .describe('Credentials the gateway sends to this upstream (client tokens are never passed through); never logged');
/** A validated `servers.<name>.headers` map. */
export type UpstreamHeadersConfig = z.infer<typeof UpstreamHeadersSchema>;

/** The slice of the full config {@link accessConfigIssues} looks at. */
export interface AccessConfigInput {
  readonly servers: Readonly<Record<string, unknown>>;
  readonly auth?: AuthConfig | undefined;
  readonly tenants?: TenantsConfig | undefined;
  readonly policies?: PoliciesConfig | undefined;
  readonly blocked_tools?: BlockedToolsConfig | undefined;
  readonly gateway?: { readonly tls?: GatewayTlsConfig | undefined } | undefined;
}

/** One cross-field problem, with the path the config schema should report it at. */
export interface ConfigIssue {
  readonly path: (string | number)[];
  readonly message: string;
}

/**
 * Checks that span sections: tenants name real servers, keys/certificates/policies name real
 * tenants, mTLS has a CA to verify against. Returns an empty list for a consistent config.
 */
export function accessConfigIssues(cfg: AccessConfigInput): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const serverNames = Object.keys(cfg.servers);
  const tenants = cfg.tenants;

  const matchesNoServer = (pattern: string): boolean => !serverNames.some((s) => globMatches(pattern, s));
  const checkServers = (patterns: readonly string[], path: (string | number)[]): void => {
    patterns.forEach((p, i) => {
      if (matchesNoServer(p)) issues.push({ path: [...path, i], message: `"${p}" matches no configured server` });
    });
  };
  const checkTenant = (tenant: string | undefined, path: (string | number)[]): void => {
    if (tenant === undefined) return;
    if (tenants === undefined) issues.push({ path, message: `tenant "${tenant}" is named but no tenants are configured` });
    else if (!Object.hasOwn(tenants, tenant)) issues.push({ path, message: `unknown tenant "${tenant}"` });
  };

  if (tenants !== undefined) {
    for (const [name, t] of Object.entries(tenants)) checkServers(t.servers, ['tenants', name, 'servers']);
  }
  const auth = cfg.auth;
  if (auth !== undefined) {
    auth.api_keys.forEach((k, i) => checkTenant(k.tenant, ['auth', 'api_keys', i, 'tenant']));
    auth.jwt.forEach((j, i) => checkTenant(j.tenant, ['auth', 'jwt', i, 'tenant']));
    checkTenant(auth.anonymous_tenant, ['auth', 'anonymous_tenant']);
    if (auth.mtls !== undefined) {
      checkTenant(auth.mtls.tenant, ['auth', 'mtls', 'tenant']);
      auth.mtls.clients?.forEach((c, i) => checkTenant(c.tenant, ['auth', 'mtls', 'clients', i, 'tenant']));
      if (cfg.gateway?.tls?.client_ca_file === undefined) {
        issues.push({
          path: ['auth', 'mtls'],
          message: 'mtls needs gateway.tls.client_ca_file: without a verified certificate there is no identity to trust',
        });
      }
    }
  }
  cfg.policies?.forEach((p, i) => {
    if (p.tenant !== '*') checkTenant(p.tenant, ['policies', i, 'tenant']);
    checkServers(p.servers, ['policies', i, 'servers']);
  });
  cfg.blocked_tools?.forEach((b, i) => {
    const slash = b.indexOf('/');
    if (slash >= 0 && matchesNoServer(b.slice(0, slash))) {
      issues.push({ path: ['blocked_tools', i], message: `"${b.slice(0, slash)}" matches no configured server` });
    }
  });
  return issues;
}

function dupes(values: readonly string[]): number[] {
  const seen = new Set<string>();
  const out: number[] = [];
  values.forEach((v, i) => {
    if (seen.has(v)) out.push(i);
    seen.add(v);
  });
  return out;
}
