/**
 * Live configuration: the processor (the real CLI, `serve --config FILE`) reloads its config file
 * when it changes and on SIGHUP, swaps it in whole, refuses a bad one and keeps the config in
 * force. Under a steady closed-loop load the config changes 20 times (a server removed and added
 * back, a policy tightened and relaxed, a key revoked and restored): no request the new config
 * still allows fails, no session is lost, and nothing is served under a policy or key once the
 * swap that revoked it is in force.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { renameSync, writeFileSync } from 'node:fs';
import { before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { sha256Hex } from '../../src/auth/api-keys.js';
import type { Config } from '../../src/config/schema.js';
import { postJson, rawInitialize } from '../support/mcp-client.js';
import { waitUntil } from '../support/proc.js';
import { metricValue } from '../support/metrics.js';
import { useStack, type Stack } from '../support/stack.js';

const ANN = 'reload-ann-key-0123456789';
const BOB = 'reload-bob-key-0123456789';
const ann = { id: 'ann', key_sha256: sha256Hex(ANN), tenant: 'acme' };
const bob = { id: 'bob', key_sha256: sha256Hex(BOB), tenant: 'acme' };

/** What one step's config allows. */
interface Step {
  readonly gamma: boolean;
  readonly addDenied: boolean;
  readonly bobRevoked: boolean;
}

function hashOf(text: string): string {
  return `sha256:${createHash('sha256').update(text).digest('hex').slice(0, 16)}`;
}

/** The stack's config with one step's changes, as YAML. */
function configText(base: Config, step: Step, more: (c: Record<string, any>) => void = () => {}): string {
  const c = structuredClone(base) as Record<string, any>;
  more(c);
  if (!step.gamma) delete c['servers']['gamma'];
  if (step.bobRevoked) c['auth']['api_keys'] = [ann];
  c['policies'] = step.addDenied ? [{ tenant: 'acme', servers: ['alpha'], tools: { denied: ['add'] } }] : [{ tenant: 'acme', servers: ['*'], tools: { allowed: ['*'] } }];
  return stringify(c);
}

/** Writes the file the way a ConfigMap update or an editor does: whole, by a rename. */
function writeConfig(path: string, text: string): void {
  writeFileSync(`${path}.next`, text);
  renameSync(`${path}.next`, path);
}

async function readyz(stack: Stack): Promise<string> {
  return (await fetch(`${stack.adminUrl}/readyz`)).text();
}

function metric(stack: Stack, name: string, ...labels: string[]): Promise<number> {
  return metricValue(stack.adminUrl, name, ...labels);
}

/** One client with its own session, calling one tool in a closed loop. */
class Worker {
  readonly results: { start: number; end: number; ok: boolean; detail: string }[] = [];
  private headers: Record<string, string> = {};
  private id = 1;

  constructor(
    private readonly url: string,
    private readonly key: string,
    private readonly call: () => { method: string; params: Record<string, unknown> },
  ) {}

  async open(): Promise<void> {
    const init = await rawInitialize(this.url, { headers: { 'x-api-key': this.key } });
    this.headers = { 'x-api-key': this.key, 'mcp-session-id': init.sessionId!, 'mcp-protocol-version': init.protocolVersion };
  }

  async run(until: () => boolean): Promise<void> {
    while (!until()) {
      const { method, params } = this.call();
      const start = performance.now();
      let ok = false;
      let detail = '';
      try {
        const r = await postJson(this.url, { jsonrpc: '2.0', id: ++this.id, method, params }, this.headers, { timeoutMs: 10_000 });
        const msg = (r.json ?? r.messages.find((m) => (m as { id?: unknown }).id === this.id)) as { result?: { isError?: boolean }; error?: { message?: string } } | undefined;
        ok = r.status === 200 && msg?.result !== undefined && msg.result.isError !== true;
        detail = ok ? '' : `HTTP ${r.status} ${msg?.error?.message ?? r.text.slice(0, 200)}`;
      } catch (err) {
        detail = String(err);
      }
      this.results.push({ start, end: performance.now(), ok, detail });
    }
  }
}

