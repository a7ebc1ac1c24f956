import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  parseRateShorthand,
  rateLimitConfigIssues,
  RateLimitsSchema,
  TenantQuotasSchema,
} from '../../../src/ratelimit/schema.js';
import { RedisSchema, redisTimeoutMs } from '../../../src/state/schema.js';

describe('parseRateShorthand', () => {
  it('parses N/unit with burst N', () => {
    assert.deepEqual(parseRateShorthand('100/min'), { count: 100, periodMs: 60_000, unit: 'minute', requestsPerMinute: 100, burst: 100 });
    assert.deepEqual(parseRateShorthand('10/s'), { count: 10, periodMs: 1_000, unit: 'second', requestsPerMinute: 600, burst: 10 });
    assert.equal(parseRateShorthand('5000/day').periodMs, 86_400_000);
    assert.equal(parseRateShorthand('30/hour').requestsPerMinute, 0.5);
  });

  it('rejects anything else', () => {
    for (const bad of ['0/min', '100', '100/week', ' 1/s', '1.5/s', '-1/s']) assert.throws(() => parseRateShorthand(bad), /rate/, bad);
  });
});

describe('RateLimitsSchema', () => {
  it('accepts the seed shape and per-tool limits, with defaults', () => {
    const v = RateLimitsSchema.parse({
      github: { requests_per_minute: 100, burst_size: 20, by: 'user' },
      db: { tools: [{ match: 'drop_*', requests_per_minute: 2 }] },
    });
    assert.equal(v['github']?.by, 'user');
    assert.equal(v['db']?.by, 'client');
    assert.equal(v['db']?.tools?.[0]?.burst_size, undefined);
  });

  it('rejects empty entries, unknown keys and a burst without a rate', () => {
    assert.equal(RateLimitsSchema.safeParse({ a: {} }).success, false);
    assert.equal(RateLimitsSchema.safeParse({ a: { requests_per_minute: 1, per: 'ip' } }).success, false);
    assert.equal(RateLimitsSchema.safeParse({ a: { burst_size: 5, tools: [{ match: 'x', requests_per_minute: 1 }] } }).success, false);
    assert.equal(RateLimitsSchema.safeParse({ a: { requests_per_minute: 0 } }).success, false);
    assert.equal(RateLimitsSchema.safeParse({ a: { requests_per_minute: 1, by: 'session' } }).success, false);
  });

  it('cross-checks server names and double server-wide rates', () => {
    const servers = { github: { rate_limit: '100/min' }, db: {} };
    assert.deepEqual(rateLimitConfigIssues({ servers, rate_limits: { github: { by: 'client', tools: [{ match: 'x', requests_per_minute: 1 }] } } }), []);
    const issues = rateLimitConfigIssues({
      servers,
      rate_limits: { github: { requests_per_minute: 5, by: 'client' }, nope: { requests_per_minute: 1, by: 'ip' } },
    });
    assert.deepEqual(issues.map((i) => i.path.join('.')), ['rate_limits.github.requests_per_minute', 'rate_limits.nope']);
  });
});

describe('RedisSchema and TenantQuotasSchema', () => {
  it('fills defaults', () => {
    const r = RedisSchema.parse({ url: 'redis://127.0.0.1:6379/0' });
    assert.deepEqual(r, { url: 'redis://127.0.0.1:6379/0', key_prefix: 'mcpgw:', timeout: '100ms', limits_on_error: 'fail-open' });
    assert.equal(redisTimeoutMs(r), 100);
    assert.equal(redisTimeoutMs(RedisSchema.parse({ url: 'rediss://h:1', timeout: '2s' })), 2_000);
  });

  it('rejects bad urls and values', () => {
    for (const bad of [{ url: 'http://x:1' }, { url: 'redis://' }, { url: 'redis://h:1', limits_on_error: 'open' }, { url: 'redis://h:1', key_prefix: 'a b' }, { url: 'redis://h:1', timeout: '1m' }]) {
      assert.equal(RedisSchema.safeParse(bad).success, false, JSON.stringify(bad));
    }
    assert.equal(TenantQuotasSchema.safeParse({ requests_per_day: 0 }).success, false);
    assert.equal(TenantQuotasSchema.safeParse({ requests_per_day: 10, per_month: 1 }).success, false);
  });
});
