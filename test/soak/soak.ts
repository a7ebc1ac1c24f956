/**
 * The soak: mixed MCP traffic for a long time through a real Envoy onto two processor replicas
 * that share state in Redis, one replica restarted every few minutes, with what clients saw and
 * what every process holds sampled all along. See RELIABILITY.md for what it shows.
 *
 *   npm run soak [-- --minutes 10] [--restart-every 120] [--sample-every 30] [--workers 8]
 *                   [--kill] [--json FILE]
 *
 * --kill restarts replicas with SIGKILL instead of SIGTERM (a crash instead of a graceful stop).
 * Exit status: 0 when no request failed beyond those in flight at a kill (or sent to a killed
 * replica before the next health check saw it) and no watched figure
 * kept growing; 1 otherwise; 2 when the soak itself could not run or overran its deadline.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { stringify } from 'yaml';
import { parseConfig } from '../../src/config/load.js';
import { PROCESSOR_NODE_FLAGS } from '../../src/lib/node-flags.js';
import { renderEnvoyBootstrap } from '../../src/envoy/bootstrap.js';
import { PROCESSOR_HEALTH_CHECK } from '../../src/envoy/contract.js';
import { startEnvoy, type EnvoyHandle } from '../support/envoy.js';
import { rawInitialize, rawRequest, type RawResponse } from '../support/mcp-client.js';
import { freePorts, isPortOpen } from '../support/ports.js';
import { killAllTracked, OutputBuffer, stopChild, trackChild, waitUntil } from '../support/proc.js';
import { RedisServer } from '../support/redis.js';
import { healthyProcessorHosts, Replica, waitForProcessorHosts } from '../support/replica.js';

// ------------------------------------------------------------------------------------------------
// options

const { values: args } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    'restart-every': { type: 'string', default: '120' },
    'sample-every': { type: 'string', default: '30' },
    workers: { type: 'string', default: '8' },
    kill: { type: 'boolean', default: false },
    json: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (args.help) {
  process.stdout.write('usage: npm run soak [-- --minutes N] [--restart-every S] [--sample-every S] [--workers N] [--kill] [--json FILE]\n');
  process.exit(0);
}
const DURATION_MS = Number(args.minutes) * 60_000;
const RESTART_EVERY_MS = Number(args['restart-every']) * 1000;
const SAMPLE_EVERY_MS = Number(args['sample-every']) * 1000;
const WORKERS = Number(args.workers);
const SIGNAL: 'SIGTERM' | 'SIGKILL' = args.kill ? 'SIGKILL' : 'SIGTERM';
for (const [k, v] of Object.entries({ DURATION_MS, RESTART_EVERY_MS, SAMPLE_EVERY_MS, WORKERS })) {
  if (!Number.isFinite(v) || v <= 0) {
    process.stderr.write(`soak: bad ${k}\n`);
    process.exit(2);
  }
}
/** Past this the soak stops itself whatever it is waiting on. */
const DEADLINE_MS = DURATION_MS + 5 * 60_000;
/** No restart this close to the end: the last one must be over (and seen recovered) while load runs. */
const LAST_RESTART_BEFORE_END_MS = 30_000;
/** Requests are given this long; a slower answer counts as a failure. */
const REQUEST_TIMEOUT_MS = 15_000;

const DEMO_MAIN = fileURLToPath(new URL('../fixtures/mcp-servers/demo-main.js', import.meta.url));

// ------------------------------------------------------------------------------------------------
// what clients saw

type Op = 'call' | 'list' | 'progress' | 'ping' | 'renew' | 'delete' | 'abandon' | 'initialize';

interface Outcome {
  readonly op: Op;
  readonly what: string;
  readonly at: number;
  readonly end: number;
  readonly ok: boolean;
  readonly status: number;
  readonly rpcCode: number | null;
  readonly message: string;
}

const outcomes: Outcome[] = [];
let running = true;

