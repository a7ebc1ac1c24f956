import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { rawInitialize, rawRequest } from '../support/mcp-client.js';
import { useStack } from '../support/stack.js';

function sha256(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

function call(url: string, sid: string, id: number, name: string): Promise<Awaited<ReturnType<typeof rawRequest>>> {
  return rawRequest(url, {
    headers: { 'mcp-session-id': sid },
    body: { jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: { text: String(id) } } },
  });
}

describe('rate limits (in-memory store): burst, 429 and headers', () => {
  const stack = useStack({
    servers: { alpha: {} },
    extraConfig: { rate_limits: { alpha: { requests_per_minute: 1, burst_size: 6, by: 'ip' } } },
  });
  let sid = '';

  it('lets burst_size calls through at once and refuses the next with 429, Retry-After and the limit named', async () => {
    // initialize (and the tools/list a client sends next) are the gateway's to answer: they spend
    // the gateway's own limit, not alpha's.
    const init = await rawInitialize(stack().mcpUrl);
    sid = init.sessionId!;
    const list = await rawRequest(stack().mcpUrl, { headers: { 'mcp-session-id': sid }, body: { jsonrpc: '2.0', id: 1, method: 'tools/list' } });
    assert.equal(list.status, 200);
    const results = await Promise.all(Array.from({ length: 9 }, (_, i) => call(stack().mcpUrl, sid, 100 + i, 'alpha__echo')));
    const ok = results.filter((r) => r.status === 200);
    const limited = results.filter((r) => r.status === 429);
    // burst 6: six calls, whatever the client did before them.
    assert.equal(ok.length, 6, results.map((r) => r.status).join(','));
    assert.equal(limited.length, 3);
    const r = limited[0]!;
    const retryAfter = Number(r.headers.get('retry-after'));
    assert.ok(retryAfter >= 1 && retryAfter <= 60, `Retry-After ${retryAfter}`);
    assert.equal(r.headers.get('ratelimit-remaining'), '0');
    assert.ok(r.headers.get('ratelimit-limit'));
    const body = r.json as { id: number; error: { code: number; message: string; data: { limit: string } } };
    assert.equal(body.error.code, -32000);
    assert.match(body.error.message, /server "alpha"/);
    assert.ok(typeof body.id === 'number', 'the error answers the request id');
    const allowed = ok[0]!;
    assert.ok(allowed.headers.get('ratelimit-remaining') !== null, 'allowed responses carry RateLimit headers');
  });

  it('counts the refusals in mcp_gateway_rate_limited_total', async () => {
    const text = await (await fetch(`${stack().adminUrl}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith('mcp_gateway_rate_limited_total{') && l.includes('server="alpha"'));
    assert.ok(line, text.split('\n').filter((l) => l.includes('rate_limited')).join('\n'));
    assert.equal(Number(line.split(' ').pop()), 3);
  });

  it('keys per-IP limits on the address Envoy saw, not on a client-sent X-Forwarded-For', async () => {
    const spoofed = await rawRequest(stack().mcpUrl, {
      headers: { 'x-forwarded-for': '203.0.113.7', 'mcp-session-id': sid },
      body: { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'alpha__echo', arguments: { text: 'x' } } },
    });
    assert.equal(spoofed.status, 429);
  });
});

describe('rate limits: a server’s limit counts what reaches it; the gateway’s own answers have theirs', () => {
  const stack = useStack({ servers: { beta: { rate_limit: '5/min' } }, extraConfig: { gateway: { rate_limit: '4/min' } } });

  it('servers.<name>.rate_limit: 5/min lets a client make 5 calls after its initialize and tools/list', async () => {
    const init = await rawInitialize(stack().mcpUrl);
    const sid = init.sessionId!;
    const list = await rawRequest(stack().mcpUrl, { headers: { 'mcp-session-id': sid }, body: { jsonrpc: '2.0', id: 1, method: 'tools/list' } });
    assert.equal(list.status, 200);
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push((await call(stack().mcpUrl, sid, 10 + i, 'beta__echo')).status);
    assert.deepEqual(statuses, [200, 200, 200, 200, 200, 429]);
  });

  it('looping on tools/list does not escape the gateway’s own limit, and that limit is named', async () => {
    const init = await rawInitialize(stack().mcpUrl);
    const sid = init.sessionId!;
    let last: Awaited<ReturnType<typeof rawRequest>> | undefined;
    let n = 0;
    for (; n < 20 && last?.status !== 429; n++) {
      last = await rawRequest(stack().mcpUrl, { headers: { 'mcp-session-id': sid }, body: { jsonrpc: '2.0', id: n, method: 'tools/list' } });
    }
    assert.equal(last?.status, 429, 'tools/list was refused once the gateway budget was spent');
    assert.ok(n <= 4, `refused after ${n} lists (4 per minute for this caller, its initializes included)`);
    assert.match((last!.json as { error: { message: string } }).error.message, /the gateway's own answers: 4 requests per minute per client/);
  });
});

describe('rate limits: per-tool limits', () => {
  const stack = useStack({
    servers: { alpha: {} },
    extraConfig: { rate_limits: { alpha: { requests_per_minute: 600, burst_size: 100, tools: [{ match: 'ad*', requests_per_minute: 1, burst_size: 2 }] } } },
  });

  it('applies a tool glob limit on top of the server limit', async () => {
    const init = await rawInitialize(stack().serverUrl('alpha'));
    const sid = init.sessionId!;
    const adds = [];
    for (let i = 0; i < 3; i++) {
      adds.push(
        await rawRequest(stack().serverUrl('alpha'), {
          headers: { 'mcp-session-id': sid },
          body: { jsonrpc: '2.0', id: i, method: 'tools/call', params: { name: 'add', arguments: { a: 1, b: 2 } } },
        }),
      );
    }
    assert.deepEqual(adds.map((r) => r.status), [200, 200, 429]);
    assert.match((adds[2]!.json as { error: { message: string } }).error.message, /tools matching "ad\*"/);
    const echo = await rawRequest(stack().serverUrl('alpha'), {
      headers: { 'mcp-session-id': sid },
      body: { jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'echo', arguments: { text: 'x' } } },
    });
    assert.equal(echo.status, 200, 'other tools keep their budget');
  });

});

describe('tenant quotas: requests_per_day per tenant', () => {
  const key = 'quota-test-key-0123456789';
  const stack = useStack({
    servers: { alpha: {} },
    extraConfig: {
      auth: { api_keys: [{ id: 'ci', key_sha256: sha256(key), tenant: 'acme' }] },
      tenants: { acme: { servers: ['*'], namespace: 'acme', quotas: { requests_per_day: 4 } } },
    },
  });

  it('counts every request of the tenant and refuses past the quota with the quota named', async () => {
    const headers = { authorization: `Bearer ${key}` };
    const init = await rawInitialize(stack().mcpUrl, { headers }); // 1
    const sid = init.sessionId!;
    const statuses: number[] = [];
    let last: Awaited<ReturnType<typeof rawRequest>> | null = null;
    for (let i = 0; i < 4; i++) {
      last = await rawRequest(stack().mcpUrl, { headers: { ...headers, 'mcp-session-id': sid }, body: { jsonrpc: '2.0', id: i, method: 'tools/list' } });
      statuses.push(last.status);
    }
    assert.deepEqual(statuses, [200, 200, 200, 429]);
    assert.match((last!.json as { error: { message: string } }).error.message, /Quota exceeded: tenant "acme"/);
    const retryAfter = Number(last!.headers.get('retry-after'));
    assert.ok(retryAfter > 0 && retryAfter <= 86_400, `Retry-After ${retryAfter} points at the next UTC midnight`);
  });
});
