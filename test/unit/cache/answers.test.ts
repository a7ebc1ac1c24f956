import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { AnswerCache, canonicalJson, parseCacheControl } from '../../../src/cache/answers.js';
import { CacheSchema, ServerCacheSchema } from '../../../src/cache/schema.js';
import { MemoryAnswerStore, RedisAnswerStore, type AnswerStore, type CacheKey } from '../../../src/cache/store.js';
import { createRedisClient, redisConnectionOptions, waitForRedis, type RedisClient } from '../../../src/state/redis.js';
import { RedisServer } from '../../support/redis.js';

const A = { subject: 'client-a', tenant: 'acme' };
const B = { subject: 'client-b', tenant: 'acme' };
const C = { subject: 'client-c', tenant: 'globex' };

function compile(cache: unknown, servers: Record<string, unknown> = { alpha: {}, beta: {} }, store: AnswerStore = new MemoryAnswerStore(100, 1 << 20)): AnswerCache {
  const parsed = Object.fromEntries(Object.entries(servers).map(([n, s]) => [n, { cache: (s as { cache?: unknown }).cache === undefined ? undefined : ServerCacheSchema.parse((s as { cache: unknown }).cache) }]));
  return AnswerCache.compile({ cache: CacheSchema.parse(cache), servers: parsed } as never, () => store);
}

describe('answer cache: what is cached, under which key', () => {
  it('caches nothing unless configured', () => {
    const c = compile({});
    assert.equal(c.enabled, false);
    assert.equal(c.plan('alpha', 'resources/read', null, { uri: 'x://1' }, A), null);
  });

  it('keeps each identity’s reads apart by default, and shares them when vary leaves identity out', () => {
    const own = compile({ 'resources/read': { ttl: 300 } });
    assert.notDeepEqual(own.plan('alpha', 'resources/read', null, { uri: 'x://1' }, A)!.key, own.plan('alpha', 'resources/read', null, { uri: 'x://1' }, B)!.key);
    assert.equal(own.plan('alpha', 'resources/read', null, { uri: 'x://1' }, A)!.shared, false);
    const shared = compile({ 'resources/read': { ttl: 300, vary: ['uri'] } });
    assert.deepEqual(shared.plan('alpha', 'resources/read', null, { uri: 'x://1' }, A)!.key, shared.plan('alpha', 'resources/read', null, { uri: 'x://1' }, C)!.key);
    assert.notDeepEqual(shared.plan('alpha', 'resources/read', null, { uri: 'x://1' }, A)!.key, shared.plan('alpha', 'resources/read', null, { uri: 'x://2' }, A)!.key);
    const tenant = compile({ 'resources/read': { ttl: 300, vary: ['uri', 'tenant'] } });
    assert.deepEqual(tenant.plan('alpha', 'resources/read', null, { uri: 'x://1' }, A)!.key, tenant.plan('alpha', 'resources/read', null, { uri: 'x://1' }, B)!.key);
    assert.notDeepEqual(tenant.plan('alpha', 'resources/read', null, { uri: 'x://1' }, A)!.key, tenant.plan('alpha', 'resources/read', null, { uri: 'x://1' }, C)!.key);
  });

  it('keys prompts and tool calls by their arguments, whatever order they came in', () => {
    const c = compile({ 'prompts/get': { ttl: 60, vary: ['arguments'] }, 'tools/call': { tools: ['get_*'], ttl: 30 } });
    const p = (args: unknown) => c.plan('alpha', 'prompts/get', null, { name: 'greet', arguments: args } as never, A)!.key;
    assert.deepEqual(p({ who: 'bob', lang: 'en' }), p({ lang: 'en', who: 'bob' }));
    assert.notDeepEqual(p({ who: 'bob' }), p({ who: 'carol' }));
    assert.equal(c.plan('alpha', 'tools/call', 'get_weather', { name: 'x', arguments: {} }, A)!.key.entity.length, 32);
    assert.equal(c.plan('alpha', 'tools/call', 'delete_user', { name: 'x', arguments: {} }, A), null, 'only the tools listed');
    assert.equal(canonicalJson({ b: [1, { d: 1, c: 2 }], a: null }), '{"a":null,"b":[1,{"c":2,"d":1}]}');
  });

  it('keeps a call’s answer to its caller when the gateway fills the caller into its arguments, whatever vary says', () => {
    const c = compile({ 'tools/call': { tools: ['get_*'], ttl: 30, vary: ['arguments'] } });
    const key = (who: typeof A, filled: boolean) => c.plan('alpha', 'tools/call', 'get_x', { name: 'get_x', arguments: { q: 1 } }, who, filled)!;
    assert.deepEqual(key(A, false).key, key(B, false).key, 'shared by vary');
    assert.notDeepEqual(key(A, true).key, key(B, true).key, 'the caller is in what the server gets');
    assert.equal(key(A, true).shared, false);
  });

  it('lets a server’s own entry replace the global one, and ttl 0 switch it off', () => {
    const c = compile({ 'resources/read': { ttl: 300 } }, { alpha: {}, beta: { cache: { 'resources/read': { ttl: 0 } } }, gamma: { cache: { 'prompts/get': { ttl: 5 } } } });
    assert.equal(c.caches('alpha', 'resources/read'), true);
    assert.equal(c.caches('beta', 'resources/read'), false);
    assert.equal(c.caches('gamma', 'resources/read'), true);
    assert.equal(c.caches('gamma', 'prompts/get'), true);
    assert.equal(c.caches('alpha', 'prompts/get'), false);
  });

  it('refuses a vary without the uri or the arguments, naming the field', () => {
    const r = CacheSchema.safeParse({ 'resources/read': { ttl: 5, vary: ['identity'] } });
    assert.equal(r.success, false);
    assert.deepEqual(r.error!.issues[0]!.path, ['resources/read', 'vary']);
    assert.equal(CacheSchema.safeParse({ 'prompts/get': { ttl: 5, vary: ['uri'] } }).success, false);
  });
});

