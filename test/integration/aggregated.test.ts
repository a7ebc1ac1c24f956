import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { startDemoServer, type DemoServer } from '../fixtures/mcp-servers/demo-server.js';
import { connectClient, rawInitialize, rawRequest } from '../support/mcp-client.js';
import { waitUntil } from '../support/proc.js';
import { startStack, useStack, type Stack } from '../support/stack.js';

const TOOL_NAME = /^[A-Za-z0-9_.-]{1,128}$/;

function textOf(result: object): string {
  const content = (result as { content?: { type: string; text?: string }[] }).content ?? [];
  return content.map((c) => c.text ?? '').join('');
}


describe('aggregated endpoint /mcp: one MCP server in front of several', () => {
  const stack = useStack({ demoServers: ['alpha', 'beta'] });

  it('answers initialize itself with the union of upstream capabilities and a session', async () => {
    const c = await connectClient(stack().mcpUrl);
    try {
      assert.equal(c.client.getServerVersion()?.name, 'mcp-gateway');
      assert.equal(c.client.getServerVersion()?.title, 'MCP Gateway');
      // Each server's instructions, under its name.
      assert.equal(c.client.getInstructions(), '## alpha\nDemo MCP server "alpha".\n\n## beta\nDemo MCP server "beta".');
      const caps = c.client.getServerCapabilities() ?? {};
      assert.ok(caps.tools && caps.prompts && caps.resources && caps.completions && caps.logging, JSON.stringify(caps));
      assert.equal(caps.resources?.subscribe, true);
      assert.match(c.sessionId ?? '', /^[\x21-\x7e]{16,}$/);
      await c.client.ping();
    } finally {
      await c.close();
    }
  });

  it('lists every server’s tools under its prefix, same-named tools included', async () => {
    const c = await connectClient(stack().mcpUrl);
    try {
      const { tools } = await c.client.listTools();
      const names = tools.map((t) => t.name);
      for (const n of ['alpha__echo', 'beta__echo', 'alpha__whoami', 'beta__whoami']) assert.ok(names.includes(n), n);
      assert.equal(new Set(names).size, names.length, 'no duplicates');
      for (const n of names) assert.match(n, TOOL_NAME);
      assert.ok(tools.find((t) => t.name === 'alpha__echo')?.inputSchema.properties?.['text'], 'schemas pass through');
    } finally {
      await c.close();
    }
  });

  it('routes tools/call to the owning server with the upstream’s own tool name', async () => {
    const c = await connectClient(stack().mcpUrl);
    try {
      const a = await c.client.callTool({ name: 'alpha__echo', arguments: { text: 'hi' } });
      const b = await c.client.callTool({ name: 'beta__echo', arguments: { text: 'hi' } });
      assert.equal(textOf(a), 'alpha: hi');
      assert.equal(textOf(b), 'beta: hi');
      assert.equal(textOf(await c.client.callTool({ name: 'beta__add', arguments: { a: 2, b: 40 } })), '42');
      const failed = await c.client.callTool({ name: 'alpha__fail', arguments: {} });
      assert.equal(failed.isError, true, 'tool errors stay tool results');
    } finally {
      await c.close();
    }
  });

  it('namespaces resource URIs so equal upstream URIs never collide, and reads them back', async () => {
    const c = await connectClient(stack().mcpUrl);
    try {
      const { resources } = await c.client.listResources();
      const uris = resources.map((r) => r.uri);
      assert.ok(uris.includes('alpha+demo://shared/readme'), uris.join(','));
      assert.ok(uris.includes('beta+demo://shared/readme'), uris.join(','));
      assert.equal(new Set(uris).size, uris.length);
      for (const server of ['alpha', 'beta']) {
        const read = await c.client.readResource({ uri: `${server}+demo://shared/readme` });
        assert.equal(read.contents[0]?.uri, `${server}+demo://shared/readme`);
        assert.equal((read.contents[0] as { text: string }).text, `readme of ${server}`);
      }
      const { resourceTemplates } = await c.client.listResourceTemplates();
      assert.ok(resourceTemplates.some((t) => t.uriTemplate === 'beta+demo://items/{id}'));
      const item = await c.client.readResource({ uri: 'beta+demo://items/7' });
      assert.equal((item.contents[0] as { text: string }).text, 'beta item 7');
      assert.equal(item.contents[0]?.uri, 'beta+demo://items/7');
    } finally {
      await c.close();
    }
  });

  it('rewrites resource links in tool results and embedded resources in prompts', async () => {
    const c = await connectClient(stack().mcpUrl);
    try {
      const linked = await c.client.callTool({ name: 'beta__link', arguments: {} });
      const link = (linked.content as { type: string; uri?: string }[]).find((x) => x.type === 'resource_link');
      assert.equal(link?.uri, 'beta+demo://shared/readme');
      const followed = await c.client.readResource({ uri: link.uri });
      assert.equal((followed.contents[0] as { text: string }).text, 'readme of beta');
      // A result far over 1 MiB is renamed too, so its link can be followed.
      const large = await c.client.callTool({ name: 'beta__link', arguments: { padding: 3 * 1024 * 1024 } }, undefined, { timeout: 30_000 });
      const parts = large.content as { type: string; uri?: string; text?: string }[];
      assert.equal(parts[0]?.text?.length, 3 * 1024 * 1024);
      assert.equal(parts.find((x) => x.type === 'resource_link')?.uri, 'beta+demo://shared/readme');

      const { prompts } = await c.client.listPrompts();
      assert.ok(prompts.some((p) => p.name === 'alpha__greet') && prompts.some((p) => p.name === 'beta__greet'));
      const greet = await c.client.getPrompt({ name: 'beta__greet', arguments: { who: 'bob' } });
      assert.equal((greet.messages[0]?.content as { text: string }).text, 'beta greets bob');
      const embedded = await c.client.getPrompt({ name: 'alpha__with_resource' });
      const res = embedded.messages[0]?.content as { type: string; resource: { uri: string } };
      assert.equal(res.type, 'resource');
      assert.equal(res.resource.uri, 'alpha+demo://shared/readme');
    } finally {
      await c.close();
    }
  });

  it('routes completion/complete by the prefixed prompt name', async () => {
    const c = await connectClient(stack().mcpUrl);
    try {
      const r = await c.client.complete({
        ref: { type: 'ref/prompt', name: 'alpha__greet' },
        argument: { name: 'who', value: 'a' },
      });
      assert.deepEqual(r.completion.values, ['alice']);
    } finally {
      await c.close();
    }
  });

  it('carries sampling and elicitation requests to the client and its answers back to the upstream that asked', async () => {
    const c = await connectClient(stack().mcpUrl, {
      onSampling: (p) => ({
        role: 'assistant',
        model: 'test-model',
        content: { type: 'text', text: `answer to ${JSON.stringify((p.messages[0]?.content as { text?: string }).text)}` },
      }),
      onElicitation: () => ({ action: 'accept', content: { answer: 'forty-two' } }),
    });
    try {
      const [sa, sb] = await Promise.all([
        c.client.callTool({ name: 'alpha__sample', arguments: { prompt: 'one' } }),
        c.client.callTool({ name: 'beta__sample', arguments: { prompt: 'two' } }),
      ]);
      assert.match(textOf(sa), /^alpha sampled: .*one/);
      assert.match(textOf(sb), /^beta sampled: .*two/);
      const el = await c.client.callTool({ name: 'beta__elicit', arguments: { question: 'meaning?' } });
      assert.equal(textOf(el), 'beta elicited: forty-two');
    } finally {
      await c.close();
    }
  });

  it('streams progress and log notifications of a call as they happen', async () => {
    const c = await connectClient(stack().mcpUrl);
    try {
      await c.client.setLoggingLevel('debug');
      const seen: number[] = [];
      const started = Date.now();
      const arrivals: number[] = [];
      const r = await c.client.callTool(
        { name: 'alpha__slow_progress', arguments: { seconds: 1.5, steps: 3 } },
        undefined,
        {
          onprogress: (p) => {
            seen.push(p.progress);
            arrivals.push(Date.now() - started);
          },
          timeout: 30_000,
        },
      );
      assert.equal(textOf(r), 'done 3');
      assert.equal(seen.length, 3, `progress events: ${JSON.stringify(seen)}`);
      assert.ok(arrivals[0]! < arrivals[2]! - 500, `progress arrived while the call ran: ${JSON.stringify(arrivals)}`);

      const logged = await c.client.callTool({ name: 'beta__log', arguments: { message: 'hello log' } });
      assert.equal(textOf(logged), 'logged');
      const log = c.notifications.find((n) => n.method === 'notifications/message');
      assert.ok(log, 'log notification reached the client');
    } finally {
      await c.close();
    }
  });

  it('keeps a 60-second progress stream flowing to the end', async () => {
    const c = await connectClient(stack().mcpUrl);
    try {
      const started = Date.now();
      const arrivals: number[] = [];
      const r = await c.client.callTool(
        { name: 'alpha__slow_progress', arguments: { seconds: 60, steps: 12 } },
        undefined,
        { onprogress: () => arrivals.push(Date.now() - started), timeout: 120_000 },
      );
      assert.equal(textOf(r), 'done 12');
      assert.equal(arrivals.length, 12);
      assert.ok(Date.now() - started >= 59_000);
      // Streamed, not released at the end: the events are spread over the minute.
      assert.ok(arrivals[0]! < 10_000 && arrivals[11]! > 50_000, JSON.stringify(arrivals));
    } finally {
      await c.close();
    }
  });

  it('forwards a client’s notifications/cancelled to the server running the call', async () => {
    const c = await connectClient(stack().mcpUrl);
    try {
      const before = stack().demo['beta']!.cancellations();
      const abort = new AbortController();
      const call = c.client.callTool({ name: 'beta__slow_progress', arguments: { seconds: 30, steps: 30 } }, undefined, {
        signal: abort.signal,
        onprogress: () => abort.abort('changed my mind'),
      });
      await assert.rejects(call);
      await waitUntil(() => stack().demo['beta']!.cancellations() === before + 1, {
        timeoutMs: 5000,
        what: 'the upstream to see the cancellation',
      });
      assert.equal(textOf(await c.client.callTool({ name: 'beta__echo', arguments: { text: 'after' } })), 'beta: after');
    } finally {
      await c.close();
    }
  });

  it('passes a 10 MB tool result through intact', async () => {
    const c = await connectClient(stack().mcpUrl);
    try {
      const size = 10 * 1024 * 1024;
      const r = await c.client.callTool({ name: 'alpha__big', arguments: { bytes: size } }, undefined, { timeout: 60_000 });
      const text = textOf(r);
      assert.equal(text.length, size);
    } finally {
      await c.close();
    }
  });

  it('keeps two clients’ sessions and results apart under concurrency', async () => {
    const [c1, c2] = await Promise.all([connectClient(stack().mcpUrl), connectClient(stack().mcpUrl)]);
    try {
      assert.notEqual(c1.sessionId, c2.sessionId);
      const calls = [];
      for (let i = 0; i < 20; i++) {
        const c = i % 2 === 0 ? c1 : c2;
        const server = i % 3 === 0 ? 'alpha' : 'beta';
        calls.push(
          c.client.callTool({ name: `${server}__echo`, arguments: { text: `m${i}` } }).then((r) => {
            assert.equal(textOf(r), `${server}: m${i}`);
          }),
        );
      }
      await Promise.all(calls);
    } finally {
      await Promise.all([c1.close(), c2.close()]);
    }
  });

  it('re-initialises an upstream that forgot the session and retries once, invisibly', async () => {
    const c = await connectClient(stack().mcpUrl);
    try {
      assert.equal(textOf(await c.client.callTool({ name: 'beta__whoami', arguments: {} })), 'beta');
      await stack().demo['beta']!.restart();
      assert.equal(textOf(await c.client.callTool({ name: 'beta__echo', arguments: { text: 'again' } })), 'beta: again');
      assert.equal(textOf(await c.client.callTool({ name: 'beta__echo', arguments: { text: 'and again' } })), 'beta: and again');
    } finally {
      await c.close();
    }
  });

  it('DELETE ends the gateway session and its upstream sessions', async () => {
    const c = await connectClient(stack().mcpUrl);
    const sid = c.sessionId!;
    await c.client.callTool({ name: 'alpha__echo', arguments: { text: 'x' } });
    const before = stack().demo['alpha']!.sessionCount();
    await c.terminate(true);
    const after = stack().demo['alpha']!.sessionCount();
    assert.equal(after, before - 1, 'the upstream session was ended too');
    const res = await rawRequest(stack().mcpUrl, {
      headers: { 'mcp-session-id': sid },
      body: { jsonrpc: '2.0', id: 1, method: 'tools/list' },
    });
    assert.equal(res.status, 404);
    await c.close();
  });

  it('serves clients of the older revisions 2025-06-18 and 2025-03-26', async () => {
    for (const version of ['2025-06-18', '2025-03-26']) {
      const init = await rawInitialize(stack().mcpUrl, { protocolVersion: version });
      assert.equal(init.protocolVersion, version);
      const sid = init.sessionId!;
      // 2025-03-26 clients send no MCP-Protocol-Version header.
      const headers = { 'mcp-session-id': sid, 'mcp-protocol-version': version === '2025-03-26' ? null : version };
      const call = await rawRequest(stack().mcpUrl, {
        headers,
        body: { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'alpha__echo', arguments: { text: version } } },
      });
      assert.equal(call.status, 200);
      const result = (call.json as { result: { content: { text: string }[] } }).result;
      assert.equal(result.content[0]?.text, `alpha: ${version}`);
    }
  });
});

