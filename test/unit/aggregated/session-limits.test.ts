/**
 * Bounds on what gateway sessions hold, through the real Exchange and stages with the upstreams in
 * memory: how many sessions one client and the whole gateway keep, and how much of a client's
 * initialize a session stores.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { GatewayContext } from '../../../src/exchange.js';
import { immediateOf, mcpPost, requestBody, requestHeaders, startCall } from '../../support/fake-call.js';
import { inMemoryContext, type InMemoryUpstream } from '../../support/in-memory-upstream.js';
import { waitUntil } from '../../support/proc.js';

const TOOLS = { tools: [{ name: 'echo', inputSchema: { type: 'object' } }] };

/** Everything a 2025-11-25 client may declare, clientInfo with an inline icon included. */
const FULL_CLIENT = {
  capabilities: {
    roots: { listChanged: true },
    sampling: { context: {}, tools: {} },
    elicitation: { form: {}, url: {} },
    tasks: { list: {}, cancel: {}, requests: { sampling: { createMessage: {} }, elicitation: { create: {} } } },
    experimental: { 'vendor.feature': { enabled: true, level: 3 } },
  },
  clientInfo: {
    name: 'full-client',
    title: 'Full Client',
    version: '2.1.0',
    description: 'declares every capability',
    websiteUrl: 'https://client.example.com',
    icons: [{ src: `data:image/png;base64,${'A'.repeat(4000)}`, mimeType: 'image/png', sizes: ['64x64'] }],
  },
};

interface Reply {
  status: number;
  headers: Map<string, string>;
  json: Record<string, unknown> | null;
}

async function send(ctx: GatewayContext, msg: unknown, headers: Record<string, string> = {}): Promise<Reply> {
  const call = startCall(ctx);
  await call.send(requestHeaders(mcpPost('/mcp', headers)));
  return immediateOf(await call.send(requestBody(msg)));
}

