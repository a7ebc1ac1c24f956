/**
 * Checks the demo MCP server fixture with the official SDK client, over real
 * HTTP: the gateway's integration tests lean on exactly these behaviours.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  LoggingMessageNotificationSchema,
  ResourceUpdatedNotificationSchema,
  type CallToolResult,
  type ElicitResult,
  type LoggingMessageNotification,
  type Progress,
} from '@modelcontextprotocol/sdk/types.js';
import { startDemoServer, type DemoServer } from '../fixtures/mcp-servers/demo-server.js';

interface Connected {
  client: Client;
  transport: StreamableHTTPClientTransport;
  logs: LoggingMessageNotification['params'][];
  updates: string[];
}

const openClients: Client[] = [];

async function connect(url: string, elicitResult?: ElicitResult): Promise<Connected> {
  const client = new Client({ name: 'demo-server-test', version: '1.0.0' }, { capabilities: { sampling: {}, elicitation: {} } });
  const logs: LoggingMessageNotification['params'][] = [];
  const updates: string[] = [];
  client.setRequestHandler(CreateMessageRequestSchema, (req) => {
    const first = req.params.messages[0]?.content;
    const prompt = first && !Array.isArray(first) && first.type === 'text' ? first.text : '?';
    return { role: 'assistant', model: 'test-model', content: { type: 'text', text: `echo(${prompt})` } };
  });
  client.setRequestHandler(ElicitRequestSchema, () => elicitResult ?? { action: 'accept', content: { answer: '42' } });
  client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
    logs.push(n.params);
  });
  client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => {
    updates.push(n.params.uri);
  });
  const transport = new StreamableHTTPClientTransport(new URL(url));
  await client.connect(transport);
  openClients.push(client);
  return { client, transport, logs, updates };
}

function textOf(result: unknown): string {
  const content = (result as CallToolResult).content;
  const first = content[0];
  assert.ok(first && first.type === 'text', `expected text content, got ${JSON.stringify(content)}`);
  return first.text;
}

async function rawPost(url: string, body: unknown, sessionId?: string): Promise<{ status: number; json: unknown }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      'mcp-protocol-version': '2025-11-25',
      ...(sessionId ? { 'mcp-session-id': sessionId } : {}),
    },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: await res.json() };
}

/** The tools every demo server has, sorted. */
const DOCUMENTED_TOOLS = ['add', 'arguments', 'big', 'echo', 'elicit', 'fail', 'headers', 'interview', 'link', 'log', 'sample', 'slow_progress', 'trace', 'whoami'];

