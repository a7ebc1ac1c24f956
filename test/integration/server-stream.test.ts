import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ServerNotification } from '@modelcontextprotocol/sdk/types.js';
import { connectClient, type ConnectedClient } from '../support/mcp-client.js';
import { waitUntil } from '../support/proc.js';
import { startConformanceServer, type ConformanceServer } from '../fixtures/mcp-servers/conformance-server.js';
import { startStack, useStack, type DemoServerHandle, type Stack } from '../support/stack.js';

const WAIT = { timeoutMs: 15_000, intervalMs: 50 };

/** GET streams an upstream received, in order. */
function upstreamGets(server: DemoServerHandle): number {
  return server.requests().filter((r) => r.method === 'GET' && r.headers['mcp-session-id'] !== undefined).length;
}

function has(c: ConnectedClient, pred: (n: ServerNotification) => boolean): boolean {
  return c.notifications.some(pred);
}

function updatedUris(c: ConnectedClient): string[] {
  return c.notifications.filter((n) => n.method === 'notifications/resources/updated').map((n) => String((n.params as { uri: string }).uri));
}

/**
 * A fetch for the SDK client whose current GET stream the test can break off, as a network drop
 * would (the client then resumes with `Last-Event-ID`); records each GET's `Last-Event-ID`.
 */
function breakableFetch(): { fetch: typeof fetch; drop(): void; lastEventIds: (string | null)[]; gets: () => number } {
  let current: AbortController | null = null;
  const lastEventIds: (string | null)[] = [];
  const f: typeof fetch = async (input, init) => {
    if ((init?.method ?? 'GET') !== 'GET') return fetch(input, init);
    const ac = new AbortController();
    current = ac;
    lastEventIds.push(new Headers(init?.headers).get('last-event-id'));
    const signals = init?.signal ? [init.signal, ac.signal] : [ac.signal];
    return fetch(input, { ...init, signal: AbortSignal.any(signals) });
  };
  return {
    fetch: f,
    drop: () => current?.abort(new Error('network drop')),
    lastEventIds,
    gets: () => lastEventIds.length,
  };
}