// Envoy from its full bootstrap (static), and from the processor over xDS (its listeners, routes
// and clusters change with each reload: gamma's come and go).
for (const envoyMode of ['static', 'xds'] as const)
describe(`live config: reloads of the processor’s config file (Envoy ${envoyMode})`, () => {
  const stack = useStack({
    processor: 'child',
    envoyMode,
    // With a static Envoy, Envoy knows gamma's routes throughout and whether gamma exists is the
    // processor's config; over xDS, Envoy's routes follow the processor's config.
    servers: { alpha: { headers: { 'x-upstream-token': 'first' } }, beta: {}, gamma: {} },
    // The load below is one client's closed loop; on a fast machine it outruns the gateway's own
    // per-client limit, which is not what this suite is about.
    gateway: { rate_limit: 'off' },
    extraConfig: { auth: { api_keys: [ann, bob] }, tenants: { acme: { servers: ['*'], namespace: 'acme' } }, policies: [{ tenant: 'acme', servers: ['*'], tools: { allowed: ['*'] } }] },
  });
  before(() =>
    waitUntil(
      async () => {
        const init = await rawInitialize(stack().mcpUrl, { headers: { 'x-api-key': ANN } });
        const list = await postJson(stack().mcpUrl, { jsonrpc: '2.0', id: 2, method: 'tools/list' }, { 'x-api-key': ANN, 'mcp-session-id': init.sessionId!, 'mcp-protocol-version': init.protocolVersion });
        return list.text.includes('gamma__echo');
      },
      { timeoutMs: 10_000, intervalMs: 100, what: 'the catalogs' },
    ),
  );

  it('refuses a bad config naming the field, keeps the one in force, and says which is in force', async () => {
    const s = stack();
    const path = s.configPath!;
    const before = await readyz(s);
    assert.match(before, /^ready\nconfig sha256:[0-9a-f]{16} loaded \d{4}-/);
    const bad = configText(s.config, { gamma: true, addDenied: false, bobRevoked: false }).replace('namespace: acme', 'namespace: 7');
    writeConfig(path, bad);
    await waitUntil(async () => (await metric(s, 'mcp_gateway_config_reload_failures_total')) === 1, { timeoutMs: 5_000, intervalMs: 50, what: 'the refusal' });
    // The log line is written by the processor's own stream: it may come a moment after the metric.
    await waitUntil(async () => s.processorLogLines().some((l) => l['event'] === 'config_reload_failed'), { timeoutMs: 5_000, intervalMs: 50, what: 'the refusal logged' });
    const line = s.processorLogLines().find((l) => l['event'] === 'config_reload_failed');
    assert.match(String(line?.['error']), /tenants\.acme\.namespace/);
    assert.equal(await readyz(s), before, 'the config in force stays');
    // And it still serves.
    const init = await rawInitialize(s.mcpUrl, { headers: { 'x-api-key': ANN } });
    assert.ok(init.sessionId !== undefined);
  });

  it('reloads on SIGHUP', async () => {
    const s = stack();
    // alpha's upstream credential is rotated with it (a new value of a header Envoy already
    // carries): the next call carries the new one.
    const text = configText(s.config, { gamma: true, addDenied: true, bobRevoked: false }, (c) => {
      c['servers']['alpha']['headers'] = { 'x-upstream-token': 'rotated' };
    });
    // Written in place without a rename: the file watch may or may not see it first; SIGHUP surely does.
    writeFileSync(s.configPath!, text);
    process.kill(s.processorPid()!, 'SIGHUP');
    await waitUntil(async () => (await readyz(s)).includes(hashOf(text)), { timeoutMs: 5_000, intervalMs: 50, what: 'the reloaded config' });
    assert.ok((await metric(s, 'mcp_gateway_config_reloads_total')) >= 1);
    const init = await rawInitialize(s.mcpUrl, { headers: { 'x-api-key': ANN } });
    const headers = { 'x-api-key': ANN, 'mcp-session-id': init.sessionId!, 'mcp-protocol-version': init.protocolVersion };
    const call = await postJson(s.mcpUrl, { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'alpha__headers', arguments: {} } }, headers);
    assert.match(call.text, /x-upstream-token\\":\\"rotated/);
  });

  it('changes the config 20 times under load: no allowed request fails, no session is lost, nothing revoked is served after its swap', async () => {
    const s = stack();
    const url = s.mcpUrl;
    // Ann's echo and list never stop being allowed; Ann's add and Bob's add are refused by some steps.
    const steady = [0, 1].map((i) => new Worker(url, ANN, () => (i % 2 === 0 ? { method: 'tools/call', params: { name: 'alpha__echo', arguments: { text: 'x' } } } : { method: 'tools/list', params: {} })));
    const annAdd = new Worker(url, ANN, () => ({ method: 'tools/call', params: { name: 'alpha__add', arguments: { a: 1, b: 2 } } }));
    const bobAdd = new Worker(url, BOB, () => ({ method: 'tools/call', params: { name: 'alpha__add', arguments: { a: 1, b: 2 } } }));
    const gammaCall = new Worker(url, ANN, () => ({ method: 'tools/call', params: { name: 'gamma__echo', arguments: { text: 'g' } } }));
    const workers = [...steady, annAdd, bobAdd, gammaCall];
    // Start from a config that allows everything.
    const start = configText(s.config, { gamma: true, addDenied: false, bobRevoked: false });
    writeConfig(s.configPath!, start);
    await waitUntil(async () => (await readyz(s)).includes(hashOf(start)), { timeoutMs: 5_000, intervalMs: 50, what: 'the starting config' });
    await Promise.all(workers.map((w) => w.open()));

    let done = false;
    const running = Promise.all(workers.map((w) => w.run(() => done)));
    /** Each step: when its file was written, and when /readyz first showed it in force. */
    const timeline: { step: Step; written: number; inForce: number }[] = [];
    try {
      for (let i = 0; i < 20; i++) {
        const step: Step = { gamma: i % 2 === 1, addDenied: i % 4 === 0 || i % 4 === 1, bobRevoked: i % 4 === 2 };
        const text = configText(s.config, step);
        const written = performance.now();
        writeConfig(s.configPath!, text);
        await waitUntil(async () => (await readyz(s)).includes(hashOf(text)), { timeoutMs: 5_000, intervalMs: 20, what: `step ${i} in force` });
        timeline.push({ step, written, inForce: performance.now() });
        // Let each config serve a while under load.
        const served = steady[0]!.results.length;
        await waitUntil(async () => steady[0]!.results.length >= served + 5, { timeoutMs: 5_000, intervalMs: 10, what: `load on step ${i}` });
      }
    } finally {
      done = true;
      await running;
    }

    // The config a request started under, when it is certain: after its step was seen in force, before the next was written.
    const certainStep = (start: number): Step | null => {
      for (let i = 0; i < timeline.length; i++) {
        const t = timeline[i]!;
        const next = timeline[i + 1]?.written ?? Infinity;
        if (start >= t.inForce && start < next) return t.step;
      }
      return null;
    };
    const failures = steady.flatMap((w) => w.results.filter((r) => !r.ok));
    assert.deepEqual(failures, [], 'echo and tools/list are allowed by every config');
    assert.ok(steady.every((w) => w.results.length >= 100), `load ran: ${steady.map((w) => w.results.length).join(', ')} requests`);
    const judged = (w: Worker, allowed: (st: Step) => boolean) => {
      const wrong = { servedRevoked: 0, failedAllowed: 0, judged: 0 };
      for (const r of w.results) {
        const st = certainStep(r.start);
        if (st === null) continue;
        wrong.judged++;
        if (allowed(st) && !r.ok) wrong.failedAllowed++;
        if (!allowed(st) && r.ok) wrong.servedRevoked++;
      }
      return wrong;
    };
    const annJudged = judged(annAdd, (st) => !st.addDenied);
    const bobJudged = judged(bobAdd, (st) => !st.addDenied && !st.bobRevoked);
    const gammaJudged = judged(gammaCall, (st) => st.gamma);
    for (const [who, j] of [['ann add', annJudged], ['bob add', bobJudged], ['gamma echo', gammaJudged]] as const) {
      assert.equal(j.servedRevoked, 0, `${who}: served after the swap that revoked it`);
      assert.equal(j.failedAllowed, 0, `${who}: refused though the config in force allows it`);
      assert.ok(j.judged >= 20, `${who}: ${j.judged} requests judged`);
    }
    // Bob's session outlived the steps that revoked his key: once it was back, his session still served him.
    const last = timeline.at(-1)!;
    assert.equal(last.step.bobRevoked, false);
    assert.ok(bobAdd.results.some((r) => r.ok && r.start > timeline[2]!.inForce), 'Bob served again after his key came back, in the same session');
  });
});
