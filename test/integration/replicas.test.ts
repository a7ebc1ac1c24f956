import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { parseConfig } from '../../src/config/load.js';
import { renderEnvoyBootstrap } from '../../src/envoy/bootstrap.js';
import { startDemoServer, type DemoServer } from '../fixtures/mcp-servers/demo-server.js';
import { startEnvoy, type EnvoyHandle } from '../support/envoy.js';
import { connectClient, rawInitialize, rawRequest } from '../support/mcp-client.js';
import { freePorts } from '../support/ports.js';
import { waitUntil } from '../support/proc.js';
import { RedisServer } from '../support/redis.js';
import { Replica, waitForProcessorHosts as waitForProcessorHostsIn } from '../support/replica.js';
import { Traffic } from '../support/traffic.js';

function textOf(result: object): string {
  return ((result as { content?: { text?: string }[] }).content ?? []).map((c) => c.text ?? '').join('');
}

describe('two processor replicas behind one Envoy, state in Redis', () => {
  let redis: RedisServer;
  let alpha: DemoServer;
  let envoy: EnvoyHandle;
  let replicas: Replica[];
  let dir: string;
  let mcpUrl = '';
  let passthroughUrl = '';
  let envoyAdmin = '';

  before(async () => {
    redis = await RedisServer.start();
    alpha = await startDemoServer({ name: 'alpha' });
    const [listen, internal, envoyAdminPort, g1, g2, a1, a2] = await freePorts(7);
    const config = parseConfig({
      gateway: {
        listen: `127.0.0.1:${listen}`,
        internal: `127.0.0.1:${internal}`,
        envoy_admin: `127.0.0.1:${envoyAdminPort}`,
        processor: [`127.0.0.1:${g1}`, `127.0.0.1:${g2}`],
        admin: `127.0.0.1:${a1}`,
      },
      servers: { alpha: { url: alpha.url } },
      rate_limits: { alpha: { requests_per_minute: 6000, burst_size: 6000, tools: [{ match: 'add', requests_per_minute: 1, burst_size: 20 }] } },
      redis: { url: redis.url, timeout: '200ms', limits_on_error: 'fail-open' },
      logging: { operations: false },
    });
    dir = mkdtempSync(join(tmpdir(), 'mcpgw-replicas-'));
    const file = join(dir, 'gateway.yaml');
    writeFileSync(file, stringify(config));
    replicas = [new Replica(file, `127.0.0.1:${g1}`, `127.0.0.1:${a1}`), new Replica(file, `127.0.0.1:${g2}`, `127.0.0.1:${a2}`)];
    await Promise.all(replicas.map((r) => r.start()));
    envoy = await startEnvoy(renderEnvoyBootstrap(config));
    envoyAdmin = envoy.adminUrl;
    mcpUrl = `http://127.0.0.1:${listen}/mcp`;
    passthroughUrl = `http://127.0.0.1:${listen}/servers/alpha/mcp`;
    await waitForProcessorHosts(2);
  });

  after(async () => {
    await envoy?.stop();
    await Promise.all((replicas ?? []).map((r) => r.stop()));
    await alpha?.close();
    await redis?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function waitForProcessorHosts(n: number): Promise<void> {
    await waitForProcessorHostsIn(envoyAdmin, n);
  }

  it('enforces one shared limit exactly across both replicas', async () => {
    const init = await rawInitialize(mcpUrl);
    const sid = init.sessionId!;
    const before = await Promise.all(replicas.map((r) => r.requestsServed()));
    const results = await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        rawRequest(mcpUrl, {
          headers: { 'mcp-session-id': sid },
          body: { jsonrpc: '2.0', id: i, method: 'tools/call', params: { name: 'alpha__add', arguments: { a: i, b: 1 } } },
        }),
      ),
    );
    const after = await Promise.all(replicas.map((r) => r.requestsServed()));
    assert.ok(after[0]! > before[0]! && after[1]! > before[1]!, `both replicas served: ${JSON.stringify({ before, after })}`);
    const statuses = results.map((r) => r.status);
    const odd = results.find((r) => r.status !== 200 && r.status !== 429);
    assert.equal(odd, undefined, odd?.text);
    assert.equal(statuses.filter((s) => s === 200).length, 20, statuses.join(','));
    assert.equal(statuses.filter((s) => s === 429).length, 40);
  });

  it('serves a session from either replica, survives one being killed and restarted', async () => {
    const c = await connectClient(mcpUrl);
    try {
      assert.equal(textOf(await c.client.callTool({ name: 'alpha__echo', arguments: { text: 'one' } })), 'alpha: one');
      replicas[0]!.kill();
      // A request in flight at the moment of the kill may fail; once Envoy has seen the replica
      // go (health check, or a refused connection that is retried on another replica), none may.
      await waitForProcessorHosts(1);
      for (let i = 0; i < 8; i++) {
        assert.equal(textOf(await c.client.callTool({ name: 'alpha__echo', arguments: { text: `k${i}` } })), `alpha: k${i}`);
      }
      await replicas[0]!.start();
      await waitForProcessorHosts(2);
      // Now take the other one away: the restarted replica alone must carry the old session.
      replicas[1]!.kill();
      await waitForProcessorHosts(1);
      const served = await replicas[0]!.requestsServed();
      for (let i = 0; i < 8; i++) {
        assert.equal(textOf(await c.client.callTool({ name: 'alpha__echo', arguments: { text: `r${i}` } })), `alpha: r${i}`);
      }
      assert.ok((await replicas[0]!.requestsServed()) >= served + 8, 'the restarted replica served the old session');
      await replicas[1]!.start();
      await waitForProcessorHosts(2);
    } finally {
      await c.close();
    }
  });

  it('loses no request when a replica is stopped with SIGTERM under load, and none when it comes back', async () => {
    const init = await rawInitialize(mcpUrl);
    const sid = init.sessionId!;
    // Closed loop: each worker sends its next call when the previous one is answered.
    const traffic = new Traffic(
      mcpUrl,
      sid,
      (i) => ({ jsonrpc: '2.0', id: i, method: 'tools/call', params: { name: 'alpha__echo', arguments: { text: `t${i}` } } }),
      { workers: 4, gapMs: 20, timeoutMs: 10_000 },
    );
    const moreAnswers = async (n: number, what: string): Promise<void> => {
      const target = traffic.outcomes.length + n;
      await waitUntil(() => traffic.outcomes.length >= target, { timeoutMs: 15_000, what });
    };
    const victim = replicas[0]!;
    try {
      await moreAnswers(40, 'load to start');
      victim.terminate();
      // Draining: it says so, Envoy's gRPC health check takes it out, and only then does it stop.
      await waitUntil(async () => {
        const r = await victim.readyz();
        return r.status === 503 && r.text.includes('draining');
      }, { timeoutMs: 5_000, what: 'the replica to report draining' });
      await waitForProcessorHosts(1);
      await victim.exited();
      assert.match(victim.output.text(), /draining/);
      await moreAnswers(40, 'load on the remaining replica');
      await victim.start();
      await waitForProcessorHosts(2);
      const served = await victim.requestsServed();
      await moreAnswers(40, 'load on both replicas again');
      await waitUntil(async () => (await victim.requestsServed()) > served, { timeoutMs: 10_000, what: 'the restarted replica to take requests' });
    } finally {
      await traffic.stop();
    }
    const failed = traffic.outcomes.filter((o) => o.status !== 200 || o.rpcCode !== null);
    assert.ok(traffic.outcomes.length >= 120, `${traffic.outcomes.length} requests`);
    assert.deepEqual(failed.slice(0, 5), [], `${failed.length} of ${traffic.outcomes.length} requests failed`);
  });

  it('never hangs when Redis dies mid-traffic, and recovers when it is back', async () => {
    const init = await rawInitialize(mcpUrl);
    const sid = init.sessionId!;
    await redis.kill();
    for (let i = 0; i < 6; i++) {
      const started = Date.now();
      const r = await rawRequest(mcpUrl, {
        headers: { 'mcp-session-id': sid },
        body: { jsonrpc: '2.0', id: i, method: 'tools/call', params: { name: 'alpha__echo', arguments: { text: 'x' } } },
      });
      assert.ok(Date.now() - started < 2000, `answered in ${Date.now() - started} ms`);
      assert.equal(r.status, 503, r.text);
      assert.equal((r.json as { error: { code: number; message: string } }).error.code, -32000);
      assert.match((r.json as { error: { message: string } }).error.message, /shared state/);
      assert.equal(r.headers.get('retry-after'), '1');
    }
    // The passthrough endpoint needs no gateway session; its limits fail open as configured.
    const p = await rawInitialize(passthroughUrl);
    const call = await rawRequest(passthroughUrl, {
      headers: { 'mcp-session-id': p.sessionId! },
      body: { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'echo', arguments: { text: 'open' } } },
    });
    assert.equal(call.status, 200);
    await waitUntil(() => replicas.some((r) => r.output.text().includes('Redis unavailable')), {
      timeoutMs: 5000,
      what: 'the outage log line',
    });

    await redis.restart();
    // Each replica reconnects on its own (backoff ≤ 1 s): wait until several in a row succeed,
    // which round-robin spreads over both.
    let streak = 0;
    await waitUntil(
      async () => {
        const again = await rawRequest(mcpUrl, {
          body: { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'x', version: '1' } } },
        });
        streak = again.status === 200 ? streak + 1 : 0;
        return streak >= 6;
      },
      { timeoutMs: 15_000, what: 'initialize to work again on both replicas after Redis restarted' },
    );
    const c = await connectClient(mcpUrl);
    try {
      assert.equal(textOf(await c.client.callTool({ name: 'alpha__echo', arguments: { text: 'back' } })), 'alpha: back');
    } finally {
      await c.close();
    }
    await waitUntil(() => replicas.some((r) => r.output.text().includes('Redis reachable again')), {
      timeoutMs: 5000,
      what: 'the recovery log line',
    });
  });
});
