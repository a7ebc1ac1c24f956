import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { GatewayContext } from '../../../src/exchange.js';
import { immediateOf, mcpPost, mutationOf, requestBody, requestHeaders, startCall } from '../../support/fake-call.js';
import { inMemoryContext, type InMemoryUpstream } from '../../support/in-memory-upstream.js';

/** Routing on /mcp: the real Exchange and stages, the upstreams in memory. */
describe('aggregated routing', () => {
  let ctx: GatewayContext;
  let upstream: InMemoryUpstream;
  let close: () => Promise<void>;
  let session: string;
  before(async () => {
    ({ ctx, upstream, close } = await inMemoryContext(
      {
        alpha: { tools: [{ name: 'echo', inputSchema: { type: 'object' } }, { name: 'secret', inputSchema: { type: 'object' } }], prompts: [{ name: 'greet' }] },
        beta: { tools: [{ name: 'echo', inputSchema: { type: 'object' } }] },
      },
      { policies: [{ servers: ['alpha'], tools: { denied: ['secret'] } }] },
    ));
    const init = await exchange({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } } }, false);
    session = immediateOf(init.raw).headers.get('mcp-session-id')!;
  });
  after(() => close());

  async function exchange(msg: unknown, withSession = true): Promise<ReturnType<typeof mutationOf> & { raw: Record<string, unknown> }> {
    const call = startCall(ctx);
    await call.send(requestHeaders(mcpPost('/mcp', withSession ? { 'mcp-session-id': session, 'mcp-protocol-version': '2025-11-25' } : {})));
    const reply = await call.send(requestBody(msg));
    return Object.assign(mutationOf(reply), { raw: reply });
  }

  it('sends tools/call to the owning server under its own name, in the client’s upstream session', async () => {
    const r = await exchange({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'beta__echo', arguments: { x: 1 } } });
    assert.equal(r.set.get('x-mcpgw-backend'), 'beta');
    assert.equal(r.clearRouteCache, true, 'Envoy picks the route again');
    const body = JSON.parse(r.body!) as { id: number; params: { name: string; arguments: unknown; _meta: { traceparent: string } } };
    assert.equal(body.id, 7);
    assert.equal(body.params.name, 'echo');
    assert.deepEqual(body.params.arguments, { x: 1 });
    assert.equal(r.set.get('content-length'), String(Buffer.byteLength(r.body!)));
    assert.equal(r.set.get('traceparent'), body.params._meta.traceparent, 'one child span, in the header and in _meta');
    const upstreamSession = r.set.get('mcp-session-id');
    assert.match(upstreamSession ?? '', /^beta-s\d+$/, 'the upstream session replaces the gateway one');
    assert.equal(upstream.count('beta', 'initialize') >= 2, true, 'the client’s own upstream session was set up');
    // The next call reuses it.
    const again = await exchange({ jsonrpc: '2.0', id: 8, method: 'tools/call', params: { name: 'beta__echo', arguments: {} } });
    assert.equal(again.set.get('mcp-session-id'), upstreamSession);
  });

  it('routes resources/read and completion references by their namespaced forms', async () => {
    const read = await exchange({ jsonrpc: '2.0', id: 9, method: 'resources/read', params: { uri: 'alpha+file:///x?y=1' } });
    assert.equal(read.set.get('x-mcpgw-backend'), 'alpha');
    assert.equal((JSON.parse(read.body!) as { params: { uri: string } }).params.uri, 'file:///x?y=1');
    const complete = await exchange({ jsonrpc: '2.0', id: 10, method: 'completion/complete', params: { ref: { type: 'ref/prompt', name: 'alpha__greet' }, argument: { name: 'who', value: 'a' } } });
    assert.equal((JSON.parse(complete.body!) as { params: { ref: { name: string } } }).params.ref.name, 'greet');
  });

  it('answers a missing, an unprefixed and a forbidden tool alike, without reaching an upstream', async () => {
    const before = upstream.calls.filter((c) => c.method === 'tools/call').length;
    const answers = [];
    for (const name of ['alpha__nope', 'echo', 'alpha__secret', 'gamma__echo']) {
      const r = await exchange({ jsonrpc: '2.0', id: name, method: 'tools/call', params: { name } });
      const imm = immediateOf(r.raw);
      answers.push({ status: imm.status, error: imm.json?.['error'] });
    }
    for (const [i, a] of answers.entries()) {
      assert.equal(a.status, 200);
      assert.deepEqual(a.error, { code: -32602, message: `Unknown tool: ${['alpha__nope', 'echo', 'alpha__secret', 'gamma__echo'][i]}` });
    }
    assert.equal(upstream.calls.filter((c) => c.method === 'tools/call').length, before);
  });

  it('refuses params the route needs with -32602, keeping the request id', async () => {
    const r = immediateOf((await exchange({ jsonrpc: '2.0', id: 'p', method: 'resources/read', params: {} })).raw);
    assert.deepEqual(r.json, { jsonrpc: '2.0', id: 'p', error: { code: -32602, message: 'Invalid params: uri is required' } });
  });

  it('answers the merged list itself, with prefixed names and the forbidden tool left out', async () => {
    const r = immediateOf((await exchange({ jsonrpc: '2.0', id: 'l', method: 'tools/list' })).raw);
    const names = ((r.json?.['result'] as { tools: { name: string }[] }).tools ?? []).map((t) => t.name);
    assert.deepEqual(names, ['alpha__echo', 'beta__echo']);
  });
});
