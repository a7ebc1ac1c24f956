import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { connectClient } from '../support/mcp-client.js';
import { useStack } from '../support/stack.js';
import { waitUntil } from '../support/proc.js';

describe('a processor replica started by `mcp-gateway serve`', () => {
  const stack = useStack({
    processor: 'child',
    servers: { alpha: {} },
    extraConfig: { logging: { level: 'warn' } },
  });

  it('logs at the config file’s logging.level', async () => {
    const c = await connectClient(stack().mcpUrl);
    try {
      await c.client.callTool({ name: 'alpha__echo', arguments: { text: 'x' } });
    } finally {
      await c.close();
    }
    const lines = stack().processorLogLines();
    assert.ok(!lines.some((l) => l['level'] === 'info'), `no info lines at level warn: ${JSON.stringify(lines.slice(0, 3))}`);
  });

  it('ends the upstream sessions it alone holds when it shuts down', async () => {
    const alpha = stack().demo['alpha']!;
    const c = await connectClient(stack().mcpUrl);
    await c.client.callTool({ name: 'alpha__echo', arguments: { text: 'y' } });
    // Its own session (catalog, health) and this client's session with alpha.
    await waitUntil(() => alpha.sessionCount() >= 2, { timeoutMs: 5000, what: 'two upstream sessions' });
    await stack().processor.stop();
    assert.equal(alpha.sessionCount(), 0, 'every upstream session was ended');
    const deletes = alpha.requests().filter((r) => r.method === 'DELETE');
    assert.ok(deletes.length >= 2, `${deletes.length} DELETEs`);
    await c.close();
    await stack().processor.start();
  });
});