function rpcError(r: RawResponse): { code: number; message: string } | null {
  const e = (r.json as { error?: { code?: number; message?: string } } | undefined)?.error;
  return e === undefined ? null : { code: e.code ?? 0, message: e.message ?? '' };
}

/** One HTTP exchange, recorded; `check` may turn a 2xx answer into a failure (a missing progress event, say). */
async function exchange(
  op: Op,
  what: string,
  url: string,
  opts: Parameters<typeof rawRequest>[1],
  check: (r: RawResponse) => string | null = () => null,
): Promise<RawResponse | null> {
  const at = Date.now();
  try {
    const r = await rawRequest(url, { ...opts, timeoutMs: REQUEST_TIMEOUT_MS });
    const err = rpcError(r);
    const problem = r.status < 200 || r.status > 299 ? `HTTP ${r.status}` : err !== null ? 'JSON-RPC error' : check(r);
    outcomes.push({
      op,
      what,
      at,
      end: Date.now(),
      ok: problem === null,
      status: r.status,
      rpcCode: err?.code ?? null,
      message: problem === null ? '' : `${problem}${err !== null ? `: ${err.message}` : r.status >= 300 ? `: ${r.text.slice(0, 160)}` : ''}`,
    });
    return r;
  } catch (e) {
    outcomes.push({ op, what, at, end: Date.now(), ok: false, status: 0, rpcCode: null, message: String((e as Error).message ?? e).slice(0, 160) });
    return null;
  }
}

/** One client: its own session, a random mix of operations, each sent when the previous one is answered. */
async function worker(n: number, mcpUrl: string): Promise<void> {
  let rnd = 0x9e3779b9 ^ (n * 0x85ebca6b);
  const random = (): number => {
    // xorshift32: the same mix on every run.
    rnd ^= rnd << 13;
    rnd ^= rnd >>> 17;
    rnd ^= rnd << 5;
    return (rnd >>> 0) / 2 ** 32;
  };
  let id = 0;
  let session: { id: string; version: string } | null = null;
  const headers = (): Record<string, string> => (session === null ? {} : { 'mcp-session-id': session.id, 'mcp-protocol-version': session.version });
  const post = (op: Op, what: string, body: object, check?: (r: RawResponse) => string | null): Promise<RawResponse | null> =>
    exchange(op, what, mcpUrl, { body, headers: headers() }, check);

  const open = async (op: Op): Promise<void> => {
    const at = Date.now();
    try {
      const s = await rawInitialize(mcpUrl, {});
      session = { id: s.sessionId!, version: s.protocolVersion };
      outcomes.push({ op, what: 'initialize', at, end: Date.now(), ok: true, status: 200, rpcCode: null, message: '' });
    } catch (e) {
      session = null;
      const m = /HTTP (\d+): (.*)/s.exec(String((e as Error).message));
      let rpc: number | null = null;
      try {
        rpc = (JSON.parse(m?.[2] ?? '') as { error?: { code?: number } }).error?.code ?? null;
      } catch {
        // not JSON
      }
      outcomes.push({ op, what: 'initialize', at, end: Date.now(), ok: false, status: Number(m?.[1] ?? 0), rpcCode: rpc, message: String((e as Error).message).slice(0, 160) });
    }
  };

  while (running) {
    if (session === null) {
      await open('initialize');
      if (session === null) {
        await sleep(50);
        continue;
      }
    }
    const p = random();
    id += 1;
    let r: RawResponse | null = null;
    if (p < 0.35) {
      r =
        random() < 0.5
          ? await post('call', 'tools/call alpha__echo', { jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'alpha__echo', arguments: { text: `w${n}-${id}` } } }, (x) =>
              JSON.stringify(x.json).includes(`alpha: w${n}-${id}`) ? null : 'wrong result',
            )
          : await post('call', 'tools/call beta__add', { jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'beta__add', arguments: { a: id, b: 1 } } }, (x) =>
              JSON.stringify(x.json).includes(String(id + 1)) ? null : 'wrong result',
            );
    } else if (p < 0.55) {
      const method = ['tools/list', 'prompts/list', 'resources/list', 'resources/templates/list'][Math.floor(random() * 4)]!;
      r = await post('list', method, { jsonrpc: '2.0', id, method, params: {} }, (x) =>
        (x.json as { result?: unknown } | undefined)?.result === undefined ? 'no result' : null,
      );
    } else if (p < 0.7) {
      const token = `w${n}-p${id}`;
      r = await post(
        'progress',
        'tools/call alpha__slow_progress (SSE)',
        { jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'alpha__slow_progress', arguments: { seconds: 0.3, steps: 3 }, _meta: { progressToken: token } } },
        (x) => {
          const progress = x.messages.filter((m) => (m as { method?: string }).method === 'notifications/progress').length;
          if (progress !== 3) return `${progress} of 3 progress notifications`;
          return JSON.stringify(x.json).includes('done 3') ? null : 'no result';
        },
      );
    } else if (p < 0.77) {
      r = await post('ping', 'ping', { jsonrpc: '2.0', id, method: 'ping' });
    } else if (p < 0.9) {
      // A client that ends its session and starts a new one.
      r = await exchange('delete', 'DELETE session', mcpUrl, { method: 'DELETE', headers: headers() });
      session = null;
      await open('renew');
      continue;
    } else if (p < 0.93) {
      // A client that walks away from its session (it idles out on the gateway).
      session = null;
      await open('abandon');
      continue;
    } else {
      const method = random() < 0.5 ? 'tools/list' : 'resources/list';
      r = await post('list', method, { jsonrpc: '2.0', id, method, params: {} });
    }
    // An unknown session (it was ended) is answered 404: a real client initializes again.
    if (r !== null && r.status === 404) session = null;
    await sleep(5);
  }
}

