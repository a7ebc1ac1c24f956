/**
 * Key layout on Redis Cluster: every script the gateway runs names all its keys, and they share
 * one hash slot. Checked twice: the slot of every key of every script call is asked of Redis
 * itself (CLUSTER KEYSLOT, not the gateway's own function), and the calls run on a real
 * three-primary cluster, which refuses a script whose keys span slots (CROSSSLOT).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis, type Cluster } from 'ioredis';
import { Limiter } from '../../../src/ratelimit/limiter.js';
import { RedisLimiterStore } from '../../../src/ratelimit/store.js';
import { RedisSessionStore } from '../../../src/sessions/redis-store.js';
import type { GatewaySession } from '../../../src/sessions/store.js';
import { createRedisClient, waitForRedis, type RedisClient } from '../../../src/state/redis.js';
import { crc16, keySlot } from '../../../src/state/slot.js';
import { RedisCluster } from '../../support/redis-cluster.js';

interface Call {
  readonly command: 'evalsha' | 'eval';
  readonly keys: string[];
}

/** Records the keys of every script call on `client` (the calls themselves go to Redis unchanged). */
function recordScripts(client: RedisClient): Call[] {
  const calls: Call[] = [];
  const c = client as unknown as Record<'evalsha' | 'eval', (...a: unknown[]) => Promise<unknown>>;
  for (const name of ['evalsha', 'eval'] as const) {
    const original = c[name].bind(client);
    c[name] = (script: unknown, numKeys: unknown, ...rest: unknown[]) => {
      calls.push({ command: name, keys: rest.slice(0, Number(numKeys)).map(String) });
      return original(script, numKeys, ...rest);
    };
  }
  return calls;
}

describe('keySlot', () => {
  it('is CRC16-XMODEM', () => {
    assert.equal(crc16(Buffer.from('123456789')), 0x31c3);
  });
});

