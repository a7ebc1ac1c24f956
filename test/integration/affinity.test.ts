import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { sha256Hex } from '../../src/auth/api-keys.js';
import { startDemoServer, type DemoServer } from '../fixtures/mcp-servers/demo-server.js';
import { connectClient, rawInitialize, rawRequest, type ConnectedClient } from '../support/mcp-client.js';
import { waitUntil } from '../support/proc.js';
import { useStack, type Stack } from '../support/stack.js';

/**
 * One server `pool` with two hosts (url + fallback) and `strategy: round-robin`. The demo server
 * is a stateful Streamable HTTP server: a session lives on the host that answered `initialize`,
 * and the other host answers 404 "Session not found" to its id. Every path into the upstream must
 * therefore keep a session on its host while new sessions still spread over both.
 */

const SESSIONS = 8;

function textOf(result: object): string {
  const content = (result as { content?: { text?: string }[] }).content ?? [];
  return content.map((c) => c.text ?? '').join('');
}

/** Live upstream sessions per host. */
function counts(hosts: readonly DemoServer[]): number[] {
  return hosts.map((h) => h.sessionCount());
}

function delta(before: readonly number[], now: readonly number[]): number[] {
  return now.map((n, i) => n - (before[i] ?? 0));
}

/**
 * Waits until the processor's start-up catalog fetch is done: it opens the gateway's own
 * upstream session, which would otherwise land in the middle of a test's session counts.
 */
async function catalogReady(stack: Stack, headers: Record<string, string> = {}): Promise<void> {
  const c = await connectClient(stack.mcpUrl, { headers });
  try {
    await waitUntil(async () => (await c.client.listTools()).tools.some((t) => t.name === 'pool__echo'), {
      timeoutMs: 10_000,
      intervalMs: 100,
      what: 'the pool tools to be listed on /mcp',
    });
  } finally {
    await c.close({ terminate: true });
  }
}

