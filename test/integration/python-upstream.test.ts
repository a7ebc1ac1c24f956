import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { connectClient } from '../support/mcp-client.js';
import { startPythonMcpServer, type PythonMcpServer } from '../support/python.js';
import { useStack } from '../support/stack.js';

function textOf(result: object): string {
  return ((result as { content?: { text?: string }[] }).content ?? []).map((c) => c.text ?? '').join('');
}

/**
 * A server written with the official Python SDK (`MCPServer`, Streamable HTTP, its defaults for
 * localhost) behind the gateway, used by the TypeScript SDK's client: on both endpoints it must
 * behave as it does when the client connects to it directly.
 */
describe('an upstream written with the Python SDK', () => {
  const servers: PythonMcpServer[] = [];
  const stack = useStack(async () => {
    const [py, pyjson] = await Promise.all([startPythonMcpServer({ name: 'py' }), startPythonMcpServer({ name: 'pyjson', jsonResponse: true })]);
    servers.push(py, pyjson);
    return { servers: { py: { url: py.url }, pyjson: { url: pyjson.url } } };
  });
  after(async () => {
    await Promise.all(servers.map((s) => s.close()));
  });

  it('is aggregated on /mcp: its tools, resources and instructions, called under its prefix, SSE or JSON', async () => {
    const c = await connectClient(stack().mcpUrl);
    try {
      const names = (await c.client.listTools()).tools.map((t) => t.name);
      assert.ok(names.includes('py__echo') && names.includes('pyjson__echo'), names.join());
      assert.equal(textOf(await c.client.callTool({ name: 'py__echo', arguments: { text: 'hi' } })), 'py: hi');
      assert.equal(textOf(await c.client.callTool({ name: 'pyjson__echo', arguments: { text: 'hi' } })), 'pyjson: hi');
      const uris = (await c.client.listResources()).resources.map((r) => r.uri);
      assert.ok(uris.includes('py+py://notes/readme'), uris.join());
      const read = await c.client.readResource({ uri: 'py+py://notes/readme' });
      assert.equal((read.contents[0] as { text: string }).text, 'readme of py');
      assert.match(c.client.getInstructions() ?? '', /## py\nPython MCP server "py"\./);
    } finally {
      await c.close();
    }
  });

  it('is reached unchanged on its passthrough endpoint', async () => {
    const c = await connectClient(stack().serverUrl('py'));
    try {
      assert.equal(c.client.getServerVersion()?.name, 'py');
      assert.equal(textOf(await c.client.callTool({ name: 'echo', arguments: { text: 'direct' } })), 'py: direct');
    } finally {
      await c.close();
    }
  });

  it('keeps a /mcp session working across its restart', async () => {
    const c = await connectClient(stack().mcpUrl);
    try {
      assert.equal(textOf(await c.client.callTool({ name: 'py__echo', arguments: { text: 'before' } })), 'py: before');
      await servers[0]!.restart();
      assert.equal(textOf(await c.client.callTool({ name: 'py__echo', arguments: { text: 'after' } })), 'py: after');
    } finally {
      await c.close();
    }
  });
});
