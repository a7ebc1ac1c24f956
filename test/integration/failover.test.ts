import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startDemoServer, type DemoServer } from '../fixtures/mcp-servers/demo-server.js';
import { connectClient, type ConnectedClient } from '../support/mcp-client.js';
import { freePorts } from '../support/ports.js';
import { hasExited, OutputBuffer, stopChild, trackChild, waitForExit, waitUntil } from '../support/proc.js';
import { withStack, type Stack } from '../support/stack.js';

/**
 * Chaos under steady load. Three servers with two endpoints each:
 * - `fo` (strategy failover) and `rr` (strategy round-robin): their first endpoint is SIGKILLed
 *   and restarted on the same port, CYCLES times in a row;
 * - `lo` (failover): its primary is SIGKILLed once and stays dead for LONG_OUTAGE_MS, longer than
 *   an outlier ejection lasts (15 s, released at the next 5 s sweep), then restarted.
 * The first endpoint of each is a demo server in a child process; the other one stays up.
 * Closed-loop MCP clients (SDK) call tools on `/servers/<name>/mcp` and on `/mcp` throughout, each
 * in sessions of a few calls.
 *
 * Every endpoint has its own demo server name (`fo-1`, `fo-2`, ...) and `echo` answers
 * `<name>: <text>`, so every answer says which endpoint served it.
 *
 * Every operation a client performs (initialize, tools/call, DELETE) is recorded. What must hold:
 * - None fails, except
 *   (a) in flight on the killed process: the op started before the process's exit was observed
 *       and was still running when SIGKILL was sent, and its session was on the killed endpoint
 *       (or its endpoint was not known yet);
 *   (b) on passthrough, the 404 a session of the killed endpoint gets afterwards (the session
 *       died with the process; the client starts a new one). On `/mcp` the gateway sets such
 *       sessions up again itself: no 404 there, ever.
 * - Envoy's active health check takes a killed endpoint out, keeps it out however long it stays
 *   dead, and takes it back once the restarted process answers; the restarted endpoint then
 *   serves new sessions again. With failover, every session started while the primary is in
 *   (as the test saw Envoy's view) starts on the primary.
 * - Envoy never refused a retry (`upstream_rq_retry_overflow` = 0), outlier detection ejected
 *   nothing (a dead process is the health check's business), and health checking stays cheap.
 */

/** Kill/restart cycles of `fo` and `rr` (about 4 s each); FAILOVER_CYCLES=10 for a longer run. */
const CYCLES = Number(process.env['FAILOVER_CYCLES'] ?? 6);
const LONG_OUTAGE_MS = 21_000;
const CALL_TIMEOUT_MS = 4_000;
const DEMO_MAIN = fileURLToPath(new URL('../fixtures/mcp-servers/demo-main.js', import.meta.url));

type ServerName = 'fo' | 'rr' | 'lo';
type Path = 'passthrough' | 'aggregated';
const PATHS: readonly Path[] = ['passthrough', 'aggregated'];

interface Op {
  server: ServerName;
  path: Path;
  loop: number;
  kind: 'initialize' | 'call' | 'delete';
  start: number;
  end: number;
  ok: boolean;
  /** The endpoint that answered (calls only). */
  host?: string;
  /** The endpoint this client's session lives on, as far as the client knows when the op starts. */
  sessionHost?: string;
  /** When the client started its session. */
  sessionStart: number;
  status?: number;
  error?: string;
}

interface Kill {
  server: ServerName;
  sentAt: number;
  exitedAt: number;
}

const now = (): number => performance.now();

function textOf(result: object): string {
  return ((result as { content?: { text?: string }[] }).content ?? []).map((c) => c.text ?? '').join('');
}

/** A demo server in its own process, SIGKILLable and restartable on the same port. */
class KillableHost {
  private child: ChildProcess | null = null;
  private output = new OutputBuffer(256 * 1024);