describe('answer cache: what servers allow', () => {
  it('honours the server’s hints: ttlMs, Cache-Control, private answers, tool errors, unfinished results', async () => {
    const store = new MemoryAnswerStore(100, 1 << 20);
    const shared = compile({ 'resources/read': { ttl: 300, vary: ['uri'] } }, undefined, store);
    const plan = shared.plan('alpha', 'resources/read', null, { uri: 'x://1' }, A)!;
    assert.equal(shared.keep(plan, { contents: [] }, '{}', 'no-store'), false);
    assert.equal(shared.keep(plan, { contents: [] }, '{}', 'private, max-age=60'), false, 'a private answer is not shared');
    assert.equal(shared.keep(plan, { contents: [], cacheScope: 'private' }, '{}', null), false);
    assert.equal(shared.keep(plan, { contents: [], ttlMs: 0 }, '{}', null), false);
    assert.equal(shared.keep(plan, { isError: true }, '{}', null), false);
    assert.equal(shared.keep(plan, { resultType: 'input_required' }, '{}', null), false);
    assert.equal(shared.keep(plan, { contents: [] }, 'x'.repeat(300 * 1024), null), false, 'larger than max_entry_bytes');
    assert.equal(shared.keep(plan, { contents: [] }, '{"contents":[]}', 'public, s-maxage=10, max-age=1'), true);
    assert.equal(await shared.get(plan), '{"contents":[]}');
    const own = compile({ 'resources/read': { ttl: 300 } }, undefined, store);
    const ownPlan = own.plan('alpha', 'resources/read', null, { uri: 'x://1' }, A)!;
    assert.equal(own.keep(ownPlan, { contents: [], cacheScope: 'private' }, '{"mine":1}', 'private'), true, 'a private answer in a per-identity cache');
    assert.deepEqual(parseCacheControl('public, S-MAXAGE="10", max-age=1'), { noStore: false, private: false, maxAgeMs: 10_000 });
  });

  it('keeps an answer no longer than the shortest of the ttl and the server’s hints', async () => {
    let now = 1_000;
    const store = new MemoryAnswerStore(100, 1 << 20, () => now);
    const c = compile({ 'resources/read': { ttl: 300 } }, undefined, store);
    const plan = c.plan('alpha', 'resources/read', null, { uri: 'x://1' }, A)!;
    c.keep(plan, { contents: [], ttlMs: 2_000 }, '"a"', 'max-age=5');
    now += 1_999;
    assert.equal(await c.get(plan), '"a"');
    now += 1;
    assert.equal(await c.get(plan), null);
  });
});