describe('demo MCP server', { timeout: 60_000 }, () => {
  let alpha: DemoServer;
  let beta: DemoServer;
  let a: Connected;

  before(async () => {
    alpha = await startDemoServer({ name: 'alpha', port: 0 });
    beta = await startDemoServer({ name: 'beta' });
    a = await connect(alpha.url);
  });

  after(async () => {
    await Promise.allSettled(openClients.map((c) => c.close()));
    await Promise.allSettled([alpha.close(), beta.close()]);
  });

  it('listens on a free port and names itself in serverInfo', () => {
    assert.match(alpha.url, /^http:\/\/127\.0\.0\.1:\d+\/mcp$/);
    assert.notEqual(alpha.port, 0);
    assert.equal(a.client.getServerVersion()?.name, 'alpha');
    const caps = a.client.getServerCapabilities();
    assert.ok(caps?.logging && caps.completions && caps.prompts && caps.tools);
    assert.equal(caps?.resources?.subscribe, true);
  });

  it('lists the documented tools', async () => {
    const names = (await a.client.listTools()).tools.map((t) => t.name).sort();
    assert.deepEqual(names, DOCUMENTED_TOOLS);
  });

  it('answers echo, whoami and add with the server name in the output', async () => {
    const b = await connect(beta.url);
    assert.equal(textOf(await a.client.callTool({ name: 'echo', arguments: { text: 'hi' } })), 'alpha: hi');
    assert.equal(textOf(await b.client.callTool({ name: 'echo', arguments: { text: 'hi' } })), 'beta: hi');
    assert.equal(textOf(await b.client.callTool({ name: 'whoami' })), 'beta');
    assert.equal(textOf(await a.client.callTool({ name: 'add', arguments: { a: 2, b: 3.5 } })), '5.5');
  });

  it('returns exactly the requested number of ASCII characters from big', async () => {
    const bytes = 10 * 1024 * 1024;
    const out = textOf(await a.client.callTool({ name: 'big', arguments: { bytes } }));
    assert.equal(out.length, bytes);
    assert.equal(Buffer.byteLength(out, 'utf8'), bytes);
    assert.match(out.slice(0, 64), /^[A-Za-z0-9_-]+$/);
  });

  it('sends progress notifications spread over slow_progress', async () => {
    const progress: Progress[] = [];
    const started = Date.now();
    const result = await a.client.callTool({ name: 'slow_progress', arguments: { seconds: 0.3, steps: 3 } }, undefined, {
      onprogress: (p) => progress.push(p),
    });
    assert.equal(textOf(result), 'done 3');
    assert.ok(Date.now() - started >= 250);
    assert.deepEqual(
      progress.map((p) => [p.progress, p.total]),
      [
        [1, 3],
        [2, 3],
        [3, 3],
      ],
    );
  });

  it('asks the client to sample and elicit within the tool call', async () => {
    assert.equal(textOf(await a.client.callTool({ name: 'sample', arguments: { prompt: 'ping' } })), 'alpha sampled: echo(ping)');
    assert.equal(textOf(await a.client.callTool({ name: 'elicit', arguments: { question: 'why?' } })), 'alpha elicited: 42');
    const declining = await connect(beta.url, { action: 'decline' });
    assert.equal(
      textOf(await declining.client.callTool({ name: 'elicit', arguments: { question: 'why?' } })),
      'beta elicited: decline',
    );
  });

  it('sends a log notification before the log tool returns, honouring logging/setLevel', async () => {
    const c = await connect(alpha.url);
    assert.equal(textOf(await c.client.callTool({ name: 'log', arguments: { message: 'hello' } })), 'logged');
    assert.deepEqual(c.logs, [{ level: 'info', logger: 'alpha', data: 'hello' }]);
    await c.client.setLoggingLevel('error');
    await c.client.callTool({ name: 'log', arguments: { message: 'filtered' } });
    assert.equal(c.logs.length, 1);
  });

  it('returns a resource_link from link and isError from fail', async () => {
    const link = (await a.client.callTool({ name: 'link' })) as CallToolResult;
    assert.equal(link.content[0]?.type, 'resource_link');
    assert.equal((link.content[0] as { uri: string }).uri, 'demo://shared/readme');
    const fail = (await a.client.callTool({ name: 'fail' })) as CallToolResult;
    assert.equal(fail.isError, true);
  });

  it('serves the shared readme, its own info resource and the item template', async () => {
    const uris = (await a.client.listResources()).resources.map((r) => r.uri).sort();
    assert.deepEqual(uris, ['demo://alpha/info', 'demo://shared/readme']);
    const templates = (await a.client.listResourceTemplates()).resourceTemplates.map((t) => t.uriTemplate);
    assert.deepEqual(templates, ['demo://items/{id}']);
    const read = async (c: Client, uri: string): Promise<string> => {
      const first = (await c.readResource({ uri })).contents[0];
      assert.ok(first && 'text' in first);
      return first.text;
    };
    const b = await connect(beta.url);
    assert.equal(await read(a.client, 'demo://shared/readme'), 'readme of alpha');
    assert.equal(await read(b.client, 'demo://shared/readme'), 'readme of beta');
    assert.equal(await read(a.client, 'demo://alpha/info'), 'info of alpha');
    assert.equal(await read(b.client, 'demo://items/17'), 'beta item 17');
  });

  it('accepts resource subscriptions and notifies subscribers only', async () => {
    const c = await connect(alpha.url);
    await c.client.subscribeResource({ uri: 'demo://shared/readme' });
    // The client opens its GET stream asynchronously after initialize, and
    // without an event store a notification sent before then is lost: retry.
    for (let i = 0; i < 50 && c.updates.length === 0; i++) {
      const notified = await alpha.notifyResourceUpdated('demo://shared/readme');
      assert.ok(notified >= 1);
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(c.updates.includes('demo://shared/readme'));
    await c.client.unsubscribeResource({ uri: 'demo://shared/readme' });
    assert.equal(await alpha.notifyResourceUpdated('demo://no/such'), 0);
  });

  it('serves the greet and with_resource prompts and completes greet.who', async () => {
    const names = (await a.client.listPrompts()).prompts.map((p) => p.name).sort();
    assert.deepEqual(names, ['greet', 'with_resource']);
    const greet = await a.client.getPrompt({ name: 'greet', arguments: { who: 'bob' } });
    assert.deepEqual(greet.messages, [{ role: 'user', content: { type: 'text', text: 'alpha greets bob' } }]);
    const withResource = await a.client.getPrompt({ name: 'with_resource' });
    const content = withResource.messages[0]?.content;
    assert.ok(content?.type === 'resource');
    assert.equal(content.resource.uri, 'demo://shared/readme');
    const completion = await a.client.complete({
      ref: { type: 'ref/prompt', name: 'greet' },
      argument: { name: 'who', value: 'c' },
    });
    assert.deepEqual(completion.completion.values, ['carol']);
  });

  it('rejects a missing session id with 400', async () => {
    const res = await rawPost(alpha.url, { jsonrpc: '2.0', id: 1, method: 'tools/list' });
    assert.equal(res.status, 400);
    assert.equal((res.json as { jsonrpc: string }).jsonrpc, '2.0');
  });

  it('forgets every session on restart(): old ids get 404, new sessions work on the same port', async () => {
    const server = await startDemoServer({ name: 'gamma' });
    try {
      const c = await connect(server.url);
      const oldId = c.transport.sessionId;
      assert.ok(oldId);
      assert.equal(server.sessionCount(), 1);
      const port = server.port;
      await server.restart();
      assert.equal(server.sessionCount(), 0);
      const res = await rawPost(server.url, { jsonrpc: '2.0', id: 1, method: 'tools/list' }, oldId);
      assert.equal(res.status, 404);
      assert.equal((res.json as { error: { code: number } }).error.code, -32001);
      await assert.rejects(c.client.listTools(), /404|Session not found/);
      const fresh = await connect(server.url);
      assert.equal(server.port, port);
      assert.equal(textOf(await fresh.client.callTool({ name: 'whoami' })), 'gamma');
      assert.equal(server.sessionCount(), 1);
    } finally {
      await server.close();
    }
  });

  it('drops the session on DELETE', async () => {
    const server = await startDemoServer({ name: 'delta' });
    try {
      const c = await connect(server.url);
      assert.equal(server.sessionCount(), 1);
      await c.transport.terminateSession();
      assert.equal(server.sessionCount(), 0);
    } finally {
      await server.close();
    }
  });

  it('adds manyTools extra tools and can paginate tools/list', async () => {
    const server = await startDemoServer({ name: 'many', manyTools: 250, toolsPageSize: 100 });
    try {
      const c = await connect(server.url);
      const pages: number[] = [];
      const names: string[] = [];
      let cursor: string | undefined;
      do {
        const page = await c.client.listTools(cursor === undefined ? {} : { cursor });
        pages.push(page.tools.length);
        names.push(...page.tools.map((t) => t.name));
        cursor = page.nextCursor;
      } while (cursor !== undefined);
      const total = 250 + DOCUMENTED_TOOLS.length;
      assert.deepEqual(pages, [100, 100, total - 200]);
      assert.equal(new Set(names).size, total);
      assert.ok(names.includes('t0000') && names.includes('t0249') && names.includes('echo'));
      const echo = (await c.client.listTools()).tools.find((t) => t.name === 'echo');
      assert.deepEqual(echo?.inputSchema.required, ['text']);
      assert.equal(textOf(await c.client.callTool({ name: 't0249' })), 'many: t0249');
    } finally {
      await server.close();
    }
  });

  it('can answer with plain JSON instead of SSE (jsonResponse)', async () => {
    const server = await startDemoServer({ name: 'plain', jsonResponse: true });
    try {
      const init = await fetch(server.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body: JSON.stringify({
          jsonrpc: '2.0',
          id: 1,
          method: 'initialize',
          params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
        }),
      });
      assert.equal(init.status, 200);
      assert.match(init.headers.get('content-type') ?? '', /application\/json/);
      const sessionId = init.headers.get('mcp-session-id') ?? undefined;
      assert.ok(sessionId);
      await init.body?.cancel();
      const c = await connect(server.url);
      assert.equal(textOf(await c.client.callTool({ name: 'echo', arguments: { text: 'x' } })), 'plain: x');
    } finally {
      await server.close();
    }
  });

  it('stops accepting connections after close()', async () => {
    const server = await startDemoServer({ name: 'epsilon' });
    await connect(server.url);
    await server.close();
    await assert.rejects(fetch(server.url, { method: 'POST', body: '{}' }));
  });
});