describe('the gateway on a real Redis Cluster', { timeout: 60_000 }, () => {
  let cluster: RedisCluster;
  let client: RedisClient;
  let calls: Call[];
  let node: Redis;

  /** The slot Redis puts `key` in. */
  async function slotOf(key: string): Promise<number> {
    return Number(await node.call('CLUSTER', 'KEYSLOT', key));
  }

  async function assertOneSlotEach(list: readonly Call[]): Promise<void> {
    assert.ok(list.length > 0);
    for (const call of list) {
      const slots = new Set(await Promise.all(call.keys.map(slotOf)));
      assert.equal(slots.size, 1, `keys of one script in ${slots.size} slots: ${call.keys.join(', ')}`);
    }
  }

  before(async () => {
    cluster = await RedisCluster.start({ masters: 3, replicas: 0 });
    node = new Redis(cluster.nodes[0]!.port, '127.0.0.1', { protocol: 2 });
    client = createRedisClient({ target: { mode: 'cluster', nodes: cluster.seeds }, commandTimeoutMs: 1_000 });
    assert.equal(await waitForRedis(client, 10_000), true, 'cluster client ready');
    calls = recordScripts(client);
  });

  after(async () => {
    node?.disconnect();
    client?.disconnect();
    await cluster?.stop();
  });

  it('computes the slots Redis computes', async () => {
    const keys = ['', 'a', 'mcpgw:sessions', 'x{}y', '{}{a}', 'a{b}c', 'a{b', 'a}b{c}', '{user:ä}x', 'p:{{p:sessions}}:s:1', 'rl:s:{ip:::1}'];
    for (let i = 0; i < 100; i++) keys.push(`k${i}:{t${i % 7}}:${'z'.repeat(i % 13)}`);
    for (const k of keys) assert.equal(keySlot(k), await slotOf(k), k);
  });

  it('runs every session script with the keys of one slot', async () => {
    calls.length = 0;
    let t = Date.UTC(2031, 5, 1);
    const expired: GatewaySession[] = [];
    const evicted: GatewaySession[] = [];
    const store = new RedisSessionStore(client, {
      keyPrefix: 'ck:',
      idleMs: 60_000,
      maxSessions: 50,
      maxSessionsPerClient: 2,
      clock: () => t,
      sweepIntervalMs: 0,
      onExpire: (s) => void expired.push(s),
      onEvict: (s) => void evicted.push(s),
    });
    const init = (owner: string) => ({ protocolVersion: '2025-06-18', clientMetadata: '{}', identity: owner, owner });
    const a = await store.create(init('id:a{x}'));
    t += 1;
    const b = await store.create(init('id:a{x}'));
    t += 1;
    const c = await store.create(init('id:a{x}'));
    assert.deepEqual(evicted.map((s) => s.id), [a.id], 'the client’s least recently used session made room');
    const other = await store.create(init('ip:10.0.0.1'));
    assert.ok((await store.get(b.id)) !== null);
    await store.setUpstream(b, 'alpha', { sessionId: 'u1', protocolVersion: '2025-06-18' });
    await store.claimUpstream(b, 'beta', { sessionId: 'u2', protocolVersion: '2025-06-18' });
    await store.setUpstream(b, 'alpha', null);
    await store.setLogLevel(b, 'debug');
    assert.equal((await store.get(b.id))?.upstream.get('beta')?.sessionId, 'u2');
    assert.ok((await store.delete(c.id)) !== null);
    await store.bind('passthrough', 'alpha', 'up-1', 'user:a');
    assert.equal(await store.boundOwner('passthrough', 'alpha', 'up-1'), 'user:a');
    t += 61_000;
    assert.equal(await store.get(other.id), null, 'idle: expired on read');
    assert.equal(await store.sweepExpired(), 1, 'the sweep claims the rest');
    assert.deepEqual(expired.map((s) => s.id).sort(), [other.id, b.id].sort());
    assert.equal(await store.size(), 0);
    store.close();
    await assertOneSlotEach(calls);
  });

  it('decides the limits of one caller in one script, and keeps all-or-nothing across slots', async () => {
    calls.length = 0;
    let t = Date.UTC(2031, 5, 1, 12);
    const store = new RedisLimiterStore(client, { keyPrefix: 'cl:', onError: 'fail-closed', clock: () => t });
    const limiter = Limiter.compile(
      {
        gateway: { rate_limit: '600/min' },
        servers: { alpha: {}, beta: {} },
        rate_limits: {
          alpha: { by: 'client', requests_per_minute: 1, burst_size: 5, tools: [{ match: 'slow', requests_per_minute: 1, burst_size: 2, by: 'ip' }] },
          beta: { by: 'client', requests_per_minute: 1, burst_size: 5 },
        },
        tenants: { acme: { namespace: 'acme', quotas: { requests_per_day: 4 } } },
      },
      store,
    );
    const req = { server: 'alpha', tool: 'fast', method: 'tools/call', clientId: 'c1', ip: '10.1.1.1', userId: null, tenant: null };
    // Server and tool limit of one caller, and a request the gateway answers itself spending from
    // the gateway's own limit: one script each.
    assert.equal((await limiter.check(req)).allowed, true);
    assert.equal((await limiter.check({ ...req, server: null, tool: null, method: 'tools/list' })).allowed, true);
    assert.equal(calls.filter((c) => c.command === 'evalsha').length, 2);
    await assertOneSlotEach(calls);

    // A tool limit keyed on the address and a server limit keyed on the client: two slots. When
    // the tool limit refuses, the server limit must not have paid for it.
    const slow = { ...req, tool: 'slow', clientId: 'c2' };
    const slotsDiffer = (await slotOf('cl:rl:alpha:{client:c2}')) !== (await slotOf('cl:rl:alpha:t0:{ip:10.1.1.1}'));
    assert.ok(slotsDiffer, 'the two buckets of this check live in different slots');
    assert.equal((await limiter.check(slow)).allowed, true);
    assert.equal((await limiter.check(slow)).allowed, true);
    const refused = await limiter.check(slow);
    assert.equal(refused.allowed, false);
    assert.equal(refused.allowed === false && refused.code, 'GW_ERR_RATE_LIMITED');
    const left = await store.take('rl:alpha:{client:c2}', { count: 1, periodMs: 60_000, burst: 5 }, t);
    assert.equal(left.remaining, 2, 'five, minus two allowed calls, minus this take: the refused call was given back');

    // A tenant quota is its own slot; refused by the quota, nothing is spent elsewhere.
    const tenantReq = { ...req, clientId: 'c3', tool: 'fast', tenant: 'acme' };
    for (let i = 0; i < 4; i++) assert.equal((await limiter.check(tenantReq)).allowed, true, `call ${i}`);
    const over = await limiter.check(tenantReq);
    assert.equal(over.allowed === false && over.code, 'GW_ERR_RATE_LIMITED');
    const bucket = await store.take('rl:alpha:{client:c3}', { count: 1, periodMs: 60_000, burst: 5 }, t);
    assert.equal(bucket.remaining, 0, 'five, minus four allowed calls, minus this take');
    t += 1;
    await assertOneSlotEach(calls);
    const cluster3 = client as Cluster;
    assert.equal(cluster3.isCluster, true);
  });
});
