import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { subjectKey, type AuthMethod, type Identity } from '../../../src/auth/identity.js';
import { TenantsSchema } from '../../../src/policy/schema.js';
import { AccessControl, IMPLICIT_TENANT } from '../../../src/policy/access.js';
import { TenantDirectory, type ServerAccessRules, type Tenant } from '../../../src/policy/tenants.js';

const SERVERS: ServerAccessRules[] = [
  { name: 'public', authRequired: false, allowedClients: null },
  { name: 'private', authRequired: true, allowedClients: null },
  { name: 'ops', authRequired: false, allowedClients: new Set(['ci']) },
  { name: 'other', authRequired: false, allowedClients: null },
];

function who(method: AuthMethod, clientId: string | null, tenant: string | null): Identity {
  return { method, clientId, tenant, groups: [], scopes: [], issuer: null, expiresAt: null, subject: subjectKey(method, null, clientId, tenant) };
}

function directory(tenants?: unknown): TenantDirectory {
  const parsed = tenants === undefined ? undefined : TenantsSchema.parse(tenants);
  const access = new AccessControl({ servers: SERVERS.map((s) => s.name), tenants: parsed });
  return new TenantDirectory(parsed, SERVERS, access);
}

const TENANTS = {
  acme: { servers: ['public', 'private', 'ops'], namespace: 'acme', quotas: { requests_per_day: 1000 } },
  globex: { servers: ['public', 'other'], namespace: 'globex' },
};

function resolved(d: TenantDirectory, id: Identity): Tenant {
  const r = d.resolve(id);
  assert.ok(r.ok, JSON.stringify(r));
  return r.tenant;
}

describe('TenantDirectory', () => {
  it('puts everyone in one implicit tenant when none are configured', () => {
    const d = directory();
    assert.equal(d.enabled, false);
    const t = resolved(d, who('api_key', 'ci', 'whatever'));
    assert.deepEqual(t, { name: IMPLICIT_TENANT, namespace: IMPLICIT_TENANT, requestsPerDay: null, implicit: true });
    assert.deepEqual(d.visibleServers(who('api_key', 'ci', null), t), ['public', 'private', 'ops', 'other']);
    assert.deepEqual(d.visibleServers(who('anonymous', null, null), t), ['public', 'other']);
  });

  it('resolves exactly the tenant the identity names, refusing missing and unknown ones', () => {
    const d = directory(TENANTS);
    assert.equal(d.enabled, true);
    assert.deepEqual(resolved(d, who('jwt', 'u', 'acme')), { name: 'acme', namespace: 'acme', requestsPerDay: 1000, implicit: false });
    assert.deepEqual(d.resolve(who('jwt', 'u', null)), { ok: false, reason: 'no_tenant', status: 403 });
    assert.deepEqual(d.resolve(who('jwt', 'u', 'initech')), { ok: false, reason: 'unknown_tenant', status: 403 });
    assert.deepEqual(d.resolve(who('jwt', 'u', 'ACME')), { ok: false, reason: 'unknown_tenant', status: 403 });
    assert.deepEqual(d.resolve(who('anonymous', null, null)), { ok: false, reason: 'no_tenant', status: 401 });
    assert.deepEqual(d.resolve(who('jwt', 'u', '__proto__')), { ok: false, reason: 'unknown_tenant', status: 403 });
  });

  it("shows a tenant only its own servers, so tenants' catalogs never mix", () => {
    const d = directory(TENANTS);
    const acme = resolved(d, who('api_key', 'ci', 'acme'));
    const globex = resolved(d, who('api_key', 'ci', 'globex'));
    assert.deepEqual(d.visibleServers(who('api_key', 'ci', 'acme'), acme), ['public', 'private', 'ops']);
    assert.deepEqual(d.visibleServers(who('api_key', 'ci', 'globex'), globex), ['public', 'other']);
    assert.notEqual(acme.namespace, globex.namespace);
    assert.deepEqual(d.serverAccess(who('api_key', 'ci', 'globex'), globex, 'private'), {
      allowed: false,
      reason: 'server_not_in_tenant',
      status: 404,
    });
  });

  it('honours auth_required and allowed_clients', () => {
    const d = directory(TENANTS);
    const anon = who('anonymous', null, 'acme');
    const acme = resolved(d, who('api_key', 'x', 'acme'));
    assert.deepEqual(d.serverAccess(anon, acme, 'private'), { allowed: false, reason: 'auth_required', status: 401 });
    assert.deepEqual(d.serverAccess(who('mtls', 'svc', 'acme'), acme, 'private'), { allowed: true, reason: 'allowed' });
    assert.deepEqual(d.serverAccess(who('jwt', 'someone', 'acme'), acme, 'ops'), { allowed: false, reason: 'client_not_allowed', status: 403 });
    assert.deepEqual(d.serverAccess(anon, acme, 'ops'), { allowed: false, reason: 'client_not_allowed', status: 401 });
    assert.deepEqual(d.serverAccess(who('api_key', 'ci', 'acme'), acme, 'ops'), { allowed: true, reason: 'allowed' });
    // An entry names a group as well: any client in it is let in, by id or not.
    const inGroup = { ...who('jwt', 'someone', 'acme'), groups: ['staff', 'ci'] };
    assert.deepEqual(d.serverAccess(inGroup, acme, 'ops'), { allowed: true, reason: 'allowed' });
    assert.deepEqual(d.serverAccess({ ...inGroup, groups: ['staff'] }, acme, 'ops'), { allowed: false, reason: 'client_not_allowed', status: 403 });
    assert.deepEqual(d.serverAccess(who('api_key', 'ci', 'acme'), acme, 'nope'), { allowed: false, reason: 'unknown_server', status: 404 });
    assert.deepEqual(d.visibleServers(anon, acme), ['public']);
  });
});
