import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isLimitedMethod, Limiter, UNLIMITED, type LimitDenied, type LimitRequest } from '../../../src/ratelimit/limiter.js';
import { MemoryLimiterStore, type BatchDecision, type LimitCheck, type LimiterStore } from '../../../src/ratelimit/store.js';

const T0 = Date.UTC(2030, 5, 1, 12, 0, 0);

/** A clock the test moves by hand. */
function fakeClock(start = T0): { now: () => number; advance: (ms: number) => void; set: (t: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => void (t += ms), set: (v) => void (t = v) };
}

function req(over: Partial<LimitRequest> = {}): LimitRequest {
  return { server: 'github', tool: null, method: 'tools/call', clientId: 'c1', ip: '10.0.0.1', userId: null, tenant: null, ...over };
}

const CONFIG = {
  servers: { github: { rate_limit: '3/min' }, db: {}, docs: {} },
  rate_limits: {
    db: {
      requests_per_minute: 60,
      burst_size: 10,
      by: 'user' as const,
      tools: [
        { match: 'drop_*', requests_per_minute: 1, burst_size: 1 },
        { match: '*', requests_per_minute: 30, burst_size: 5, by: 'ip' as const },
      ],
    },
  },
  tenants: { acme: { quotas: { requests_per_day: 4 } }, free: {} },
};

async function denied(l: Limiter, r: LimitRequest): Promise<LimitDenied> {
  const o = await l.check(r);
  assert.equal(o.allowed, false, 'expected a refusal');
  return o as LimitDenied;
}

