import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { GatewayContext } from '../../../src/exchange.js';
import { immediateOf, mcpPost, requestBody, requestHeaders, startCall } from '../../support/fake-call.js';
import { inMemoryContext } from '../../support/in-memory-upstream.js';

async function answer(ctx: GatewayContext, msg: unknown, session?: string): Promise<ReturnType<typeof immediateOf>> {
  const call = startCall(ctx);
  await call.send(requestHeaders(mcpPost('/mcp', session === undefined ? {} : { 'mcp-session-id': session, 'mcp-protocol-version': '2025-11-25' })));
  return immediateOf(await call.send(requestBody(msg)));
}

/** logging/setLevel on /mcp, answered by the gateway from what its servers offer. */
async function setLevel(serverCapabilities?: string[]): Promise<{ init: Record<string, unknown>; reply: Record<string, unknown> | null }> {
  const { ctx, close } = await inMemoryContext({ alpha: {} }, serverCapabilities === undefined ? {} : { servers: { alpha: { capabilities: serverCapabilities } } });
  try {
    const init = await answer(ctx, { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } } });
    const session = init.headers.get('mcp-session-id')!;
    const reply = await answer(ctx, { jsonrpc: '2.0', id: 2, method: 'logging/setLevel', params: { level: 'debug' } }, session);
    return { init: (init.json?.['result'] ?? {}) as Record<string, unknown>, reply: reply.json };
  } finally {
    await close();
  }
}

describe('logging/setLevel on the aggregated endpoint', () => {
  it('is accepted when a server offers logging', async () => {
    const { init, reply } = await setLevel();
    assert.ok('logging' in (init['capabilities'] as object));
    assert.deepEqual(reply, { jsonrpc: '2.0', id: 2, result: {} });
  });

  it('is method-not-found when no server offers logging, as initialize said', async () => {
    const { init, reply } = await setLevel(['tools', 'prompts', 'resources']);
    assert.ok(!('logging' in (init['capabilities'] as object)), JSON.stringify(init));
    assert.deepEqual(reply, { jsonrpc: '2.0', id: 2, error: { code: -32601, message: 'Method not found: logging/setLevel' } });
  });
});
