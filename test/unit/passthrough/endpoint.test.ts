import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { GatewayContext } from '../../../src/exchange.js';
import { immediateOf, mcpPost, mutationOf, requestBody, requestHeaders, responseBody, responseHeaders, startCall } from '../../support/fake-call.js';
import { inMemoryContext } from '../../support/in-memory-upstream.js';

/** /servers/<name>/mcp: the real Exchange and stages, driven as Envoy would drive them. */
describe('passthrough endpoint', () => {
  let ctx: GatewayContext;
  let close: () => Promise<void>;
  before(async () => {
    ({ ctx, close } = await inMemoryContext(
      { alpha: {} },
      { servers: { alpha: { headers: { 'X-Upstream-Key': 'k1' } } }, policies: [{ servers: ['alpha'], tools: { denied: ['secret'] } }] },
    ));
  });
  after(() => close());

  it('strips client credentials and sets the upstream’s own, with a traceparent, at request headers (GET included)', async () => {
    const call = startCall(ctx);
    const m = mutationOf(
      await call.send(requestHeaders({ ':method': 'GET', ':path': '/servers/alpha/mcp', ':authority': '127.0.0.1:8080', accept: 'text/event-stream', authorization: 'Bearer client', 'mcp-session-id': 's' }, true)),
    );
    assert.ok(m.removed.includes('authorization') && m.removed.includes('x-api-key') && m.removed.includes('x-forwarded-client-cert'));
    assert.equal(m.set.get('x-upstream-key') ?? m.set.get('X-Upstream-Key'), 'k1');
    assert.match(m.set.get('traceparent') ?? '', /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/);
  });

  it('keeps names as they are, adds the same trace context to _meta, and fixes the length', async () => {
    const call = startCall(ctx);
    const head = mutationOf(await call.send(requestHeaders(mcpPost('/servers/alpha/mcp'))));
    const m = mutationOf(await call.send(requestBody({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'echo', arguments: {} } })));
    const sent = JSON.parse(m.body!) as { params: { name: string; _meta: { traceparent: string } } };
    assert.equal(sent.params.name, 'echo');
    assert.equal(sent.params._meta.traceparent, head.set.get('traceparent'));
    assert.equal(m.set.get('content-length'), String(Buffer.byteLength(m.body!)));
  });

  it('refuses a forbidden tool as if it did not exist', async () => {
    const call = startCall(ctx);
    await call.send(requestHeaders(mcpPost('/servers/alpha/mcp')));
    const r = immediateOf(await call.send(requestBody({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'secret' } })));
    assert.deepEqual(r.json, { jsonrpc: '2.0', id: 2, error: { code: -32602, message: 'Unknown tool: secret' } });
  });

  it('filters what policy hides out of a list response, across chunk boundaries', async () => {
    const call = startCall(ctx);
    await call.send(requestHeaders(mcpPost('/servers/alpha/mcp')));
    await call.send(requestBody({ jsonrpc: '2.0', id: 3, method: 'tools/list' }));
    const head = mutationOf(await call.send(responseHeaders({ ':status': '200', 'content-type': 'text/event-stream' })));
    assert.ok(head.removed.includes('content-length'));
    const event = 'data: {"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"echo"},{"name":"secret"}]}}\n\n';
    const a = mutationOf(await call.send(responseBody(event.slice(0, 40), false)));
    const b = mutationOf(await call.send(responseBody(event.slice(40), true)));
    const out = (a.body ?? event.slice(0, 40)) + (b.body ?? event.slice(40));
    assert.equal(out, 'data: {"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"echo"}]}}\n\n');
  });
});