describe('Limiter', () => {
  it('does no work and returns one shared constant when nothing is configured', async () => {
    const l = Limiter.compile({ servers: { a: {} } }, null);
    assert.equal(l.enabled, false);
    assert.equal(await l.check(req({ server: 'a' })), UNLIMITED);
    assert.equal(l.check(req()), l.check(req()), 'the same resolved promise every time');
  });

  it('refuses to compile configured limits without a store', () => {
    assert.throws(() => Limiter.compile(CONFIG, null), /no limiter store/);
  });

  it('enforces the server shorthand per client, with RateLimit headers and a 429 that names the limit', async () => {
    const clock = fakeClock();
    const l = Limiter.compile(CONFIG, new MemoryLimiterStore(clock.now));
    for (let i = 0; i < 3; i++) {
      const o = await l.check(req());
      assert.equal(o.allowed, true);
      assert.deepEqual(o.headers, {
        'RateLimit-Limit': '3',
        'RateLimit-Remaining': String(2 - i),
        'RateLimit-Reset': String(20 * (i + 1)),
        'RateLimit-Policy': '3;w=60',
      });
    }
    const d = await denied(l, req());
    assert.equal(d.code, 'GW_ERR_RATE_LIMITED');
    assert.equal(d.limit, 'server "github": 3 requests per minute per client (burst 3)');
    assert.equal(d.message, 'Rate limit exceeded: server "github": 3 requests per minute per client (burst 3); retry after 20 s');
    assert.equal(d.retryAfterSeconds, 20);
    assert.equal(d.headers['Retry-After'], '20');
    assert.equal(d.headers['RateLimit-Remaining'], '0');
    // Another client has its own bucket; an anonymous caller is counted by IP.
    assert.equal((await l.check(req({ clientId: 'c2' }))).allowed, true);
    assert.equal((await l.check(req({ clientId: null }))).allowed, true);
    clock.advance(20_000);
    assert.equal((await l.check(req())).allowed, true);
    assert.equal((await l.check(req())).allowed, false);
  });

  it('applies the first matching tool glob on top of the server limit, keyed as configured', async () => {
    const clock = fakeClock();
    const l = Limiter.compile(CONFIG, new MemoryLimiterStore(clock.now));
    const drop = req({ server: 'db', tool: 'drop_table', userId: 'u1' });
    const ok = await l.check(drop);
    assert.equal(ok.allowed, true);
    assert.equal(ok.headers['RateLimit-Policy'], '10;w=10, 1;w=60');
    assert.equal(ok.headers['RateLimit-Remaining'], '0', 'reports the tightest applied limit');
    const d = await denied(l, drop);
    assert.match(d.limit, /tools matching "drop_\*": 1 request per minute per user/);
    assert.equal(d.retryAfterSeconds, 60);
    // Other tools fall through to `*`, keyed by IP.
    for (let i = 0; i < 5; i++) assert.equal((await l.check(req({ server: 'db', tool: 'select', userId: `u${i}` }))).allowed, true);
    const byIp = await denied(l, req({ server: 'db', tool: 'select', userId: 'u9' }));
    assert.match(byIp.limit, /tools matching "\*": 30 requests per minute per IP address \(burst 5\)/);
  });

  it('spends nothing when any applied limit refuses (all or nothing)', async () => {
    const clock = fakeClock();
    const store = new MemoryLimiterStore(clock.now);
    const l = Limiter.compile(CONFIG, store);
    await l.check(req({ server: 'db', tool: 'drop_x', userId: 'u1' }));
    for (let i = 0; i < 5; i++) await denied(l, req({ server: 'db', tool: 'drop_x', userId: 'u1' }));
    // The server-wide db bucket (10) lost only the one successful call.
    const o = await l.check(req({ server: 'db', tool: null, userId: 'u1', method: 'resources/read' }));
    assert.equal(o.allowed, true);
    assert.equal(o.headers['RateLimit-Remaining'], '8');
  });

  it('charges what the gateway answers itself to its own per-client limit, never to a server’s', async () => {
    const clock = fakeClock();
    const l = Limiter.compile({ ...CONFIG, gateway: { rate_limit: '3/min' } }, new MemoryLimiterStore(clock.now));
    const init = await l.check(req({ server: null, method: 'initialize' }));
    assert.equal(init.allowed, true);
    assert.equal(init.headers['RateLimit-Policy'], '3;w=60');
    await l.check(req({ server: null, method: 'tools/list' }));
    await l.check(req({ server: null, method: 'prompts/list' }));
    const d = await denied(l, req({ server: null, method: 'resources/list' }));
    assert.equal(d.limit, "the gateway's own answers: 3 requests per minute per client (burst 3)");
    // github's 3/min is whole: the aggregated requests took nothing from it.
    for (let i = 0; i < 3; i++) assert.equal((await l.check(req())).allowed, true, `call ${i} to github`);
    await denied(l, req());
    // Another client has a budget of its own.
    assert.equal((await l.check(req({ server: null, method: 'tools/list', clientId: 'c2' }))).allowed, true);
    // `off`: nothing limits them (and with nothing else configured the limiter does nothing).
    const off = Limiter.compile({ servers: { a: {} }, gateway: { rate_limit: 'off' } }, null);
    assert.equal(off.enabled, false);
  });

  it('never limits ping or notifications', async () => {
    const l = Limiter.compile({ servers: { a: { rate_limit: '1/min' } } }, new MemoryLimiterStore(fakeClock().now));
    assert.equal(isLimitedMethod('notifications/initialized'), false);
    for (let i = 0; i < 5; i++) {
      assert.equal(await l.check(req({ server: 'a', method: 'ping' })), UNLIMITED);
      assert.equal(await l.check(req({ server: 'a', method: 'notifications/cancelled' })), UNLIMITED);
    }
    assert.equal((await l.check(req({ server: 'a', method: 'tools/list' }))).allowed, true);
    assert.equal((await l.check(req({ server: 'a', method: 'tools/list' }))).allowed, false);
  });

  it('counts tenant quotas per UTC day across servers, resetting at midnight', async () => {
    const clock = fakeClock(Date.UTC(2030, 0, 1, 23, 59, 0));
    const l = Limiter.compile(CONFIG, new MemoryLimiterStore(clock.now));
    const t = (server: string): LimitRequest => req({ server, tenant: 'acme', clientId: `c-${server}` });
    for (const s of ['docs', 'docs', 'github', 'db']) assert.equal((await l.check(t(s))).allowed, true);
    const d = await denied(l, t('docs'));
    assert.equal(d.message, 'Quota exceeded: tenant "acme": quota of 4 requests per day (resets at 00:00 UTC); retry after 60 s');
    assert.deepEqual(
      { limit: d.headers['RateLimit-Limit'], remaining: d.headers['RateLimit-Remaining'], reset: d.headers['RateLimit-Reset'] },
      { limit: '4', remaining: '0', reset: '60' },
    );
    // A tenant without a quota, and a caller without a tenant, are not counted.
    assert.equal(await l.check(req({ server: 'docs', tenant: 'free' })), UNLIMITED);
    assert.equal(await l.check(req({ server: 'docs', tenant: null })), UNLIMITED);
    clock.set(Date.UTC(2030, 0, 2));
    assert.equal((await l.check(t('docs'))).allowed, true);
  });

  it('follows the store when it is degraded: allow without headers, or refuse with 503', async () => {
    const degraded = (allowed: boolean): LimiterStore => ({
      take: () => Promise.reject(new Error('unused')),
      quota: () => Promise.reject(new Error('unused')),
      decide: async (checks: readonly LimitCheck[]): Promise<BatchDecision> => ({
        allowed,
        degraded: true,
        results: checks.map(() => ({ allowed, limit: 0, remaining: 0, retryAfterMs: 1000, resetMs: 0, degraded: true })),
      }),
      close: () => {},
    });
    assert.equal(await Limiter.compile(CONFIG, degraded(true)).check(req()), UNLIMITED);
    const d = await denied(Limiter.compile(CONFIG, degraded(false)), req());
    assert.equal(d.code, 'GW_ERR_STATE_UNAVAILABLE');
    assert.deepEqual(d.headers, { 'Retry-After': '1' });
  });
});

