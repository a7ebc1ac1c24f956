import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseConfig } from '../../../src/config/load.js';
import { redisConnectionOptions, parseNodeAddress, describeRedisTarget } from '../../../src/state/redis.js';
import { RedisSchema } from '../../../src/state/schema.js';

const SERVERS = { a: { url: 'http://127.0.0.1:1/mcp' } };

/** The config error for `redis`, or '' if it is accepted. */
function errorOf(redis: unknown): string {
  try {
    parseConfig({ servers: SERVERS, redis });
    return '';
  } catch (err) {
    return (err as Error).message;
  }
}

describe('redis modes', () => {
  it('accepts exactly one of url, cluster and sentinel', () => {
    assert.equal(errorOf({ url: 'redis://h:6379' }), '');
    assert.equal(errorOf({ cluster: { nodes: ['r0:6379', '[::1]:7000'] }, password: 'p', tls: true }), '');
    assert.equal(errorOf({ sentinel: { name: 'mcpgw', nodes: ['s0:26379'], password: 'sp' }, username: 'u', password: 'p' }), '');
  });

  it('names the field that is wrong', () => {
    assert.match(errorOf({}), /exactly one of redis\.url.*redis\.cluster.*redis\.sentinel[\s\S]*at redis$/);
    assert.match(errorOf({ url: 'redis://h:1', cluster: { nodes: ['a:1'] } }), /exclusive[\s\S]*at redis\.cluster/);
    assert.match(errorOf({ cluster: { nodes: ['a:1'] }, sentinel: { name: 'm', nodes: ['a:1'] } }), /at redis\.sentinel/);
    assert.match(errorOf({ cluster: { nodes: [] } }), /at least one[\s\S]*at redis\.cluster\.nodes/);
    assert.match(errorOf({ cluster: { nodes: ['a'] } }), /host:port[\s\S]*at redis\.cluster\.nodes\[0\]/);
    assert.doesNotMatch(errorOf({ cluster: { nodes: ['a'] } }), /port must be/);
    assert.match(errorOf({ cluster: { nodes: ['a:70000'] } }), /1-65535[\s\S]*at redis\.cluster\.nodes\[0\]/);
    assert.match(errorOf({ cluster: { nodes: ['a:1'], seeds: 1 } }), /seeds/);
    assert.match(errorOf({ sentinel: { nodes: ['a:1'] } }), /at redis\.sentinel\.name/);
    assert.match(errorOf({ url: 'redis://h:1', password: 'x' }), /goes in the URL[\s\S]*at redis\.password/);
    assert.match(errorOf({ url: 'redis://h:1', username: 'x' }), /at redis\.username/);
    assert.match(errorOf({ url: 'redis://h:1', tls: true }), /rediss:\/\/[\s\S]*at redis\.tls/);
  });

  it('keeps the single-Redis section as it was', () => {
    assert.deepEqual(RedisSchema.parse({ url: 'redis://h:1' }), { url: 'redis://h:1', key_prefix: 'mcpgw:', timeout: '100ms', limits_on_error: 'fail-open' });
  });

  it('turns each mode into connection options', () => {
    const single = redisConnectionOptions(RedisSchema.parse({ url: 'redis://:pw@h:1/2' }), 100);
    assert.deepEqual(single.target, { mode: 'single', url: 'redis://:pw@h:1/2' });
    assert.equal(describeRedisTarget(single.target), 'redis://h:1/2');
    const cluster = redisConnectionOptions(RedisSchema.parse({ cluster: { nodes: ['a:1', '[::1]:2'] }, password: 'p', tls: true }), 100);
    assert.deepEqual(cluster, { target: { mode: 'cluster', nodes: ['a:1', '[::1]:2'] }, commandTimeoutMs: 100, tls: true, password: 'p' });
    assert.equal(describeRedisTarget(cluster.target), 'cluster a:1,[::1]:2');
    const sentinel = redisConnectionOptions(RedisSchema.parse({ sentinel: { name: 'm', nodes: ['s:26379'], password: 'sp' } }), 100);
    assert.deepEqual(sentinel.target, { mode: 'sentinel', name: 'm', nodes: ['s:26379'], db: 0, sentinelPassword: 'sp' });
    assert.equal(describeRedisTarget(sentinel.target), 'sentinel m@s:26379');
    assert.deepEqual(parseNodeAddress('[::1]:7000'), { host: '::1', port: 7000 });
    assert.deepEqual(parseNodeAddress('redis-0.redis:6379'), { host: 'redis-0.redis', port: 6379 });
  });
});
