import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { connectClient, postJson, rawInitialize, rawRequest } from '../support/mcp-client.js';
import { useStack } from '../support/stack.js';

function textOf(result: object): string {
  const content = (result as { content?: { text?: string }[] }).content ?? [];
  return content.map((c) => c.text ?? '').join('');
}

describe('passthrough endpoint /servers/<name>/mcp', () => {
  const stack = useStack({ demoServers: ['alpha', 'beta'] });

  it('is the upstream itself: its serverInfo, names, URIs and session ids unchanged', async () => {
    const c = await connectClient(stack().serverUrl('beta'));
    try {
      assert.equal(c.client.getServerVersion()?.name, 'beta');
      const { tools } = await c.client.listTools();
      assert.ok(tools.some((t) => t.name === 'echo') && !tools.some((t) => t.name.includes('__')));
      assert.equal(textOf(await c.client.callTool({ name: 'echo', arguments: { text: 'p' } })), 'beta: p');
      const read = await c.client.readResource({ uri: 'demo://shared/readme' });
      assert.equal(read.contents[0]?.uri, 'demo://shared/readme');
      // The session is the upstream's own: the demo server counts it.
      assert.ok(stack().demo['beta']!.sessionCount() >= 1);
    } finally {
      await c.close({ terminate: true });
    }
  });

  it('carries server→client requests and the client’s answers untouched', async () => {
    const c = await connectClient(stack().serverUrl('alpha'), {
      onSampling: () => ({ role: 'assistant', model: 'm', content: { type: 'text', text: 'sampled!' } }),
    });
    try {
      assert.match(textOf(await c.client.callTool({ name: 'sample', arguments: { prompt: 'q' } })), /^alpha sampled: .*sampled!/);
    } finally {
      await c.close();
    }
  });

  it('still inspects every message: malformed JSON and batches are refused before the upstream', async () => {
    const bad = await rawRequest(stack().serverUrl('alpha'), { body: '{nope' });
    assert.equal(bad.status, 400);
    assert.equal((bad.json as { error: { code: number } }).error.code, -32700);
    const batch = await rawRequest(stack().serverUrl('alpha'), { body: [{ jsonrpc: '2.0', id: 1, method: 'ping' }] });
    assert.equal(batch.status, 400);
    assert.equal((batch.json as { error: { code: number } }).error.code, -32600);
    const origin = await rawRequest(stack().serverUrl('alpha'), {
      headers: { origin: 'https://evil.example' },
      body: { jsonrpc: '2.0', id: 1, method: 'ping' },
    });
    assert.equal(origin.status, 403);
  });

  it('unknown server path → 404', async () => {
    const res = await rawRequest(`${stack().baseUrl}/servers/gamma/mcp`, { body: { jsonrpc: '2.0', id: 1, method: 'ping' } });
    assert.equal(res.status, 404);
  });
});

describe('passthrough: credentials and trace context on every method, lists filtered however large', () => {
  const stack = useStack({
    servers: {
      alpha: { headers: { 'X-Upstream-Key': 'k-alpha' } },
      // 12,000 extra tools make a tools/list of about 1.7 MB, past any per-event rewrite bound.
      big: { demoOptions: { manyTools: 12_000 } },
      bigjson: { demoOptions: { manyTools: 12_000, jsonResponse: true } },
    },
    extraConfig: { policies: [{ servers: ['big', 'bigjson'], tools: { denied: ['t0007'] } }] },
  });

  it('gives the GET stream and DELETE the upstream credentials and a traceparent, as POSTs get them', async () => {
    const url = stack().serverUrl('alpha');
    const { sessionId, protocolVersion } = await rawInitialize(url);
    assert.ok(sessionId !== undefined);
    const session = { 'mcp-session-id': sessionId, 'mcp-protocol-version': protocolVersion };
    const stream = new AbortController();
    const get = await fetch(url, { method: 'GET', headers: { accept: 'text/event-stream', ...session }, signal: stream.signal });
    assert.equal(get.status, 200);
    stream.abort();
    const del = await rawRequest(url, { method: 'DELETE', headers: session });
    assert.equal(del.status, 200);
    const seen = stack().demo['alpha']!.requests().filter((r) => r.headers['mcp-session-id'] === sessionId);
    for (const method of ['POST', 'GET', 'DELETE']) {
      const r = seen.find((x) => x.method === method);
      assert.ok(r !== undefined, `${method} reached the upstream`);
      assert.equal(r.headers['x-upstream-key'], 'k-alpha', `${method} carries the configured credential`);
      assert.match(String(r.headers['traceparent']), /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/, `${method} carries a traceparent`);
    }
  });

  for (const server of ['big', 'bigjson']) {
    it(`filters a tools/list larger than one rewrite chunk (${server === 'big' ? 'SSE' : 'JSON'} response)`, async () => {
      const c = await connectClient(stack().serverUrl(server));
      try {
        const { tools } = await c.client.listTools();
        assert.ok(tools.length > 12_000, `got ${tools.length} tools`);
        assert.ok(tools.some((t) => t.name === 't0006') && tools.some((t) => t.name === 't0008'));
        assert.ok(!tools.some((t) => t.name === 't0007'), 'the denied tool is filtered out');
      } finally {
        await c.close();
      }
    });
  }
});

describe('passthrough: a list too large to check is refused, never passed unchecked', () => {
  const stack = useStack({
    servers: { big: { demoOptions: { manyTools: 12_000 } } },
    gateway: { max_buffered_response_bytes: 1024 * 1024 },
    extraConfig: { policies: [{ servers: ['big'], tools: { denied: ['t0007'] } }] },
  });

  it('answers the list request with GW_ERR_UPSTREAM_TOO_LARGE and leaks no denied name', async () => {
    const url = stack().serverUrl('big');
    const { sessionId, protocolVersion } = await rawInitialize(url);
    const res = await postJson(url, { jsonrpc: '2.0', id: 'L1', method: 'tools/list' }, { 'mcp-session-id': sessionId!, 'mcp-protocol-version': protocolVersion });
    assert.equal(res.status, 200);
    assert.ok(!res.text.includes('t0007'), 'no denied name in the answer');
    const reply = res.json as { id?: unknown; error?: { code?: number; message?: string } };
    assert.equal(reply.id, 'L1');
    assert.equal(reply.error?.code, -32000);
    assert.match(reply.error?.message ?? '', /too large.*big sent a list over 1048576 bytes/);
  });
});
