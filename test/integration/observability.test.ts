import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startDemoServer, type DemoServer } from '../fixtures/mcp-servers/demo-server.js';
import { connectClient, rawInitialize, rawRequest } from '../support/mcp-client.js';
import { parseMetrics } from '../support/metrics.js';
import { waitUntil } from '../support/proc.js';
import { startStack, useStack, type Stack } from '../support/stack.js';

/** Parses the Prometheus text format into `name{labels}` → value. */
async function scrape(stack: Stack): Promise<Map<string, number>> {
  const res = await fetch(`${stack.adminUrl}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /text\/plain/);
  return parseMetrics(await res.text());
}

function series(name: string, labels: Record<string, string>): string {
  return `${name}{${Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .join(',')}}`;
}

function textOf(result: object): string {
  return ((result as { content?: { text?: string }[] }).content ?? []).map((c) => c.text ?? '').join('');
}

describe('observability: metrics, operation logs, trace context, access log', () => {
  const stack = useStack({ demoServers: ['alpha', 'beta'] });

  it('counts operations by method, server, tool, tenant and status in the seed metric names', async () => {
    const c = await connectClient(stack().mcpUrl);
    const calls = 7;
    try {
      for (let i = 0; i < calls; i++) await c.client.callTool({ name: 'alpha__echo', arguments: { text: String(i) } });
      await c.client.callTool({ name: 'beta__fail', arguments: {} });
      await assert.rejects(c.client.callTool({ name: 'alpha__nope', arguments: {} }));
      await c.client.listTools();
    } finally {
      await c.close();
    }
    const m = await scrape(stack());
    const ok = { mcp_method: 'tools/call', server: 'alpha', tool: 'echo', tenant: 'none', status: 'success' };
    assert.equal(m.get(series('mcp_gateway_requests_total', ok)), calls);
    assert.equal(m.get(series('mcp_gateway_request_duration_seconds_count', ok)), calls);
    assert.equal(
      m.get(series('mcp_gateway_requests_total', { mcp_method: 'tools/call', server: 'beta', tool: 'fail', tenant: 'none', status: 'tool_error' })),
      1,
    );
    assert.equal(
      m.get(series('mcp_gateway_requests_total', { mcp_method: 'tools/call', server: 'none', tool: 'none', tenant: 'none', status: 'error' })),
      1,
      'the unknown tool is an error that names no server or tool',
    );
    assert.ok((m.get(series('mcp_gateway_requests_total', { mcp_method: 'tools/list', server: 'none', tool: 'none', tenant: 'none', status: 'success' })) ?? 0) >= 1);
    assert.ok((m.get(series('mcp_gateway_request_size_bytes_count', { mcp_method: 'tools/call', server: 'alpha' })) ?? 0) >= calls);
    assert.ok(m.has('process_cpu_user_seconds_total'), 'process metrics are exported');
    for (const name of ['mcp_gateway_rate_limited_total', 'mcp_gateway_auth_failures_total', 'mcp_server_up', 'mcp_server_latency_seconds']) {
      const res = await fetch(`${stack().adminUrl}/metrics`);
      assert.match(await res.text(), new RegExp(`# TYPE ${name} `), `${name} is declared`);
    }
  });

  it('keeps label cardinality bounded under hostile names', async () => {
    const init = await rawInitialize(stack().serverUrl('alpha'));
    const hostile: string[] = [];
    for (let i = 0; i < 25; i++) {
      const name = `evil_${randomBytes(6).toString('hex')}`;
      hostile.push(name);
      await rawRequest(stack().serverUrl('alpha'), {
        headers: { 'mcp-session-id': init.sessionId! },
        body: { jsonrpc: '2.0', id: i + 10, method: 'tools/call', params: { name, arguments: {} } },
      });
      await rawRequest(stack().mcpUrl, { body: { jsonrpc: '2.0', id: i, method: `x/${name}` } });
    }
    const text = await (await fetch(`${stack().adminUrl}/metrics`)).text();
    for (const name of hostile) assert.ok(!text.includes(name), `${name} became a label value`);
    const m = await scrape(stack());
    const total = [...m.entries()]
      .filter(([k]) => k.startsWith('mcp_gateway_requests_total{') && k.includes('tool="other"') && k.includes('server="alpha"'))
      .reduce((a, [, v]) => a + v, 0);
    assert.equal(total, 25, 'unknown tools collapse into tool="other"');
    assert.ok(!text.includes('mcp_method="x/'), 'unknown methods collapse into mcp_method="other"');
  });

  it('writes one structured line per MCP operation, in the seed shape, without argument values', async () => {
    const c = await connectClient(stack().mcpUrl);
    const secret = `s3cret-${randomBytes(4).toString('hex')}`;
    try {
      await c.client.callTool({ name: 'beta__echo', arguments: { text: secret } });
    } finally {
      await c.close();
    }
    const lines = stack().processorLogLines();
    const call = lines.find((l) => l['event'] === 'tool_call' && l['server'] === 'beta' && l['tool'] === 'echo');
    assert.ok(call, 'a tool_call line');
    for (const key of ['timestamp', 'level', 'event', 'client_id', 'tenant', 'server', 'tool', 'duration_ms', 'status', 'trace_id']) {
      assert.ok(key in call, `log line has ${key}`);
    }
    assert.equal(call['status'], 'success');
    assert.equal(call['level'], 'info');
    assert.match(String(call['timestamp']), /^\d{4}-\d\d-\d\dT/);
    assert.match(String(call['trace_id']), /^[0-9a-f]{32}$/);
    assert.ok(typeof call['duration_ms'] === 'number');
    assert.ok(lines.some((l) => l['event'] === 'initialize'));
    assert.ok(!JSON.stringify(lines).includes(secret), 'argument values are not logged');
  });

  it('honours a client traceparent end to end: upstream header, params._meta, logs and Envoy access log', async () => {
    const traceId = randomBytes(16).toString('hex');
    const traceparent = `00-${traceId}-${randomBytes(8).toString('hex')}-01`;
    const c = await connectClient(stack().mcpUrl, { headers: { traceparent } });
    let seen: { header: string | null; meta: string | null };
    try {
      seen = JSON.parse(textOf(await c.client.callTool({ name: 'alpha__trace', arguments: {} }))) as typeof seen;
    } finally {
      await c.close();
    }
    assert.match(seen.header ?? '', new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`));
    assert.match(seen.meta ?? '', new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`));
    assert.notEqual(seen.header, traceparent, 'the gateway hop has its own span id');
    assert.ok(stack().processorLogLines().some((l) => l['trace_id'] === traceId && l['event'] === 'tool_call'));
    await waitUntil(() => stack().envoy.logs().includes(traceId), { timeoutMs: 15_000, what: 'the access log line' });
    const access = stack()
      .envoy.logs()
      .split('\n')
      .filter((l) => l.startsWith('{') && l.includes(traceId))
      .map((l) => JSON.parse(l) as { mcp: Record<string, string> | null; upstream_cluster: string });
    const routed = access.find((a) => a.mcp?.['method'] === 'tools/call');
    assert.ok(routed, JSON.stringify(access));
    assert.equal(routed.mcp?.['server'], 'alpha');
    assert.equal(routed.mcp?.['tool'], 'trace');
    assert.equal(routed.upstream_cluster, 'mcp_alpha');
  });

  it('serves no admin console unless it is configured (whatever the credential)', async () => {
    for (const path of ['/admin', '/admin/servers', '/admin/api/sessions', '/admin/api/config']) {
      const res = await fetch(`${stack().adminUrl}${path}`, { headers: { authorization: 'Basic b25jYWxsOmFueXRoaW5n' } });
      assert.equal(res.status, 404, path);
    }
    assert.equal((await fetch(`${stack().adminUrl}/healthz`)).status, 200, 'the rest of the admin port is as before');
  });

  it('starts a trace when the client sends none, and passes it on', async () => {
    const c = await connectClient(stack().serverUrl('beta'));
    try {
      const seen = JSON.parse(textOf(await c.client.callTool({ name: 'trace', arguments: {} }))) as { header: string; meta: string };
      assert.match(seen.header, /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
      assert.equal(seen.header.split('-')[1], seen.meta.split('-')[1], 'header and _meta carry one trace');
    } finally {
      await c.close();
    }
  });
});