describe('aggregated endpoint: JSON-RPC errors for bad input', () => {
  const stack = useStack({ demoServers: ['alpha'] });
  let sid = '';
  before(async () => {
    const init = await rawInitialize(stack().mcpUrl);
    sid = init.sessionId!;
  });

  async function expectError(
    opts: Parameters<typeof rawRequest>[1],
    status: number,
    code: number,
    message?: RegExp,
  ): Promise<void> {
    const res = await rawRequest(stack().mcpUrl, opts);
    assert.equal(res.status, status, res.text);
    assert.match(res.headers.get('content-type') ?? '', /application\/json/);
    const body = res.json as { jsonrpc: string; error: { code: number; message: string } };
    assert.equal(body.jsonrpc, '2.0');
    assert.equal(body.error.code, code, res.text);
    if (message) assert.match(body.error.message, message);
  }

  const s = (): Record<string, string> => ({ 'mcp-session-id': sid });

  it('malformed JSON → 400 / -32700', () => expectError({ headers: s(), body: '{"jsonrpc":' }, 400, -32700));
  it('a batch array → 400 / -32600', () =>
    expectError({ headers: s(), body: [{ jsonrpc: '2.0', id: 1, method: 'ping' }] }, 400, -32600, /batch/));
  it('not JSON-RPC → 400 / -32600', () => expectError({ headers: s(), body: { hello: 'world' } }, 400, -32600));
  it('unknown method → -32601', () =>
    expectError({ headers: s(), body: { jsonrpc: '2.0', id: 1, method: 'tools/destroy' } }, 200, -32601));
  it('unknown tool → -32602', () =>
    expectError(
      { headers: s(), body: { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'alpha__nope', arguments: {} } } },
      200,
      -32602,
      /Unknown tool/,
    ));
  it('tool of an unknown server → -32602', () =>
    expectError(
      { headers: s(), body: { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'gamma__echo' } } },
      200,
      -32602,
    ));
  it('unknown prompt → -32602', () =>
    expectError({ headers: s(), body: { jsonrpc: '2.0', id: 1, method: 'prompts/get', params: { name: 'nope' } } }, 200, -32602));
  it('unknown resource → -32002', () =>
    expectError(
      { headers: s(), body: { jsonrpc: '2.0', id: 1, method: 'resources/read', params: { uri: 'demo://shared/readme' } } },
      200,
      -32002,
    ));
  it('bad list cursor → -32602', () =>
    expectError({ headers: s(), body: { jsonrpc: '2.0', id: 1, method: 'tools/list', params: { cursor: 'garbage' } } }, 200, -32602));
  it('missing session → 400', () => expectError({ body: { jsonrpc: '2.0', id: 1, method: 'tools/list' } }, 400, -32000));
  it('unknown session → 404', () =>
    expectError({ headers: { 'mcp-session-id': 'no-such-session' }, body: { jsonrpc: '2.0', id: 1, method: 'tools/list' } }, 404, -32001));
  it('Accept without text/event-stream → 406', () =>
    expectError({ headers: { ...s(), accept: 'application/json' }, body: { jsonrpc: '2.0', id: 1, method: 'ping' } }, 406, -32000));
  it('unsupported MCP-Protocol-Version → 400', () =>
    expectError(
      { headers: { ...s(), 'mcp-protocol-version': '1999-01-01' }, body: { jsonrpc: '2.0', id: 1, method: 'ping' } },
      400,
      -32000,
      /Protocol-Version/,
    ));
  it('foreign Origin → 403', () =>
    expectError({ headers: { ...s(), origin: 'https://evil.example' }, body: { jsonrpc: '2.0', id: 1, method: 'ping' } }, 403, -32000, /Origin/));
  it('foreign Host (DNS rebinding) → 403', async () => {
    // fetch() cannot set Host, so speak HTTP/1.1 directly.
    const url = new URL(stack().mcpUrl);
    const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest(
        { host: url.hostname, port: url.port, path: url.pathname, method: 'POST', headers: { host: 'evil.example', 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-session-id': sid } },
        (r) => {
          let body = '';
          r.setEncoding('utf8').on('data', (d: string) => (body += d)).on('end', () => resolve({ status: r.statusCode ?? 0, body }));
        },
      );
      req.on('error', reject);
      req.end(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }));
    });
    assert.equal(res.status, 403);
    assert.match((JSON.parse(res.body) as { error: { message: string } }).error.message, /Host/);
  });
  it('wrong Content-Type → 415', () =>
    expectError({ headers: { ...s(), 'content-type': 'text/plain' }, body: { jsonrpc: '2.0', id: 1, method: 'ping' } }, 415, -32000));
  it('a method other than GET, POST and DELETE → 405 with Allow', async () => {
    await expectError({ method: 'PUT', headers: { ...s(), accept: 'text/event-stream' } }, 405, -32000);
    const res = await rawRequest(stack().mcpUrl, { method: 'PATCH', headers: s() });
    assert.equal(res.headers.get('allow'), 'GET, POST, DELETE');
  });
  it('oversized body → 413, with or without a Content-Length', async () => {
    const huge = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping', params: { pad: 'x'.repeat(5 * 1024 * 1024) } });
    await expectError({ headers: s(), body: huge }, 413, -32000);
    const res = await fetch(stack().mcpUrl, {
      method: 'POST',
      headers: { ...s(), accept: 'application/json, text/event-stream', 'content-type': 'application/json' },
      body: new ReadableStream({
        start(ctl) {
          ctl.enqueue(new TextEncoder().encode(huge));
          ctl.close();
        },
      }),
      duplex: 'half',
    } as RequestInit);
    assert.equal(res.status, 413);
    assert.equal(((await res.json()) as { error: { code: number } }).error.code, -32000);
  });
  it('unknown path → 404 JSON-RPC error', async () => {
    const res = await rawRequest(`${stack().baseUrl}/nope`, { body: { jsonrpc: '2.0', id: 1, method: 'ping' } });
    assert.equal(res.status, 404);
    assert.equal((res.json as { error: { code: number } }).error.code, -32000);
  });
  it('the gateway still serves normally after all of that', async () => {
    const res = await rawRequest(stack().mcpUrl, {
      headers: s(),
      body: { jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'alpha__echo', arguments: { text: 'ok' } } },
    });
    assert.equal(res.status, 200);
    assert.equal((res.json as { result: { content: { text: string }[] } }).result.content[0]?.text, 'alpha: ok');
  });
});

