/**
 * The answer cache through a real Envoy, with the demo servers: repeated reads, prompts and listed
 * tool calls answered without reaching the server, never across identities unless `vary` says so,
 * never to a caller its policy refuses, dropped when the server says something changed; in memory
 * and in a real Redis (answers outlive the processor that kept them).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sha256Hex } from '../../src/auth/api-keys.js';
import { connectClient, type ConnectedClient } from '../support/mcp-client.js';
import { modernClient, textOf } from '../support/modern-client.js';
import { waitUntil } from '../support/proc.js';
import { RedisServer } from '../support/redis.js';
import { metricValue } from '../support/metrics.js';
import { useStack, type Stack } from '../support/stack.js';

const KEYS = { ann: 'cache-ann-key-0123456789', bob: 'cache-bob-key-0123456789', eve: 'cache-eve-key-0123456789' } as const;
type Who = keyof typeof KEYS;
const auth = (who: Who): Record<string, string> => ({ 'x-api-key': KEYS[who] });

const AUTH = {
  api_keys: [
    { id: 'ann', key_sha256: sha256Hex(KEYS.ann), tenant: 'acme' },
    { id: 'bob', key_sha256: sha256Hex(KEYS.bob), tenant: 'acme' },
    { id: 'eve', key_sha256: sha256Hex(KEYS.eve), tenant: 'globex' },
  ],
};

/** How many requests of `method` the demo server has seen (its own count, not the gateway's). */
function seen(stack: Stack, server: string, method: string): number {
  return stack.demo[server]!.requests().filter((r) => r.rpcMethod === method).length;
}

function metric(stack: Stack, name: string, ...labels: string[]): Promise<number> {
  return metricValue(stack.adminUrl, name, ...labels);
}

async function as<T>(stack: Stack, who: Who, use: (c: ConnectedClient) => Promise<T>): Promise<T> {
  const c = await connectClient(stack.mcpUrl, { headers: auth(who) });
  try {
    return await use(c);
  } finally {
    await c.close({ terminate: true });
  }
}

function catalogsReady(stack: () => Stack): Promise<void> {
  return waitUntil(
    () => as(stack(), 'ann', async (c) => (await c.client.listTools()).tools.some((t) => t.name === 'alpha__add')),
    { timeoutMs: 10_000, intervalMs: 100, what: 'the catalogs' },
  );
}

