import { isAuthenticated, type Identity } from '../auth/identity.js';
import type { TenantsConfig } from './schema.js';
import { IMPLICIT_TENANT, type AccessControl } from './access.js';

/** A tenant as the request path needs it. */
export interface Tenant {
  readonly name: string;
  /** Isolation key: catalogs, sessions and quota counters are kept per namespace. */
  readonly namespace: string;
  readonly requestsPerDay: number | null;
  /** True for the single tenant everyone shares when no `tenants` are configured. */
  readonly implicit: boolean;
}

/** Result of {@link TenantDirectory.resolve}. */
export type TenantResolution =
  | { readonly ok: true; readonly tenant: Tenant }
  | {
      readonly ok: false;
      readonly reason: 'no_tenant' | 'unknown_tenant';
      /** 401 for anonymous callers (authenticating may help), 403 for authenticated ones. */
      readonly status: 401 | 403;
    };

/** The per-server access rules tenancy applies (RuntimeServer satisfies this). */
export interface ServerAccessRules {
  readonly name: string;
  readonly authRequired: boolean;
  /** null: any client. */
  readonly allowedClients: ReadonlySet<string> | null;
}

/** Why a caller may not reach a server. */
export type ServerDenialReason = 'unknown_tenant' | 'unknown_server' | 'server_not_in_tenant' | 'auth_required' | 'client_not_allowed';

/** Result of {@link TenantDirectory.serverAccess}. */
export type ServerAccess =
  | { readonly allowed: true; readonly reason: 'allowed' }
  | {
      readonly allowed: false;
      readonly reason: ServerDenialReason;
      /**
       * How to answer where the server's existence need not be hidden (its own passthrough path):
       * 404 when the server is outside the tenant (tenants never learn of each other's servers),
       * 401 when authenticating could help, 403 when the caller is known and still not allowed.
       */
      readonly status: 401 | 403 | 404;
    };

const ALLOWED: ServerAccess = Object.freeze({ allowed: true, reason: 'allowed' });

/**
 * The identity rules a server (or a virtual server) may set: `auth_required`, and `allowed_clients`
 * naming client ids or groups. Null when they let the caller in; else why not, 401 when
 * authenticating could help, 403 when it could not.
 */
export function identityRefusal(
  identity: Identity,
  authRequired: boolean,
  allowedClients: ReadonlySet<string> | null,
): { reason: 'auth_required' | 'client_not_allowed'; status: 401 | 403 } | null {
  const authenticated = isAuthenticated(identity);
  if (authRequired && !authenticated) return { reason: 'auth_required', status: 401 };
  if (allowedClients === null) return null;
  // Anonymous callers never match an allow list, whatever it contains.
  if (!authenticated || identity.clientId === null) return { reason: 'client_not_allowed', status: 401 };
  // An entry names a client id or a group the client is in.
  if (!allowedClients.has(identity.clientId) && !identity.groups.some((g) => allowedClients.has(g))) return { reason: 'client_not_allowed', status: 403 };
  return null;
}

/**
 * Tenants, and which servers a caller sees within one. Build once per config (with the same
 * AccessControl the policy checks use).
 */
export class TenantDirectory {
  private readonly tenants: ReadonlyMap<string, Tenant>;
  private readonly implicit: Tenant | null;
  private readonly servers: ReadonlyMap<string, ServerAccessRules>;
  private readonly serverList: readonly ServerAccessRules[];

  constructor(
    tenants: TenantsConfig | undefined,
    servers: Iterable<ServerAccessRules>,
    private readonly access: AccessControl,
  ) {
    this.serverList = [...servers];
    this.servers = new Map(this.serverList.map((s) => [s.name, s]));
    if (tenants === undefined) {
      this.implicit = Object.freeze({ name: IMPLICIT_TENANT, namespace: IMPLICIT_TENANT, requestsPerDay: null, implicit: true });
      this.tenants = new Map();
    } else {
      this.implicit = null;
      this.tenants = new Map(
        Object.entries(tenants).map(([name, t]) => [
          name,
          Object.freeze({ name, namespace: t.namespace, requestsPerDay: t.quotas?.requests_per_day ?? null, implicit: false }),
        ]),
      );
    }
  }

  /** Whether `tenants` is configured. */
  get enabled(): boolean {
    return this.implicit === null;
  }

  /** The tenant by name. */
  get(name: string): Tenant | undefined {
    return this.implicit?.name === name ? this.implicit : this.tenants.get(name);
  }

  /** The caller's one tenant. Unknown or missing tenants are refused, never defaulted. */
  resolve(identity: Identity): TenantResolution {
    if (this.implicit !== null) return { ok: true, tenant: this.implicit };
    const status = isAuthenticated(identity) ? 403 : 401;
    if (identity.tenant === null) return { ok: false, reason: 'no_tenant', status };
    const tenant = this.tenants.get(identity.tenant);
    return tenant === undefined ? { ok: false, reason: 'unknown_tenant', status } : { ok: true, tenant };
  }

  /** Whether the caller, in its tenant, may reach a server (tenant membership, auth_required, allowed_clients). */
  serverAccess(identity: Identity, tenant: Tenant, server: string): ServerAccess {
    const rules = this.servers.get(server);
    if (rules === undefined) return { allowed: false, reason: 'unknown_server', status: 404 };
    const membership = this.access.canUseServer(tenant.name, server);
    if (!membership.allowed) {
      const reason = membership.reason === 'unknown_tenant' ? 'unknown_tenant' : 'server_not_in_tenant';
      return { allowed: false, reason, status: 404 };
    }
    const refusal = identityRefusal(identity, rules.authRequired, rules.allowedClients);
    return refusal === null ? ALLOWED : { allowed: false, ...refusal };
  }

  /** Names of the servers the caller sees and reaches, in configuration order. */
  visibleServers(identity: Identity, tenant: Tenant): string[] {
    const out: string[] = [];
    for (const s of this.serverList) if (this.serverAccess(identity, tenant, s.name).allowed) out.push(s.name);
    return out;
  }
}