describe('aggregated endpoint: an upstream that is down', () => {
  const stack = useStack({
    servers: {
      alpha: {},
      down: { url: 'http://127.0.0.1:1/mcp' },
    },
  });

  it('leaves its entries out of lists and serves the others', async () => {
    const c = await connectClient(stack().mcpUrl);
    try {
      const { tools } = await c.client.listTools();
      assert.ok(tools.some((t) => t.name === 'alpha__echo'));
      assert.ok(!tools.some((t) => t.name.startsWith('down__')));
    } finally {
      await c.close();
    }
  });

  it('answers a call to it with a JSON-RPC error that names it, promptly', async () => {
    const c = await connectClient(stack().mcpUrl);
    try {
      const started = Date.now();
      // 503 with a JSON-RPC error body: the SDK surfaces it as a transport error carrying the body.
      await assert.rejects(c.client.callTool({ name: 'down__echo', arguments: { text: 'x' } }), /Upstream server unavailable: down/);
      assert.ok(Date.now() - started < 5000, 'no hang');
      const raw = await rawRequest(stack().mcpUrl, {
        headers: { 'mcp-session-id': c.sessionId! },
        body: { jsonrpc: '2.0', id: 77, method: 'tools/call', params: { name: 'down__echo', arguments: {} } },
      });
      assert.equal(raw.status, 503);
      assert.deepEqual(raw.json, { jsonrpc: '2.0', id: 77, error: { code: -32000, message: raw.json && (raw.json as { error: { message: string } }).error.message } });
      assert.match((raw.json as { error: { message: string } }).error.message, /down/);
      // The healthy server is unaffected.
      assert.equal(textOf(await c.client.callTool({ name: 'alpha__echo', arguments: { text: 'still' } })), 'alpha: still');
    } finally {
      await c.close();
    }
  });
});

describe('aggregated endpoint: pagination of large catalogs', () => {
  let many: DemoServer;
  let s: Stack;
  before(async () => {
    many = await startDemoServer({ name: 'many', manyTools: 150, toolsPageSize: 25 });
    s = await startStack({ servers: { many: { url: many.url } }, gateway: { page_size: 40 } });
  });
  after(async () => {
    await s?.close();
    await many?.close();
  });

  it('follows upstream cursors and pages the aggregate with its own cursors', async () => {
    const c = await connectClient(s.mcpUrl);
    try {
      const names: string[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const page = await c.client.listTools(cursor === undefined ? {} : { cursor });
        assert.ok(page.tools.length <= 40);
        names.push(...page.tools.map((t) => t.name));
        cursor = page.nextCursor;
        pages++;
      } while (cursor !== undefined && pages < 100);
      assert.ok(names.includes('many__t0000') && names.includes('many__t0149'), names.join(','));
      assert.equal(new Set(names).size, names.length, 'no entry twice across pages');
      assert.ok(names.length >= 150);
      assert.equal(pages, Math.ceil(names.length / 40));
    } finally {
      await c.close();
    }
  });
});
