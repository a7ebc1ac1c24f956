/**
 * A server that speaks only MCP 2026-07-28 (the v2 SDK with `legacy: 'reject'`) behind /mcp:
 * the gateway finds out at its handshake (-32022), speaks that revision to it (envelope in
 * `_meta`, routing headers, `server/discover` for capabilities and health), and serves it to
 * session-based and 2026-07-28 clients alike; the server's list cache hints bound the gateway's
 * catalog and the lists it gives 2026-07-28 clients. Through a real Envoy.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { ResourceUpdatedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { startDualEraServer, type DualEraServer } from '../fixtures/mcp-servers/dual-era-server.js';
import { connectClient } from '../support/mcp-client.js';
import { MODERN, modernClient, textOf } from '../support/modern-client.js';
import { waitUntil } from '../support/proc.js';
import { useStack } from '../support/stack.js';


/** A raw 2026-07-28 tools/list on /mcp: its result. */
async function modernList(url: string): Promise<Record<string, any>> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': MODERN, 'mcp-method': 'tools/list' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: { _meta: { 'io.modelcontextprotocol/protocolVersion': MODERN, 'io.modelcontextprotocol/clientCapabilities': {} } } }),
  });
  return ((await res.json()) as { result: Record<string, any> }).result;
}

describe('a server that speaks only 2026-07-28 behind /mcp', () => {
  let nova: DualEraServer | null = null;
  const stack = useStack(async () => {
    nova = await startDualEraServer('nova', { legacy: 'reject', subscribe: true });
    return { servers: { nova: { url: nova.url }, alpha: {} } };
  });
  after(() => nova?.close());

  it('serves it to a session-based client: lists, calls and reads in that revision, with its routing headers', async () => {
    const legacy = await connectClient(stack().mcpUrl);
    try {
      const tools = (await legacy.client.listTools()).tools;
      assert.ok(tools.some((t) => t.name === 'nova__echo') && tools.some((t) => t.name === 'alpha__echo'), tools.map((t) => t.name).join());
      assert.match(legacy.client.getInstructions() ?? '', /## nova\nDual-era server "nova"\./);
      const seen = nova!.seen.length;
      assert.equal(textOf(await legacy.client.callTool({ name: 'nova__echo', arguments: { text: 'old' } })), 'nova: old');
      // The server checks the envelope and headers itself (a mismatch is its -32020): what it saw.
      assert.deepEqual(
        nova!.seen.slice(seen).filter((s) => s.method === 'tools/call'),
        [{ method: 'tools/call', name: 'echo', version: MODERN }],
      );
      const read = await legacy.client.readResource({ uri: 'nova+note://readme' });
      assert.equal((read.contents[0] as { text?: string }).text, 'readme of nova');
      // Never a session-based handshake after the first refusal, and never a session id.
      assert.ok(nova!.seen.every((s) => s.version === MODERN || s.method === undefined), JSON.stringify(nova!.seen));
      // Its health is checked with server/discover (it has no ping): healthy once checked.
      const deadline = Date.now() + 10_000;
      let novaHealth: { status: string; last_check: unknown } | undefined;
      while (Date.now() < deadline) {
        const all = (await (await fetch(`${stack().adminUrl}/health/servers`)).json()) as { server: string; status: string; last_check: unknown }[];
        novaHealth = all.find((h) => h.server === 'nova');
        if (novaHealth?.status === 'healthy') break;
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(novaHealth?.status, 'healthy', JSON.stringify(novaHealth));
    } finally {
      await legacy.close({ terminate: true });
    }
  });

  it('serves it to a 2026-07-28 client through the gateway', async () => {
    const modern = await modernClient(stack().mcpUrl);
    try {
      const found = await modern.discover();
      assert.ok(found.capabilities.tools !== undefined);
      assert.equal(textOf(await modern.callTool({ name: 'nova__echo', arguments: { text: 'new' } })), 'nova: new');
    } finally {
      await modern.close();
    }
  });

  it('carries an input-required result to a 2026-07-28 client and its retry back to the server, with the client’s own capabilities', async () => {
    const client = await modernClient(stack().mcpUrl, { capabilities: { elicitation: { form: {} } } });
    const asked: string[] = [];
    client.setRequestHandler('elicitation/create', async (request) => {
      asked.push(String((request.params as { message?: unknown }).message));
      return { action: 'accept', content: { confirm: true } };
    });
    try {
      const calls = nova!.seen.filter((s) => s.method === 'tools/call').length;
      assert.equal(textOf(await client.callTool({ name: 'nova__deploy', arguments: { env: 'prod' } })), 'nova: deployed to prod');
      assert.deepEqual(asked, ['Deploy to prod?']);
      // The first call and the retry with the answer, both to nova.
      assert.equal(nova!.seen.filter((s) => s.method === 'tools/call').length, calls + 2);
    } finally {
      await client.close();
    }
  });

  it('asks a session-based client what the server asks through input_required, round after round, and the call completes', async () => {
    const asked: string[] = [];
    const legacy = await connectClient(stack().mcpUrl, {
      onElicitation: async (params) => {
        asked.push(params.message);
        const content: Record<string, string | boolean> = params.message === 'Deploy to prod?' ? { confirm: true } : { answer: params.message === 'Your name?' ? 'Ada' : 'teal' };
        return { action: 'accept', content };
      },
      onSampling: async (params) => {
        asked.push(`sample: ${(params.messages[0]!.content as { text: string }).text}`);
        return { role: 'assistant', model: 'test', content: { type: 'text', text: 'splendid' } };
      },
      roots: async () => {
        asked.push('roots');
        return [{ uri: 'file:///home/ada', name: 'home' }];
      },
    });
    try {
      assert.equal(textOf(await legacy.client.callTool({ name: 'nova__deploy', arguments: { env: 'prod' } })), 'nova: deployed to prod');
      assert.deepEqual(asked, ['Deploy to prod?']);
      asked.length = 0;
      assert.equal(textOf(await legacy.client.callTool({ name: 'nova__survey', arguments: {} })), 'nova: Ada likes teal (splendid); roots file:///home/ada');
      // The first round's three questions at once, then the second round's one.
      assert.deepEqual(asked.slice(0, 3).sort(), ['Your name?', 'roots', 'sample: Opinion?']);
      assert.deepEqual(asked.slice(3), ['Colour, Ada?']);
      // Calls that ask nothing are answered as before.
      assert.equal(textOf(await legacy.client.callTool({ name: 'nova__echo', arguments: { text: 'plain' } })), 'nova: plain');
    } finally {
      await legacy.close({ terminate: true });
    }
  });

  it('carries a refusal back as the call’s error, and takes answers only from the session it asked', async () => {
    const legacy = await connectClient(stack().mcpUrl, { capabilities: { elicitation: { form: {} } } });
    const other = await connectClient(stack().mcpUrl, { capabilities: { elicitation: { form: {} } } });
    try {
      // Raw requests in those sessions, to see each step: the question on the POST's stream, answers
      // from two sessions, the resumed GET.
      const res = await fetch(stack().mcpUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-session-id': legacy.sessionId!, 'mcp-protocol-version': '2025-11-25' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 'raw-1', method: 'tools/call', params: { name: 'nova__deploy', arguments: { env: 'staging' } } }),
      });
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /text\/event-stream/);
      const events = (await res.text()).split('\n\n').filter((e) => e.includes('data: '));
      assert.equal(events.length, 1, 'one question, and the stream closed without the answer');
      const lastEventId = /^id: (.+)$/m.exec(events[0]!)![1]!;
      const question = JSON.parse(/^data: (.+)$/m.exec(events[0]!)![1]!) as { id: string; method: string; params: { message: string } };
      assert.deepEqual([question.method, question.params.message], ['elicitation/create', 'Deploy to staging?']);
      const answer = (session: string, body: object) =>
        fetch(stack().mcpUrl, {
          method: 'POST',
          headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-session-id': session, 'mcp-protocol-version': '2025-11-25' },
          body: JSON.stringify({ jsonrpc: '2.0', id: question.id, ...body }),
        });
      // Another session's answer is dropped (202, as for any answer), so the question stays open.
      assert.equal((await answer(other.sessionId!, { result: { action: 'accept', content: { confirm: true } } })).status, 202);
      // The asked session refuses: the resumed stream ends the call with that refusal.
      assert.equal((await answer(legacy.sessionId!, { error: { code: -32001, message: 'user is away' } })).status, 202);
      const resumed = await fetch(stack().mcpUrl, {
        headers: { accept: 'text/event-stream', 'mcp-session-id': legacy.sessionId!, 'mcp-protocol-version': '2025-11-25', 'last-event-id': lastEventId },
      });
      const data = (await resumed.text()).split('\n').filter((l) => l.startsWith('data: ')).map((l) => JSON.parse(l.slice(6)));
      assert.equal(data.length, 1, JSON.stringify(data));
      assert.equal(data[0].id, 'raw-1');
      assert.equal(data[0].error.code, -32001);
      assert.match(data[0].error.message, /user is away/);
      // Resuming it again finds nothing to wait for: the stream ends at once, empty.
      const again = await fetch(stack().mcpUrl, {
        headers: { accept: 'text/event-stream', 'mcp-session-id': legacy.sessionId!, 'mcp-protocol-version': '2025-11-25', 'last-event-id': lastEventId },
      });
      assert.equal((await again.text()).includes('data: '), false);
    } finally {
      await legacy.close({ terminate: true });
      await other.close({ terminate: true });
    }
  });

  it('hears its list changes on a subscriptions/listen stream: a listening client is told, the catalog refreshes at once', async () => {
    const legacy = await connectClient(stack().mcpUrl);
    const modern = await modernClient(stack().mcpUrl);
    try {
      await legacy.client.listTools();
      const heard = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no tools/list_changed within 10 s')), 10_000);
        modern.fallbackNotificationHandler = async (n) => {
          if (n.method !== 'notifications/tools/list_changed') return;
          clearTimeout(timer);
          resolve();
        };
      });
      const sub = await modern.listen({ toolsListChanged: true });
      assert.equal(sub.honoredFilter.toolsListChanged, true);
      nova!.addTool('late');
      await heard;
      // The catalog dropped nova's tools at once: the new tool is listed well inside the cache TTL.
      const deadline = Date.now() + 5000;
      let names: string[] = [];
      while (Date.now() < deadline) {
        names = (await legacy.client.listTools()).tools.map((t) => t.name);
        if (names.includes('nova__late')) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(names.includes('nova__late'), names.join());
      assert.equal(textOf(await legacy.client.callTool({ name: 'nova__late', arguments: {} })), 'added late');
      await sub.close();
    } finally {
      await legacy.close({ terminate: true });
      await modern.close();
    }
  });

  it('keeps a session-based client’s resource subscriptions and carries the updates on its GET stream, namespaced', async () => {
    const legacy = await connectClient(stack().mcpUrl);
    const heard: string[] = [];
    const metas: unknown[] = [];
    legacy.client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => {
      heard.push(n.params.uri);
      metas.push(n.params._meta);
    });
    const count = (uri: string): number => heard.filter((u) => u === uri).length;
    try {
      assert.equal(legacy.client.getServerCapabilities()?.resources?.subscribe, true, 'the gateway offers what nova offers');
      assert.deepEqual(await legacy.client.subscribeResource({ uri: 'nova+note://readme' }), {});
      // The client's GET stream opens the server's listen: updates reach it once it is open.
      await waitUntil(
        async () => {
          nova!.updateResource('note://readme');
          return count('nova+note://readme') > 0;
        },
        { timeoutMs: 10_000, intervalMs: 100, what: 'a resource update on the GET stream' },
      );
      // Unsubscribed: from its answer on, that URI's updates stop; another subscription's start.
      assert.deepEqual(await legacy.client.unsubscribeResource({ uri: 'nova+note://readme' }), {});
      const before = count('nova+note://readme');
      await legacy.client.subscribeResource({ uri: 'nova+note://other' });
      await waitUntil(
        async () => {
          nova!.updateResource('note://readme');
          nova!.updateResource('note://other');
          return count('nova+note://other') > 0;
        },
        { timeoutMs: 10_000, intervalMs: 100, what: 'the update of the new subscription' },
      );
      assert.equal(count('nova+note://readme'), before, 'no update after unsubscribing');
      // No trace of the listen request the client never made.
      assert.deepEqual(metas.filter((m) => m !== undefined), []);
      // An unknown server's URI is refused as any unknown resource is.
      await assert.rejects(legacy.client.subscribeResource({ uri: 'nowhere+note://readme' }), /Resource not found/);
    } finally {
      await legacy.close({ terminate: true });
    }
  });

  it('subscribes a 2026-07-28 client’s listen stream to its resources through the server’s own listen', async () => {
    const modern = await modernClient(stack().mcpUrl);
    try {
      const updates: { uri: unknown; sub: unknown }[] = [];
      modern.fallbackNotificationHandler = async (n) => {
        if (n.method === 'notifications/resources/updated') updates.push({ uri: n.params?.['uri'], sub: (n.params?.['_meta'] as Record<string, unknown> | undefined)?.['io.modelcontextprotocol/subscriptionId'] });
      };
      const sub = await modern.listen({ resourceSubscriptions: ['nova+note://readme', 'nowhere+x://y'] });
      assert.deepEqual(sub.honoredFilter.resourceSubscriptions, ['nova+note://readme'], 'what no server has is not honoured');
      await waitUntil(
        async () => {
          nova!.updateResource('note://readme');
          return updates.length > 0;
        },
        { timeoutMs: 10_000, intervalMs: 100, what: 'a resource update on the listen stream' },
      );
      assert.equal(updates[0]!.uri, 'nova+note://readme');
      assert.ok(updates[0]!.sub !== undefined, 'tied to the client’s listen request');
      await sub.close();
    } finally {
      await modern.close();
    }
  });

  it('keeps a merged list no longer than a server without cache hints allows', async () => {
    // alpha (session-based) gives no hints: the merged list may not be kept.
    const result = await modernList(stack().mcpUrl);
    assert.equal(result['ttlMs'], 0);
    assert.equal(result['cacheScope'], 'private');
  });
});