  constructor(
    readonly name: string,
    readonly port: number,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}/mcp`;
  }

  /** Starts the process; resolves once it listens. */
  async start(): Promise<void> {
    this.output = new OutputBuffer(256 * 1024);
    const child = spawn(process.execPath, [DEMO_MAIN, '--name', this.name, '--port', String(this.port)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    trackChild(child);
    this.output.attach(child);
    this.child = child;
    await waitUntil(() => this.output.text().includes(`listening on ${this.url}`) || hasExited(child), {
      timeoutMs: 15_000,
      intervalMs: 10,
      what: () => `demo server ${this.name} to listen on ${this.port}\n${this.output.text()}`,
    });
    if (hasExited(child)) throw new Error(`demo server ${this.name} exited at start:\n${this.output.text()}`);
  }

  /** SIGKILL; resolves once the process is gone (and with it its sockets). */
  async kill(): Promise<{ sentAt: number; exitedAt: number }> {
    const child = this.child;
    assert.ok(child !== null && !hasExited(child), `${this.name} runs`);
    const sentAt = now();
    child.kill('SIGKILL');
    await waitForExit(child);
    return { sentAt, exitedAt: now() };
  }

  async stop(): Promise<void> {
    if (this.child !== null) await stopChild(this.child, 1_000);
  }
}

/** Health flags of one endpoint in Envoy's `/clusters`: `healthy`, `/failed_active_hc`, ... */
async function healthFlags(stack: Stack, server: ServerName, port: number): Promise<string> {
  const prefix = `mcp_${server}::127.0.0.1:${port}::health_flags::`;
  const line = (await stack.envoy.admin('/clusters')).split('\n').find((l) => l.startsWith(prefix));
  return line === undefined ? 'absent' : line.slice(prefix.length);
}

test('SIGKILL and restart of one endpoint under steady load, failover and round-robin: no call to a server with a live endpoint fails', async (t) => {
  const names: readonly ServerName[] = ['fo', 'rr', 'lo'];
  const ports = await freePorts(names.length);
  const killable = Object.fromEntries(names.map((s, i) => [s, new KillableHost(`${s}-1`, ports[i]!)])) as Record<ServerName, KillableHost>;
  const steady: DemoServer[] = [];
  t.after(async () => {
    await Promise.all([...names.map((s) => killable[s].stop()), ...steady.map((d) => d.close())]);
  });
  await Promise.all(names.map((s) => killable[s].start()));
  for (const s of names) steady.push(await startDemoServer({ name: `${s}-2` }));
  const stack = await withStack(t, {
    servers: {
      fo: { url: killable.fo.url, fallback: [steady[0]!.url], strategy: 'failover' },
      rr: { url: killable.rr.url, fallback: [steady[1]!.url], strategy: 'round-robin' },
      lo: { url: killable.lo.url, fallback: [steady[2]!.url], strategy: 'failover' },
    },
    extraConfig: { logging: { operations: false } },
  });

  const flagsOf = (list: readonly ServerName[]): Promise<string[]> => Promise.all(list.map((s) => healthFlags(stack, s, killable[s].port)));
  await waitUntil(async () => (await flagsOf(names)).every((f) => f === 'healthy'), {
    timeoutMs: 10_000,
    what: 'the killable endpoints healthy in Envoy',
  });

  const ops: Op[] = [];
  const kills: Kill[] = [];
  let stopped = false;

  function errorOf(err: unknown): { status?: number; error: string } {
    const status = err instanceof StreamableHTTPError ? err.code : undefined;
    return { ...(status !== undefined ? { status } : {}), error: String((err as Error)?.message ?? err).slice(0, 300) };
  }

  const steadyPort = (s: ServerName): number => Number(new URL(steady[names.indexOf(s)]!.url).port);
  /** The demo server name of the endpoint an enveloped passthrough session id is pinned to. */
  function endpointOf(sessionId: string | undefined): string | undefined {
    const [host] = (sessionId ?? '').split(';');
    const port = Number(Buffer.from(host ?? '', 'base64').toString('utf8').split(':').pop());
    const server = names.find((s) => killable[s].port === port || steadyPort(s) === port);
    if (server === undefined) return undefined;
    return killable[server].port === port ? killable[server].name : `${server}-2`;
  }

  /** One closed-loop client: sessions of 3 to 15 calls, one after the other. */
  async function loop(server: ServerName, path: Path, id: number): Promise<void> {
    const url = path === 'passthrough' ? stack.serverUrl(server) : stack.mcpUrl;
    const tool = path === 'passthrough' ? 'echo' : `${server}__echo`;
    let n = 0;
    while (!stopped) {
      const sessionStart = now();
      const base = { server, path, loop: id, sessionStart };
      let c: ConnectedClient;
      try {
        c = await connectClient(url);
        ops.push({ ...base, kind: 'initialize', start: sessionStart, end: now(), ok: true });
      } catch (err) {
        ops.push({ ...base, kind: 'initialize', start: sessionStart, end: now(), ok: false, ...errorOf(err) });
        continue;
      }
      // On passthrough the session id names its endpoint (Envoy's envelope: `<base64 ip:port>;UV:...`).
      let sessionHost: string | undefined = path === 'passthrough' ? endpointOf(c.sessionId) : undefined;
      let lost = false;
      const calls = 3 + ((id * 7 + n) % 13);
      for (let k = 0; k < calls && !stopped; k++) {
        const text = `${server}.${path}.${id}.${n++}`;
        const start = now();
        const known = sessionHost;
        try {
          const result = await c.client.callTool({ name: tool, arguments: { text } }, undefined, { timeout: CALL_TIMEOUT_MS });
          const m = /^([a-z0-9-]+): (.*)$/s.exec(textOf(result));
          if (m === null || m[2] !== text) {
            ops.push({ ...base, kind: 'call', start, end: now(), ok: false, sessionHost: known, error: `wrong answer ${JSON.stringify(result)}` });
            continue;
          }
          // On /mcp the gateway may have moved the upstream session: the latest answer says where it is.
          sessionHost = path === 'passthrough' ? (sessionHost ?? m[1]) : m[1];
          ops.push({ ...base, kind: 'call', start, end: now(), ok: true, host: m[1], sessionHost: known });
        } catch (err) {
          const e = errorOf(err);
          ops.push({ ...base, kind: 'call', start, end: now(), ok: false, sessionHost: known, ...e });
          // Session unknown: an MCP client starts a new one.
          if (e.status === 404) {
            lost = true;
            break;
          }
        }
      }
      const start = now();
      try {
        if (!lost) await c.terminate(true);
        ops.push({ ...base, kind: 'delete', start, end: now(), ok: true, sessionHost });
      } catch (err) {
        ops.push({ ...base, kind: 'delete', start, end: now(), ok: false, sessionHost, ...errorOf(err) });
      }
      await c.client.close().catch(() => undefined);
    }
  }

  /** Why a failed op is acceptable (see the top of the file), or null. */
  function excuse(op: Op): 'in-flight' | 'session-lost' | null {
    const killedHost = killable[op.server].name;
    if (op.sessionHost !== undefined && op.sessionHost !== killedHost) return null;
    const mine = kills.filter((k) => k.server === op.server);
    if (
      op.path === 'passthrough' &&
      op.status === 404 &&
      op.sessionHost === killedHost &&
      mine.some((k) => op.sessionStart < k.sentAt && k.sentAt < op.start)
    ) {
      return 'session-lost';
    }
    if (mine.some((k) => op.start < k.exitedAt && op.end > k.sentAt)) return 'in-flight';
    return null;
  }

  const unexcused = (): Op[] => ops.filter((o) => !o.ok && excuse(o) === null);

  function describeOps(list: Op[]): string {
    return list
      .slice(0, 15)
      .map(
        (o) =>
          `${o.server} ${o.path}#${o.loop} ${o.kind}${o.host !== undefined ? ` → ${o.host}` : ''} [${o.start.toFixed(0)}..${o.end.toFixed(0)} ms] ` +
          `session on ${o.sessionHost ?? '?'}: ${o.status ?? ''} ${o.error ?? ''}`,
      )
      .join('\n');
  }

  function report(): string {
    const failed = ops.filter((o) => !o.ok);
    const count = (e: string | null): number => failed.filter((o) => excuse(o) === e).length;
    return (
      `${ops.length} ops, ${failed.length} failed (in flight ${count('in-flight')}, sessions lost ${count('session-lost')}, ` +
      `other ${count(null)})\n${describeOps(unexcused())}`
    );
  }

  function assertNoUnexcused(when: string): void {
    const bad = unexcused();
    assert.equal(bad.length, 0, `${when}: ${bad.length} failed operations on servers with a live endpoint\n${report()}`);
  }

  /** Successful calls answered by `host` in sessions started after `since`. */
  function servedNewSessions(server: ServerName, path: Path, host: string, since: number): number {
    return ops.filter((o) => o.server === server && o.path === path && o.kind === 'call' && o.ok && o.host === host && o.sessionStart >= since).length;
  }

  /** Waits until sessions started after `since` got answers from `host` on both paths of each server. */
  async function serving(list: readonly ServerName[], host: (s: ServerName) => string, since: number, what: string): Promise<void> {
    await waitUntil(() => list.every((s) => PATHS.every((p) => servedNewSessions(s, p, host(s), since) >= 2)), {
      timeoutMs: 10_000,
      intervalMs: 20,
      what: () => `${what}\n${report()}`,
    });
  }

  // Stretches in which the test saw each killable endpoint in Envoy's healthy set: to the next SIGKILL.
  const upWindows: Record<ServerName, { from: number; to: number }[]> = { fo: [], rr: [], lo: [] };
  const upSince: Record<ServerName, number> = { fo: 0, rr: 0, lo: 0 };

  async function killAll(list: readonly ServerName[]): Promise<number> {
    const killed = await Promise.all(
      list.map(async (s) => {
        upWindows[s].push({ from: upSince[s], to: now() });
        return { server: s, ...(await killable[s].kill()) };
      }),
    );
    kills.push(...killed);
    return Math.max(...killed.map((k) => k.exitedAt));
  }

  /** Restarts, waits until Envoy has them back; returns when the process listened and when Envoy took it back. */
  async function restartAll(list: readonly ServerName[], what: string): Promise<{ listeningAt: number; healthyAt: number }> {
    await Promise.all(list.map((s) => killable[s].start()));
    const listeningAt = now();
    await waitUntil(async () => (await flagsOf(list)).every((f) => f === 'healthy'), {
      timeoutMs: 25_000,
      intervalMs: 20,
      what: () => `${what}: Envoy to take the restarted endpoints back\n${report()}`,
    });
    const healthyAt = now();
    for (const s of list) upSince[s] = healthyAt;
    return { listeningAt, healthyAt };
  }

  const loops: Promise<void>[] = [];
  for (const s of names) {
    const perPath = s === 'lo' ? 1 : 2;
    for (let i = 0; i < perPath; i++) loops.push(loop(s, 'passthrough', i), loop(s, 'aggregated', i));
  }
  const concurrency = loops.length;
  const started = now();
  for (const s of names) upSince[s] = started;
  const statsBefore = await stack.envoy.stats('^cluster\\.mcp_(fo|rr|lo)\\.');
  const perCycle: string[] = [];

  /** `lo`: one long outage, alongside the cycles of the others. */
  async function longOutage(): Promise<string> {
    await serving(['lo'], (s) => killable[s].name, started, 'lo: sessions on the primary before the outage');
    const exitedAt = await killAll(['lo']);
    await waitUntil(async () => (await flagsOf(['lo']))[0] !== 'healthy', {
      timeoutMs: 10_000,
      intervalMs: 20,
      what: () => `lo: Envoy to take the killed primary out\n${report()}`,
    });
    const detectedAt = now();
    await serving(['lo'], () => 'lo-2', detectedAt, 'lo: new sessions on the fallback');
    // The scenario's length, not a synchronisation: the primary stays dead this long, under load.
    await sleep(Math.max(0, exitedAt + LONG_OUTAGE_MS - now()));
    assertNoUnexcused('lo, while its primary was dead');
    assert.equal((await flagsOf(['lo']))[0], '/failed_active_hc', 'lo: the dead primary is still out');
    const { listeningAt, healthyAt } = await restartAll(['lo'], 'lo');
    await serving(['lo'], (s) => killable[s].name, healthyAt, 'lo: new sessions on the restarted primary');
    return `lo: dead ${((listeningAt - exitedAt) / 1000).toFixed(1)} s, detected ${(detectedAt - exitedAt).toFixed(0)} ms after exit, back ${(healthyAt - listeningAt).toFixed(0)} ms after listening`;
  }

  let longResult = '';
  try {
    const long = longOutage();
    long.catch(() => undefined);
    const cycling: readonly ServerName[] = ['fo', 'rr'];
    for (let cycle = 1; cycle <= CYCLES; cycle++) {
      const cycleOps = ops.length;
      const t0 = now();
      // 1. The killable endpoints serve new sessions on both paths.
      await serving(cycling, (s) => killable[s].name, Math.max(upSince.fo, upSince.rr), `cycle ${cycle}: new sessions on the killable endpoints`);
      const t1 = now();
      // 2. SIGKILL.
      const exitedAt = await killAll(cycling);
      // 3. Envoy takes them out; sessions started since are served by the other endpoint.
      await waitUntil(async () => (await flagsOf(cycling)).every((f) => f !== 'healthy'), {
        timeoutMs: 10_000,
        intervalMs: 20,
        what: () => `cycle ${cycle}: Envoy to take the killed endpoints out\n${report()}`,
      });
      const detectedAt = now();
      await serving(cycling, (s) => `${s}-2`, detectedAt, `cycle ${cycle}: new sessions on the surviving endpoints`);
      assertNoUnexcused(`cycle ${cycle}, endpoints dead`);
      // 4. Restart; Envoy takes them back once they answer.
      const restartAt = now();
      const { listeningAt, healthyAt } = await restartAll(cycling, `cycle ${cycle}`);
      assertNoUnexcused(`cycle ${cycle}, after the restart`);
      const deadServed = ops.filter((o) => o.ok && o.kind === 'call' && /^(fo|rr)-1$/.test(o.host ?? '') && o.start > exitedAt && o.end < restartAt);
      assert.deepEqual(describeOps(deadServed), '', 'no answer from a dead process');
      const slice = ops.slice(cycleOps).filter((o) => !o.ok);
      perCycle.push(
        `cycle ${cycle}: ${(now() - t0).toFixed(0)} ms (serving ${(t1 - t0).toFixed(0)}, detected ${(detectedAt - exitedAt).toFixed(0)} after exit, ` +
          `back ${(healthyAt - listeningAt).toFixed(0)} after listening); ${ops.length - cycleOps} ops, ` +
          `${slice.filter((o) => excuse(o) === 'in-flight').length} in flight on a killed process, ${slice.filter((o) => excuse(o) === 'session-lost').length} sessions lost`,
      );
    }
    await serving(cycling, (s) => killable[s].name, Math.max(upSince.fo, upSince.rr), 'new sessions on the endpoints restarted last');
    longResult = await long;
  } finally {
    stopped = true;
    await Promise.all(loops);
  }
  const elapsedS = (now() - started) / 1000;
  for (const s of names) upWindows[s].push({ from: upSince[s], to: now() });

  const failed = ops.filter((o) => !o.ok);
  const inFlight = failed.filter((o) => excuse(o) === 'in-flight');
  const lost = failed.filter((o) => excuse(o) === 'session-lost');
  t.diagnostic([...perCycle, longResult].join('\n'));
  t.diagnostic(
    `${ops.length} operations in ${elapsedS.toFixed(1)} s by ${concurrency} closed-loop clients; ${failed.length} failed: ` +
      `${inFlight.length} in flight on a killed process, ${lost.length} passthrough 404s for sessions of a killed endpoint, ${unexcused().length} other`,
  );
  const kinds = new Map<string, number>();
  for (const o of inFlight) {
    const key = `${o.path} ${o.kind} ${o.status ?? o.error?.slice(0, 60) ?? ''}`;
    kinds.set(key, (kinds.get(key) ?? 0) + 1);
  }
  t.diagnostic(`in flight on a killed process: ${JSON.stringify(Object.fromEntries(kinds))}`);
  assertNoUnexcused('overall');
  // In flight: a handful per kill. A closed-loop client has one op running at a time, but may start
  // another between SIGKILL and the moment the process is gone (the kernel still completes
  // connections to a dying process), so allow two per client.
  for (const k of kills) {
    const clients = 2 * (k.server === 'lo' ? 2 : 4);
    const n = inFlight.filter((o) => o.server === k.server && o.start < k.exitedAt && o.end > k.sentAt).length;
    assert.ok(n <= clients, `${k.server}: ${n} ops in flight on one kill (${(k.exitedAt - k.sentAt).toFixed(1)} ms from SIGKILL to exit)\n${describeOps(inFlight.filter((o) => o.server === k.server && o.start < k.exitedAt && o.end > k.sentAt))}`);
  }
  assert.deepEqual(describeOps(failed.filter((o) => o.path === 'aggregated' && o.status === 404)), '', 'no 404 on /mcp');

  // Failover: every call of a session started after the test saw Envoy take the primary back
  // (plus 100 ms for Envoy's worker threads to get the news) and ended before the next SIGKILL
  // was answered by the primary.
  for (const s of ['fo', 'lo'] as const) {
    const misplaced = ops.filter(
      (o) => o.server === s && o.kind === 'call' && o.ok && o.host !== `${s}-1` && upWindows[s].some((w) => o.sessionStart > w.from + 100 && o.end < w.to),
    );
    assert.deepEqual(describeOps(misplaced), '', `${s}: with failover, new sessions start on the live primary`);
  }
  // Round-robin: sessions started while both endpoints were in went to both.
  for (const host of ['rr-1', 'rr-2']) {
    assert.ok(
      ops.some((o) => o.server === 'rr' && o.ok && o.host === host && upWindows.rr.some((w) => o.sessionStart > w.from && o.end < w.to)),
      `round-robin: sessions on ${host} while both were up`,
    );
  }

  // Envoy: no retry refused, the health checker saw every death, nothing ejected, modest check traffic.
  const stats = await stack.envoy.stats('^cluster\\.mcp_(fo|rr|lo)\\.');
  const summary: Record<string, number> = {};
  for (const s of names) {
    for (const name of [
      'upstream_rq_retry',
      'upstream_rq_retry_success',
      'upstream_rq_retry_overflow',
      'upstream_rq_pending_overflow',
      'upstream_cx_connect_fail',
      'health_check.attempt',
      'health_check.failure',
      'outlier_detection.ejections_enforced_total',
    ]) {
      const full = `cluster.mcp_${s}.${name}`;
      summary[`${s}.${name}`] = (stats[full] ?? 0) - (statsBefore[full] ?? 0);
    }
    const kills1 = kills.filter((k) => k.server === s).length;
    assert.equal(summary[`${s}.upstream_rq_retry_overflow`], 0, `${s}: no retry refused by the circuit breaker`);
    assert.equal(summary[`${s}.upstream_rq_pending_overflow`], 0, `${s}: no request refused by the circuit breaker`);
    assert.equal(summary[`${s}.outlier_detection.ejections_enforced_total`], 0, `${s}: dead processes are left to the health check`);
    assert.ok(summary[`${s}.health_check.failure`]! >= 2 * kills1, `${s}: the health checker saw every death`);
    // Two endpoints, each checked about once a second (twice a second while down).
    const attempts = summary[`${s}.health_check.attempt`]!;
    assert.ok(attempts <= Math.ceil(elapsedS * 2 * 2 + 10), `${s}: ${attempts} health checks in ${elapsedS.toFixed(1)} s`);
  }
  t.diagnostic(`Envoy: ${JSON.stringify(summary)}`);
});
