import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { connectClient, rawRequest } from '../support/mcp-client.js';
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