describe('MemoryLimiterStore', () => {
  it('rejects a decision that lists one key twice (it would be spent once)', async () => {
    const store = new MemoryLimiterStore();
    const check = { kind: 'bucket' as const, key: 'k', rule: { count: 1, periodMs: 1000, burst: 1 } };
    await assert.rejects(store.decide([check, check]), /twice/);
    store.close();
  });

  it('matches tool globs in linear time against hostile client-chosen names', async () => {
    // A backtracking regex for this pattern takes time polynomial in the name's length to the
    // fifth power on a name of a's without the final b: minutes for this one.
    const l = Limiter.compile(
      { servers: { db: {} }, rate_limits: { db: { by: 'client' as const, tools: [{ match: '*a*a*a*a*a*b', requests_per_minute: 1, burst_size: 1 }] } } },
      new MemoryLimiterStore(),
    );
    const hostile = 'a'.repeat(20_000);
    assert.equal((await l.check(req({ server: 'db', tool: hostile }))).allowed, true);
    assert.equal((await l.check(req({ server: 'db', tool: hostile }))).allowed, true, 'no rule matched, so no tool budget was spent');
    assert.equal((await l.check(req({ server: 'db', tool: `${hostile}b` }))).allowed, true);
    assert.equal((await l.check(req({ server: 'db', tool: `${hostile}b` }))).allowed, false, 'the rule matches where it should');
    // `?` is literal in tool matches, as it always was.
    const q = Limiter.compile({ servers: { db: {} }, rate_limits: { db: { by: 'client' as const, tools: [{ match: 'a?c', requests_per_minute: 1, burst_size: 1 }] } } }, new MemoryLimiterStore());
    await q.check(req({ server: 'db', tool: 'abc' }));
    assert.equal((await q.check(req({ server: 'db', tool: 'abc' }))).allowed, true);
  });
});
