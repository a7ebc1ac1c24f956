import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RecentActivity } from '../../../src/observability/recent.js';
import type { AuditRecord } from '../../../src/policy/audit.js';

function record(n: number, over: Partial<AuditRecord> = {}): AuditRecord {
  return {
    event: 'mcpgw_access',
    decision: n % 2 === 0 ? 'allow' : 'deny',
    reason: n % 2 === 0 ? 'allowed' : 'denied_by_policy',
    detail: null,
    client_id: `c${n % 3}`,
    tenant: n % 2 === 0 ? 'acme' : 'globex',
    auth_method: 'api_key',
    server: 'alpha',
    rpc_method: 'tools/call',
    tool: `t${n}`,
    trace_id: null,
    ...over,
  } as AuditRecord;
}

describe('recent activity (the console’s memory)', () => {
  it('keeps the last N decisions, newest first, and filters them', () => {
    let t = Date.UTC(2026, 11, 3, 12);
    const r = new RecentActivity(10, () => t);
    for (let n = 0; n < 25; n++) {
      r.audit(record(n));
      t += 1000;
    }
    assert.equal(r.auditSize, 10);
    const all = r.auditTail({}, 100);
    assert.deepEqual(all.map((e) => e.tool), Array.from({ length: 10 }, (_, i) => `t${24 - i}`), 'the ring wrapped: only the last ten, newest first');
    assert.equal(all[0]!.at, new Date(Date.UTC(2026, 11, 3, 12) + 24_000).toISOString());
    const denied = r.auditTail({ decision: 'deny', client: 'c2' }, 100);
    assert.ok(denied.length > 0 && denied.every((e) => e.decision === 'deny' && e.client_id === 'c2'));
    assert.deepEqual(
      denied.map((e) => e.tool),
      all.filter((e) => e.decision === 'deny' && e.client_id === 'c2').map((e) => e.tool),
    );
    assert.equal(r.auditTail({ tenant: 'acme' }, 2).length, 2, 'at most max');
    assert.deepEqual(r.auditTail({ server: 'beta' }, 100), []);
  });

  it('tracks each server’s checks and its status changes', () => {
    let t = 0;
    const r = new RecentActivity(10, () => t);
    const statuses = ['healthy', 'healthy', 'degraded', 'unhealthy', 'unhealthy', 'healthy'] as const;
    for (const s of statuses) {
      r.healthChecked('alpha', s, s === 'healthy' ? 5 : -1, s === 'healthy' ? undefined : 'connect ECONNREFUSED');
      t += 1000;
    }
    for (let i = 0; i < 100; i++) r.healthChecked('beta', 'healthy', i);
    const a = r.healthOf('alpha');
    assert.deepEqual(a.samples.map((s) => s.status), [...statuses]);
    assert.deepEqual(a.changes.map((c) => `${c.from}>${c.to}`), ['unhealthy>healthy', 'degraded>unhealthy', 'healthy>degraded', 'unknown>healthy'], 'newest first');
    assert.equal(a.changes[1]!.error, 'connect ECONNREFUSED');
    const b = r.healthOf('beta');
    assert.equal(b.samples.length, 60, 'bounded');
    assert.equal(b.samples.at(-1)!.latency_ms, 99);
    assert.deepEqual(r.healthOf('gamma'), { samples: [], changes: [] });
  });

  it('counts refusals per limit per minute over the last hour', () => {
    let t = Date.UTC(2026, 11, 3, 12, 0, 30);
    const r = new RecentActivity(10, () => t);
    r.limited('server "beta"');
    r.limited('server "beta"');
    t += 60_000;
    r.limited('server "beta"');
    r.limited('quota acme');
    let by = r.refusalsByLimit();
    assert.deepEqual(by.map((l) => [l.limit, l.total]), [['server "beta"', 3], ['quota acme', 1]]);
    const beta = by[0]!.minutes;
    assert.equal(beta.length, 60);
    assert.deepEqual(beta.slice(-2).map((m) => m.refused), [2, 1]);
    assert.equal(beta.at(-1)!.minute, new Date(Date.UTC(2026, 11, 3, 12, 1)).toISOString());
    t += 61 * 60_000;
    by = r.refusalsByLimit();
    assert.deepEqual(by, [], 'an hour later nothing is left');
  });

  it('shows buckets at half their budget or less until they are whole again, emptiest first', () => {
    let t = 1_000_000;
    const r = new RecentActivity(10, () => t);
    r.bucketSpent('rl:beta:{client:bob}', 'beta', 0, 10, 60_000);
    r.bucketSpent('rl:beta:{client:alice}', 'beta', 5, 10, 30_000);
    r.bucketSpent('rl:beta:{client:carol}', 'beta', 9, 10, 6_000);
    assert.deepEqual(r.bucketsNearEmpty(10).map((b) => b.key), ['rl:beta:{client:bob}', 'rl:beta:{client:alice}'], 'carol has most of hers');
    assert.equal(r.bucketsNearEmpty(1).length, 1);
    t += 30_001;
    assert.deepEqual(r.bucketsNearEmpty(10).map((b) => b.key), ['rl:beta:{client:bob}'], 'alice’s is whole again');
    r.bucketSpent('rl:beta:{client:bob}', 'beta', 8, 10, 1_000);
    assert.deepEqual(r.bucketsNearEmpty(10), [], 'the latest decision counts');
  });
});
