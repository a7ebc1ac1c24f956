/**
 * `subscriptions/listen` on /mcp (MCP 2026-07-28): the gateway answers it itself with a stream
 * that fans in every server's list changes and the resource updates the client subscribed to,
 * namespaced and tagged with the subscription id; the caller's tenant decides what it hears; the
 * per-server request timeout does not cut it. Through a real Envoy, with the official v2 client.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Client } from '@modelcontextprotocol/client';
import { sha256Hex } from '../../src/auth/api-keys.js';
import { SHARED_README_URI } from '../fixtures/mcp-servers/demo-server.js';
import { MODERN, modernClient } from '../support/modern-client.js';
import { useStack } from '../support/stack.js';

const SUBSCRIPTION_ID = 'io.modelcontextprotocol/subscriptionId';


/** Resolves with the next notification `method` the client gets (rejects after `ms`). */
function next(client: Client, method: string, ms = 10_000): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${method} within ${ms} ms`)), ms);
    client.fallbackNotificationHandler = async (n) => {
      if (n.method !== method) return;
      clearTimeout(timer);
      resolve(n as Record<string, unknown>);
    };
  });
}

/** A raw listen POST: its status, and the SSE events as they come. */
async function rawListen(url: string, id: string | number, notifications: unknown, headers: Record<string, string> = {}, method = 'subscriptions/listen') {
  const ac = new AbortController();
  const res = await fetch(url, {
    method: 'POST',
    signal: ac.signal,
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': MODERN, 'mcp-method': 'subscriptions/listen', ...headers },
    body: JSON.stringify({
      jsonrpc: '2.0',
      id,
      method,
      params: { notifications, _meta: { 'io.modelcontextprotocol/protocolVersion': MODERN, 'io.modelcontextprotocol/clientCapabilities': {} } },
    }),
  });
  const messages: Record<string, any>[] = [];
  const waiters: (() => void)[] = [];
  let ended = false;
  const pump = (async () => {
    if (!(res.headers.get('content-type') ?? '').startsWith('text/event-stream')) {
      // An error answered at once, as JSON.
      const text = await res.text().catch(() => '');
      if (text !== '') messages.push(JSON.parse(text) as Record<string, any>);
      ended = true;
      return;
    }
    let buf = '';
    try {
      for await (const chunk of res.body ?? []) {
        buf += Buffer.from(chunk as Uint8Array).toString('utf8');
        let i: number;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const data = buf.slice(0, i).split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n');
          buf = buf.slice(i + 2);
          if (data !== '') messages.push(JSON.parse(data));
          waiters.splice(0).forEach((w) => w());
        }
      }
    } catch {
      // aborted
    }
    ended = true;
    waiters.splice(0).forEach((w) => w());
  })();
  return {
    status: res.status,
    contentType: res.headers.get('content-type') ?? '',
    messages,
    get ended() {
      return ended;
    },
    /** Waits until `pred` holds for the messages so far (or the stream ended). */
    async until(pred: (m: Record<string, any>[]) => boolean, ms = 10_000): Promise<void> {
      const deadline = Date.now() + ms;
      while (!pred(messages)) {
        if (ended) throw new Error(`stream ended; got ${JSON.stringify(messages)}`);
        if (Date.now() > deadline) throw new Error(`timed out; got ${JSON.stringify(messages)}`);
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 200);
        });
      }
    },
    async close(): Promise<void> {
      ac.abort();
      await pump;
    },
    done: pump,
  };
}

describe('subscriptions/listen on /mcp', () => {
  // A short per-server timeout: the listen stream must outlive it.
  const stack = useStack({ demoServers: ['alpha', 'beta'], extraConfig: { servers: { alpha: { timeout: '1s' }, beta: { timeout: '1s' } } } });

  it('acknowledges what it honours, then fans in list changes and subscribed resource updates, namespaced', async () => {
    const alpha = stack().demo['alpha'];
    const beta = stack().demo['beta'];
    const client = await modernClient(stack().mcpUrl);
    try {
      const discovered = await client.discover();
      // The gateway offers what its servers offer: the demo servers announce tool and resource changes.
      assert.equal(discovered.capabilities.tools?.listChanged, true);
      assert.equal(discovered.capabilities.resources?.subscribe, true);
      const alphaReadme = `alpha+${SHARED_README_URI}`;
      const betaReadme = `beta+${SHARED_README_URI}`;
      const sessionsBefore = alpha!.sessionCount() + beta!.sessionCount();
      const sub = await client.listen({ toolsListChanged: true, resourcesListChanged: true, resourceSubscriptions: [alphaReadme, betaReadme, 'gamma+demo://x', 'not-namespaced'] });
      // What the servers announce is honoured; URIs no server has are not.
      assert.deepEqual(sub.honoredFilter, {
        toolsListChanged: true,
        ...(discovered.capabilities.resources?.listChanged === true ? { resourcesListChanged: true } : {}),
        resourceSubscriptions: [alphaReadme, betaReadme],
      });
      // One upstream session per server the stream subscribes with.
      assert.equal(alpha!.sessionCount() + beta!.sessionCount(), sessionsBefore + 2);

      // Past the servers' 1 s request timeout the stream is still open.
      await new Promise((r) => setTimeout(r, 1500));
      const toolsChanged = next(client, 'notifications/tools/list_changed');
      beta!.addTool('late');
      const tn = await toolsChanged;
      assert.equal((tn['params'] as any)?._meta?.[SUBSCRIPTION_ID] !== undefined, true);
      const tools = await client.listTools();
      assert.ok(tools.tools.some((t) => t.name === 'beta__late'), 'the change is visible in the list');

      const updated = next(client, 'notifications/resources/updated');
      assert.equal(await beta!.notifyResourceUpdated(SHARED_README_URI), 1);
      const un = await updated;
      assert.equal((un['params'] as any).uri, betaReadme);

      await sub.close();
      assert.equal(await sub.closed, 'local');
      // The stream's upstream sessions end with it.
      const deadline = Date.now() + 5000;
      while (alpha!.sessionCount() + beta!.sessionCount() > sessionsBefore && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.equal(alpha!.sessionCount() + beta!.sessionCount(), sessionsBefore);
    } finally {
      await client.close();
    }
  });

  it('tags every notification with the subscription id, and ends at once when nothing is honoured', async () => {
    const s = await rawListen(stack().mcpUrl, 'sub-7', { resourcesListChanged: true });
    try {
      assert.equal(s.status, 200);
      assert.match(s.contentType, /^text\/event-stream/);
      await s.until((m) => m.length >= 1);
      assert.deepEqual(s.messages[0], {
        jsonrpc: '2.0',
        method: 'notifications/subscriptions/acknowledged',
        params: { notifications: { resourcesListChanged: true }, _meta: { [SUBSCRIPTION_ID]: 'sub-7' } },
      });
      stack().demo['alpha']!.addTool('other');
      // Tool changes were not asked for: a resource-list change is what this stream carries. The
      // demo servers' resources do not change, so nothing comes but keep-alives.
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(s.messages.length, 1, JSON.stringify(s.messages));
    } finally {
      await s.close();
    }

    const empty = await rawListen(stack().mcpUrl, 9, { toolsListChanged: false, resourceSubscriptions: ['gamma+demo://nowhere'] });
    await empty.done;
    assert.equal(empty.messages.length, 2, JSON.stringify(empty.messages));
    assert.deepEqual(empty.messages[0]!['params'].notifications, {});
    assert.equal(empty.messages[1]!['id'], 9);
    assert.equal(empty.messages[1]!['result'].resultType, 'complete');
    assert.equal(empty.messages[1]!['result']._meta[SUBSCRIPTION_ID], 9);
  });

  it('refuses what the revision refuses: a bad filter, a body that is not the listen its header says, an oversized body', async () => {
    const bad = await rawListen(stack().mcpUrl, 'b1', { toolsListChanged: 'yes' });
    await bad.done;
    assert.equal(bad.messages[0]?.['error']?.code, -32602);
    const missing = await rawListen(stack().mcpUrl, 'b2', undefined);
    await missing.done;
    assert.equal(missing.messages[0]?.['error']?.code, -32602);

    // The route is chosen by the header: a call riding it is refused, and never reaches a server.
    const seen = stack().demo['alpha']!.requests().length;
    const sneaky = await fetch(stack().mcpUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': MODERN, 'mcp-method': 'subscriptions/listen', 'mcp-name': 'alpha__echo' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'alpha__echo', arguments: { text: 'x' }, _meta: { 'io.modelcontextprotocol/protocolVersion': MODERN, 'io.modelcontextprotocol/clientCapabilities': {} } } }),
    });
    assert.equal(sneaky.status, 400);
    assert.equal(((await sneaky.json()) as any).error.code, -32020);
    // A session-based client's call with the header is refused the same way.
    const legacy = await fetch(stack().mcpUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-method': 'subscriptions/listen', 'mcp-session-id': 'whatever' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'alpha__echo', arguments: { text: 'x' } } }),
    });
    assert.ok(legacy.status === 400 || legacy.status === 404, String(legacy.status));
    assert.equal(stack().demo['alpha']!.requests().length, seen);

    const big = await fetch(stack().mcpUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': MODERN, 'mcp-method': 'subscriptions/listen' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'subscriptions/listen', params: { notifications: {}, pad: 'x'.repeat(stack().config.gateway.max_body_bytes) } }),
    });
    assert.equal(big.status, 413);
    assert.equal(((await big.json()) as any).error.code, -32000);
  });
});

describe('subscriptions/listen follows the caller’s tenant', () => {
  const KEY = 'listen-key-0123456789';
  const OTHER_KEY = 'other-key-0123456789';
  const stack = useStack({
    demoServers: ['alpha', 'beta'],
    extraConfig: {
      auth: {
        api_keys: [
          { id: 'listener', key_sha256: sha256Hex(KEY), tenant: 'acme' },
          { id: 'other', key_sha256: sha256Hex(OTHER_KEY), tenant: 'globex' },
        ],
      },
      tenants: { acme: { servers: ['alpha'], namespace: 'acme' }, globex: { servers: ['alpha', 'beta'], namespace: 'globex' } },
    },
  });

  it('honours only what the tenant may see, and hears only its servers', async () => {
    const anonymous = await rawListen(stack().mcpUrl, 'a', { toolsListChanged: true });
    assert.equal(anonymous.status, 401);
    await anonymous.done;

    // Another tenant that sees beta: the gateway then watches beta too, and hears its changes.
    const other = await rawListen(stack().mcpUrl, 'o1', { toolsListChanged: true }, { authorization: `Bearer ${OTHER_KEY}` });
    await other.until((m) => m.length >= 1);
    const s = await rawListen(stack().mcpUrl, 't1', { toolsListChanged: true, resourceSubscriptions: [`alpha+${SHARED_README_URI}`, `beta+${SHARED_README_URI}`] }, { authorization: `Bearer ${KEY}` });
    try {
      await s.until((m) => m.length >= 1);
      assert.deepEqual(s.messages[0]!['params'].notifications, { toolsListChanged: true, resourceSubscriptions: [`alpha+${SHARED_README_URI}`] });
      // The gateway's watch on a server it just opened a session with announces its lists as
      // changed once (changes before it opened went unheard): let that pass first.
      await new Promise((r) => setTimeout(r, 1500));
      const changes = (): number => s.messages.filter((x) => x['method'] === 'notifications/tools/list_changed').length;
      const before = changes();
      // beta is outside the tenant: its change is not heard; alpha's is.
      const otherBefore = other.messages.length;
      stack().demo['beta']!.addTool('hidden');
      await other.until((m) => m.length > otherBefore);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(changes(), before, JSON.stringify(s.messages));
      stack().demo['alpha']!.addTool('shown');
      await s.until(() => changes() > before);
      assert.equal(await stack().demo['beta']!.notifyResourceUpdated(SHARED_README_URI), 0, 'no subscription was made with beta');
    } finally {
      await s.close();
      await other.close();
    }
  });
});

describe('subscriptions/listen streams per caller', () => {
  const stack = useStack({ demoServers: ['alpha'], gateway: { max_sessions_per_client: 2 } });

  it('keeps at most gateway.max_sessions_per_client of them for one caller: a new one ends the oldest gracefully', async () => {
    const streams = [];
    for (const id of ['s1', 's2', 's3']) {
      const s = await rawListen(stack().mcpUrl, id, { toolsListChanged: true });
      await s.until((m) => m.length >= 1);
      streams.push(s);
    }
    try {
      // The first ended with its empty result; the other two are open.
      await Promise.race([streams[0]!.done, new Promise((r) => setTimeout(r, 5000))]);
      assert.equal(streams[0]!.ended, true, 'the oldest stream ended');
      assert.equal(streams[0]!.messages.at(-1)!['id'], 's1');
      assert.equal(streams[0]!.messages.at(-1)!['result'].resultType, 'complete');
      assert.equal(streams[1]!.ended || streams[2]!.ended, false);
      stack().demo['alpha']!.addTool('seen');
      for (const s of streams.slice(1)) await s.until((m) => m.some((x) => x['method'] === 'notifications/tools/list_changed'));
    } finally {
      for (const s of streams) await s.close();
    }
  });
});
