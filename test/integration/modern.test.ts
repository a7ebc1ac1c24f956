/**
 * MCP 2026-07-28 on /mcp: a client pinned to that revision (the official v2 TypeScript SDK)
 * reaches the session-based demo servers through the gateway with no session of its own; the
 * revision's checks (envelope, routing headers, version, removed methods) are answered as it
 * says. Through a real Envoy.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { connectClient, type ConnectedClient } from '../support/mcp-client.js';
import { useStack } from '../support/stack.js';

const MODERN = '2026-07-28';

async function modernClient(url: string): Promise<Client> {
  const client = new Client({ name: 'modern-test', version: '1.0.0' }, { capabilities: {}, versionNegotiation: { mode: { pin: MODERN } } });
  await client.connect(new StreamableHTTPClientTransport(new URL(url)));
  return client;
}

function textOf(result: { content?: unknown }): string {
  return ((result.content ?? []) as { type: string; text?: string }[]).map((c) => c.text ?? '').join('');
}

const ENVELOPE = {
  'io.modelcontextprotocol/protocolVersion': MODERN,
  'io.modelcontextprotocol/clientCapabilities': {},
  'io.modelcontextprotocol/clientInfo': { name: 'raw', version: '1' },
};

/** A raw 2026-07-28 POST: the headers the revision requires, overridable. */
async function post(url: string, body: Record<string, unknown>, headers: Record<string, string | undefined> = {}): Promise<{ status: number; headers: Headers; json: any }> {
  const h: Record<string, string> = {
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    'mcp-protocol-version': MODERN,
    'mcp-method': String(body['method']),
  };
  for (const [k, v] of Object.entries(headers)) if (v === undefined) delete h[k];
  else h[k] = v;
  const res = await fetch(url, { method: 'POST', headers: h, body: JSON.stringify({ jsonrpc: '2.0', ...body }) });
  const text = await res.text();
  // An SSE answer: its last message is the response.
  const data = (res.headers.get('content-type') ?? '').startsWith('text/event-stream') ? (text.split('\n').filter((l) => l.startsWith('data: ')).at(-1)?.slice(6) ?? '') : text;
  return { status: res.status, headers: res.headers, json: data === '' ? null : JSON.parse(data) };
}

