import { z } from 'zod';
import { DurationSchema } from '../lib/duration.js';
import { urlSchema } from '../lib/url.js';

/**
 * Configuration for identity: the `auth` section (API keys, JWT issuers, OAuth resource metadata,
 * mTLS identities) and `servers.<name>.headers`, the credentials the gateway itself presents
 * upstream. Tenants and access policies are configured in `policy/schema.ts`.
 */

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

/** How a key is configured: its SHA-256 (client keys and admin keys alike). */
export const KeySha256Schema = z
  .string()
  .regex(/^[0-9a-fA-F]{64}$/, 'expected 64 hex digits (the output of `mcp-gateway hash-key`)')
  .describe('SHA-256 of the key in hex, from `mcp-gateway hash-key`; the key itself is never stored');

/** One entry of `auth.api_keys`: a client id and the hash of its key. */
export const ApiKeySchema = z.strictObject({
  id: ClientIdSchema.describe('Client id the key authenticates as (audit logs, allowed_clients)'),
  key_sha256: KeySha256Schema,
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

function dupes(values: readonly string[]): number[] {
  const seen = new Set<string>();
  const out: number[] = [];
  values.forEach((v, i) => {
    if (seen.has(v)) out.push(i);
    seen.add(v);
  });
  return out;
}