async function initialize(ctx: GatewayContext, headers: Record<string, string> = {}, params: Record<string, unknown> = {}): Promise<Reply> {
  return send(ctx, { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' }, ...params } }, headers);
}

async function open(ctx: GatewayContext, headers: Record<string, string> = {}, params: Record<string, unknown> = {}): Promise<string> {
  const r = await initialize(ctx, headers, params);
  const id = r.headers.get('mcp-session-id');
  assert.ok(id !== undefined, `initialize answered ${r.status} ${JSON.stringify(r.json)}`);
  return id;
}

async function ping(ctx: GatewayContext, session: string, headers: Record<string, string> = {}): Promise<number> {
  const r = await send(ctx, { jsonrpc: '2.0', id: 'p', method: 'ping' }, { 'mcp-session-id': session, 'mcp-protocol-version': '2025-11-25', ...headers });
  return r.status;
}

function from(ip: string): Record<string, string> {
  return { 'x-forwarded-for': ip };
}

describe('session bounds on /mcp', () => {
  it('refuses an initialize whose capabilities and clientInfo exceed gateway.max_client_metadata_bytes with -32602, and opens no session', async () => {
    const { ctx, close } = await inMemoryContext({ alpha: TOOLS });
    try {
      const big = { experimental: { blob: 'x'.repeat(1024 * 1024) } };
      const r = await initialize(ctx, from('198.51.100.1'), { capabilities: big });
      assert.equal(r.status, 200);
      const error = r.json?.['error'] as { code: number; message: string } | undefined;
      assert.equal(error?.code, -32602, JSON.stringify(r.json).slice(0, 300));
      assert.match(error.message, /gateway\.max_client_metadata_bytes/);
      assert.equal(r.headers.get('mcp-session-id'), undefined);

      // Many long clientInfo fields add up the same way.
      const wide = await initialize(ctx, from('198.51.100.1'), { clientInfo: { name: 'n'.repeat(9000), version: 'v'.repeat(9000) } });
      assert.equal((wide.json?.['error'] as { code: number } | undefined)?.code, -32602);
    } finally {
      await close();
    }
  });

  it('replays every capability and the whole clientInfo of a real client to the upstream unchanged', async () => {
    const { ctx, upstream, close } = await inMemoryContext({ alpha: TOOLS });
    try {
      const session = await open(ctx, from('198.51.100.2'), FULL_CLIENT);
      await routedCall(ctx, upstream, session, from('198.51.100.2'));
      const handshake = upstream.calls.filter((c) => c.server === 'alpha' && c.method === 'initialize').at(-1);
      assert.deepEqual(handshake?.params, { protocolVersion: '2025-11-25', ...FULL_CLIENT });
    } finally {
      await close();
    }
  });

  it('keeps one anonymous address to gateway.max_sessions_per_client (100 by default) by ending its least recently used session and that session’s upstream sessions', async () => {
    const { ctx, upstream, close } = await inMemoryContext({ alpha: TOOLS });
    try {
      const first = await open(ctx, from('203.0.113.7'));
      await routedCall(ctx, upstream, first, from('203.0.113.7'));
      const firstUpstream = upstream.calls.filter((c) => c.method === 'initialize' && c.server === 'alpha').length;
      assert.ok(firstUpstream >= 1);
      const neighbour = await open(ctx, from('203.0.113.8'));
      const flood: string[] = [];
      for (let i = 0; i < 100; i++) flood.push(await open(ctx, from('203.0.113.7')));

      assert.equal(await ping(ctx, first, from('203.0.113.7')), 404, 'the least recently used session of that address is gone');
      for (const s of flood) assert.equal(await ping(ctx, s, from('203.0.113.7')), 200);
      assert.equal(await ping(ctx, neighbour, from('203.0.113.8')), 200, 'another address keeps its session');
      await waitUntil(() => upstream.calls.some((c) => c.httpMethod === 'DELETE' && c.server === 'alpha'), {
        timeoutMs: 5_000,
        what: 'the evicted session’s upstream session to be ended',
      });
    } finally {
      await close();
    }
  });

  it('counts an IPv6 client by its /64', async () => {
    const { ctx, close } = await inMemoryContext({ alpha: TOOLS }, { gateway: { max_sessions_per_client: 2 } });
    try {
      const a = await open(ctx, from('2001:db8:1:2::1'));
      await open(ctx, from('2001:db8:1:2::ffff'));
      await open(ctx, from('2001:db8:1:2:abcd::9'));
      assert.equal(await ping(ctx, a, from('2001:db8:1:2::1')), 404);
      const other = await open(ctx, from('2001:db8:1:3::1'));
      assert.equal(await ping(ctx, other, from('2001:db8:1:3::1')), 200);
    } finally {
      await close();
    }
  });

  it('refuses initialize with 503 GW_ERR_SESSION_LIMIT and Retry-After once gateway.max_sessions are open, and keeps serving them', async () => {
    const { ctx, close } = await inMemoryContext({ alpha: TOOLS }, { gateway: { max_sessions: 3, max_sessions_per_client: 2 } });
    try {
      // 192.0.2.1 at its own cap (2), one session of 192.0.2.2: the gateway is full.
      const held = [await open(ctx, from('192.0.2.1')), await open(ctx, from('192.0.2.1')), await open(ctx, from('192.0.2.2'))];
      const refused = await initialize(ctx, from('192.0.2.3'));
      assert.equal(refused.status, 503);
      const retryAfter = Number(refused.headers.get('retry-after'));
      assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60, `Retry-After ${refused.headers.get('retry-after')}`);
      const error = refused.json?.['error'] as { code: number; message: string };
      assert.equal(error.code, -32000);
      assert.match(error.message, /gateway\.max_sessions\b/);
      for (const s of held) assert.equal(await ping(ctx, s), 200);

      // A client at its own cap rotates within it even while the gateway is full.
      const rotated = await open(ctx, from('192.0.2.1'));
      assert.equal(await ping(ctx, held[0]!), 404, 'its least recently used session made room');
      assert.equal(await ping(ctx, held[1]!), 200);
      assert.equal(await ping(ctx, rotated), 200);
      assert.equal((await initialize(ctx, from('192.0.2.2'))).status, 503, 'a client below its cap is refused while the gateway is full');
    } finally {
      await close();
    }
  });
});

/** A tools/call in `session`, so it gets an upstream session with alpha. */
async function routedCall(ctx: GatewayContext, upstream: InMemoryUpstream, session: string, headers: Record<string, string>): Promise<void> {
  const before = upstream.calls.length;
  const call = startCall(ctx);
  await call.send(requestHeaders(mcpPost('/mcp', { 'mcp-session-id': session, 'mcp-protocol-version': '2025-11-25', ...headers })));
  await call.send(requestBody({ jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'alpha__echo', arguments: {} } }));
  assert.ok(upstream.calls.slice(before).some((c) => c.method === 'initialize'), 'an upstream session was opened');
}
