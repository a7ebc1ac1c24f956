/**
 * MCP 2026-07-28 on /mcp: a client pinned to that revision (the official v2 TypeScript SDK)
 * reaches the session-based demo servers through the gateway with no session of its own; the
 * revision's checks (envelope, routing headers, version, removed methods) are answered as it
 * says. Through a real Envoy.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { sha256Hex } from '../../src/auth/api-keys.js';
import { startDualEraServer, type DualEraServer } from '../fixtures/mcp-servers/dual-era-server.js';
import { connectClient, type ConnectedClient } from '../support/mcp-client.js';
import { MODERN, modernClient, textOf } from '../support/modern-client.js';
import { useStack } from '../support/stack.js';


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

  it('keeps concurrent requests of one caller apart, whatever ids the client reuses', async () => {
    // One bridge session serves every request of this (anonymous) caller: the same id, in flight
    // at once, must still reach each request its own answer.
    const texts = Array.from({ length: 12 }, (_, i) => `t${i}`);
    const alpha = stack().demo['alpha']!;
    const before = alpha.requests().length;
    const answers = await Promise.all(
      texts.map((text) =>
        post(stack().mcpUrl, { id: 1, method: 'tools/call', params: { name: 'alpha__echo', arguments: { text }, _meta: ENVELOPE } }, { 'mcp-name': 'alpha__echo' }),
      ),
    );
    assert.deepEqual(
      answers.map((a) => [a.status, a.json.id, textOf(a.json.result)]),
      texts.map((t) => [200, 1, `alpha: ${t}`]),
    );
    // A session's request ids must be unique (JSON-RPC within one session): the server saw twelve.
    const ids = alpha.requests().slice(before).filter((r) => r.rpcMethod === 'tools/call').map((r) => JSON.stringify(r.rpcId));
    assert.equal(new Set(ids).size, texts.length, ids.join());
  });

  it('passes log messages at the level a request asks for in _meta, and none to a request that asks for none', async () => {
    const events = async (logLevel: string | undefined): Promise<{ method?: string; result?: unknown }[]> => {
      const meta = { ...ENVELOPE, ...(logLevel === undefined ? {} : { 'io.modelcontextprotocol/logLevel': logLevel }) };
      const res = await fetch(stack().mcpUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': MODERN, 'mcp-method': 'tools/call', 'mcp-name': 'alpha__log' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 5, method: 'tools/call', params: { name: 'alpha__log', arguments: { message: 'hello' }, _meta: meta } }),
      });
      const text = await res.text();
      const datas = (res.headers.get('content-type') ?? '').startsWith('text/event-stream') ? text.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)) : [text];
      return datas.map((d) => JSON.parse(d) as { method?: string; result?: unknown });
    };
    const logs = (all: { method?: string }[]): number => all.filter((e) => e.method === 'notifications/message').length;
    const none = await events(undefined);
    assert.equal(logs(none), 0, JSON.stringify(none));
    assert.ok(none.some((e) => e.result !== undefined), 'the answer still arrives');
    assert.equal(logs(await events('debug')), 1);
    assert.equal(logs(await events('info')), 1);
    assert.equal(logs(await events('error')), 0, 'an info message is below error');
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
      ['a log level MCP does not have', { id: 13, method: 'tools/list', params: { _meta: { ...ENVELOPE, 'io.modelcontextprotocol/logLevel': 'verbose' } } }, {}, 400, -32602],
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

describe('auth, policy, limits, metrics and logs hold for 2026-07-28 clients as for the others', () => {
  const KEY = 'k-modern-agent-0123456789abcdef';
  const AS = { 'x-api-key': KEY };
  const stack = useStack({
    demoServers: ['alpha', 'beta'],
    extraConfig: {
      auth: { api_keys: [{ id: 'modern-agent', key_sha256: sha256Hex(KEY), tenant: 'acme' }] },
      tenants: { acme: { servers: ['alpha'], namespace: 'acme' } },
      policies: [{ tenant: 'acme', servers: ['alpha'], tools: { allowed: ['*'], denied: ['add'] } }],
      rate_limits: { alpha: { requests_per_minute: 6000, burst_size: 6000, tools: [{ match: 'whoami', requests_per_minute: 1, burst_size: 2 }] } },
    },
  });
  const call = (id: number, name: string, headers: Record<string, string | undefined> = AS) =>
    post(stack().mcpUrl, { id, method: 'tools/call', params: { name, arguments: name.endsWith('echo') ? { text: 't' } : {}, _meta: ENVELOPE } }, { 'mcp-name': name, ...headers });

  it('authenticates every request: none or a wrong key is 401 with a challenge', async () => {
    for (const headers of [{}, { 'x-api-key': 'wrong-key-0123456789' }]) {
      const r = await post(stack().mcpUrl, { id: 41, method: 'tools/list', params: { _meta: ENVELOPE } }, headers);
      assert.equal(r.status, 401, JSON.stringify(r.json));
      assert.ok(r.headers.get('www-authenticate'));
    }
    assert.equal((await post(stack().mcpUrl, { id: 42, method: 'tools/list', params: { _meta: ENVELOPE } }, AS)).status, 200);
  });

  it('lists and calls only what the tenant and its policy allow, exactly as a session-based client sees it', async () => {
    const list = await post(stack().mcpUrl, { id: 43, method: 'tools/list', params: { _meta: ENVELOPE } }, AS);
    const names = (list.json.result.tools as { name: string }[]).map((t) => t.name).sort();
    const legacy = await connectClient(stack().mcpUrl, { headers: AS });
    try {
      assert.deepEqual(names, (await legacy.client.listTools()).tools.map((t) => t.name).sort());
    } finally {
      await legacy.close({ terminate: true });
    }
    assert.ok(names.includes('alpha__echo') && !names.includes('alpha__add') && !names.some((n) => n.startsWith('beta__')), names.join());
    assert.equal((await call(44, 'alpha__echo')).json.result.resultType, 'complete');
    for (const [id, name] of [[45, 'alpha__add'], [46, 'beta__echo']] as const) {
      const r = await call(id, name);
      assert.deepEqual([r.status, r.json.id, r.json.error.code], [200, id, -32602], `${name}: ${JSON.stringify(r.json)}`);
    }
  });

  it('applies the limits: past the burst a call is 429 with the request id and RateLimit headers', async () => {
    const results = [];
    for (let i = 0; i < 4; i++) results.push(await call(50 + i, 'alpha__whoami'));
    assert.deepEqual(results.map((r) => r.status), [200, 200, 429, 429]);
    const limited = results[2]!;
    assert.equal(limited.json.id, 52);
    assert.equal(limited.json.error.code, -32000);
    assert.equal(limited.headers.get('ratelimit-remaining'), '0');
    assert.ok(Number(limited.headers.get('retry-after')) >= 1);
  });

  it('meters and logs the requests like any other: labels, operation lines and audited denials', async () => {
    await call(60, 'alpha__echo');
    const text = await (await fetch(`${stack().adminUrl}/metrics`)).text();
    const ok = text.split('\n').find((l) => l.startsWith('mcp_gateway_requests_total{') && /mcp_method="tools\/call",server="alpha",tool="echo",tenant="acme",status="success"/.test(l));
    assert.ok(ok !== undefined && Number(ok.split(' ').pop()) >= 2, ok);
    assert.ok(text.split('\n').some((l) => l.startsWith('mcp_gateway_rate_limited_total{') && l.includes('server="alpha"')));
    const lines = stack().processorLogLines();
    const op = lines.find((l) => l['event'] === 'tool_call' && l['tool'] === 'echo' && l['client_id'] === 'modern-agent');
    assert.ok(op, 'an operation line for the call');
    assert.equal(op['tenant'], 'acme');
    const denied = lines.find((l) => l['event'] === 'mcpgw_access' && l['decision'] === 'deny' && l['client_id'] === 'modern-agent' && JSON.stringify(l).includes('add'));
    assert.ok(denied, 'the call to the denied tool is audited');
  });
});

describe('a server written with the v2 SDK (2026-07-28, serving session-based clients statelessly) behind the gateway', () => {
  let v2: DualEraServer | null = null;
  const stack = useStack(async () => {
    v2 = await startDualEraServer('nova');
    return { servers: { nova: { url: v2.url }, alpha: {} } };
  });
  after(() => v2?.close());

  it('is aggregated on /mcp for session-based and 2026-07-28 clients alike', async () => {
    const legacy = await connectClient(stack().mcpUrl);
    const modern = await modernClient(stack().mcpUrl);
    try {
      for (const tools of [(await legacy.client.listTools()).tools, (await modern.listTools()).tools]) {
        assert.ok(tools.some((t) => t.name === 'nova__echo') && tools.some((t) => t.name === 'alpha__echo'), tools.map((t) => t.name).join());
      }
      assert.equal(textOf(await legacy.client.callTool({ name: 'nova__echo', arguments: { text: 'old' } })), 'nova: old');
      assert.equal(textOf(await modern.callTool({ name: 'nova__echo', arguments: { text: 'new' } })), 'nova: new');
      const read = await legacy.client.readResource({ uri: 'nova+note://readme' });
      assert.equal((read.contents[0] as { text?: string }).text, 'readme of nova');
      assert.match(legacy.client.getInstructions() ?? '', /## nova\nDual-era server "nova"\./);
    } finally {
      await legacy.close({ terminate: true });
      await modern.close();
    }
  });

  it('carries a 2026-07-28 client unchanged on its passthrough endpoint', async () => {
    const modern = await modernClient(stack().serverUrl('nova'));
    try {
      assert.equal(modern.getNegotiatedProtocolVersion(), MODERN);
      assert.equal(textOf(await modern.callTool({ name: 'echo', arguments: { text: 'direct' } })), 'nova: direct');
    } finally {
      await modern.close();
    }
  });
});