function storeContract(name: string, make: () => AnswerStore, done: () => Promise<void> = async () => {}): void {
  describe(`answer store: ${name}`, () => {
    after(done);
    const key = (entity: string, variant: string, method = 'resources/read', server = 'alpha'): CacheKey => ({ server, method, entity, variant });

    it('serves what it keeps until it expires', async () => {
      const s = make();
      await s.put(key('e1', 'v1'), 'one', 60_000);
      await s.put(key('e1', 'v2'), 'two', 60_000);
      assert.equal(await s.get(key('e1', 'v1')), 'one');
      assert.equal(await s.get(key('e1', 'v2')), 'two');
      assert.equal(await s.get(key('e1', 'v3')), null);
      await s.put(key('e2', 'v1'), 'brief', 1);
      await new Promise((r) => setTimeout(r, 5));
      assert.equal(await s.get(key('e2', 'v1')), null);
    });

    it('drops every variant of one entity, and every entry of a method, and nothing else', async () => {
      const s = make();
      await s.put(key('r1', 'a'), 'r1a', 60_000);
      await s.put(key('r1', 'b'), 'r1b', 60_000);
      await s.put(key('r2', 'a'), 'r2a', 60_000);
      await s.put(key('p1', 'a', 'prompts/get'), 'p1a', 60_000);
      await s.put(key('r1', 'a', 'resources/read', 'beta'), 'beta', 60_000);
      await s.dropEntity('alpha', 'resources/read', 'r1');
      assert.equal(await s.get(key('r1', 'a')), null);
      assert.equal(await s.get(key('r1', 'b')), null);
      assert.equal(await s.get(key('r2', 'a')), 'r2a');
      await s.dropMethod('alpha', 'resources/read');
      assert.equal(await s.get(key('r2', 'a')), null);
      assert.equal(await s.get(key('p1', 'a', 'prompts/get')), 'p1a');
      assert.equal(await s.get(key('r1', 'a', 'resources/read', 'beta')), 'beta');
    });
  });
}

storeContract('memory', () => new MemoryAnswerStore(100, 1 << 20));

describe('answer store: memory bounds', () => {
  it('lets the least recently used go first, by count and by bytes', async () => {
    const s = new MemoryAnswerStore(3, 1 << 20);
    const k = (e: string): CacheKey => ({ server: 'alpha', method: 'resources/read', entity: e, variant: 'v' });
    for (const e of ['a', 'b', 'c']) await s.put(k(e), e, 60_000);
    assert.equal(await s.get(k('a')), 'a', 'a is now the most recently used');
    await s.put(k('d'), 'd', 60_000);
    assert.equal(await s.get(k('b')), null);
    assert.equal(await s.get(k('a')), 'a');
    assert.equal(s.size, 3);
    const small = new MemoryAnswerStore(100, 10);
    await small.put(k('x'), '123456', 60_000);
    await small.put(k('y'), '123456', 60_000);
    assert.equal(await small.get(k('x')), null);
    assert.equal(await small.get(k('y')), '123456');
  });
});

let redis: RedisServer | null = null;
let client: RedisClient | null = null;
before(async () => {
  redis = await RedisServer.start();
  client = createRedisClient(redisConnectionOptions({ url: redis.url } as never, 1000));
  assert.ok(await waitForRedis(client, 5000));
});
storeContract(
  'redis',
  () => new RedisAnswerStore(client!, `t${Math.random().toString(36).slice(2)}:`, pino({ level: 'silent' })),
  async () => {
    client?.disconnect();
    await redis?.stop();
  },
);

describe('answer store: redis unreachable', () => {
  it('is a miss, never an error', async () => {
    const r = await RedisServer.start();
    const c = createRedisClient(redisConnectionOptions({ url: r.url } as never, 200));
    assert.ok(await waitForRedis(c, 5000));
    const s = new RedisAnswerStore(c, 'gone:', pino({ level: 'silent' }));
    const k: CacheKey = { server: 'alpha', method: 'resources/read', entity: 'e', variant: 'v' };
    await s.put(k, 'kept', 60_000);
    assert.equal(await s.get(k), 'kept');
    await r.kill();
    assert.equal(await s.get(k), null);
    await s.put(k, 'again', 60_000);
    await s.dropMethod('alpha', 'resources/read');
    c.disconnect();
  });
});
