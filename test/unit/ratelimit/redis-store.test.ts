/**
 * RedisLimiterStore against a real redis-server (started on a free port by this file): exact
 * enforcement across "replicas" (independent clients), refill and day rollover on an injected
 * clock, and behaviour while Redis is killed, paused and restarted.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { takeTokens, type BucketState } from '../../../src/ratelimit/bucket.js';
import { Limiter } from '../../../src/ratelimit/limiter.js';
import { MemoryLimiterStore, RedisLimiterStore, type Decision } from '../../../src/ratelimit/store.js';
import { createRedisClient, waitForRedis } from '../../../src/state/redis.js';
import type { StateLogger } from '../../../src/state/outage.js';
import { RedisServer } from '../../support/redis.js';
import { waitUntil } from '../../support/proc.js';
import { prng } from '../../support/prng.js';

const TIMEOUT_MS = 100;
/** Upper bound for any one decision while Redis misbehaves (timeout plus generous scheduling slack). */
const BOUND_MS = 500;

/** A StateLogger that remembers what it was told. */
function recordingLog(): StateLogger & { warns: string[]; infos: string[] } {
  const warns: string[] = [];
  const infos: string[] = [];
  return { warns, infos, warn: (_o, msg) => void warns.push(msg), info: (_o, msg) => void infos.push(msg) };
}


async function client(server: RedisServer): Promise<Redis> {
  const c = createRedisClient({ target: { mode: 'single', url: server.url }, commandTimeoutMs: TIMEOUT_MS, connectionName: 'mcpgw-test' });
  assert.equal(await waitForRedis(c, 5_000), true, 'redis client did not become ready');
  return c as Redis;
}