describe('answer cache in memory', () => {
  const stack = useStack({
    servers: { alpha: {} },
    extraConfig: {
      auth: AUTH,
      tenants: { acme: { servers: ['*'], namespace: 'acme' }, globex: { servers: ['alpha'], namespace: 'globex' } },
      policies: [{ tenant: 'globex', servers: ['alpha'], prompts: { denied: ['greet'] }, resources: { allowed: ['demo://shared/*'] } }],
      cache: {
        'resources/read': { ttl: 300 },
        'prompts/get': { ttl: 60, vary: ['arguments'] },
        'tools/call': { tools: ['add'], ttl: 60, vary: ['arguments'] },
      },
    },
  });
  before(async () => {
    await catalogsReady(stack);
    // Until the gateway follows alpha's stream it hears no change: when it starts to, it drops
    // what it cached meanwhile (one drop per cached kind). Tests start after that.
    await waitUntil(async () => (await metric(stack(), 'mcp_gateway_cache_invalidations_total', 'server="alpha"', 'reason="resync"')) >= 3, {
      timeoutMs: 10_000,
      intervalMs: 50,
      what: 'the gateway following alpha',
    });
  });

  it('answers a caller’s repeated read from the cache, renamed as the server’s answer was, and never another caller', async () => {
    const s = stack();
    const before = seen(s, 'alpha', 'resources/read');
    const first = await as(s, 'ann', (c) => c.client.readResource({ uri: 'alpha+demo://alpha/info' }));
    const again = await as(s, 'ann', (c) => c.client.readResource({ uri: 'alpha+demo://alpha/info' }));
    assert.deepEqual(again, first);
    assert.equal(first.contents[0]!.uri, 'alpha+demo://alpha/info');
    assert.equal(seen(s, 'alpha', 'resources/read'), before + 1, 'the second read came from the cache');
    // Bob is another identity: the default vary keeps each caller's answers its own.
    assert.deepEqual(await as(s, 'bob', (c) => c.client.readResource({ uri: 'alpha+demo://alpha/info' })), first);
    assert.equal(seen(s, 'alpha', 'resources/read'), before + 2);
    assert.ok((await metric(s, 'mcp_gateway_cache_lookups_total', 'server="alpha"', 'mcp_method="resources/read"', 'result="hit"')) >= 1);
    assert.ok((await metric(s, 'mcp_gateway_cache_lookups_total', 'server="alpha"', 'mcp_method="resources/read"', 'result="miss"')) >= 2);
    const lines = s.processorLogLines().filter((l) => l['msg'] === 'mcp operation' && l['mcp_method'] === 'resources/read' && l['client_id'] === 'ann');
    assert.deepEqual(lines.map((l) => l['cache']).slice(-2), ['filled', 'hit']);
  });

  it('shares a prompt between callers when vary leaves identity out, but never with a caller whose policy refuses it', async () => {
    const s = stack();
    const before = seen(s, 'alpha', 'prompts/get');
    const ann = await as(s, 'ann', (c) => c.client.getPrompt({ name: 'alpha__greet', arguments: { who: 'bob' } }));
    const bob = await as(s, 'bob', (c) => c.client.getPrompt({ name: 'alpha__greet', arguments: { who: 'bob' } }));
    assert.deepEqual(bob, ann);
    assert.equal(seen(s, 'alpha', 'prompts/get'), before + 1, 'bob got ann’s cached answer');
    const carol = await as(s, 'bob', (c) => c.client.getPrompt({ name: 'alpha__greet', arguments: { who: 'carol' } }));
    assert.match(JSON.stringify(carol.messages), /greets carol/);
    assert.equal(seen(s, 'alpha', 'prompts/get'), before + 2, 'other arguments, another answer');
    // Eve's policy denies greet: the cached answer is not hers to get, it looks like a missing prompt.
    await assert.rejects(
      as(s, 'eve', (c) => c.client.getPrompt({ name: 'alpha__greet', arguments: { who: 'bob' } })),
      (err: Error) => /Unknown prompt/.test(err.message),
    );
    // And a resource outside her allowed URIs stays unknown though Ann's read of it is cached.
    await assert.rejects(as(s, 'eve', (c) => c.client.readResource({ uri: 'alpha+demo://alpha/info' })), (err: Error) => /not found/i.test(err.message));
    assert.equal(seen(s, 'alpha', 'prompts/get'), before + 2);
  });

  it('caches only the tools listed, and serves a 2026-07-28 client a cached result in its own shape', async () => {
    const s = stack();
    const adds = seen(s, 'alpha', 'tools/call');
    const first = await as(s, 'ann', (c) => c.client.callTool({ name: 'alpha__add', arguments: { a: 20, b: 22 } }));
    assert.equal(textOf(first), '42');
    const modern = await modernClient(s.mcpUrl, { headers: auth('bob') });
    try {
      const cached = await modern.callTool({ name: 'alpha__add', arguments: { b: 22, a: 20 } });
      // Answered under the client's own request id (the SDK matches it), from the cache.
      assert.equal(textOf(cached), '42');
    } finally {
      await modern.close();
    }
    assert.equal(seen(s, 'alpha', 'tools/call'), adds + 1, 'the same arguments in another order: a hit');
    await as(s, 'ann', async (c) => {
      await c.client.callTool({ name: 'alpha__echo', arguments: { text: 'x' } });
      await c.client.callTool({ name: 'alpha__echo', arguments: { text: 'x' } });
    });
    assert.equal(seen(s, 'alpha', 'tools/call'), adds + 3, 'echo is not listed: both calls reach the server');
  });

  it('drops a cached read when the server says the resource changed, through the gateway’s own subscription', async () => {
    const s = stack();
    const uri = 'demo://shared/readme';
    await as(s, 'ann', (c) => c.client.readResource({ uri: `alpha+${uri}` }));
    const before = seen(s, 'alpha', 'resources/read');
    await as(s, 'ann', (c) => c.client.readResource({ uri: `alpha+${uri}` }));
    assert.equal(seen(s, 'alpha', 'resources/read'), before, 'cached');
    // No client subscribed: the gateway did, when it kept the read.
    await waitUntil(async () => (await s.demo.alpha!.notifyResourceUpdated(uri)) >= 1, { timeoutMs: 5_000, intervalMs: 50, what: 'the gateway’s subscription' });
    await waitUntil(async () => (await metric(s, 'mcp_gateway_cache_invalidations_total', 'server="alpha"', 'reason="resource_updated"')) >= 1, {
      timeoutMs: 5_000,
      intervalMs: 50,
      what: 'the invalidation',
    });
    await as(s, 'ann', (c) => c.client.readResource({ uri: `alpha+${uri}` }));
    assert.equal(seen(s, 'alpha', 'resources/read'), before + 1, 'read from the server again');
  });

  it('drops cached tool results when the server’s tool list changes', async () => {
    const s = stack();
    await as(s, 'ann', (c) => c.client.callTool({ name: 'alpha__add', arguments: { a: 1, b: 1 } }));
    const calls = seen(s, 'alpha', 'tools/call');
    await as(s, 'ann', (c) => c.client.callTool({ name: 'alpha__add', arguments: { a: 1, b: 1 } }));
    assert.equal(seen(s, 'alpha', 'tools/call'), calls, 'cached');
    const dropped = await metric(s, 'mcp_gateway_cache_invalidations_total', 'server="alpha"', 'reason="list_changed"');
    s.demo.alpha!.addTool('fresh_tool');
    await waitUntil(async () => (await metric(s, 'mcp_gateway_cache_invalidations_total', 'server="alpha"', 'reason="list_changed"')) > dropped, {
      timeoutMs: 5_000,
      intervalMs: 50,
      what: 'the invalidation',
    });
    await as(s, 'ann', (c) => c.client.callTool({ name: 'alpha__add', arguments: { a: 1, b: 1 } }));
    assert.equal(seen(s, 'alpha', 'tools/call'), calls + 1);
  });
});

