import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { sha256Hex } from '../../src/auth/api-keys.js';
import { parseConfig } from '../../src/config/load.js';
import { renderEnvoyBootstrap } from '../../src/envoy/bootstrap.js';
import { startDemoServer, type DemoServer } from '../fixtures/mcp-servers/demo-server.js';
import { startEnvoy, type EnvoyHandle } from '../support/envoy.js';
import { connectClient, rawInitialize, rawRequest } from '../support/mcp-client.js';
import { freePorts } from '../support/ports.js';
import { waitUntil } from '../support/proc.js';
import { RedisSentinelGroup } from '../support/redis-cluster.js';
import { Replica, waitForProcessorHosts } from '../support/replica.js';
import { summarize, Traffic } from '../support/traffic.js';

const API_KEY = 'sentinel-test-key-0123456789';
const AUTH = { 'x-api-key': API_KEY };
const BURST = 30;

describe('two processor replicas on Redis Sentinel (primary, replica, 3 Sentinels)', { timeout: 120_000 }, () => {
  let group: RedisSentinelGroup;
  let alpha: DemoServer;
  let envoy: EnvoyHandle;
  let replicas: Replica[];
  let dir: string;
  let mcpUrl = '';

  before(async () => {
    group = await RedisSentinelGroup.start({ sentinels: 3 });
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
      auth: { api_keys: [{ id: 'agent', key_sha256: sha256Hex(API_KEY) }] },
      rate_limits: { alpha: { requests_per_minute: 6000, burst_size: 6000, tools: [{ match: 'whoami', requests_per_minute: 1, burst_size: BURST }] } },
      redis: { sentinel: { name: group.name, nodes: group.sentinelAddresses }, timeout: '200ms', limits_on_error: 'fail-closed' },
      logging: { operations: false },
    });
    dir = mkdtempSync(join(tmpdir(), 'mcpgw-sentinel-gw-'));
    const file = join(dir, 'gateway.yaml');
    writeFileSync(file, stringify(config));
    replicas = [new Replica(file, `127.0.0.1:${g1}`, `127.0.0.1:${a1}`), new Replica(file, `127.0.0.1:${g2}`, `127.0.0.1:${a2}`)];
    await Promise.all(replicas.map((r) => r.start()));
    envoy = await startEnvoy(renderEnvoyBootstrap(config));
    mcpUrl = `http://127.0.0.1:${listen}/mcp`;
    await waitForProcessorHosts(envoy.adminUrl, 2);
  });

  after(async () => {
    await envoy?.stop();
    await Promise.all((replicas ?? []).map((r) => r.stop()));
    await alpha?.close();
    await group?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('follows the promoted replica when the primary dies, keeping sessions and limits', async (t) => {
    const c = await connectClient(mcpUrl, { headers: AUTH });
    const sid = (await rawInitialize(mcpUrl, { headers: AUTH })).sessionId!;
    const call = (i: number) => ({ jsonrpc: '2.0', id: i, method: 'tools/call', params: { name: 'alpha__whoami', arguments: {} } });
    const traffic = new Traffic(mcpUrl, sid, call, { workers: 2, gapMs: 50, timeoutMs: 5_000, headers: AUTH });
    try {
      await waitUntil(() => traffic.outcomes.filter((o) => o.status === 200).length >= 5, { timeoutMs: 10_000, what: '5 admitted calls' });
      const oldPrimary = group.primary.port;
      const killedAt = Date.now();
      await group.primary.kill();
      await waitUntil(async () => (await group.currentPrimaryPort()) === group.replica.port, {
        timeoutMs: 20_000,
        what: 'the Sentinels to promote the replica',
      });
      const promotedAfter = Date.now() - killedAt;
      await waitUntil(
        () => {
          const tail = traffic.since(killedAt).slice(-15);
          return tail.length === 15 && tail.every((o) => o.status === 429);
        },
        { timeoutMs: 30_000, what: () => `15 refusals in a row after the failover: ${JSON.stringify(summarize(traffic.outcomes, killedAt))}` },
      );
      await traffic.stop();
      const all = traffic.outcomes;
      const figures = { promoted_after_ms: promotedAfter, ...summarize(all, killedAt) };
      t.diagnostic(`failover figures: ${JSON.stringify(figures)}`);
      assert.notEqual(oldPrimary, group.replica.port);
      assert.equal(all.filter((o) => o.status === 200).length, BURST, `admitted exactly the burst across the failover (${JSON.stringify(figures)})`);
      for (const o of all) {
        assert.ok(o.status !== 0, `every request was answered: ${o.message}`);
        assert.ok(o.ms < 3_000, `answered in ${o.ms} ms`);
        if (o.status === 200) continue;
        assert.equal(o.rpcCode, -32000, `a JSON-RPC error: ${o.status} ${o.message}`);
        assert.ok(o.status === 429 || o.status === 503, `${o.status} ${o.message}`);
      }
      assert.ok(all.some((o) => o.status === 503), 'the failover window was seen (503s while no primary was known)');
      // Sessions from before the failover resolve on the new primary, through both replicas.
      for (let i = 0; i < 4; i++) {
        const r = await rawRequest(mcpUrl, {
          headers: { ...AUTH, 'mcp-session-id': sid },
          body: { jsonrpc: '2.0', id: 100 + i, method: 'tools/call', params: { name: 'alpha__echo', arguments: { text: 'after' } } },
        });
        assert.equal(r.status, 200, r.text);
      }
      const echoed = (await c.client.callTool({ name: 'alpha__echo', arguments: { text: 'sdk' } })) as { content: { text: string }[] };
      assert.equal(echoed.content[0]!.text, 'alpha: sdk');
      // And new sessions are written to it.
      assert.ok((await rawInitialize(mcpUrl, { headers: AUTH })).sessionId !== undefined);
    } finally {
      await traffic.stop();
      await c.close();
    }
  });
});