describe('RedisLimiterStore', () => {
  let server: RedisServer;
  let a: Redis;
  let b: Redis;
  let prefix = 0;
  /** A fresh key prefix per test, so tests never see each other's buckets. */
  const nextPrefix = (): string => `t${++prefix}:`;

  before(async () => {
    server = await RedisServer.start();
    a = await client(server);
    b = await client(server);
  });

  after(async () => {
    a?.disconnect();
    b?.disconnect();
    await server?.stop();
  });

  it('enforces one limit exactly across two replicas hammering one key (Redis clock)', async () => {
    const keyPrefix = nextPrefix();
    const replicas = [new RedisLimiterStore(a, { keyPrefix, onError: 'fail-closed' }), new RedisLimiterStore(b, { keyPrefix, onError: 'fail-closed' })];
    // One token per hour: nothing refills while the test runs.
    const rule = { count: 1, periodMs: 3_600_000, burst: 50 };
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => replicas[i % 2]!.take('rl:hot:client:x', rule)));
    assert.equal(results.filter((r) => r.degraded).length, 0);
    assert.equal(results.filter((r) => r.allowed).length, 50);
    const remaining = results.filter((r) => r.allowed).map((r) => r.remaining).sort((x, y) => x - y);
    assert.deepEqual(remaining, Array.from({ length: 50 }, (_, i) => i), 'each token handed out exactly once');
  });

  it('enforces exactly through two Limiters (replicas) sharing Redis', async () => {
    const keyPrefix = nextPrefix();
    const cfg = { servers: { api: {} }, rate_limits: { api: { requests_per_minute: 1, burst_size: 25, by: 'client' as const } } };
    const l1 = Limiter.compile(cfg, new RedisLimiterStore(a, { keyPrefix, onError: 'fail-closed' }));
    const l2 = Limiter.compile(cfg, new RedisLimiterStore(b, { keyPrefix, onError: 'fail-closed' }));
    const r = { server: 'api', tool: null, method: 'tools/call', clientId: 'c', ip: null, userId: null, tenant: null };
    const out = await Promise.all(Array.from({ length: 100 }, (_, i) => (i % 2 === 0 ? l1 : l2).check(r)));
    assert.equal(out.filter((o) => o.allowed).length, 25);
    assert.ok(out.every((o) => o.allowed || o.code === 'GW_ERR_RATE_LIMITED'));
  });

  it('refills exactly on an injected clock, identically to the pure function', async () => {
    const keyPrefix = nextPrefix();
    const store = new RedisLimiterStore(a, { keyPrefix, onError: 'fail-closed' });
    const rule = { count: 6, periodMs: 60_000, burst: 5 };
    const t0 = Date.UTC(2030, 0, 1);
    for (let i = 0; i < 5; i++) assert.equal((await store.take('k', rule, t0)).remaining, 4 - i);
    const refused = await store.take('k', rule, t0);
    assert.deepEqual(refused, { allowed: false, limit: 5, remaining: 0, retryAfterMs: 10_000, resetMs: 50_000, degraded: false });
    assert.equal((await store.take('k', rule, t0 + 9_999)).retryAfterMs, 1);
    assert.equal((await store.take('k', rule, t0 + 10_000)).allowed, true);
    assert.equal((await store.take('k', rule, t0 + 10_000)).allowed, false);
    const full = await store.take('k', rule, t0 + 10_000 + 3_600_000);
    assert.equal(full.remaining, 4, 'capped at burst');
  });

  it('matches the in-memory store decision for decision over a random sequence', async () => {
    const keyPrefix = nextPrefix();
    const redis = new RedisLimiterStore(a, { keyPrefix, onError: 'fail-closed' });
    const memory = new MemoryLimiterStore();
    const rule = { count: 7, periodMs: 60_000, burst: 3 };
    const rand = prng(42);
    let t = Date.UTC(2030, 0, 1);
    let state: BucketState | null = null;
    for (let i = 0; i < 300; i++) {
      t += Math.floor(rand() * 20_000);
      const [r, m] = await Promise.all([redis.take('k', rule, t), memory.take('k', rule, t)]);
      assert.deepEqual(r, m, `step ${i}`);
      const p = takeTokens(state, t, rule);
      if (p.allowed) state = p.newState;
      assert.equal(r.allowed, p.allowed, `step ${i} vs takeTokens`);
    }
    memory.close();
  });

  it('spends nothing on any check when one refuses (one atomic script)', async () => {
    const keyPrefix = nextPrefix();
    const store = new RedisLimiterStore(a, { keyPrefix, onError: 'fail-closed' });
    const t0 = Date.UTC(2030, 0, 1);
    const wide = { kind: 'bucket' as const, key: 'wide', rule: { count: 1, periodMs: 60_000, burst: 10 } };
    const narrow = { kind: 'bucket' as const, key: 'narrow', rule: { count: 1, periodMs: 60_000, burst: 1 } };
    const quota = { kind: 'quota' as const, key: 'q:acme', limit: 100 };
    assert.equal((await store.decide([wide, narrow, quota], t0)).allowed, true);
    const refused = await store.decide([wide, narrow, quota], t0);
    assert.equal(refused.allowed, false);
    assert.deepEqual(refused.results.map((r) => [r.allowed, r.remaining]), [[true, 9], [false, 0], [true, 99]]);
    assert.equal((await store.take('wide', wide.rule, t0)).remaining, 8);
    assert.equal((await store.quota('q:acme', 100, t0)).remaining, 98);
  });

  it('expires idle buckets: a key lives only until its bucket would be full again', async () => {
    const keyPrefix = nextPrefix();
    const store = new RedisLimiterStore(a, { keyPrefix, onError: 'fail-closed' });
    await store.take('idle', { count: 60, periodMs: 60_000, burst: 10 });
    const pttl = await a.pttl(`${keyPrefix}idle`);
    // One token spent at one per second: full again in 1 s, plus the 1 s grace.
    assert.ok(pttl > 1_000 && pttl <= 2_000, `pttl ${pttl}`);
  });

  it('counts quotas per UTC day and rolls over at 00:00 UTC (injected clock)', async () => {
    const keyPrefix = nextPrefix();
    const store = new RedisLimiterStore(a, { keyPrefix, onError: 'fail-closed' });
    const beforeMidnight = Date.UTC(2031, 11, 31, 23, 59, 58, 500);
    const decisions: Decision[] = [];
    for (let i = 0; i < 4; i++) decisions.push(await store.quota('q:acme', 3, beforeMidnight));
    assert.deepEqual(decisions.map((d) => d.allowed), [true, true, true, false]);
    assert.deepEqual(decisions[3], { allowed: false, limit: 3, remaining: 0, retryAfterMs: 1_500, resetMs: 1_500, degraded: false });
    const midnight = Date.UTC(2032, 0, 1);
    assert.deepEqual(await store.quota('q:acme', 3, midnight), { allowed: true, limit: 3, remaining: 2, retryAfterMs: 0, resetMs: 86_400_000, degraded: false });
    assert.equal(await a.get(store.quotaKey('q:acme', beforeMidnight)), '3');
    assert.equal(store.quotaKey('q:acme', midnight), `${keyPrefix}q:acme:2032-01-01`);
    assert.equal(await a.get(`${keyPrefix}q:acme:2032-01-01`), '1');
    const pttl = await a.pttl(`${keyPrefix}q:acme:2032-01-01`);
    assert.ok(pttl > 86_400_000 && pttl <= 86_460_000, `expires after its day (pttl ${pttl})`);
  });

  it("names quota days by the UTC date on Lua's side too (leap years, century rules)", async () => {
    const keyPrefix = nextPrefix();
    const store = new RedisLimiterStore(a, { keyPrefix, onError: 'fail-closed' });
    for (const t of [Date.UTC(2000, 1, 29, 12), Date.UTC(2100, 1, 28, 23, 59), Date.UTC(2100, 2, 1), Date.UTC(1999, 11, 31, 23, 59, 59), Date.UTC(2024, 11, 31, 0, 0, 1)]) {
      await store.quota('q:dates', 1_000, t);
      assert.equal(await a.exists(store.quotaKey('q:dates', t)), 1, new Date(t).toISOString());
    }
  });

  it('re-loads its script after Redis forgets it (NOSCRIPT)', async () => {
    const keyPrefix = nextPrefix();
    const store = new RedisLimiterStore(a, { keyPrefix, onError: 'fail-closed' });
    await a.script('FLUSH');
    const d = await store.take('k', { count: 1, periodMs: 60_000, burst: 2 });
    assert.deepEqual([d.allowed, d.degraded, d.remaining], [true, false, 1]);
  });
});