describe('the server→client stream on /mcp', () => {
  const stack = useStack({
    servers: {
      alpha: { demoOptions: { eventStore: true } },
      beta: {},
    },
  });

  it('carries an upstream’s list_changed to the SDK client, and initialize offers it', async () => {
    const c = await connectClient(stack().mcpUrl);
    try {
      const caps = c.client.getServerCapabilities() ?? {};
      assert.deepEqual(
        { tools: caps.tools, prompts: caps.prompts, resources: caps.resources },
        { tools: { listChanged: true }, prompts: { listChanged: true }, resources: { listChanged: true, subscribe: true } },
      );
      const alpha = stack().demo['alpha']!;
      const before = upstreamGets(alpha);
      // The client's upstream session with alpha exists once it used alpha.
      await c.client.callTool({ name: 'alpha__echo', arguments: { text: 'x' } });
      await waitUntil(() => upstreamGets(alpha) > before, { ...WAIT, what: 'the gateway opens alpha’s stream for the client' });
      alpha.notifyToolListChanged();
      await waitUntil(() => has(c, (n) => n.method === 'notifications/tools/list_changed'), { ...WAIT, what: 'list_changed reaches the client' });
    } finally {
      await c.close({ terminate: true });
    }
  });

  it('drops the catalog at once when a server’s tools change, and tells clients that never used it', async () => {
    const stranger = await connectClient(stack().mcpUrl);
    const user = await connectClient(stack().mcpUrl);
    try {
      const alpha = stack().demo['alpha']!;
      const before = upstreamGets(alpha);
      await user.client.callTool({ name: 'alpha__echo', arguments: { text: 'x' } });
      await waitUntil(() => upstreamGets(alpha) > before, { ...WAIT, what: 'the user’s alpha stream opens' });
      // Cached for the catalog's TTL (60 s) from here on.
      assert.ok(!(await stranger.client.listTools()).tools.some((t) => t.name === 'alpha__added'));
      alpha.addTool('added');
      // A marker after the change on the user's own upstream stream.
      await alpha.notifyLog('emergency', 'after the change');
      const changed = (c: ConnectedClient): number => c.notifications.filter((n) => n.method === 'notifications/tools/list_changed').length;
      await waitUntil(() => changed(stranger) > 0, { ...WAIT, what: 'the client without an alpha session hears the change' });
      await waitUntil(() => has(user, (n) => n.method === 'notifications/message'), { ...WAIT, what: 'the marker reaches the user' });
      // At least once, on its own upstream session; a second time only when the gateway's own
      // watch of alpha (re)opened meanwhile, which announces every list as changed once.
      assert.ok(changed(user) >= 1, 'the user hears it on its own upstream session');
      const { tools } = await stranger.client.listTools();
      assert.ok(tools.some((t) => t.name === 'alpha__added'), 'the next list has the new tool');
      const result = await stranger.client.callTool({ name: 'alpha__added', arguments: {} });
      assert.match(JSON.stringify(result), /added added/);
    } finally {
      await stranger.close({ terminate: true });
      await user.close({ terminate: true });
    }
  });

  it('delivers resources/updated with the namespaced URI only to the session that subscribed', async () => {
    const subscriber = await connectClient(stack().mcpUrl);
    const other = await connectClient(stack().mcpUrl);
    try {
      const alpha = stack().demo['alpha']!;
      const before = upstreamGets(alpha);
      await subscriber.client.subscribeResource({ uri: 'alpha+demo://watched/1' });
      await other.client.callTool({ name: 'alpha__echo', arguments: { text: 'x' } });
      await waitUntil(() => upstreamGets(alpha) >= before + 2, { ...WAIT, what: 'both clients’ alpha streams open' });
      assert.equal(await alpha.notifyResourceUpdated('demo://watched/1'), 1);
      await waitUntil(() => updatedUris(subscriber).length > 0, { ...WAIT, what: 'the subscriber gets the update' });
      assert.deepEqual(updatedUris(subscriber), ['alpha+demo://watched/1']);
      // The other client's stream is open to the same server and gets a later event, not this one.
      alpha.notifyToolListChanged();
      await waitUntil(() => has(other, (n) => n.method === 'notifications/tools/list_changed'), { ...WAIT, what: 'the other client hears alpha' });
      assert.deepEqual(updatedUris(other), []);
    } finally {
      await subscriber.close({ terminate: true });
      await other.close({ terminate: true });
    }
  });

  it('lets each client’s logging/setLevel decide which background log messages reach it', async () => {
    const quiet = await connectClient(stack().mcpUrl);
    const loud = await connectClient(stack().mcpUrl);
    try {
      const alpha = stack().demo['alpha']!;
      const before = upstreamGets(alpha);
      await quiet.client.setLoggingLevel('error');
      for (const c of [quiet, loud]) await c.client.callTool({ name: 'alpha__echo', arguments: { text: 'x' } });
      await waitUntil(() => upstreamGets(alpha) >= before + 2, { ...WAIT, what: 'both clients’ alpha streams open' });
      await alpha.notifyLog('info', 'background info');
      await alpha.notifyLog('error', 'background error');
      const logs = (c: ConnectedClient): string[] => c.notifications.filter((n) => n.method === 'notifications/message').map((n) => String((n.params as { data: unknown }).data));
      await waitUntil(() => logs(loud).length >= 2 && logs(quiet).length >= 1, { ...WAIT, what: () => `log messages (loud: ${logs(loud).join()}, quiet: ${logs(quiet).join()})` });
      assert.deepEqual(logs(loud), ['background info', 'background error']);
      assert.deepEqual(logs(quiet), ['background error']);
    } finally {
      await quiet.close({ terminate: true });
      await loud.close({ terminate: true });
    }
  });

  it('carries roots, sampling and elicitation requests sent outside any request to the client, and the answers back', async () => {
    const roots = [{ uri: 'file:///work/project', name: 'project' }];
    const sampled: string[] = [];
    const c = await connectClient(stack().mcpUrl, {
      roots,
      onSampling: (p) => {
        sampled.push(JSON.stringify(p.messages));
        return { role: 'assistant', content: { type: 'text', text: 'sampled' }, model: 'test-model' };
      },
      onElicitation: (p) => ({ action: 'accept', content: { name: `answer to ${p.message}` } }),
    });
    try {
      const alpha = stack().demo['alpha']!;
      const before = upstreamGets(alpha);
      await c.client.callTool({ name: 'alpha__echo', arguments: { text: 'x' } });
      await waitUntil(() => upstreamGets(alpha) > before, { ...WAIT, what: 'alpha’s stream opens' });
      assert.deepEqual(await alpha.ask('roots'), [{ roots }]);
      assert.deepEqual(await alpha.ask('sampling'), [{ role: 'assistant', content: { type: 'text', text: 'sampled' }, model: 'test-model' }]);
      assert.match(sampled[0] ?? '', /from alpha/);
      assert.deepEqual(await alpha.ask('elicitation'), [{ action: 'accept', content: { name: 'answer to alpha asks' } }]);
    } finally {
      await c.close({ terminate: true });
    }
  });

  it('resumes with Last-Event-ID after a drop without losing or repeating an event', async () => {
    const net = breakableFetch();
    const c = await connectClient(stack().mcpUrl, { fetch: net.fetch });
    try {
      const alpha = stack().demo['alpha']!;
      const before = upstreamGets(alpha);
      for (const n of [1, 2, 3, 4]) await c.client.subscribeResource({ uri: `alpha+demo://r/${n}` });
      await waitUntil(() => upstreamGets(alpha) > before, { ...WAIT, what: 'alpha’s stream opens' });
      await alpha.notifyResourceUpdated('demo://r/1');
      await waitUntil(() => updatedUris(c).length === 1, { ...WAIT, what: 'the first update' });
      const getsBefore = net.gets();
      net.drop();
      // Sent while the client is away: the upstream keeps them, the gateway asks for them again.
      await alpha.notifyResourceUpdated('demo://r/2');
      await alpha.notifyResourceUpdated('demo://r/3');
      await waitUntil(() => net.gets() > getsBefore, { ...WAIT, what: 'the client reconnects' });
      const resumedWith = net.lastEventIds.at(-1);
      assert.ok(resumedWith?.startsWith('g.'), `resumed with the gateway's event id, got ${resumedWith}`);
      await waitUntil(() => updatedUris(c).length >= 3, { ...WAIT, what: () => `the updates sent meanwhile (got ${updatedUris(c).join(' ')})` });
      await alpha.notifyResourceUpdated('demo://r/4');
      await waitUntil(() => updatedUris(c).length >= 4, { ...WAIT, what: 'the update after the resume' });
      assert.deepEqual(updatedUris(c), ['alpha+demo://r/1', 'alpha+demo://r/2', 'alpha+demo://r/3', 'alpha+demo://r/4']);
    } finally {
      await c.close({ terminate: true });
    }
  });

  it('survives an upstream restart: the stream is re-opened with a renewed upstream session', async () => {
    const c = await connectClient(stack().mcpUrl);
    try {
      const beta = stack().demo['beta']!;
      const before = upstreamGets(beta);
      await c.client.callTool({ name: 'beta__echo', arguments: { text: 'x' } });
      await waitUntil(() => upstreamGets(beta) > before, { ...WAIT, what: 'beta’s stream opens' });
      await beta.restart();
      await waitUntil(() => beta.sessionCount() >= 1 && upstreamGets(beta) > before + 1, { ...WAIT, what: 'a new session and stream on the restarted beta' });
      beta.notifyToolListChanged();
      await waitUntil(() => has(c, (n) => n.method === 'notifications/tools/list_changed'), { ...WAIT, what: 'list_changed from the restarted server' });
    } finally {
      await c.close({ terminate: true });
    }
  });

  it('costs one ext_proc message from Envoy per stream, and one to Envoy per event', async () => {
    const c = await connectClient(stack().mcpUrl);
    const alpha = stack().demo['alpha']!;
    for (let i = 0; i < 20; i++) await c.client.subscribeResource({ uri: `alpha+demo://cost/${i}` });
    const sessionId = c.sessionId!;
    // The session stays; only the client's own stream goes.
    await c.close();
    const stats = (): Promise<Record<string, number>> => stack().envoy.stats('^http\\.mcp_gateway\\.ext_proc\\.stream_msgs_');
    const before = upstreamGets(alpha);
    const ac = new AbortController();
    try {
      const base = await stats();
      const res = await fetch(stack().mcpUrl, {
        headers: { accept: 'text/event-stream', 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-11-25' },
        signal: ac.signal,
      });
      assert.equal(res.status, 200);
      await waitUntil(() => upstreamGets(alpha) > before, { ...WAIT, what: 'alpha’s stream opens' });
      for (let i = 0; i < 20; i++) await alpha.notifyResourceUpdated(`demo://cost/${i}`);
      let text = '';
      const decoder = new TextDecoder();
      for await (const chunk of res.body!) {
        text += decoder.decode(chunk as Uint8Array, { stream: true });
        if ((text.match(/notifications\/resources\/updated/g) ?? []).length >= 20) break;
      }
      const after = await stats();
      const delta = (k: string): number => (after[`http.mcp_gateway.ext_proc.${k}`] ?? 0) - (base[`http.mcp_gateway.ext_proc.${k}`] ?? 0);
      assert.equal(delta('stream_msgs_sent'), 1, 'Envoy sends the request headers, nothing per event');
      assert.equal(delta('stream_msgs_received'), 21, 'the processor sends the response headers and one message per event');
    } finally {
      ac.abort();
      await fetch(stack().mcpUrl, { method: 'DELETE', headers: { 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-11-25' } });
    }
  });

  it('ends cleanly on DELETE', async () => {
    const res0 = await connectClient(stack().mcpUrl);
    const sessionId = res0.sessionId!;
    await res0.close();
    const res = await fetch(stack().mcpUrl, {
      headers: { accept: 'text/event-stream', 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-11-25' },
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /text\/event-stream/);
    const body = res.text();
    const del = await fetch(stack().mcpUrl, { method: 'DELETE', headers: { 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-11-25' } });
    assert.equal(del.status, 200);
    // The stream ends (rather than breaking off): text() resolves.
    assert.equal(typeof (await body), 'string');
  });

  it('needs a live session and an SSE Accept', async () => {
    const noSession = await fetch(stack().mcpUrl, { headers: { accept: 'text/event-stream' } });
    assert.equal(noSession.status, 400);
    const unknown = await fetch(stack().mcpUrl, { headers: { accept: 'text/event-stream', 'mcp-session-id': 'nope' } });
    assert.equal(unknown.status, 404);
    const c = await connectClient(stack().mcpUrl);
    try {
      const notAcceptable = await fetch(stack().mcpUrl, { headers: { accept: 'application/json', 'mcp-session-id': c.sessionId! } });
      assert.equal(notAcceptable.status, 406);
    } finally {
      await c.close({ terminate: true });
    }
  });
});

describe('SSE polling on /mcp: a server closes a POST’s stream and the client resumes it with GET', () => {
  let fixture: ConformanceServer;
  let stack: Stack;
  before(async () => {
    fixture = await startConformanceServer();
    stack = await startStack({ servers: { conformance: { url: fixture.url } } });
  });
  after(async () => {
    await stack?.close();
    await fixture?.close();
  });

  it('delivers the result the server sent after closing the stream', async () => {
    const net = breakableFetch();
    const c = await connectClient(stack.mcpUrl, { fetch: net.fetch });
    try {
      const result = await c.client.callTool({ name: 'conformance__test_reconnection', arguments: {} });
      assert.match(JSON.stringify(result), /result delivered after the stream was closed/);
      assert.ok(net.lastEventIds.some((id) => id?.startsWith('p.')), `resumed the POST's stream: ${JSON.stringify(net.lastEventIds)}`);
    } finally {
      await c.close({ terminate: true });
    }
  });
});
