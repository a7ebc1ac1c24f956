/**
 * Session bounds end to end (real Envoy, the processor, a demo upstream): one client flooding
 * `initialize` keeps only its own quota of sessions, other clients do not notice, the processor's
 * memory stays flat, and a full gateway refuses new sessions while serving the ones it holds.
 */
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { after, describe, it } from 'node:test';
import { sha256Hex } from '../../src/auth/api-keys.js';
import { httpGet } from '../support/proc.js';
import { parseMetrics } from '../support/metrics.js';
import { RedisServer } from '../support/redis.js';
import { useStack, type StackOptions } from '../support/stack.js';

const FLOOD_KEY = 'mcpgw_flood_0123456789abcdef';
const OTHER_KEY = 'mcpgw_other_0123456789abcdef';
const AUTH = {
  auth: {
    api_keys: [
      { id: 'flood', key_sha256: sha256Hex(FLOOD_KEY) },
      { id: 'other', key_sha256: sha256Hex(OTHER_KEY) },
    ],
    allow_anonymous: true,
  },
  // What is tested here is the session caps alone: the gateway's own rate limit would refuse a
  // flood of initializes long before them.
  gateway: { rate_limit: 'off' },
};

/** Large but allowed (under the 16 KiB default): what each flooded session would keep. */
const LARGE_CAPABILITIES = { roots: { listChanged: true }, experimental: { 'vendor.blob': { data: 'x'.repeat(12_000) } } };

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  json: { result?: unknown; error?: { code: number; message: string } } | null;
  sessionId: string | undefined;
}

/** One MCP POST, optionally from another loopback address (a different client IP for Envoy). */
function post(url: string, body: unknown, headers: Record<string, string> = {}, localAddress?: string): Promise<Reply> {
  const text = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      url,
      {
        method: 'POST',
        headers: { accept: 'application/json, text/event-stream', 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers },
        ...(localAddress !== undefined ? { localAddress } : {}),
        timeout: 30_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const raw = Buffer.concat(chunks).toString('utf8');
          const data = raw.startsWith('event:') || raw.startsWith('data:') ? raw.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5)).at(-1) ?? '' : raw;
          let json: Reply['json'] = null;
          try {
            json = data === '' ? null : (JSON.parse(data) as Reply['json']);
          } catch {
            json = null;
          }
          const sid = res.headers['mcp-session-id'];
          resolve({ status: res.statusCode ?? 0, headers: res.headers, json, sessionId: typeof sid === 'string' ? sid : undefined });
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(text);
  });
}

function initializeBody(capabilities: object = {}): object {
  return { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities, clientInfo: { name: 'limits-test', version: '1' } } };
}

async function open(url: string, headers: Record<string, string> = {}, localAddress?: string, capabilities: object = {}): Promise<string> {
  const r = await post(url, initializeBody(capabilities), headers, localAddress);
  assert.ok(r.sessionId !== undefined, `initialize answered ${r.status} ${JSON.stringify(r.json).slice(0, 300)}`);
  return r.sessionId;
}

async function ping(url: string, session: string, headers: Record<string, string> = {}): Promise<number> {
  const r = await post(url, { jsonrpc: '2.0', id: 'p', method: 'ping' }, { 'mcp-session-id': session, 'mcp-protocol-version': '2025-11-25', ...headers });
  return r.status;
}

/** `count` initializes with `workers` in parallel; the session ids in the order they were issued. */
async function flood(url: string, count: number, headers: Record<string, string>, capabilities: object, workers = 8): Promise<string[]> {
  const ids: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (next < count) {
        next += 1;
        const r = await post(url, initializeBody(capabilities), headers);
        assert.equal(r.status, 200, JSON.stringify(r.json).slice(0, 300));
        ids.push(r.sessionId!);
      }
    }),
  );
  return ids;
}

function settle(): Promise<void> {
  return new Promise((r) => setTimeout(r, 1_000));
}

async function memory(adminUrl: string): Promise<{ rss: number; heap: number }> {
  const m = parseMetrics((await httpGet(`${adminUrl}/metrics`)).text);
  return { rss: m.get('process_resident_memory_bytes') ?? NaN, heap: m.get('nodejs_heap_size_used_bytes') ?? NaN };
}

const MiB = 1024 * 1024;

