/**
 * Long-lived client streams on passthrough endpoints: a 2026-07-28 `subscriptions/listen` POST is
 * not cut by the server's request timeout, only by `gateway.stream_idle_timeout`; the routing
 * headers that choose its route must say what the body says. Through a real Envoy, with a small
 * stateless upstream that holds listen streams open as a 2026-07-28 server does.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import { useStack } from '../support/stack.js';

const MODERN = '2026-07-28';

interface ListenUpstream {
  readonly url: string;
  /** JSON-RPC methods it received, in order. */
  readonly methods: string[];
  close(): Promise<void>;
}

/**
 * Answers `subscriptions/listen` with an event stream: one notification every 300 ms for
 * `activeMs`, then silence for `quietMs`, then the end of the stream; anything else with `{}`.
 */
async function startListenUpstream(activeMs: number, quietMs: number): Promise<ListenUpstream> {
  const methods: string[] = [];
  const server: Server = createServer((req, res) => {
    let raw = '';
    req.on('data', (c: Buffer) => (raw += c.toString('utf8')));
    req.on('end', () => {
      const msg = JSON.parse(raw || '{}') as { id?: unknown; method?: string };
      methods.push(msg.method ?? '');
      if (msg.method !== 'subscriptions/listen') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ jsonrpc: '2.0', id: msg.id ?? null, result: { resultType: 'complete' } }));
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      const started = Date.now();
      let n = 0;
      const tick = setInterval(() => {
        if (Date.now() - started >= activeMs) {
          clearInterval(tick);
          setTimeout(() => res.end(), quietMs);
          return;
        }
        res.write(`data: ${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/resources/updated', params: { uri: `test://n/${n++}` } })}\n\n`);
      }, 300);
      res.on('close', () => clearInterval(tick));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    methods,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

interface StreamRun {
  readonly status: number;
  /** ms after the request when each event arrived. */
  readonly eventsAt: number[];
  /** ms after the request when the stream ended. */
  readonly endedAt: number;
  readonly body: string;
}

async function listen(url: string, headers: Record<string, string>, body: unknown = { jsonrpc: '2.0', id: 1, method: 'subscriptions/listen', params: {} }): Promise<StreamRun> {
  const started = Date.now();
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': MODERN, ...headers },
    body: JSON.stringify(body),
  });
  const eventsAt: number[] = [];
  let text = '';
  const decoder = new TextDecoder();
  try {
    for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
      const part = decoder.decode(chunk, { stream: true });
      text += part;
      for (let i = 0; i < part.split('data: ').length - 1; i++) eventsAt.push(Date.now() - started);
    }
  } catch {
    // A stream Envoy cuts ends the same way for the test: at endedAt.
  }
  return { status: res.status, eventsAt, endedAt: Date.now() - started, body: text };
}

describe('subscriptions/listen on a passthrough endpoint', () => {
  let upstream: ListenUpstream | null = null;
  const stack = useStack(async () => {
    // Active 2.4 s (past the server's 1 s timeout), then quiet 5 s (past the 2 s stream idle timeout).
    upstream = await startListenUpstream(2_400, 5_000);
    return { servers: { modern: { url: upstream.url, timeout: '1s' } }, gateway: { stream_idle_timeout: '2s' } };
  });
  after(() => upstream?.close());

  it('outlives the server’s request timeout and ends only when it idles past stream_idle_timeout', async () => {
    const run = await listen(stack().serverUrl('modern'), { 'mcp-method': 'subscriptions/listen' });
    assert.equal(run.status, 200, run.body);
    const late = run.eventsAt.filter((t) => t > 1_500);
    assert.ok(late.length >= 2, `events after the 1 s server timeout: ${run.eventsAt.join(',')}`);
    // Last event at about 2.1–2.4 s; the idle bound (2 s) ends the stream well before the server would (7.4 s).
    assert.ok(run.endedAt >= run.eventsAt.at(-1)! + 1_500 && run.endedAt < 6_000, `ended at ${run.endedAt} ms, events at ${run.eventsAt.join(',')}`);
  });

  it('is cut at the server’s request timeout when it does not say what it is (no Mcp-Method)', async () => {
    const run = await listen(stack().serverUrl('modern'), {});
    // Envoy stops the response at the 1 s timeout (the connection closes a moment later).
    assert.ok(run.eventsAt.length > 0 && run.eventsAt.every((t) => t < 1_200), `events at ${run.eventsAt.join(',')}, ended at ${run.endedAt} ms`);
  });

  it('refuses routing headers that disagree with the body, before the server sees the request', async () => {
    const before = upstream!.methods.length;
    for (const [headers, body] of [
      [{ 'mcp-method': 'subscriptions/listen' }, { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'x', arguments: {} } }],
      [{ 'mcp-method': 'tools/call', 'mcp-name': 'other' }, { jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'x', arguments: {} } }],
    ] as const) {
      const res = await fetch(stack().serverUrl('modern'), {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': MODERN, ...headers },
        body: JSON.stringify(body),
      });
      assert.equal(res.status, 400);
      const err = ((await res.json()) as { id: unknown; error: { code: number; message: string } });
      assert.equal(err.id, body.id);
      assert.equal(err.error.code, -32020);
      assert.match(err.error.message, /^Header mismatch: Mcp-(Method|Name) header/);
    }
    assert.equal(upstream!.methods.length, before);
    // Matching headers pass.
    const ok = await fetch(stack().serverUrl('modern'), {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json', 'mcp-protocol-version': MODERN, 'mcp-method': 'tools/call', 'mcp-name': 'x' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 4, method: 'tools/call', params: { name: 'x', arguments: {} } }),
    });
    assert.equal(ok.status, 200);
    assert.deepEqual(upstream!.methods.slice(before), ['tools/call']);
  });
});