// ------------------------------------------------------------------------------------------------
// processes and their figures

function rssMiB(pid: number | null | undefined): number | null {
  if (pid === null || pid === undefined) return null;
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? null : Math.round(Number(m[1]) / 102.4) / 10;
  } catch {
    return null;
  }
}

interface Upstream {
  readonly name: string;
  readonly url: string;
  readonly child: ChildProcess;
  readonly output: OutputBuffer;
}

async function startUpstream(name: string, port: number): Promise<Upstream> {
  const child = trackChild(spawn(process.execPath, [DEMO_MAIN, '--name', name, '--port', String(port), '--host', '127.0.0.1'], { stdio: ['ignore', 'pipe', 'pipe'] }));
  const output = new OutputBuffer(256 * 1024).attach(child);
  await waitUntil(() => isPortOpen(port), { timeoutMs: 15_000, what: () => `upstream ${name}\n${output.text()}` });
  return { name, url: `http://127.0.0.1:${port}/mcp`, child, output };
}

interface Sample {
  readonly t: number;
  readonly requests: number;
  readonly failures: number;
  readonly rss: Record<string, number | null>;
  /** Process ids of the two replicas (a restart starts a new process). */
  readonly replicaPids: readonly (number | null)[];
  readonly envoy: Record<string, number>;
  readonly redis: { keys: number; usedMiB: number };
  readonly load: string;
  readonly healthyReplicas: number;
}

