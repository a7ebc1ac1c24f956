/**
 * Child processes for the benchmark: the upstream demo server, the processor and Envoy, each in its
 * own process (so nothing shares the load generator's event loop), output going to log files (so
 * the bench process never spends CPU draining pipes), and their CPU time read from /proc.
 *
 * Every child is registered with test/support/proc.ts, which SIGKILLs it if this process exits
 * for any reason; `stop()` is the polite path (SIGTERM, then SIGKILL after a grace period).
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { PROCESSOR_NODE_FLAGS } from '../../src/lib/node-flags.js';
import { findEnvoyBinary } from '../support/envoy.js';
import { isPortOpen } from '../support/ports.js';
import { stopChild, tail, trackChild } from '../support/proc.js';

export interface BenchChild {
  readonly name: string;
  readonly pid: number;
  readonly logPath: string;
  readonly process: ChildProcess;
  /** Why it exited, or undefined while it runs. */
  exitDescription(): string | undefined;
  /** The last part of its log file (for error messages). */
  logTail(max?: number): string;
  /** SIGTERM, SIGKILL after `graceMs`; resolves once it is gone. Idempotent. */
  stop(graceMs?: number): Promise<void>;
}

let clockTicks: number | undefined;

/** `getconf CLK_TCK` (the unit of utime/stime in /proc/<pid>/stat), 100 if it cannot be read. */
export function clockTicksPerSecond(): number {
  if (clockTicks !== undefined) return clockTicks;
  try {
    const v = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    clockTicks = Number.isFinite(v) && v > 0 ? v : 100;
  } catch {
    clockTicks = 100;
  }
  return clockTicks;
}

/**
 * CPU time (user + system, all threads) a process has used so far, in ms, from /proc/<pid>/stat;
 * null if the process is gone. Resolution is one clock tick (10 ms at CLK_TCK=100).
 */
export function processCpuMs(pid: number): number | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name (field 2) is in parentheses and may contain spaces: split after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) return null;
  return ((utime + stime) * 1000) / clockTicksPerSecond();
}

/**
 * Machine-wide busy CPU time so far (all CPUs, everything but idle and iowait), in ms, from
 * /proc/stat; null if it cannot be read.
 */
export function machineBusyCpuMs(): number | null {
  let stat: string;
  try {
    stat = readFileSync('/proc/stat', 'utf8');
  } catch {
    return null;
  }
  const line = stat.split('\n', 1)[0] ?? '';
  if (!line.startsWith('cpu ')) return null;
  // user nice system idle iowait irq softirq steal (guest time is already inside user/nice)
  const v = line.trim().split(/\s+/).slice(1, 9).map(Number);
  if (v.length < 5 || v.some((x) => !Number.isFinite(x))) return null;
  const total = v.reduce((a, b) => a + b, 0);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  return ((total - idle) * 1000) / clockTicksPerSecond();
}

/** Starts `command args` with stdout and stderr appended to `logPath`. */
export function spawnLogged(name: string, command: string, args: string[], logPath: string, env: NodeJS.ProcessEnv = process.env): BenchChild {
  writeFileSync(logPath, `# ${command} ${args.join(' ')}\n`);
  const fd = openSync(logPath, 'a');
  let child: ChildProcess;
  try {
    child = trackChild(spawn(command, args, { stdio: ['ignore', fd, fd], env }));
  } finally {
    closeSync(fd);
  }
  let exitDescription: string | undefined;
  child.on('error', (err) => {
    exitDescription ??= `failed to start: ${err.message}`;
  });
  child.on('exit', (code, signal) => {
    exitDescription ??= signal !== null ? `killed by ${signal}` : `exited with code ${String(code)}`;
  });
  let stopping: Promise<void> | undefined;
  return {
    name,
    pid: child.pid ?? -1,
    logPath,
    process: child,
    exitDescription: () => exitDescription,
    logTail: (max = 4_000) => {
      try {
        return tail(readFileSync(logPath, 'utf8'), max);
      } catch {
        return '(no log)';
      }
    },
    stop: (graceMs = 3_000) => {
      stopping ??= stopChild(child, graceMs);
      return stopping;
    },
  };
}

/** Polls `check` until it is true; fails early (with the child's log) if the child exits. */
async function waitReady(child: BenchChild, what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const exited = child.exitDescription();
    if (exited !== undefined) {
      await sleep(50);
      throw new Error(`${child.name} ${exited} before ${what}\n--- ${child.name} log (${child.logPath}):\n${child.logTail()}`);
    }
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) {
      throw new Error(`${child.name}: not ready after ${timeoutMs} ms (waiting for ${what})\n--- ${child.name} log (${child.logPath}):\n${child.logTail()}`);
    }
    await sleep(50);
  }
}