describe('MCP 2026-07-28 on /mcp', () => {
  const stack = useStack({ demoServers: ['alpha', 'beta'] });

  it('serves a pinned 2026-07-28 client: discover, the merged lists and routed calls, with no session', async () => {
    const client = await modernClient(stack().mcpUrl);
    let legacy: ConnectedClient | null = null;
    try {
      assert.equal(client.getNegotiatedProtocolVersion(), MODERN);
      const discovered = await client.discover();
      assert.ok(discovered.supportedVersions.includes(MODERN));
      assert.ok(discovered.capabilities.tools !== undefined);
      assert.match(discovered.instructions ?? '', /## alpha\n/);
      legacy = await connectClient(stack().mcpUrl);
      const expected = (await legacy.client.listTools()).tools.map((t) => t.name).sort();
      const names = (await client.listTools()).tools.map((t) => t.name).sort();
      assert.deepEqual(names, expected, 'the same merged, prefixed tools a session-based client sees');
      assert.equal(textOf(await client.callTool({ name: 'alpha__echo', arguments: { text: 'hi' } })), 'alpha: hi');
      assert.equal(textOf(await client.callTool({ name: 'beta__add', arguments: { a: 2, b: 3 } })), '5');
      const read = await client.readResource({ uri: 'alpha+demo://shared/readme' });
      assert.equal(read.contents[0]?.uri, 'alpha+demo://shared/readme');
      const prompt = await client.getPrompt({ name: 'beta__greet', arguments: { who: 'Ada' } });
      assert.ok(prompt.messages.length > 0);
    } finally {
      await client.close();
      await legacy?.close({ terminate: true });
    }
  });

  it('answers in the revision’s shape: resultType, cache fields, serverInfo in _meta, never a session id', async () => {
    const list = await post(stack().mcpUrl, { id: 1, method: 'tools/list', params: { _meta: ENVELOPE } });
    assert.equal(list.status, 200);
    assert.equal(list.headers.get('mcp-session-id'), null);
    assert.equal(list.json.result.resultType, 'complete');
    assert.equal(list.json.result.ttlMs, 0);
    assert.equal(list.json.result.cacheScope, 'private');
    assert.equal(list.json.result._meta['io.modelcontextprotocol/serverInfo'].name, 'mcp-gateway');
    const call = await post(
      stack().mcpUrl,
      { id: 2, method: 'tools/call', params: { name: 'alpha__echo', arguments: { text: 'x' }, _meta: ENVELOPE } },
      { 'mcp-name': 'alpha__echo' },
    );
    assert.equal(call.status, 200);
    assert.equal(call.headers.get('mcp-session-id'), null);
    assert.equal(call.json.result.resultType, 'complete');
    assert.equal(textOf(call.json.result), 'alpha: x');
    // A name that is not ASCII-safe travels base64-encoded and is decoded before it is compared.
    const encoded = await post(
      stack().mcpUrl,
      { id: 3, method: 'tools/call', params: { name: 'alpha__echo', arguments: { text: 'y' }, _meta: ENVELOPE } },
      { 'mcp-name': `=?base64?${Buffer.from('alpha__echo').toString('base64')}?=` },
    );
    assert.equal(encoded.status, 200, JSON.stringify(encoded.json));
    const missing = await post(stack().mcpUrl, { id: 4, method: 'resources/read', params: { uri: 'alpha+demo://nope', _meta: ENVELOPE } }, { 'mcp-name': 'alpha+demo://nope' });
    assert.equal(missing.json.error.code, -32602, 'a missing resource is -32602 in this revision');
  });

  it('checks the envelope and routing headers in the revision’s order, with its errors', async () => {
    const url = stack().mcpUrl;
    const cases: [string, Record<string, unknown>, Record<string, string | undefined>, number, number][] = [
      ['no _meta', { id: 1, method: 'tools/list', params: {} }, {}, 400, -32602],
      ['no capabilities', { id: 2, method: 'tools/list', params: { _meta: { 'io.modelcontextprotocol/protocolVersion': MODERN } } }, {}, 400, -32602],
      ['header and _meta disagree', { id: 3, method: 'tools/list', params: { _meta: { ...ENVELOPE, 'io.modelcontextprotocol/protocolVersion': '2099-01-01' } } }, {}, 400, -32020],
      [
        'a version the gateway does not speak',
        { id: 4, method: 'tools/list', params: { _meta: { ...ENVELOPE, 'io.modelcontextprotocol/protocolVersion': '2099-01-01' } } },
        { 'mcp-protocol-version': '2099-01-01' },
        400,
        -32022,
      ],
      ['Mcp-Method missing', { id: 5, method: 'tools/list', params: { _meta: ENVELOPE } }, { 'mcp-method': undefined }, 400, -32020],
      ['Mcp-Method not the body’s', { id: 6, method: 'tools/list', params: { _meta: ENVELOPE } }, { 'mcp-method': 'prompts/list' }, 400, -32020],
      ['Mcp-Name missing', { id: 7, method: 'tools/call', params: { name: 'alpha__echo', arguments: {}, _meta: ENVELOPE } }, {}, 400, -32020],
      ['Mcp-Name not the body’s', { id: 8, method: 'tools/call', params: { name: 'alpha__echo', arguments: {}, _meta: ENVELOPE } }, { 'mcp-name': 'beta__echo' }, 400, -32020],
      ['initialize', { id: 9, method: 'initialize', params: { _meta: ENVELOPE } }, {}, 404, -32601],
      ['ping', { id: 10, method: 'ping', params: { _meta: ENVELOPE } }, {}, 404, -32601],
      ['logging/setLevel', { id: 11, method: 'logging/setLevel', params: { level: 'info', _meta: ENVELOPE } }, {}, 404, -32601],
      ['resources/subscribe', { id: 12, method: 'resources/subscribe', params: { uri: 'alpha+demo://shared/readme', _meta: ENVELOPE } }, {}, 404, -32601],
    ];
    for (const [what, body, headers, status, code] of cases) {
      const r = await post(url, body, headers);
      assert.equal(r.status, status, `${what}: ${JSON.stringify(r.json)}`);
      assert.equal(r.json?.error?.code, code, `${what}: ${JSON.stringify(r.json)}`);
      assert.equal(r.json.id, body['id'], `${what}: the error echoes the request id`);
    }
    const unsupported = await post(url, cases[3]![1], cases[3]![2]);
    assert.ok(unsupported.json.error.data.supported.includes(MODERN));
    assert.equal(unsupported.json.error.data.requested, '2099-01-01');
    for (const method of ['GET', 'DELETE']) {
      const res = await fetch(url, { method, headers: { accept: 'text/event-stream', 'mcp-protocol-version': MODERN } });
      assert.equal(res.status, 405, method);
      assert.equal(res.headers.get('allow'), 'POST');
    }
  });
});