describe('cache hints of 2026-07-28 servers', () => {
  const TTL = 60_000;
  let nova: DualEraServer | null = null;
  let vega: DualEraServer | null = null;
  const stack = useStack(async () => {
    // Neither announces changes: only the hints make the catalog ask again.
    nova = await startDualEraServer('nova', { legacy: 'reject', listTtlMs: TTL, listChanged: false });
    vega = await startDualEraServer('vega', { legacy: 'reject', listTtlMs: 1000, listChanged: false });
    return { servers: { nova: { url: nova.url }, vega: { url: vega.url } } };
  });
  after(async () => {
    await nova?.close();
    await vega?.close();
  });

  it('merges them, the shortest winning, and the catalog keeps a list no longer than its server said', async () => {
    const first = await modernList(stack().mcpUrl);
    assert.ok(first['tools'].some((t: { name: string }) => t.name === 'vega__echo'));
    assert.ok(first['ttlMs'] > 0 && first['ttlMs'] <= 1000, String(first['ttlMs']));
    assert.equal(first['cacheScope'], 'private');
    // vega's list goes stale after its 1 s (the configured TTL is longer): the next list refreshes it.
    const listsBefore = vega!.seen.filter((s) => s.method === 'tools/list').length;
    await new Promise((r) => setTimeout(r, 1200));
    await modernList(stack().mcpUrl);
    const deadline = Date.now() + 5000;
    while (vega!.seen.filter((s) => s.method === 'tools/list').length === listsBefore && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.ok(vega!.seen.filter((s) => s.method === 'tools/list').length > listsBefore, 'vega was asked again');
    // nova's 60 s hint keeps its list: it was not asked again.
    assert.equal(nova!.seen.filter((s) => s.method === 'tools/list').length, 1);
  });
});