async function httpStatus(url: string): Promise<{ status: number; text: string }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(1_000) });
  return { status: res.status, text: await res.text() };
}

/** Starts the demo MCP server `name` on `port` (dist/test/fixtures/mcp-servers/demo-main.js). */
export async function startDemoChild(opts: { name: string; port: number; dir: string; timeoutMs: number; jsonResponse?: boolean }): Promise<BenchChild> {
  const main = new URL('../fixtures/mcp-servers/demo-main.js', import.meta.url).pathname;
  const json = opts.jsonResponse === true;
  const child = spawnLogged(
    `upstream ${opts.name}${json ? ' (JSON)' : ''}`,
    process.execPath,
    [main, '--name', opts.name, '--port', String(opts.port), '--host', '127.0.0.1', ...(json ? ['--json-response'] : [])],
    join(opts.dir, `upstream-${opts.name}${json ? '-json' : ''}.log`),
  );
  await waitReady(child, `port ${opts.port} to accept connections`, opts.timeoutMs, () => isPortOpen(opts.port));
  return child;
}

/** Starts `node <PROCESSOR_NODE_FLAGS> dist/src/main.js serve --config <file>`; resolves once `/readyz` answers 200. */
export async function startProcessorChild(opts: {
  configPath: string;
  adminAddress: string;
  dir: string;
  timeoutMs: number;
  nodeArgs?: string[];
  logLevel?: string;
  /** For messages; default `processor`. */
  name?: string;
}): Promise<BenchChild> {
  const main = new URL('../../src/main.js', import.meta.url).pathname;
  const child = spawnLogged(
    opts.name ?? 'processor',
    process.execPath,
    [...PROCESSOR_NODE_FLAGS, ...(opts.nodeArgs ?? []), main, 'serve', '--config', opts.configPath, '--log-level', opts.logLevel ?? 'info'],
    join(opts.dir, 'processor.log'),
    process.env,
  );
  await waitReady(child, `http://${opts.adminAddress}/readyz`, opts.timeoutMs, async () => (await httpStatus(`http://${opts.adminAddress}/readyz`)).status === 200);
  return child;
}

export interface EnvoyChild extends BenchChild {
  readonly adminUrl: string;
  /** Counters and gauges from admin `/stats` whose names match `filter` (Envoy regex). */
  stats(filter: string): Promise<Record<string, number>>;
}

/**
 * Starts Envoy (`--concurrency 1`) on `yamlText`, stdout (access log) and stderr to a file;
 * resolves once admin `/ready` says LIVE.
 */
export async function startEnvoyChild(opts: { name: string; yamlText: string; dir: string; timeoutMs: number; logLevel?: string }): Promise<EnvoyChild> {
  const configPath = join(opts.dir, `${opts.name}.yaml`);
  const adminAddressPath = join(opts.dir, `${opts.name}.admin-address`);
  writeFileSync(configPath, opts.yamlText);
  const child = spawnLogged(
    opts.name,
    findEnvoyBinary(),
    [
      '-c',
      configPath,
      '--log-level',
      opts.logLevel ?? 'warn',
      '--concurrency',
      '1',
      '--disable-hot-restart',
      '--admin-address-path',
      adminAddressPath,
    ],
    join(opts.dir, `${opts.name}.log`),
  );
  let adminUrl = '';
  await waitReady(child, 'admin /ready to say LIVE', opts.timeoutMs, async () => {
    if (adminUrl === '') {
      const addr = (await readFile(adminAddressPath, 'utf8').catch(() => '')).trim();
      if (addr === '') return false;
      adminUrl = `http://${addr}`;
    }
    const { status, text } = await httpStatus(`${adminUrl}/ready`);
    return status === 200 && text.trim() === 'LIVE';
  });
  return {
    ...child,
    adminUrl,
    async stats(filter: string): Promise<Record<string, number>> {
      const res = await fetch(`${adminUrl}/stats?format=json&filter=${encodeURIComponent(filter)}`, { signal: AbortSignal.timeout(5_000) });
      const body = (await res.json()) as { stats?: Array<{ name?: unknown; value?: unknown }> };
      const out: Record<string, number> = {};
      for (const s of body.stats ?? []) {
        if (typeof s.name === 'string' && typeof s.value === 'number') out[s.name] = s.value;
      }
      return out;
    },
  };
}
