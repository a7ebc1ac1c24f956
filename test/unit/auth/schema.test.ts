import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { AuthSchema, JwtIssuerSchema, UpstreamHeadersSchema } from '../../../src/auth/schema.js';
import { GatewayTlsSchema } from '../../../src/config/schema.js';
import { accessConfigIssues, BlockedToolsSchema, PoliciesSchema, TenantsSchema } from '../../../src/policy/schema.js';

/** The example given in the hand-over notes; it must stay valid. */
export const EXAMPLE = `
gateway:
  tls:
    cert_file: /etc/mcp-gateway/tls/server.pem
    key_file: /etc/mcp-gateway/tls/server-key.pem
    client_ca_file: /etc/mcp-gateway/tls/clients-ca.pem
    require_client_cert: false
servers:
  github:
    url: https://mcp-github.internal/mcp
    auth_required: true
    headers:
      Authorization: "Bearer \${GITHUB_TOKEN}"
  filesystem:
    url: http://mcp-fs:3000/mcp
    allowed_clients: [ci]
    headers:
      X-Upstream-Key: file:/run/secrets/fs-key
  search:
    url: http://mcp-search:3000/mcp
auth:
  api_keys:
    - id: ci
      key_sha256: 5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8
      tenant: acme
      groups: [automation]
  jwt:
    - issuer: https://auth.example.com
      jwks_uri: https://auth.example.com/.well-known/jwks.json
      algorithms: [RS256, ES256]
      client_claim: sub
      tenant_claim: org.tenant
      groups_claim: groups
      clock_skew: 30s
  oauth:
    resource: https://mcp.example.com/mcp
    authorization_servers: [https://auth.example.com]
    scopes_supported: [mcp:tools]
  mtls:
    identity: uri_san
    clients:
      - match: spiffe://example.org/ns/acme/*
        tenant: acme
  allow_anonymous: true
  anonymous_tenant: public
tenants:
  acme:
    servers: [github, filesystem, search]
    namespace: acme
    quotas: { requests_per_day: 100000 }
  public:
    servers: [search]
    namespace: public
policies:
  - tenant: acme
    servers: [filesystem]
    tools: { allowed: ["read_*", "list_*"], denied: ["*secret*"] }
    resources: { allowed: ["file:///srv/shared/*"], denied: ["file:///srv/shared/private/*"] }
  - tenant: "*"
    tools: { denied: ["*delete*"] }
blocked_tools: [shell_exec, "filesystem/write_*"]
`;

const Doc = z.object({
  gateway: z.object({ tls: GatewayTlsSchema }),
  servers: z.record(z.string(), z.object({ headers: UpstreamHeadersSchema.optional() }).loose()),
  auth: AuthSchema,
  tenants: TenantsSchema,
  policies: PoliciesSchema,
  blocked_tools: BlockedToolsSchema,
});

function messages(schema: z.ZodType, value: unknown): string {
  const r = schema.safeParse(value);
  assert.ok(!r.success, 'expected a validation error');
  return z.prettifyError(r.error);
}