describe('RedisLimiterStore when Redis fails', () => {
  let server: RedisServer;
  let c: Redis;

  before(async () => {
    server = await RedisServer.start();
    c = await client(server);
  });

  after(async () => {
    c?.disconnect();
    await server?.stop();
  });

  it('answers within the bound while Redis is killed, per policy, logs once, and recovers after a restart', async () => {
    const openLog = recordingLog();
    const closedLog = recordingLog();
    const open = new RedisLimiterStore(c, { keyPrefix: 'f1:', onError: 'fail-open', log: openLog, target: 'test-redis', probeIntervalMs: 50 });
    const closed = new RedisLimiterStore(c, { keyPrefix: 'f1:', onError: 'fail-closed', log: closedLog, probeIntervalMs: 50 });
    const rule = { count: 1, periodMs: 3_600_000, burst: 5 };

    // Traffic before, during and after the kill.
    assert.equal((await open.take('k', rule)).degraded, false);
    const inflight = Array.from({ length: 20 }, () => closed.take('k2', rule));
    await server.kill();
    await Promise.all(inflight);

    let slowest = 0;
    for (let i = 0; i < 40; i++) {
      for (const [store, allowed] of [[open, true], [closed, false]] as const) {
        const started = performance.now();
        const d = await store.take('k', rule);
        slowest = Math.max(slowest, performance.now() - started);
        assert.equal(d.degraded, true);
        assert.equal(d.allowed, allowed);
      }
    }
    assert.ok(slowest < BOUND_MS, `slowest decision took ${slowest.toFixed(0)} ms`);
    assert.equal(open.degraded, true);
    assert.deepEqual(openLog.warns, ['rate limits: Redis unavailable, rate limits and quotas are not enforced (fail-open)']);
    assert.deepEqual(closedLog.warns, ['rate limits: Redis unavailable, requests are refused with 503 (fail-closed)']);
    assert.deepEqual(openLog.infos, []);

    await server.restart();
    await waitUntil(async () => !(await open.take('k', rule)).degraded, { timeoutMs: 10_000, intervalMs: 50, what: 'fail-open store to recover' });
    await waitUntil(async () => !(await closed.take('k', rule)).degraded, { timeoutMs: 10_000, intervalMs: 50, what: 'fail-closed store to recover' });
    assert.deepEqual(openLog.infos, ['rate limits: Redis reachable again, shared state restored']);
    assert.equal(closedLog.infos.length, 1);
    assert.equal(openLog.warns.length, 1, 'still one outage line');
    // Enforcement is back (the restarted Redis is empty: a fresh bucket).
    const after = await Promise.all(Array.from({ length: 8 }, () => open.take('fresh', rule)));
    assert.equal(after.filter((d) => d.allowed).length, 5);
  });

  it('does not hang while Redis accepts connections but answers nothing (paused)', async () => {
    const log = recordingLog();
    const store = new RedisLimiterStore(c, { keyPrefix: 'f2:', onError: 'fail-open', log, probeIntervalMs: 50 });
    const rule = { count: 1, periodMs: 60_000, burst: 5 };
    await waitUntil(async () => !(await store.take('k', rule)).degraded, { timeoutMs: 10_000, what: 'store healthy' });
    server.pause();
    try {
      const started = performance.now();
      const decisions = await Promise.all(Array.from({ length: 50 }, () => store.take('k', rule)));
      const elapsed = performance.now() - started;
      assert.ok(decisions.every((d) => d.allowed && d.degraded));
      assert.ok(elapsed < BOUND_MS, `50 decisions took ${elapsed.toFixed(0)} ms`);
      assert.equal(log.warns.length, 1);
      assert.match(log.warns[0]!, /fail-open/);
    } finally {
      server.resume();
    }
    await waitUntil(async () => !(await store.take('k', rule)).degraded, { timeoutMs: 10_000, intervalMs: 50, what: 'recovery after resume' });
    assert.equal(log.infos.length, 1);
  });
});
