import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AuthFailure, subjectKey, type Identity } from '../../../src/auth/identity.js';
import { auditRecord, authFailureRecord, loggable } from '../../../src/policy/audit.js';

const ID: Identity = {
  method: 'api_key',
  clientId: 'ci',
  tenant: 'acme',
  groups: [],
  scopes: [],
  issuer: null,
  expiresAt: null,
  subject: subjectKey('api_key', null, 'ci', 'acme'),
};

describe('audit records', () => {
  it('carry who, what, where, the decision and the trace id', () => {
    assert.deepEqual(
      auditRecord({
        identity: ID,
        tenant: 'acme',
        server: 'files',
        rpcMethod: 'tools/call',
        target: { kind: 'tool', name: 'delete_all' },
        decision: { allowed: false, reason: 'denied_by_policy', detail: 'policies[0].tools.denied[0] "delete_*"' },
        traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
      }),
      {
        event: 'mcpgw_access',
        decision: 'deny',
        reason: 'denied_by_policy',
        detail: 'policies[0].tools.denied[0] "delete_*"',
        client_id: 'ci',
        tenant: 'acme',
        auth_method: 'api_key',
        server: 'files',
        rpc_method: 'tools/call',
        tool: 'delete_all',
        trace_id: '4bf92f3577b34da6a3ce929d0e0e4736',
      },
    );
    const allow = auditRecord({ identity: ID, tenant: 'acme', target: { kind: 'uri', name: 'file:///a' }, decision: { allowed: true, reason: 'allowed' }, traceId: null });
    assert.equal(allow.decision, 'allow');
    assert.equal(allow.uri, 'file:///a');
  });

  it('record authentication failures without a client', () => {
    const r = authFailureRecord(new AuthFailure('expired', 'jwt'), 'rid-1');
    assert.equal(r.reason, 'expired');
    assert.equal(r.auth_method, 'jwt');
    assert.equal(r.client_id, null);
  });

  it('make spoofing attempts visible and bound their size', () => {
    assert.equal(loggable('ech\u202eo\u0000'), 'ech\\u{202e}o\\u{0}');
    assert.equal(loggable('x'.repeat(1000)).length, 257);
  });
});