describe('auth, tenants and policy schemas', () => {
  it('accept the documented example, defaults filled, with no cross-section issues', () => {
    const doc = Doc.parse(parseYaml(EXAMPLE));
    assert.deepEqual(accessConfigIssues(doc), []);
    const jwt = doc.auth.jwt[0]!;
    assert.equal(jwt.jwks_refresh_cooldown, '30s');
    assert.equal(jwt.jwks_cache_ttl, '10m');
    assert.equal(doc.policies[1]?.servers[0], '*');
    assert.deepEqual(doc.auth.mtls?.clients?.[0]?.groups, []);
  });

  it('never offer none or HS* algorithms', () => {
    for (const alg of ['none', 'HS256', 'HS512']) {
      assert.match(messages(JwtIssuerSchema, { issuer: 'i', audiences: ['a'], jwks_uri: 'https://x.example.com/j', algorithms: [alg] }), /algorithms/);
    }
  });

  it('require exactly one key source, an https jwks_uri and an audience', () => {
    assert.match(messages(JwtIssuerSchema, { issuer: 'i', audiences: ['a'] }), /exactly one of jwks_uri/);
    assert.match(
      messages(JwtIssuerSchema, { issuer: 'i', audiences: ['a'], jwks_uri: 'https://x.example.com/j', jwks_file: '/k.json' }),
      /exactly one/,
    );
    assert.match(messages(JwtIssuerSchema, { issuer: 'i', audiences: ['a'], jwks_uri: 'http://idp.example.com/j' }), /https/);
    assert.ok(JwtIssuerSchema.safeParse({ issuer: 'i', audiences: ['a'], jwks_uri: 'http://127.0.0.1:9/j' }).success);
    assert.match(messages(AuthSchema, { jwt: [{ issuer: 'i', jwks_uri: 'https://x.example.com/j' }] }), /audiences/);
  });

  it('refuse duplicate keys and ids, unknown fields and an auth block with no way in', () => {
    const k = { id: 'a', key_sha256: 'a'.repeat(64) };
    assert.match(messages(AuthSchema, { api_keys: [k, { ...k, key_sha256: 'b'.repeat(64) }] }), /duplicate API key id/);
    assert.match(messages(AuthSchema, { api_keys: [k, { ...k, id: 'b', key_sha256: 'A'.repeat(64) }] }), /duplicate API key hash/);
    assert.match(messages(AuthSchema, { api_keys: [{ ...k, key: 'plaintext' }] }), /key/);
    assert.match(messages(AuthSchema, { api_keys: [{ id: 'a', key_sha256: 'xyz' }] }), /64 hex/);
    assert.match(messages(AuthSchema, {}), /no method/);
    assert.ok(AuthSchema.safeParse({ allow_anonymous: true }).success);
    assert.match(messages(AuthSchema, { api_keys: [k], anonymous_tenant: 't' }), /allow_anonymous/);
  });

  it('require unique tenant namespaces and a CA for required client certificates', () => {
    assert.match(
      messages(TenantsSchema, { a: { servers: ['x'], namespace: 'n' }, b: { servers: ['y'], namespace: 'n' } }),
      /already used by tenant "a"/,
    );
    assert.match(messages(GatewayTlsSchema, { cert_file: 'c', key_file: 'k', require_client_cert: true }), /client_ca_file/);
  });

  it('report cross-section problems with their paths', () => {
    const issues = accessConfigIssues({
      servers: { alpha: {}, beta: {} },
      auth: AuthSchema.parse({
        api_keys: [{ id: 'a', key_sha256: 'a'.repeat(64), tenant: 'ghost' }],
        mtls: {},
      }),
      tenants: TenantsSchema.parse({ t1: { servers: ['alpha', 'gamma', 'b*', 'z*'], namespace: 't1' } }),
      policies: PoliciesSchema.parse([{ tenant: 'nobody', servers: ['delta'] }]),
      blocked_tools: ['x', 'omega/tool'],
    });
    const byPath = Object.fromEntries(issues.map((i) => [i.path.join('.'), i.message]));
    assert.deepEqual(Object.keys(byPath).sort(), [
      'auth.api_keys.0.tenant',
      'auth.mtls',
      'blocked_tools.1',
      'policies.0.servers.0',
      'policies.0.tenant',
      'tenants.t1.servers.1',
      'tenants.t1.servers.3',
    ]);
    assert.match(byPath['auth.mtls']!, /client_ca_file/);
    assert.deepEqual(
      accessConfigIssues({ servers: { a: {} }, auth: AuthSchema.parse({ allow_anonymous: true, anonymous_tenant: 'x' }) }).map((i) => i.message),
      ['tenant "x" is named but no tenants are configured'],
    );
  });

  it('convert to JSON Schema the way the generator does', () => {
    for (const s of [AuthSchema, TenantsSchema, PoliciesSchema, BlockedToolsSchema, GatewayTlsSchema, UpstreamHeadersSchema]) {
      assert.equal(typeof z.toJSONSchema(s, { io: 'input', unrepresentable: 'any' }), 'object');
    }
  });
});
