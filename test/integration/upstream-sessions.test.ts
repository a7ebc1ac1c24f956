import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { connectClient } from '../support/mcp-client.js';
import { parseMetrics } from '../support/metrics.js';
import { waitUntil } from '../support/proc.js';
import { useStack } from '../support/stack.js';

function textOf(result: object): string {
  const content = (result as { content?: { text?: string }[] }).content ?? [];
  return content.map((c) => c.text ?? '').join('');
}

/** `initialize` POSTs an upstream received (requests without a session id). */
function initializeCount(requests: readonly { method: string; headers: Readonly<Record<string, unknown>> }[]): number {
  return requests.filter((r) => r.method === 'POST' && r.headers['mcp-session-id'] === undefined).length;
}

describe('the gateway’s own session with an upstream that keeps forgetting it', () => {
  const stack = useStack({ servers: { alpha: {}, amnesiac: { demoOptions: { forgetful: true } } } });

  it('is renewed once, then the server is taken for down: lists answer, set-ups stay bounded', async () => {
    const c = await connectClient(stack().mcpUrl);
    try {
      const { tools } = await c.client.listTools();
      assert.ok(tools.some((t) => t.name === 'alpha__echo'), 'the healthy server is listed');
      assert.ok(!tools.some((t) => t.name.startsWith('amnesiac__')), 'the forgetful one is left out');
      const amnesiac = stack().demo['amnesiac']!;
      const before = initializeCount(amnesiac.requests());
      assert.ok(before <= 12, `${before} initialize requests for one warm-up and one list`);
      // Lists within the pause after a failure cost the forgetful server nothing more.
      await c.client.listTools();
      await c.client.listPrompts();
      assert.ok(initializeCount(amnesiac.requests()) - before <= 4, 'no set-up loop');
    } finally {
      await c.close();
    }
  });
});

describe('replaying a request after an upstream lost the client’s session', () => {
  // upstream_timeout 1s: Envoy waits 6 s per ext_proc message unless the processor asks for more.
  const stack = useStack({
    servers: { alpha: {} },
    gateway: { upstream_timeout: '1s', max_buffered_response_bytes: 1024 * 1024 },
  });

  it('waits for the server’s own timeout, past Envoy’s ordinary message timeout', async () => {
    const c = await connectClient(stack().mcpUrl);
    try {
      assert.equal(textOf(await c.client.callTool({ name: 'alpha__echo', arguments: { text: 'a' } })), 'alpha: a');
      await stack().demo['alpha']!.restart();
      const started = Date.now();
      const result = await c.client.callTool({ name: 'alpha__slow_progress', arguments: { seconds: 7, steps: 0 } });
      assert.equal(textOf(result), 'done 0');
      assert.ok(Date.now() - started >= 7000);
      assert.ok(stack().processorLogLines().some((l) => l['msg'] === 'upstream lost its session; re-initialising and retrying once'), 'the call was replayed');
    } finally {
      await c.close();
    }
  });

  it('refuses a reply over max_buffered_response_bytes with a clear error, replayed or not, rather than pass names it cannot check', async () => {
    const c = await connectClient(stack().mcpUrl);
    try {
      const under = await c.client.callTool({ name: 'alpha__link', arguments: { padding: 900 * 1024 } });
      assert.equal((under.content as { uri?: string }[]).find((x) => x.uri !== undefined)?.uri, 'alpha+demo://shared/readme');
      await assert.rejects(c.client.callTool({ name: 'alpha__link', arguments: { padding: 2 * 1024 * 1024 } }), /Upstream response too large for the gateway to check: alpha sent a message over 1048576 bytes/);
      await stack().demo['alpha']!.restart();
      await assert.rejects(c.client.callTool({ name: 'alpha__big', arguments: { bytes: 2 * 1024 * 1024 } }), /Upstream response too large: alpha sent more than 1048576 bytes/);
      // The renewed session serves the next call.
      assert.equal(textOf(await c.client.callTool({ name: 'alpha__echo', arguments: { text: 'b' } })), 'alpha: b');
    } finally {
      await c.close();
    }
  });
});

describe('an upstream that answers a session it forgot with 400, as server-everything does', () => {
  const stack = useStack({ servers: { alpha: { demoOptions: { staleSession400: true } } }, extraConfig: { health: { interval: '200ms', unhealthy_threshold: 2 } } });

  async function serverUp(): Promise<number | undefined> {
    const res = await fetch(`${stack().adminUrl}/metrics`);
    return parseMetrics(await res.text()).get('mcp_server_up{server="alpha"}');
  }

  it('gets a new upstream session for the client and the call once more, invisibly', async () => {
    const c = await connectClient(stack().mcpUrl);
    try {
      assert.equal(textOf(await c.client.callTool({ name: 'alpha__echo', arguments: { text: 'a' } })), 'alpha: a');
      await stack().demo['alpha']!.restart();
      assert.equal(textOf(await c.client.callTool({ name: 'alpha__echo', arguments: { text: 'b' } })), 'alpha: b');
      assert.equal(textOf(await c.client.callTool({ name: 'alpha__echo', arguments: { text: 'c' } })), 'alpha: c');
      assert.ok(stack().processorLogLines().some((l) => l['msg'] === 'upstream lost its session; re-initialising and retrying once'), 'the call was replayed');
    } finally {
      await c.close();
    }
  });

  it('renews the gateway’s own session, so health checks recover and the server stays listed', async () => {
    const alpha = stack().demo['alpha']!;
    await waitUntil(async () => (await serverUp()) === 1, { timeoutMs: 5000, what: 'alpha healthy before the restart' });
    await alpha.restart();
    const before = initializeCount(alpha.requests());
    await waitUntil(() => initializeCount(alpha.requests()) > before, { timeoutMs: 5000, what: 'the gateway to open a new session with alpha' });
    await waitUntil(async () => (await serverUp()) === 1, { timeoutMs: 5000, what: 'alpha healthy again' });
    const c = await connectClient(stack().mcpUrl);
    try {
      const { tools } = await c.client.listTools();
      assert.ok(tools.some((t) => t.name === 'alpha__echo'), tools.map((t) => t.name).join());
    } finally {
      await c.close();
    }
  });
});
