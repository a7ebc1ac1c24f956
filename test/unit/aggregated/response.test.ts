import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { GatewayContext } from '../../../src/exchange.js';
import { immediateOf, mcpPost, mutationOf, requestBody, requestHeaders, responseBody, responseHeaders, startCall, type FakeCall } from '../../support/fake-call.js';
import { inMemoryContext, type InMemoryUpstream } from '../../support/in-memory-upstream.js';

/** Responses on /mcp: the real Exchange and stages, the upstreams in memory. */
describe('aggregated responses', () => {
  let ctx: GatewayContext;
  let upstream: InMemoryUpstream;
  let close: () => Promise<void>;
  let session: string;
  before(async () => {
    ({ ctx, upstream, close } = await inMemoryContext({ alpha: { tools: [{ name: 'echo', inputSchema: { type: 'object' } }] } }));
    const call = startCall(ctx);
    await call.send(requestHeaders(mcpPost('/mcp')));
    const init = await call.send(requestBody({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } } }));
    session = immediateOf(init).headers.get('mcp-session-id')!;
  });
  after(() => close());

  /** A tools/call forwarded to alpha, up to the point where the upstream answers. */
  async function forwarded(id: number): Promise<{ call: FakeCall; upstreamSession: string }> {
    const call = startCall(ctx);
    await call.send(requestHeaders(mcpPost('/mcp', { 'mcp-session-id': session })));
    const fwd = mutationOf(await call.send(requestBody({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'alpha__echo', arguments: { n: id } } })));
    return { call, upstreamSession: fwd.set.get('mcp-session-id')! };
  }

  it('puts the gateway session on the response and rewrites SSE events: URIs namespaced, server requests tagged', async () => {
    const { call, upstreamSession } = await forwarded(2);
    const head = mutationOf(await call.send(responseHeaders({ ':status': '200', 'content-type': 'text/event-stream', 'mcp-session-id': upstreamSession })));
    assert.equal(head.set.get('mcp-session-id'), session, 'the client only ever sees the gateway session');
    assert.ok(head.removed.includes('content-length'));
    const events =
      'data: {"jsonrpc":"2.0","id":"u1","method":"sampling/createMessage","params":{}}\n\n' +
      'data: {"jsonrpc":"2.0","id":2,"result":{"content":[{"type":"resource_link","uri":"file:///a","name":"a"}]}}\n\n';
    const cut = 37;
    const first = mutationOf(await call.send(responseBody(events.slice(0, cut), false)));
    const rest = mutationOf(await call.send(responseBody(events.slice(cut), true)));
    const out = (first.body ?? '') + (rest.body ?? events.slice(cut));
    assert.match(out, /"id":"mcpgw:alpha:su1"/);
    assert.match(out, /"uri":"alpha\+file:\/\/\/a"/);
  });

  it('gives task ids in status notifications and related-task _meta the server’s prefix', async () => {
    const { call, upstreamSession } = await forwarded(3);
    await call.send(responseHeaders({ ':status': '200', 'content-type': 'text/event-stream', 'mcp-session-id': upstreamSession }));
    const related = { 'io.modelcontextprotocol/related-task': { taskId: 't-1' } };
    const events = [
      { jsonrpc: '2.0', method: 'notifications/tasks/status', params: { taskId: 't-1', status: 'working' } },
      { jsonrpc: '2.0', id: 'u2', method: 'elicitation/create', params: { message: 'ok?', _meta: related } },
      { jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'x', _meta: related } },
      { jsonrpc: '2.0', id: 3, result: { content: [], _meta: related } },
    ];
    const out = mutationOf(await call.send(responseBody(events.map((e) => `data: ${JSON.stringify(e)}\n\n`).join(''), true))).body ?? '';
    const seen = out.split('\n').filter((l) => l.startsWith('data: ')).map((l) => JSON.parse(l.slice(6)) as Record<string, any>);
    assert.equal(seen[0]!['params'].taskId, 'alpha+t-1');
    assert.equal(seen[1]!['params']._meta['io.modelcontextprotocol/related-task'].taskId, 'alpha+t-1');
    assert.equal(seen[1]!['id'], 'mcpgw:alpha:su2');
    assert.equal(seen[2]!['params']._meta['io.modelcontextprotocol/related-task'].taskId, 'alpha+t-1');
    assert.equal(seen[3]!['result']._meta['io.modelcontextprotocol/related-task'].taskId, 'alpha+t-1');
  });

  it('answers Envoy’s own 503 as a JSON-RPC error naming the server', async () => {
    const { call } = await forwarded(3);
    const r = immediateOf(await call.send(responseHeaders({ ':status': '503', 'content-type': 'text/plain' })));
    assert.equal(r.status, 503);
    assert.deepEqual(r.json, { jsonrpc: '2.0', id: 3, error: { code: -32000, message: 'Upstream server unavailable: alpha' } });
  });

  it('replays a request once in a new upstream session when the upstream forgot the old one', async () => {
    const { call, upstreamSession } = await forwarded(4);
    upstream.restart('alpha');
    const r = immediateOf(await call.send(responseHeaders({ ':status': '404', 'content-type': 'application/json' })));
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('mcp-session-id'), session);
    assert.deepEqual((r.json?.['result'] as { content: unknown[] }).content, [{ type: 'text', text: 'alpha: {"n":4}' }]);
    // The next request goes to the new upstream session.
    const next = await forwarded(5);
    assert.notEqual(next.upstreamSession, upstreamSession);
  });
});