describe('round-robin over two hosts of one stateful server: each session stays on its host', () => {
  const hosts: DemoServer[] = [];
  const stack = useStack(async () => {
    // Same name on both hosts: they are two replicas of one server.
    hosts.push(await startDemoServer({ name: 'pool' }), await startDemoServer({ name: 'pool' }));
    return {
      servers: { pool: { url: hosts[0]!.url, fallback: [hosts[1]!.url], strategy: 'round-robin' } },
    };
  });
  before(() => catalogReady(stack()));
  after(async () => {
    await Promise.all(hosts.map((h) => h.close()));
  });

  /** The processor logs this when an upstream answered 404 to a session id it handed out. */
  function sessionLossLogs(): number {
    return stack()
      .processorLogLines()
      .filter((l) => String(l['msg'] ?? '').includes('upstream lost its session')).length;
  }

  it('passthrough /servers/pool/mcp: sessions spread over both hosts, every follow-up reaches its host', async () => {
    const before = counts(hosts);
    const clients: ConnectedClient[] = [];
    try {
      for (let i = 0; i < SESSIONS; i++) clients.push(await connectClient(stack().serverUrl('pool')));
      const spread = delta(before, counts(hosts));
      assert.equal(spread[0]! + spread[1]!, SESSIONS, `one upstream session per client: ${JSON.stringify(spread)}`);
      assert.ok(spread[0]! > 0 && spread[1]! > 0, `sessions on both hosts: ${JSON.stringify(spread)}`);

      await Promise.all(
        clients.map(async (c, i) => {
          const { tools } = await c.client.listTools();
          assert.ok(tools.some((t) => t.name === 'echo'));
          for (let k = 0; k < 4; k++) {
            assert.equal(textOf(await c.client.callTool({ name: 'echo', arguments: { text: `p${i}.${k}` } })), `pool: p${i}.${k}`);
          }
          const read = await c.client.readResource({ uri: 'demo://shared/readme' });
          assert.equal(read.contents[0]?.uri, 'demo://shared/readme');
          await c.client.listPrompts();
          await c.client.ping();
        }),
      );
      // No follow-up opened a second session anywhere.
      const after = delta(before, counts(hosts));
      assert.deepEqual(after, spread);
    } finally {
      await Promise.all(clients.map((c) => c.close({ terminate: true })));
    }
    assert.deepEqual(counts(hosts), before, 'DELETE reached the host of each session');
  });

  it('aggregated /mcp: upstream sessions the gateway sets up spread over both hosts and keep working', async () => {
    const before = counts(hosts);
    const lossesBefore = sessionLossLogs();
    const clients: ConnectedClient[] = [];
    try {
      for (let i = 0; i < SESSIONS; i++) clients.push(await connectClient(stack().mcpUrl));
      // The first call of each client makes the gateway create its upstream session.
      await Promise.all(
        clients.map(async (c, i) => {
          assert.equal(textOf(await c.client.callTool({ name: 'pool__echo', arguments: { text: `a${i}` } })), `pool: a${i}`);
        }),
      );
      const spread = delta(before, counts(hosts));
      assert.equal(spread[0]! + spread[1]!, SESSIONS, `one upstream session per client: ${JSON.stringify(spread)}`);
      assert.ok(spread[0]! > 0 && spread[1]! > 0, `upstream sessions on both hosts: ${JSON.stringify(spread)}`);

      await Promise.all(
        clients.map(async (c, i) => {
          for (let k = 0; k < 4; k++) {
            assert.equal(textOf(await c.client.callTool({ name: 'pool__echo', arguments: { text: `a${i}.${k}` } })), `pool: a${i}.${k}`);
          }
          assert.equal(textOf(await c.client.callTool({ name: 'pool__add', arguments: { a: i, b: 1 } })), String(i + 1));
          const { tools } = await c.client.listTools();
          assert.ok(tools.some((t) => t.name === 'pool__echo'));
          const read = await c.client.readResource({ uri: 'pool+demo://shared/readme' });
          assert.equal(read.contents[0]?.uri, 'pool+demo://shared/readme');
          const prompt = await c.client.getPrompt({ name: 'pool__greet', arguments: { who: 'bob' } });
          assert.ok(prompt.messages.length > 0);
        }),
      );
      assert.deepEqual(delta(before, counts(hosts)), spread, 'no upstream session had to be set up again');
      assert.equal(sessionLossLogs(), lossesBefore, 'no upstream answered 404 to a session id the gateway sent');
    } finally {
      await Promise.all(clients.map((c) => c.close({ terminate: true })));
    }
    assert.deepEqual(counts(hosts), before, 'ending the gateway sessions ended each upstream session on its host');
  });

  it('when a host dies, its sessions get a prompt 404 on passthrough and are set up again on /mcp', async () => {
    const passthrough = stack().serverUrl('pool');
    const before = counts(hosts);
    const raw = [];
    for (let i = 0; i < SESSIONS; i++) raw.push(await rawInitialize(passthrough));
    const aggregated: ConnectedClient[] = [];
    for (let i = 0; i < SESSIONS; i++) aggregated.push(await connectClient(stack().mcpUrl));
    try {
      for (const [i, c] of aggregated.entries()) {
        assert.equal(textOf(await c.client.callTool({ name: 'pool__echo', arguments: { text: `d${i}` } })), `pool: d${i}`);
      }
      const onDead = delta(before, counts(hosts))[0]!;
      assert.ok(onDead > 0, 'some sessions live on the host about to die');

      await hosts[0]!.close();

      // Passthrough: a session of the dead host is gone; the client hears so at once (404, which
      // tells an MCP client to start a new session) instead of waiting or getting a 5xx.
      let notFound = 0;
      for (const s of raw) {
        const started = Date.now();
        const r = await rawRequest(passthrough, {
          headers: { 'mcp-session-id': s.sessionId!, 'mcp-protocol-version': s.protocolVersion },
          body: { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'echo', arguments: { text: 'after' } } },
        });
        assert.ok(Date.now() - started < 3000, `answered in ${Date.now() - started} ms`);
        assert.ok(r.status === 200 || r.status === 404, `HTTP ${r.status}: ${r.text}`);
        if (r.status === 404) notFound++;
      }
      assert.ok(notFound > 0 && notFound < SESSIONS, `only the dead host's sessions are gone (${notFound} of ${SESSIONS})`);
      const fresh = await connectClient(passthrough);
      try {
        assert.equal(textOf(await fresh.client.callTool({ name: 'echo', arguments: { text: 'new' } })), 'pool: new');
      } finally {
        await fresh.close({ terminate: true });
      }

      // Aggregated: the gateway sets a new upstream session up on the surviving host and retries.
      for (const [i, c] of aggregated.entries()) {
        const started = Date.now();
        assert.equal(textOf(await c.client.callTool({ name: 'pool__echo', arguments: { text: `e${i}` } })), `pool: e${i}`);
        assert.ok(Date.now() - started < 3000, `answered in ${Date.now() - started} ms`);
      }
    } finally {
      await Promise.all(aggregated.map((c) => c.close()));
    }
  });
});

