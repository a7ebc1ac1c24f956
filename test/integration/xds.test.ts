/**
 * Envoy fed by the processor over xDS: a real Envoy started from the small bootstrap
 * (`envoy-config` without `--static`) gets its listeners, routes and clusters over ADS; a config
 * the processor reloads reaches it live (a server added is routable as soon as the reload is
 * done; one removed leaves Envoy once its requests are over), and Envoy's own /config_dump says so.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startDemoServer, type DemoServer } from '../fixtures/mcp-servers/demo-server.js';
import { connectClient, toolNames } from '../support/mcp-client.js';
import { waitUntil } from '../support/proc.js';
import { freePort } from '../support/ports.js';
import { useStack, type Stack } from '../support/stack.js';

/** Envoy's dynamic resources of one kind, by name, from its /config_dump. */
async function dynamicNames(stack: Stack, kind: 'clusters' | 'listeners' | 'routes'): Promise<string[]> {
  const dump = (await (await fetch(`${stack.envoyAdminUrl}/config_dump`)).json()) as { configs: Record<string, any>[] };
  const of = (suffix: string): Record<string, any> => dump.configs.find((c) => String(c['@type']).endsWith(suffix)) ?? {};
  // (ScopedRoutesConfigDump also ends in RoutesConfigDump: the suffixes name the whole type.)
  if (kind === 'clusters') return ((of('.ClustersConfigDump')['dynamic_active_clusters'] ?? []) as any[]).map((c) => c.cluster.name);
  if (kind === 'listeners') return ((of('.ListenersConfigDump')['dynamic_listeners'] ?? []) as any[]).map((l) => l.name);
  return ((of('.RoutesConfigDump')['dynamic_route_configs'] ?? []) as any[]).map((r) => r.route_config.name);
}

async function echo(url: string, tool: string): Promise<string> {
  const c = await connectClient(url);
  try {
    const r = await c.client.callTool({ name: tool, arguments: { text: 'hi' } });
    return (r.content as { text: string }[])[0]!.text;
  } finally {
    await c.close({ terminate: true });
  }
}

describe('xDS: Envoy takes its configuration from the processor', () => {
  let delta: DemoServer;
  const stack = useStack(async () => {
    delta = await startDemoServer({ name: 'delta' });
    // A short upstream timeout: what only a replaced config needed leaves Envoy that much later.
    return { servers: { alpha: {} }, envoyMode: 'xds', gateway: { upstream_timeout: '1s' } };
  });
  after(() => delta?.close());
  before(() => waitUntil(async () => (await toolNames(stack().mcpUrl)).includes('alpha__echo'), { timeoutMs: 10_000, intervalMs: 100, what: 'the catalog' }));

  it('serves the gateway with listeners, routes and clusters that came over ADS', async () => {
    const s = stack();
    assert.equal(await echo(s.mcpUrl, 'alpha__echo'), 'alpha: hi');
    assert.deepEqual((await dynamicNames(s, 'listeners')).sort(), ['mcp_client', 'mcp_internal']);
    assert.deepEqual((await dynamicNames(s, 'routes')).sort(), ['mcp_client_routes', 'mcp_internal_routes']);
    assert.deepEqual(await dynamicNames(s, 'clusters'), ['mcp_alpha']);
    const metrics = await (await fetch(`${s.adminUrl}/metrics`)).text();
    assert.match(metrics, /^mcp_gateway_xds_streams 1$/m);
  });

  it('adds a server live: routable through Envoy as soon as the reload is done', async () => {
    const s = stack();
    const raw = structuredClone(s.config) as Record<string, any>;
    raw['servers']['delta'] = { url: delta.url };
    const outcome = await s.reload(raw);
    assert.equal(outcome.result, 'applied');
    assert.ok(outcome.result === 'applied' && !outcome.envoyStale, 'Envoy follows the processor: nothing to regenerate');
    // No wait: the reload returned once Envoy had accepted the new cluster and routes.
    assert.equal(await echo(s.mcpUrl, 'delta__echo'), 'delta: hi');
    assert.equal(await echo(`${s.baseUrl}/servers/delta/mcp`, 'echo'), 'delta: hi');
    assert.ok((await dynamicNames(s, 'clusters')).includes('mcp_delta'));
  });

  it('removes a server live: refused at once, gone from Envoy once the requests of the config before are over', async () => {
    const s = stack();
    const raw = structuredClone(s.config) as Record<string, any>;
    assert.equal((await s.reload(raw)).result, 'applied');
    await assert.rejects(echo(s.mcpUrl, 'delta__echo'), /Unknown tool: delta__echo/);
    await waitUntil(async () => !(await dynamicNames(s, 'clusters')).includes('mcp_delta'), { timeoutMs: 15_000, intervalMs: 100, what: 'mcp_delta gone from Envoy' });
    assert.equal(await echo(s.mcpUrl, 'alpha__echo'), 'alpha: hi');
  });
});

describe('xDS: the listen side changes live', () => {
  const stack = useStack({ servers: { alpha: {} }, envoyMode: 'xds', gateway: { upstream_timeout: '1s' } });
  before(() => waitUntil(async () => (await toolNames(stack().mcpUrl)).includes('alpha__echo'), { timeoutMs: 10_000, intervalMs: 100, what: 'the catalog' }));

  it('moves the client listener to another port without restarting Envoy', async () => {
    const s = stack();
    const port = await freePort();
    const raw = structuredClone(s.config) as Record<string, any>;
    raw['gateway']['listen'] = `127.0.0.1:${port}`;
    assert.equal((await s.reload(raw)).result, 'applied');
    await waitUntil(async () => (await toolNames(`http://127.0.0.1:${port}/mcp`).catch((): string[] => [])).includes('alpha__echo'), { timeoutMs: 10_000, intervalMs: 100, what: 'the new port' });
    assert.equal(await echo(`http://127.0.0.1:${port}/mcp`, 'alpha__echo'), 'alpha: hi');
  });
});