describe('session limits: one client floods initialize', () => {
  const stack = useStack({ demoServers: ['alpha'], processor: 'child', logLevel: 'warn', extraConfig: AUTH });
  const flooder = { authorization: `Bearer ${FLOOD_KEY}` };
  const other = { authorization: `Bearer ${OTHER_KEY}` };

  it('keeps 100 sessions of the flooding client, leaves other clients alone, and the processor’s memory flat over 20,000 large initializes', { timeout: 600_000 }, async (t) => {
    const url = stack().mcpUrl;
    const otherSession = await open(url, other);
    const anonSession = await open(url);

    // Warm up first: the processor's heap and allocator grow to their working size for 12 KB
    // bodies within the first few thousand requests, whatever the sessions hold.
    await flood(url, 5_000, flooder, LARGE_CAPABILITIES);
    await settle();
    const before = await memory(stack().adminUrl);
    const series: { rss: number; heap: number }[] = [];
    const started = performance.now();
    const flooded: string[] = [];
    for (let round = 0; round < 4; round++) {
      flooded.push(...(await flood(url, 5_000, flooder, LARGE_CAPABILITIES)));
      await settle();
      series.push(await memory(stack().adminUrl));
    }
    const seconds = (performance.now() - started) / 1000;
    const afterFlood = series.at(-1)!;
    const mib = (n: number): string => (n / MiB).toFixed(1);
    const report =
      `20,000 initializes with ${JSON.stringify(LARGE_CAPABILITIES).length} bytes of capabilities in ${seconds.toFixed(1)} s; ` +
      `processor RSS ${mib(before.rss)} MiB, then every 5,000: ${series.map((m) => mib(m.rss)).join(', ')} MiB (${mib(afterFlood.rss - before.rss)} MiB); ` +
      `heap used ${mib(before.heap)} → ${series.map((m) => mib(m.heap)).join(', ')} MiB`;
    t.diagnostic(report);
    process.stderr.write(`session-limits: ${report}\n`);
    // Unbounded, the 20,000 sessions alone would keep over 230 MiB.
    assert.ok(afterFlood.rss - before.rss < 64 * MiB, report);

    // The client's newest 100 sessions are live, every older one is gone.
    const tail: string[] = [];
    for (let i = 0; i < 100; i++) tail.push(await open(url, flooder, undefined, LARGE_CAPABILITIES));
    for (const s of tail) assert.equal(await ping(url, s, flooder), 200);
    for (const s of [...flooded.slice(0, 50), ...flooded.slice(-50)]) assert.equal(await ping(url, s, flooder), 404);

    // Other clients did not notice.
    assert.equal(await ping(url, otherSession, other), 200);
    assert.equal(await ping(url, anonSession), 200);
    const call = await post(url, { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'alpha__echo', arguments: { text: 'after the flood' } } }, { 'mcp-session-id': otherSession, 'mcp-protocol-version': '2025-11-25', ...other });
    assert.match(JSON.stringify(call.json), /after the flood/);
    assert.ok((await open(url, other)) !== undefined);
  });

  it('counts anonymous callers per client address', async () => {
    const url = stack().mcpUrl;
    const neighbour = await open(url, {}, '127.0.0.3');
    const first = await open(url, {}, '127.0.0.2');
    for (let i = 0; i < 100; i++) await open(url, {}, '127.0.0.2');
    assert.equal(await ping(url, first), 404, 'the address’s least recently used session made room');
    assert.equal(await ping(url, neighbour), 200, 'another address keeps its session');
  });

  it('refuses an initialize carrying 1 MiB of capabilities with -32602 and opens no session', async () => {
    const r = await post(stack().mcpUrl, initializeBody({ experimental: { blob: 'x'.repeat(MiB) } }));
    assert.equal(r.status, 200);
    assert.equal(r.json?.error?.code, -32602);
    assert.match(r.json.error.message, /gateway\.max_client_metadata_bytes/);
    assert.equal(r.sessionId, undefined);
  });
});

function fullGatewaySuite(name: string, extra: () => Promise<Record<string, unknown>> | Record<string, unknown>, cleanup: () => Promise<void> = async () => {}): void {
  describe(`session limits: a full gateway (${name})`, () => {
    const stack = useStack(async (): Promise<StackOptions> => ({
      demoServers: ['alpha'],
      gateway: { max_sessions: 20, max_sessions_per_client: 5 },
      extraConfig: await extra(),
    }));
    after(cleanup);

    it('refuses initialize with 503 GW_ERR_SESSION_LIMIT and Retry-After, serves the sessions it holds, and lets a client at its cap rotate', async () => {
      const url = stack().mcpUrl;
      const held: Record<string, string[]> = {};
      for (const ip of ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5']) {
        held[ip] = [];
        for (let i = 0; i < 5; i++) held[ip].push(await open(url, {}, ip));
      }
      const refused = await post(url, initializeBody(), {}, '127.0.0.6');
      assert.equal(refused.status, 503);
      const retryAfter = Number(refused.headers['retry-after']);
      assert.ok(retryAfter >= 1 && retryAfter <= 60, String(refused.headers['retry-after']));
      assert.equal(refused.json?.error?.code, -32000);
      assert.match(refused.json.error.message, /gateway\.max_sessions\b/);
      assert.equal(refused.sessionId, undefined);

      for (const s of held['127.0.0.3']!) assert.equal(await ping(url, s), 200);
      const rotated = await open(url, {}, '127.0.0.2');
      assert.equal(await ping(url, held['127.0.0.2']![0]!), 404);
      assert.equal(await ping(url, rotated), 200);
      assert.equal((await post(url, initializeBody(), {}, '127.0.0.6')).status, 503);
    });
  });
}

fullGatewaySuite('in memory', () => ({}));

let redis: RedisServer | undefined;
fullGatewaySuite(
  'in Redis',
  async () => {
    redis = await RedisServer.start();
    return { redis: { url: redis.url } };
  },
  async () => {
    await redis?.stop();
  },
);