/** Envoy figures that must stay level (gauges) or stop rising (counters), by a short label. */
function envoyFigures(stats: Record<string, number>): Record<string, number> {
  const pick = (re: RegExp): number => Object.entries(stats).reduce((a, [k, v]) => (re.test(k) ? a + v : a), 0);
  return {
    processor_cx_active: pick(/^cluster\.mcpgw_processor\.upstream_cx_active$/),
    processor_rq_active: pick(/^cluster\.mcpgw_processor\.upstream_rq_active$/),
    processor_rq_total: pick(/^cluster\.mcpgw_processor\.upstream_rq_total$/),
    processor_retry: pick(/^cluster\.mcpgw_processor\.upstream_rq_retry$/),
    processor_retry_overflow: pick(/^cluster\.mcpgw_processor\.upstream_rq_retry_overflow$/),
    processor_pending_overflow: pick(/^cluster\.mcpgw_processor\.upstream_rq_pending_overflow$/),
    processor_hc_failure: pick(/^cluster\.mcpgw_processor\.health_check\.failure$/),
    ext_proc_streams_started: pick(/\.ext_proc\.streams_started$/),
    ext_proc_streams_open: pick(/\.ext_proc\.streams_started$/) - pick(/\.ext_proc\.streams_closed$/),
    ext_proc_streams_failed: pick(/\.ext_proc\.streams_failed$/),
    upstream_cx_active: pick(/^cluster\.mcp_(alpha|beta)\.upstream_cx_active$/),
    downstream_cx_active: pick(/^http\.[^.]+\.downstream_cx_active$/),
    downstream_rq_active: pick(/^http\.[^.]+\.downstream_rq_active$/),
    memory_allocated_mib: Math.round(pick(/^server\.memory_allocated$/) / 104857.6) / 10,
  };
}

// ------------------------------------------------------------------------------------------------
// the run

interface RestartEvent {
  readonly replica: number;
  readonly signal: string;
  readonly at: number;
  exitedAt: number;
  healthyAt: number;
}

const hardStop = setTimeout(() => {
  process.stderr.write(`soak: still running ${DEADLINE_MS / 60_000} minutes after the start: stopping everything\n`);
  killAllTracked();
  process.exit(2);
}, DEADLINE_MS);
hardStop.unref();