/** A tool's structuredContent against its outputSchema (`filters.validate.structured_content`). */
describe('aggregated responses: structured results checked against the outputSchema', () => {
  let ctx: GatewayContext;
  let close: () => Promise<void>;
  let session: string;
  const outputSchema = { type: 'object', properties: { value: { type: 'number' }, unit: { type: 'string' } }, required: ['value'] };
  before(async () => {
    ({ ctx, close } = await inMemoryContext(
      { alpha: { tools: [{ name: 'measure', inputSchema: { type: 'object' }, outputSchema }, { name: 'free', inputSchema: { type: 'object' } }] } },
      { filters: { validate: { structured_content: true } } },
    ));
    const call = startCall(ctx);
    await call.send(requestHeaders(mcpPost('/mcp')));
    const init = await call.send(requestBody({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } } }));
    session = immediateOf(init).headers.get('mcp-session-id')!;
  });
  after(() => close());

  async function answer(tool: string, id: number, result: Record<string, unknown>): Promise<Record<string, any>> {
    const call = startCall(ctx);
    await call.send(requestHeaders(mcpPost('/mcp', { 'mcp-session-id': session })));
    const fwd = mutationOf(await call.send(requestBody({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: `alpha__${tool}`, arguments: {} } })));
    await call.send(responseHeaders({ ':status': '200', 'content-type': 'application/json', 'mcp-session-id': fwd.set.get('mcp-session-id')! }));
    const body = JSON.stringify({ jsonrpc: '2.0', id, result });
    const out = mutationOf(await call.send(responseBody(body, true))).body ?? body;
    return JSON.parse(out) as Record<string, any>;
  }

  it('passes a result that matches, and withholds one that does not for an error naming the path', async () => {
    const good = await answer('measure', 2, { content: [], structuredContent: { value: 3, unit: 'm' } });
    assert.deepEqual(good['result'].structuredContent, { value: 3, unit: 'm' });
    const bad = await answer('measure', 3, { content: [], structuredContent: { value: 'three' } });
    assert.equal(bad['result'], undefined);
    assert.deepEqual(bad['error'], {
      code: -32000,
      message: "Result withheld: structuredContent/value must be number (the tool's outputSchema)",
      data: { filter: 'validate', path: '/value' },
    });
    // A tool without an outputSchema: nothing to check its structuredContent against.
    const free = await answer('free', 4, { content: [], structuredContent: { anything: true } });
    assert.deepEqual(free['result'].structuredContent, { anything: true });
  });
});
