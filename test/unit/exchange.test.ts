import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { GatewayContext } from '../../src/exchange.js';
import { immediateOf, mcpPost, requestBody, requestHeaders, startCall } from '../support/fake-call.js';
import { inMemoryContext } from '../support/in-memory-upstream.js';

describe('the exchange’s deadline per ext_proc message', () => {
  it('asks Envoy for more time on a slow message, then answers with a timeout error itself', async () => {
    const { ctx, close } = await inMemoryContext({ slow: { hang: true } });
    try {
      // Short timeouts, so the test does not wait for the real ones (seconds).
      const fast: GatewayContext = { ...ctx, rc: { ...ctx.rc, extProc: { messageMs: 400, maxMessageMs: 2000, extendAfterMs: 100, extendToMs: 1900, deadlineMs: 900 } } };
      const call = startCall(fast);
      const init = await call.send(requestHeaders(mcpPost('/mcp')));
      assert.ok('request_headers' in init);
      const started = Date.now();
      const reply = await call.send(requestBody({ jsonrpc: '2.0', id: 5, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } } }));
      const waited = Date.now() - started;
      const extension = call.written.find((m) => 'override_message_timeout' in m);
      assert.deepEqual(extension?.['override_message_timeout'], { seconds: '1', nanos: 900_000_000 }, 'more time was asked for, once');
      assert.equal(call.written.filter((m) => 'override_message_timeout' in m).length, 1);
      const r = immediateOf(reply);
      assert.equal(r.status, 504);
      assert.deepEqual(r.json, { jsonrpc: '2.0', id: 5, error: { code: -32000, message: 'Upstream server timed out: the gateway stopped waiting' } });
      assert.ok(waited >= 800, `answered after ${waited} ms, at the deadline`);
    } finally {
      await close();
    }
  });
});