async function main(): Promise<number> {
  const started = Date.now();
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-soak-'));
  const redis = await RedisServer.start();
  const [listen, internal, envoyAdminPort, g1, g2, a1, a2, pa, pb] = await freePorts(9);
  const upstreams = [await startUpstream('alpha', pa!), await startUpstream('beta', pb!)];
  const config = parseConfig({
    gateway: {
      listen: `127.0.0.1:${listen}`,
      internal: `127.0.0.1:${internal}`,
      envoy_admin: `127.0.0.1:${envoyAdminPort}`,
      processor: [`127.0.0.1:${g1}`, `127.0.0.1:${g2}`],
      admin: `127.0.0.1:${a1}`,
      // Abandoned sessions idle out within the run, so their number levels off.
      session_idle_timeout: '2m',
    },
    servers: { alpha: { url: upstreams[0]!.url }, beta: { url: upstreams[1]!.url } },
    // Generous: every call still goes through the shared limiter in Redis.
    rate_limits: { alpha: { requests_per_minute: 1_000_000 }, beta: { requests_per_minute: 1_000_000 } },
    redis: { url: redis.url },
    logging: { operations: false },
  });
  const file = join(dir, 'gateway.yaml');
  writeFileSync(file, stringify(config));
  // Started as the image starts them (same V8 flags), so their memory is what a deployment sees.
  const replicas = [
    new Replica(file, `127.0.0.1:${g1}`, `127.0.0.1:${a1}`, PROCESSOR_NODE_FLAGS),
    new Replica(file, `127.0.0.1:${g2}`, `127.0.0.1:${a2}`, PROCESSOR_NODE_FLAGS),
  ];
  let envoy: EnvoyHandle | undefined;
  const redisProbe = new Redis(redis.url, { maxRetriesPerRequest: 1, lazyConnect: false });
  redisProbe.on('error', () => {});
  const events: RestartEvent[] = [];
  const samples: Sample[] = [];
  try {
    await Promise.all(replicas.map((r) => r.start()));
    envoy = await startEnvoy(renderEnvoyBootstrap(config));
    await waitForProcessorHosts(envoy.adminUrl, 2);
    const mcpUrl = `http://127.0.0.1:${listen}/mcp`;
    const env = envoy;

    const sample = async (): Promise<Sample> => {
      const info = await redisProbe.info('memory').catch(() => '');
      const s: Sample = {
        t: Math.round((Date.now() - started) / 1000),
        requests: outcomes.length,
        failures: outcomes.filter((o) => !o.ok).length,
        rss: {
          'replica 1': rssMiB(replicas[0]!.pid),
          'replica 2': rssMiB(replicas[1]!.pid),
          envoy: rssMiB(env.pid),
          redis: rssMiB(redis.pid),
          'upstream alpha': rssMiB(upstreams[0]!.child.pid),
          'upstream beta': rssMiB(upstreams[1]!.child.pid),
          'load driver': Math.round(process.memoryUsage().rss / 104857.6) / 10,
        },
        replicaPids: replicas.map((r) => r.pid),
        envoy: envoyFigures(await env.stats().catch(() => ({}))),
        redis: {
          keys: Number(await redisProbe.dbsize().catch(() => -1)),
          usedMiB: Math.round(Number(/used_memory:(\d+)/.exec(info)?.[1] ?? 0) / 104857.6) / 10,
        },
        load: loadavg()
          .map((l) => l.toFixed(2))
          .join(' '),
        healthyReplicas: await healthyProcessorHosts(env.adminUrl).catch(() => -1),
      };
      samples.push(s);
      const prev = samples.at(-2);
      const rate = prev === undefined || s.t === prev.t ? 0 : Math.round((s.requests - prev.requests) / (s.t - prev.t));
      const rss = Object.entries(s.rss)
        .map(([k, v]) => `${k} ${v ?? '-'}`)
        .join(', ');
      const e = s.envoy;
      process.stdout.write(
        `[${String(s.t).padStart(4)}s] requests ${s.requests} (${rate}/s) failed ${s.failures} | replicas healthy ${s.healthyReplicas} | load ${s.load}\n` +
          `        RSS MiB: ${rss}\n` +
          `        envoy: processor cx ${e['processor_cx_active']} rq ${e['processor_rq_active']}, ext_proc open ${e['ext_proc_streams_open']} failed ${e['ext_proc_streams_failed']}, ` +
          `retry ${e['processor_retry']} overflow ${e['processor_retry_overflow']} pending_overflow ${e['processor_pending_overflow']}, hc failures ${e['processor_hc_failure']}, ` +
          `upstream cx ${e['upstream_cx_active']}, downstream cx ${e['downstream_cx_active']} rq ${e['downstream_rq_active']}, heap ${e['memory_allocated_mib']} MiB | redis keys ${s.redis.keys} mem ${s.redis.usedMiB} MiB\n`,
      );
      return s;
    };

    process.stdout.write(
      `soak: ${DURATION_MS / 60_000} min, ${WORKERS} clients, a replica restarted (${SIGNAL}) every ${RESTART_EVERY_MS / 1000} s, samples every ${SAMPLE_EVERY_MS / 1000} s; node ${process.version}\n`,
    );
    await sample();
    const loops = Array.from({ length: WORKERS }, (_, i) => worker(i, mcpUrl));

    // Restarts, alternating replicas, on schedule; samples in between.
    let nextSample = started + SAMPLE_EVERY_MS;
    let nextRestart = started + RESTART_EVERY_MS;
    const end = started + DURATION_MS;
    let which = 0;
    while (Date.now() < end) {
      const now = Date.now();
      if (now >= nextRestart && nextRestart <= end - LAST_RESTART_BEFORE_END_MS) {
        const r = replicas[which]!;
        const ev: RestartEvent = { replica: which + 1, signal: SIGNAL, at: Date.now(), exitedAt: 0, healthyAt: 0 };
        events.push(ev);
        process.stdout.write(`[${String(Math.round((ev.at - started) / 1000)).padStart(4)}s] ${SIGNAL} replica ${ev.replica}\n`);
        if (SIGNAL === 'SIGKILL') r.kill();
        else r.terminate();
        await r.exited(30_000);
        ev.exitedAt = Date.now();
        await r.start();
        await waitForProcessorHosts(env.adminUrl, 2);
        ev.healthyAt = Date.now();
        process.stdout.write(
          `        replica ${ev.replica} exited after ${ev.exitedAt - ev.at} ms, back in Envoy ${ev.healthyAt - ev.at} ms after the signal\n`,
        );
        which = 1 - which;
        nextRestart += RESTART_EVERY_MS;
        continue;
      }
      if (now >= nextSample) {
        await sample();
        nextSample += SAMPLE_EVERY_MS;
        continue;
      }
      await sleep(Math.max(10, Math.min(nextSample, nextRestart, end) - Date.now()));
    }
    await sample();
    running = false;
    await Promise.all(loops);
  } finally {
    running = false;
    redisProbe.disconnect();
    await envoy?.stop().catch(() => undefined);
    await Promise.all(replicas.map((r) => r.stop().catch(() => undefined)));
    await Promise.all(upstreams.map((u) => stopChild(u.child).catch(() => undefined)));
    await redis.stop().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
  // What the replicas logged about trouble (Redis outages carry their length and failed calls).
  const notes = replicas.flatMap((r, i) =>
    r.output
      .text()
      .split('\n')
      .filter((l) => /"level":("warn"|"error"|"fatal"|40|50|60)/.test(l))
      .map((l) => `replica ${i + 1}: ${l.slice(0, 400)}`),
  );
  return report(started, events, samples, notes);
}

// ------------------------------------------------------------------------------------------------
// the verdict

type FailureClass = 'in flight at a kill' | 'sent before the health check saw a kill' | 'in flight at a SIGTERM' | 'restart window' | 'other';

function classify(o: Outcome, events: readonly RestartEvent[]): FailureClass {
  for (const e of events) if (o.at < e.at && o.end >= e.at) return e.signal === 'SIGKILL' ? 'in flight at a kill' : 'in flight at a SIGTERM';
  // Until Envoy's next health check marks a killed replica, a retry of a stream it refused may
  // still pick it: the README allows failures for that one interval after the process is gone.
  for (const e of events) {
    if (e.signal === 'SIGKILL' && o.at >= e.at && o.at < Math.max(e.at, e.exitedAt) + PROCESSOR_HEALTH_CHECK.intervalMs) return 'sent before the health check saw a kill';
  }
  for (const e of events) if (o.at >= e.at && o.at <= e.healthyAt) return 'restart window';
  return 'other';
}

/**
 * A figure that keeps growing: after the first fifth of the run (warm-up), the lowest value in
 * the last third is above the highest in the first third by more than `tolerance` (relative) and
 * `slack` (absolute). A figure that rises and then levels off passes; one that only climbs fails.
 */
function grows(series: readonly { t: number; v: number }[], tolerance: number, slack: number): { grew: boolean; first: number; last: number } {
  const tMax = series.at(-1)?.t ?? 0;
  const warm = series.filter((p) => p.t >= tMax / 5);
  if (warm.length < 3) return { grew: false, first: series[0]?.v ?? 0, last: series.at(-1)?.v ?? 0 };
  const third = Math.max(1, Math.floor(warm.length / 3));
  const firstMax = Math.max(...warm.slice(0, third).map((p) => p.v));
  const lastMin = Math.min(...warm.slice(-third).map((p) => p.v));
  return { grew: lastMin > firstMax * (1 + tolerance) + slack, first: firstMax, last: lastMin };
}

function report(started: number, events: readonly RestartEvent[], samples: readonly Sample[], notes: readonly string[]): number {
  const failed = outcomes.filter((o) => !o.ok);
  const byOp = new Map<string, { total: number; failed: number }>();
  for (const o of outcomes) {
    const k = byOp.get(o.op) ?? { total: 0, failed: 0 };
    k.total += 1;
    if (!o.ok) k.failed += 1;
    byOp.set(o.op, k);
  }
  const classes = new Map<FailureClass, Map<string, number>>();
  for (const o of failed) {
    const c = classify(o, events);
    const kinds = classes.get(c) ?? new Map<string, number>();
    const key = `HTTP ${o.status}${o.rpcCode === null ? '' : ` JSON-RPC ${o.rpcCode}`} ${o.what}: ${o.message}`;
    kinds.set(key, (kinds.get(key) ?? 0) + 1);
    classes.set(c, kinds);
  }
  const out: string[] = [];
  const seconds = (Date.now() - started) / 1000;
  out.push('', '=== soak result ===');
  out.push(`duration ${(seconds / 60).toFixed(1)} min, ${outcomes.length} requests (${Math.round(outcomes.length / seconds)}/s), ${failed.length} failed`);
  out.push(`by operation: ${[...byOp].map(([k, v]) => `${k} ${v.total}${v.failed > 0 ? ` (${v.failed} failed)` : ''}`).join(', ')}`);
  out.push(
    `restarts (${events.length}): ${events.map((e) => `replica ${e.replica} ${e.signal} at ${Math.round((e.at - started) / 1000)} s, back after ${((e.healthyAt - e.at) / 1000).toFixed(1)} s`).join('; ') || 'none'}`,
  );
  for (const c of ['in flight at a kill', 'sent before the health check saw a kill', 'in flight at a SIGTERM', 'restart window', 'other'] as const) {
    const kinds = classes.get(c);
    const n = kinds === undefined ? 0 : [...kinds.values()].reduce((a, b) => a + b, 0);
    out.push(`failed, ${c}: ${n}`);
    for (const [k, v] of kinds ?? []) out.push(`    ${v} × ${k}`);
  }
  // Failures close together (less than a second apart) as one burst: when, how long, how many.
  const bursts: { from: number; to: number; n: number }[] = [];
  for (const o of [...failed].sort((a, b) => a.at - b.at)) {
    const b = bursts.at(-1);
    if (b !== undefined && o.at - b.to < 1000) {
      b.to = Math.max(b.to, o.end);
      b.n += 1;
    } else bursts.push({ from: o.at, to: o.end, n: 1 });
  }
  for (const b of bursts.slice(0, 20)) out.push(`  burst at ${((b.from - started) / 1000).toFixed(1)} s, ${b.to - b.from} ms long: ${b.n} failed`);
  if (notes.length > 0) out.push(`replica warnings and errors (${notes.length}, first 30):`, ...notes.slice(0, 30).map((n) => `  ${n}`));

  // Whole-run processes (replicas restart, so each replica's RSS is judged per lifetime in the text only).
  const flags: string[] = [];
  const first = samples[0];
  const last = samples.at(-1);
  if (first !== undefined && last !== undefined) {
    out.push(`RSS MiB start → end: ${Object.keys(last.rss).map((k) => `${k} ${first.rss[k] ?? '-'} → ${last.rss[k] ?? '-'}`).join(', ')}`);
    out.push(`  (replicas restart during the run: their end figure is of the process started last)`);
    // Each replica process on its own: RSS when first sampled, at its last sample, and its peak.
    const lives = new Map<string, { t: number; v: number }[]>();
    for (const s of samples) {
      s.replicaPids.forEach((pid, i) => {
        const v = s.rss[`replica ${i + 1}`];
        if (pid === null || v === null || v === undefined) return;
        const key = `replica ${i + 1} pid ${pid}`;
        lives.set(key, [...(lives.get(key) ?? []), { t: s.t, v }]);
      });
    }
    for (const [key, series] of lives) {
      const peak = Math.max(...series.map((p) => p.v));
      out.push(`  ${key}: ${series[0]!.t}-${series.at(-1)!.t} s, RSS ${series[0]!.v} → ${series.at(-1)!.v} MiB (peak ${peak}; samples ${series.map((p) => p.v).join(' ')})`);
    }
    // The upstreams and the load driver are test programs: their memory is shown, not judged.
    for (const k of ['envoy', 'redis']) {
      const g = grows(samples.filter((s) => s.rss[k] !== null).map((s) => ({ t: s.t, v: s.rss[k]! })), 0.1, 8);
      if (g.grew) flags.push(`RSS of ${k} kept growing: ${g.first} → ${g.last} MiB`);
    }
    const gauges: [string, (s: Sample) => number, number][] = [
      ['envoy processor connections', (s) => s.envoy['processor_cx_active']!, 4],
      ['envoy open ext_proc streams', (s) => s.envoy['ext_proc_streams_open']!, WORKERS * 2],
      ['envoy upstream connections', (s) => s.envoy['upstream_cx_active']!, 8],
      ['envoy downstream connections', (s) => s.envoy['downstream_cx_active']!, WORKERS],
      ['envoy heap', (s) => s.envoy['memory_allocated_mib']!, 4],
      ['redis keys', (s) => s.redis.keys, 50],
      ['redis memory', (s) => s.redis.usedMiB, 2],
    ];
    for (const [name, f, slack] of gauges) {
      const g = grows(samples.map((s) => ({ t: s.t, v: f(s) })), 0.1, slack);
      out.push(`${name}: ${f(first)} → ${f(last)}${g.grew ? '  KEEPS GROWING' : ''}`);
      if (g.grew) flags.push(`${name} kept growing: ${g.first} → ${g.last}`);
    }
    // Counters that only a restart may move: any rise in a sample interval without one is a flag.
    for (const name of ['processor_retry_overflow', 'processor_pending_overflow', 'ext_proc_streams_failed']) {
      let quietRise = 0;
      for (let i = 1; i < samples.length; i++) {
        const a = samples[i - 1]!;
        const b = samples[i]!;
        const restart = events.some((e) => e.at - started <= b.t * 1000 + 1000 && e.healthyAt - started >= a.t * 1000 - 1000);
        if (!restart) quietRise += b.envoy[name]! - a.envoy[name]!;
      }
      out.push(`envoy ${name}: ${first.envoy[name]} → ${last.envoy[name]} (rise outside restarts: ${quietRise})`);
      if (quietRise > 0) flags.push(`envoy ${name} rose by ${quietRise} outside restarts`);
    }
    out.push(`load average (1/5/15 min) at start: ${first.load}, at end: ${last.load}`);
  }
  const beyondInFlight = (classes.get('restart window')?.size ?? 0) + (classes.get('other')?.size ?? 0) + (classes.get('in flight at a SIGTERM')?.size ?? 0);
  if (beyondInFlight > 0) flags.push('requests failed beyond those in flight at a kill');
  out.push(flags.length === 0 ? 'verdict: PASS' : `verdict: FAIL\n  - ${flags.join('\n  - ')}`);
  process.stdout.write(`${out.join('\n')}\n`);
  if (args.json !== undefined) {
    writeFileSync(
      args.json,
      JSON.stringify(
        {
          options: { minutes: DURATION_MS / 60_000, restartEverySeconds: RESTART_EVERY_MS / 1000, workers: WORKERS, signal: SIGNAL },
          requests: outcomes.length,
          byOperation: Object.fromEntries(byOp),
          failures: Object.fromEntries([...classes].map(([c, kinds]) => [c, Object.fromEntries(kinds)])),
          restarts: events.map((e) => ({ ...e, at: e.at - started, exitedAt: e.exitedAt - started, healthyAt: e.healthyAt - started })),
          samples,
          flags,
        },
        null,
        2,
      ),
    );
  }
  return flags.length === 0 ? 0 : 1;
}

main().then(
  (code) => {
    process.exitCode = code;
    clearTimeout(hardStop);
  },
  (err: unknown) => {
    process.stderr.write(`soak: could not run: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    killAllTracked();
    process.exitCode = 2;
  },
);