describe('answer cache in Redis', () => {
  let redis: RedisServer;
  const stack = useStack(async () => {
    redis = await RedisServer.start();
    return {
      servers: { alpha: {} },
      extraConfig: { redis: { url: redis.url }, cache: { 'resources/read': { ttl: 300, vary: ['uri'] } } },
    };
  });
  before(() =>
    waitUntil(
      async () => {
        const c = await connectClient(stack().mcpUrl);
        try {
          return (await c.client.listResources()).resources.length > 0;
        } finally {
          await c.close({ terminate: true });
        }
      },
      { timeoutMs: 10_000, intervalMs: 100, what: 'the catalogs' },
    ),
  );
  after(() => redis?.stop());

  it('serves an answer kept by a processor that has since restarted', async () => {
    const s = stack();
    const read = async () => {
      const c = await connectClient(s.mcpUrl);
      try {
        return await c.client.readResource({ uri: 'alpha+demo://alpha/info' });
      } finally {
        await c.close({ terminate: true });
      }
    };
    const first = await read();
    // The fill is written in the background: wait for the first lookup that finds it.
    await waitUntil(
      async () => {
        await read();
        return (await metric(s, 'mcp_gateway_cache_lookups_total', 'result="hit"')) >= 1;
      },
      { timeoutMs: 5_000, intervalMs: 50, what: 'the answer in redis' },
    );
    const before = seen(s, 'alpha', 'resources/read');
    await s.processor.stop();
    await s.processor.start();
    assert.deepEqual(await read(), first);
    assert.equal(seen(s, 'alpha', 'resources/read'), before, 'the new processor found the answer in Redis');
  });
});