describe('round-robin with authentication: passthrough sessions stay bound to their creator and their host', () => {
  const hosts: DemoServer[] = [];
  const keys = { a: randomBytes(24).toString('base64url'), b: randomBytes(24).toString('base64url') };
  const stack = useStack(async () => {
    hosts.push(await startDemoServer({ name: 'pool' }), await startDemoServer({ name: 'pool' }));
    return {
      servers: { pool: { url: hosts[0]!.url, fallback: [hosts[1]!.url], strategy: 'round-robin' } },
      extraConfig: {
        auth: {
          api_keys: [
            { id: 'agent-a', key_sha256: sha256Hex(keys.a) },
            { id: 'agent-b', key_sha256: sha256Hex(keys.b) },
          ],
        },
      },
    };
  });
  before(() => catalogReady(stack(), { 'x-api-key': keys.a }));
  after(async () => {
    await Promise.all(hosts.map((h) => h.close()));
  });

  it('the id the gateway binds is the one the client holds: follow-ups pass, another caller is refused', async () => {
    const before = counts(hosts);
    const clients: ConnectedClient[] = [];
    try {
      for (let i = 0; i < 4; i++) clients.push(await connectClient(stack().serverUrl('pool'), { headers: { 'x-api-key': keys.a } }));
      const spread = delta(before, counts(hosts));
      assert.ok(spread[0]! > 0 && spread[1]! > 0, `sessions on both hosts: ${JSON.stringify(spread)}`);
      for (const [i, c] of clients.entries()) {
        assert.equal(textOf(await c.client.callTool({ name: 'echo', arguments: { text: `k${i}` } })), `pool: k${i}`);
        const stolen = await rawRequest(stack().serverUrl('pool'), {
          headers: { 'x-api-key': keys.b, 'mcp-session-id': c.sessionId! },
          body: { jsonrpc: '2.0', id: 1, method: 'tools/list' },
        });
        assert.equal(stolen.status, 404, stolen.text);
      }
    } finally {
      await Promise.all(clients.map((c) => c.close({ terminate: true })));
    }
  });
});

describe('failover over two hosts of one stateful server: priorities still decide where sessions start', () => {
  const hosts: DemoServer[] = [];
  const stack = useStack(async () => {
    hosts.push(await startDemoServer({ name: 'pool' }), await startDemoServer({ name: 'pool' }));
    return { servers: { pool: { url: hosts[0]!.url, fallback: [hosts[1]!.url], strategy: 'failover' } } };
  });
  before(() => catalogReady(stack()));
  after(async () => {
    await Promise.all(hosts.map((h) => h.close()));
  });

  it('new sessions all go to the healthy primary and keep working on both endpoints', async () => {
    const before = counts(hosts);
    const clients: ConnectedClient[] = [];
    try {
      for (let i = 0; i < 3; i++) clients.push(await connectClient(stack().serverUrl('pool')));
      for (let i = 0; i < 3; i++) clients.push(await connectClient(stack().mcpUrl));
      for (const [i, c] of clients.entries()) {
        const tool = i < 3 ? 'echo' : 'pool__echo';
        for (let k = 0; k < 3; k++) {
          assert.equal(textOf(await c.client.callTool({ name: tool, arguments: { text: `f${i}.${k}` } })), `pool: f${i}.${k}`);
        }
      }
      assert.deepEqual(delta(before, counts(hosts)), [clients.length, 0]);
    } finally {
      await Promise.all(clients.map((c) => c.close({ terminate: true })));
    }
  });
});

describe('weighted over two hosts of one stateful server (the seed’s primary/fallback shape): sessions start by weight', () => {
  const hosts: DemoServer[] = [];
  const stack = useStack(async () => {
    hosts.push(await startDemoServer({ name: 'pool' }), await startDemoServer({ name: 'pool' }));
    // `primary` as the seed writes it; the fallback takes three times the primary's share.
    return { servers: { pool: { primary: hosts[0]!.url, fallback: [{ url: hosts[1]!.url, weight: 3 }], strategy: 'weighted' } } };
  });
  before(() => catalogReady(stack()));
  after(async () => {
    await Promise.all(hosts.map((h) => h.close()));
  });

  it('spreads new sessions 1:3 and keeps each on its host', async () => {
    const before = counts(hosts);
    const clients: ConnectedClient[] = [];
    const n = 24;
    try {
      for (let i = 0; i < n; i++) clients.push(await connectClient(stack().serverUrl('pool')));
      for (const [i, c] of clients.entries()) assert.equal(textOf(await c.client.callTool({ name: 'echo', arguments: { text: `w${i}` } })), `pool: w${i}`);
      const spread = delta(before, counts(hosts));
      assert.equal(spread[0]! + spread[1]!, n, JSON.stringify(spread));
      // Envoy's weighted round robin is deterministic over a run this long: within one of 6:18.
      assert.ok(Math.abs(spread[0]! - n / 4) <= 1, `by weight: ${JSON.stringify(spread)}`);
    } finally {
      await Promise.all(clients.map((c) => c.close({ terminate: true })));
    }
  });
});