describe('health: servers checked on an interval, left out while unhealthy, back when they recover', () => {
  let flaky: DemoServer;
  let s: Stack;
  before(async () => {
    flaky = await startDemoServer({ name: 'flaky' });
    s = await startStack({
      servers: { alpha: {}, flaky: { url: flaky.url } },
      extraConfig: { health: { interval: '150ms', timeout: '1s', unhealthy_threshold: 2 } },
    });
  });
  after(async () => {
    await s?.close();
    await flaky?.close();
  });

  async function healthOf(name: string): Promise<{ status: string; consecutive_failures: number; latency_ms: number; last_check: string | null }> {
    const res = await fetch(`${s.adminUrl}/health/servers`);
    assert.equal(res.status, 200);
    const all = (await res.json()) as { server: string; status: string; consecutive_failures: number; latency_ms: number; last_check: string | null }[];
    const h = all.find((x) => x.server === name);
    assert.ok(h);
    return h;
  }

  async function toolNames(): Promise<string[]> {
    const c = await connectClient(s.mcpUrl);
    try {
      return (await c.client.listTools()).tools.map((t) => t.name);
    } finally {
      await c.close();
    }
  }

  it('reports healthy servers with latency and the gauges follow', async () => {
    await waitUntil(async () => (await healthOf('flaky')).status === 'healthy', { timeoutMs: 10_000, what: 'flaky healthy' });
    const h = await healthOf('flaky');
    assert.equal(h.consecutive_failures, 0);
    assert.ok(h.latency_ms >= 0 && h.last_check !== null);
    const m = await scrape(s);
    assert.equal(m.get(series('mcp_server_up', { server: 'flaky' })), 1);
    assert.ok((m.get(series('mcp_server_latency_seconds', { server: 'flaky' })) ?? -1) >= 0);
    assert.ok((await toolNames()).includes('flaky__echo'));
  });

  it('marks a server that goes away unhealthy and leaves its tools out', async () => {
    const port = flaky.port;
    await flaky.close();
    await waitUntil(async () => (await healthOf('flaky')).status === 'unhealthy', { timeoutMs: 10_000, what: 'flaky unhealthy' });
    assert.ok((await healthOf('flaky')).consecutive_failures >= 2);
    assert.equal((await scrape(s)).get(series('mcp_server_up', { server: 'flaky' })), 0);
    const names = await toolNames();
    assert.ok(!names.some((n) => n.startsWith('flaky__')), names.join(','));
    assert.ok(names.includes('alpha__echo'), 'the healthy server is still served');
    assert.equal((await fetch(`${s.adminUrl}/readyz`)).status, 200, 'still ready: alpha is healthy');

    flaky = await startDemoServer({ name: 'flaky', port });
    await waitUntil(async () => (await healthOf('flaky')).status === 'healthy', { timeoutMs: 10_000, what: 'flaky back' });
    await waitUntil(async () => (await toolNames()).includes('flaky__echo'), { timeoutMs: 5_000, what: 'flaky tools back' });
    assert.equal((await scrape(s)).get(series('mcp_server_up', { server: 'flaky' })), 1);
  });
});

describe('tracing: with Envoy OpenTelemetry on, the gateway and Envoy share one trace', () => {
  const stack = useStack({
    demoServers: ['alpha'],
    // Nothing listens there: spans are dropped, but Envoy still traces and propagates context.
    extraConfig: { tracing: { otlp_endpoint: '127.0.0.1:9', sampling_percent: 100 } },
  });

  it('a request without traceparent gets one trace id upstream (header and _meta) and in the logs', async () => {
    const c = await connectClient(stack().mcpUrl);
    let seen: { header: string; meta: string };
    try {
      seen = JSON.parse(textOf(await c.client.callTool({ name: 'alpha__trace', arguments: {} }))) as typeof seen;
    } finally {
      await c.close();
    }
    const headerTrace = seen.header.split('-')[1];
    const metaTrace = seen.meta.split('-')[1];
    assert.match(headerTrace ?? '', /^[0-9a-f]{32}$/);
    assert.equal(metaTrace, headerTrace, 'Envoy’s router and the processor agree on the trace');
    assert.ok(stack().processorLogLines().some((l) => l['trace_id'] === headerTrace && l['event'] === 'tool_call'));
  });
});
