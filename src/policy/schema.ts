import { z } from 'zod';
import { TenantNameSchema, type AuthConfig } from '../auth/schema.js';
import type { ConfigIssue } from '../lib/config-issue.js';
import { globMatches } from '../lib/glob.js';
import { TenantQuotasSchema } from '../ratelimit/schema.js';

/**
 * Configuration for tenancy and access policy: `tenants`, `policies` and `blocked_tools`.
 *
 * These schemas are plugged into the gateway's ConfigSchema; checks that need the whole document
 * (a tenant naming a server, a key naming a tenant) live in {@link accessConfigIssues} so the
 * config schema's own `superRefine` can report them with their paths.
 */

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

/** The slice of the full config {@link accessConfigIssues} looks at. */
export interface AccessConfigInput {
  readonly servers: Readonly<Record<string, unknown>>;
  readonly auth?: AuthConfig | undefined;
  readonly tenants?: TenantsConfig | undefined;
  readonly policies?: PoliciesConfig | undefined;
  readonly blocked_tools?: BlockedToolsConfig | undefined;
  readonly gateway?: { readonly tls?: { readonly client_ca_file?: string | undefined } | undefined } | undefined;
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
