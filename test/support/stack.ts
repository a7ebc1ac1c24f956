/**
 * The whole gateway for integration tests: demo MCP servers + the processor + a real Envoy, on
 * free ports, torn down without leaks.
 *
 * Pattern for a suite (node:test) — one stack per `describe`, logs dumped if any test failed:
 *
 *   import { describe, it } from 'node:test';
 *   import { useStack } from './stack.js';
 *
 *   describe('tools/list', () => {
 *     const stack = useStack({ demoServers: ['alpha', 'beta'] });
 *     it('lists both servers', async () => {
 *       const { client, close } = await connectClient(stack().mcpUrl);
 *       ...
 *     });
 *   });
 *
 * Pattern for a single test:
 *
 *   test('x', async (t) => {
 *     const stack = await withStack(t, { servers: { alpha: {} } });   // closed when t ends
 *   });
 *
 * Or by hand: `const stack = await startStack(opts); try { ... } finally { await stack.close(); }`
 * and `console.error(stack.logs())` when something is off.
 *
 * Environment knobs: `STACK_LOGS=always` dumps logs after every stack, not only on failure;
 * `STACK_ECHO=1` also streams processor and Envoy output live to stderr, prefixed;
 * `GATEWAY_TEST_LOG_LEVEL` sets the processor's log level (default `info`, captured in memory,
 * not printed); `ENVOY_LOG_LEVEL` sets Envoy's (default `warn`).
 */
import { spawn } from 'node:child_process';
import { request as httpsRequest } from 'node:https';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, afterEach, before, type TestContext } from 'node:test';
import { stringify as toYaml } from 'yaml';
import type { z } from 'zod';

import { run } from '../../src/app.js';
import type { ReloadOutcome } from '../../src/live-config.js';
import { createLogger } from '../../src/observability/logger.js';
import { parseConfig } from '../../src/config/load.js';
import type { Config, GatewaySchema, ServerSchema } from '../../src/config/schema.js';
import { renderEnvoyBootstrap, renderXdsBootstrap } from '../../src/envoy/bootstrap.js';
import { startDemoServer, type DemoServerOptions } from '../fixtures/mcp-servers/demo-server.js';
import { startEnvoy, type EnvoyHandle } from './envoy.js';
import { freePorts } from './ports.js';
import { httpGet, onProcessExit, OutputBuffer, stopChild, tail, trackChild, waitUntil } from './proc.js';

export type DemoServerHandle = Awaited<ReturnType<typeof startDemoServer>>;

/** Server options other than the URL (capabilities, auth_required, rate_limit, ...). */
export type ServerExtras = Omit<z.input<typeof ServerSchema>, 'url'>;

/**
 * A server in the stack: `{ port?, demoOptions?, ...extras }` starts a demo server of that name
 * (on `port` or a free one); `{ url, ...extras }` points at something already running and starts
 * nothing. `extras` are the server's other config fields (capabilities, auth_required, ...).
 */
export type StackServer = (
  | { port?: number; demoOptions?: Omit<DemoServerOptions, 'name' | 'port' | 'host'>; url?: undefined }
  | { url: string; port?: undefined; demoOptions?: undefined }
) &
  ServerExtras;

export interface StackOptions {
  /** Servers by name. When given, only these exist (plus `demoServers` if also given). */
  servers?: Record<string, StackServer>;
  /** Demo servers to start by name; default `['alpha', 'beta']` when `servers` is not given. */
  demoServers?: string[];
  /** Overrides for the `gateway` block; unset addresses get free ports on 127.0.0.1. */
  gateway?: Partial<z.input<typeof GatewaySchema>>;
  /** Deep-merged over the generated config before validation (e.g. `{ cache: {...} }`). */
  extraConfig?: Record<string, unknown>;
  /** `in-process` (default): `run()` in this process. `child`: `node dist/src/main.js serve`, logs captured. */
  processor?: 'in-process' | 'child';
  /** Processor log level (default `$GATEWAY_TEST_LOG_LEVEL` or `info`); its output is captured for `logs()`. */
  logLevel?: string;
  /** Also stream processor and Envoy output live to stderr, prefixed (default: `STACK_ECHO=1`). */
  echo?: boolean;
  /** Envoy `--log-level` / `--component-log-level`. */
  envoyLogLevel?: string;
  envoyComponentLogLevel?: string;
  /** `xds`: Envoy takes its listeners, routes and clusters from the processor (default `static`: all in its bootstrap). */
  envoyMode?: 'static' | 'xds';
  /** Bound on each readiness wait (default 20 s). */
  readyTimeoutMs?: number;
  /** After both are ready, check a request through Envoy gets an answer (default true). */
  probe?: boolean;
  /**
   * TLS material the readiness probe uses when `gateway.tls` is set: the CA that signed the
   * gateway's certificate (without it the probe does not verify the server), and a client
   * certificate and key (needed when `require_client_cert` is on).
   */
  tlsClient?: { ca?: string | Buffer; cert?: string | Buffer; key?: string | Buffer };
}

export interface ProcessorControl {
  readonly running: boolean;
  /** gRPC (ext_proc) and admin addresses, host:port. */
  readonly grpcAddress: string;
  readonly adminAddress: string;
  /** Stops the processor (Envoy keeps running), e.g. to test failure modes. */
  stop(): Promise<void>;
  /** Starts it again on the same addresses and waits for /readyz. */
  start(): Promise<void>;
}

export interface Stack {
  /** `http://127.0.0.1:<listen>/mcp`: the aggregated endpoint on Envoy (`https://` with `gateway.tls`). */
  readonly mcpUrl: string;
  /** `http://127.0.0.1:<listen>`: Envoy's client listener (`https://` with `gateway.tls`). */
  readonly baseUrl: string;
  /** `http://127.0.0.1:<listen>/servers/<name>/mcp`: the passthrough endpoint on Envoy. */
  serverUrl(name: string): string;
  /** The processor's admin base URL (`/healthz`, `/readyz`, ...). */
  readonly adminUrl: string;
  /** Envoy's admin base URL. */
  readonly envoyAdminUrl: string;
  /** Envoy's internal listener base URL. */
  readonly internalUrl: string;
  readonly envoy: EnvoyHandle;
  readonly processor: ProcessorControl;
  /** Demo servers by name (only those this stack started). */
  readonly demo: Record<string, DemoServerHandle>;
  /** The validated config the processor and Envoy run with. */
  readonly config: Config;
  /** With `processor: 'child'`: the config file it serves (and watches), and its pid; null in-process. */
  readonly configPath: string | null;
  processorPid(): number | null;
  /** In-process: swaps a config in (as a reload of the config file does); a raw config is validated first. */
  reload(raw: Record<string, unknown>): Promise<ReloadOutcome>;
  /** The rendered Envoy bootstrap YAML. */
  readonly envoyYaml: string;
  /** Envoy output, processor output (child mode), upstream state, config: paste into a bug report. */
  logs(): string;
  /** The processor's JSON log lines so far, parsed (both modes). */
  processorLogLines(): Record<string, unknown>[];
  /** Stops Envoy, the processor and the demo servers. Idempotent. */
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------

type PlainObject = Record<string, unknown>;

function isPlainObject(v: unknown): v is PlainObject {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** `b` merged into `a`: objects recursively, everything else (arrays included) replaced. */
export function deepMerge(a: PlainObject, b: PlainObject): PlainObject {
  const out: PlainObject = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const cur = out[k];
    out[k] = isPlainObject(cur) && isPlainObject(v) ? deepMerge(cur, v) : v;
  }
  return out;
}

const MAIN_JS = fileURLToPath(new URL('../../src/main.js', import.meta.url));

/** One GET over TLS for the readiness probe: the status, or an error (handshake refused, ...). */
function httpsProbe(url: string, tls: NonNullable<StackOptions['tlsClient']>, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      url,
      {
        method: 'GET',
        headers: { accept: 'text/event-stream' },
        ...(tls.ca !== undefined ? { ca: tls.ca } : { rejectUnauthorized: false }),
        ...(tls.cert !== undefined ? { cert: tls.cert } : {}),
        ...(tls.key !== undefined ? { key: tls.key } : {}),
        agent: false,
        timeout: timeoutMs,
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

async function httpOk(url: string, timeoutMs = 1_000): Promise<{ ok: boolean; status: number; text: string }> {
  try {
    const { status, text } = await httpGet(url, timeoutMs);
    return { ok: status >= 200 && status < 300, status, text };
  } catch (err) {
    return { ok: false, status: 0, text: (err as Error).message };
  }
}

function section(title: string, body: string): string {
  return `\n===== ${title} =====\n${body.trimEnd() || '(empty)'}\n`;
}

// ---------------------------------------------------------------------------------------------

/** Starts demo servers, the processor and Envoy; resolves once a request through Envoy works. */
export async function startStack(opts: StackOptions = {}): Promise<Stack> {
  // Free ports come from the kernel's ephemeral range, which outgoing connections also draw
  // from: between choosing a port and binding it, something else can take it. That is a race
  // of the test harness, not a gateway failure, so it gets a fresh set of ports (bounded).
  for (let attempt = 1; ; attempt++) {
    try {
      return await startStackOnce(opts);
    } catch (err) {
      if (attempt >= 3 || !/Address already in use|EADDRINUSE/.test(String(err))) throw err;
    }
  }
}

async function startStackOnce(opts: StackOptions): Promise<Stack> {
  const readyTimeoutMs = opts.readyTimeoutMs ?? 20_000;
  const logLevel = opts.logLevel ?? process.env['GATEWAY_TEST_LOG_LEVEL'] ?? 'info';
  const explicitLogLevel = opts.logLevel !== undefined || process.env['GATEWAY_TEST_LOG_LEVEL'] !== undefined;
  const mode = opts.processor ?? 'in-process';
  const echo = opts.echo ?? process.env['STACK_ECHO'] === '1';
  const echoLine =
    (component: string) =>
    (line: string): void => {
      if (echo) process.stderr.write(`[${component}] ${line}\n`);
    };
  const processorOutput = new OutputBuffer(4 * 1024 * 1024, echoLine('processor'));
  const notes: string[] = [];
  const note = (msg: string): void => {
    notes.push(`${new Date().toISOString()} ${msg}`);
  };

  // Everything started so far, stopped in reverse order by `teardown`.
  const cleanups: Array<{ what: string; fn: () => Promise<void> }> = [];
  const teardown = async (): Promise<void> => {
    const errors: string[] = [];
    while (cleanups.length > 0) {
      const c = cleanups.pop();
      if (c === undefined) break;
      try {
        await c.fn();
      } catch (err) {
        errors.push(`${c.what}: ${(err as Error).message}`);
      }
    }
    if (errors.length > 0) throw new Error(`stack close: ${errors.join('; ')}`);
  };

  const demo: Record<string, DemoServerHandle> = {};
  let envoy: EnvoyHandle | undefined;
  let config: Config | undefined;
  let envoyYaml = '';

  const logs = (): string => {
    let out = section('stack notes', notes.join('\n'));
    out += section(`envoy${envoy !== undefined ? ` (pid ${envoy.pid}, admin ${envoy.adminUrl})` : ''}`, envoy?.logs() ?? '(not started)');
    out += section(
      `processor (${mode})`,
      `${processorOutput.text()}\n(log level ${logLevel}; GATEWAY_TEST_LOG_LEVEL=debug for more)`,
    );
    out += section(
      'upstream demo servers',
      Object.entries(demo)
        .map(([n, d]) => {
          let sessions = '?';
          try {
            sessions = String(d.sessionCount());
          } catch {
            // closed
          }
          return `${n}: ${d.url} sessions=${sessions}`;
        })
        .join('\n'),
    );
    if (config !== undefined) out += section('gateway config', toYaml(config));
    if (envoyYaml !== '') out += section('envoy bootstrap', envoyYaml);
    return out;
  };

  const failWithLogs = async (stage: string, err: unknown): Promise<never> => {
    const dump = logs();
    await teardown().catch(() => undefined);
    throw new Error(`startStack failed while ${stage}: ${(err as Error)?.message ?? String(err)}\n${tail(dump, 40_000)}`, {
      cause: err,
    });
  };

  // --- ports
  const g = { ...(opts.gateway ?? {}) };
  const needed = (['listen', 'processor', 'admin', 'envoy_admin', 'internal'] as const).filter((k) => g[k] === undefined);
  const ports = await freePorts(needed.length);
  needed.forEach((k, i) => {
    g[k] = `127.0.0.1:${ports[i] as number}`;
  });
  const listen = g.listen as string;
  const envoyAdmin = g.envoy_admin as string;
  const internal = g.internal as string;

  // --- demo servers
  const serverSpecs: Record<string, StackServer> = { ...(opts.servers ?? {}) };
  for (const n of opts.demoServers ?? (opts.servers === undefined ? ['alpha', 'beta'] : [])) serverSpecs[n] ??= {};
  const servers: Record<string, PlainObject> = {};
  try {
    for (const [name, spec] of Object.entries(serverSpecs)) {
      const { port, url, demoOptions, ...extras } = spec;
      // An endpoint given (as url, or as the seed's primary): something already running.
      if (url !== undefined || extras.primary !== undefined) {
        servers[name] = url === undefined ? extras : { url, ...extras };
        continue;
      }
      const handle = await startDemoServer({ ...(demoOptions ?? {}), name, host: '127.0.0.1', ...(port !== undefined ? { port } : {}) });
      demo[name] = handle;
      cleanups.push({ what: `demo server ${name}`, fn: () => handle.close() });
      servers[name] = { url: handle.url, ...extras };
      note(`demo server ${name} at ${handle.url}`);
    }
  } catch (err) {
    return failWithLogs('starting demo servers', err);
  }

  // --- config
  try {
    let raw: PlainObject = { gateway: g, servers };
    if (opts.extraConfig !== undefined) raw = deepMerge(raw, opts.extraConfig);
    config = parseConfig(raw);
  } catch (err) {
    return failWithLogs('validating the config', err);
  }
  const cfg: Config = config;
  const grpcAddress = Array.isArray(cfg.gateway.processor) ? (cfg.gateway.processor[0] as string) : cfg.gateway.processor;

  // --- processor
  let tmpDir: string | undefined;
  if (mode === 'child') {
    const dir = mkdtempSync(join(tmpdir(), 'gateway-stack-'));
    tmpDir = dir;
    const unregister = onProcessExit(() => rmSync(dir, { recursive: true, force: true }));
    cleanups.push({
      what: 'temp dir',
      fn: async () => {
        unregister();
        rmSync(dir, { recursive: true, force: true });
      },
    });
  }
  let processorRunning = false;
  let actualGrpc = grpcAddress;
  let actualAdmin = cfg.gateway.admin;
  let stopProcessor: () => Promise<void> = async () => undefined;
  let childConfigPath: string | null = null;
  let reloadProcessor: ((config: Config) => Promise<ReloadOutcome>) | null = null;
  let childPid: number | null = null;

  const startProcessor = async (): Promise<void> => {
    if (processorRunning) return;
    if (mode === 'in-process') {
      // JSON lines into the in-memory buffer instead of stdout, so logs() has them.
      const logger = createLogger(logLevel, { write: (line: string) => processorOutput.push('stdout', line) });
      const handle = await run({ config: cfg, logLevel, logger });
      reloadProcessor = (next) => handle.reload(next);
      actualGrpc = handle.grpcAddress;
      actualAdmin = handle.adminAddress;
      stopProcessor = async () => {
        if (!processorRunning) return;
        processorRunning = false;
        note('processor stopped');
        await handle.close();
      };
    } else {
      const configPath = join(tmpDir as string, 'gateway.yaml');
      writeFileSync(configPath, toYaml(cfg));
      childConfigPath = configPath;
      const child = trackChild(
        // Without an explicit level the child logs at the config's own logging.level.
        spawn(process.execPath, [MAIN_JS, 'serve', '--config', configPath, ...(explicitLogLevel ? ['--log-level', logLevel] : [])], {
          stdio: ['ignore', 'pipe', 'pipe'],
        }),
      );
      processorOutput.attach(child);
      childPid = child.pid ?? null;
      child.on('exit', (code, signal) => {
        processorRunning = false;
        note(`processor pid ${child.pid ?? '?'} exited (${signal ?? String(code)})`);
      });
      stopProcessor = async () => {
        processorRunning = false;
        await stopChild(child);
      };
    }
    processorRunning = true;
    note(`processor started (${mode}) grpc=${actualGrpc} admin=${actualAdmin}`);
    await waitUntil(async () => (await httpOk(`http://${actualAdmin}/readyz`)).ok, {
      timeoutMs: readyTimeoutMs,
      what: `processor http://${actualAdmin}/readyz to answer 2xx`,
    });
  };
  cleanups.push({ what: 'processor', fn: () => stopProcessor() });
  try {
    await startProcessor();
  } catch (err) {
    return failWithLogs('starting the processor', err);
  }

  // --- envoy
  try {
    envoyYaml = opts.envoyMode === 'xds' ? renderXdsBootstrap(cfg) : renderEnvoyBootstrap(cfg);
    const started = await startEnvoy(envoyYaml, {
      readyTimeoutMs,
      onOutput: echoLine('envoy'),
      ...(opts.envoyLogLevel !== undefined ? { logLevel: opts.envoyLogLevel } : {}),
      ...(opts.envoyComponentLogLevel !== undefined ? { componentLogLevel: opts.envoyComponentLogLevel } : {}),
    });
    envoy = started;
    cleanups.push({ what: 'envoy', fn: () => started.stop() });
    note(`envoy pid ${started.pid} ready, admin ${started.adminUrl}`);
  } catch (err) {
    return failWithLogs('starting Envoy', err);
  }
  const envoyHandle: EnvoyHandle = envoy;

  const tls = cfg.gateway.tls !== undefined;
  const baseUrl = `${tls ? 'https' : 'http'}://${listen}`;
  const mcpUrl = `${baseUrl}/mcp`;

  // --- probe: a request through Envoy reaches the processor (any non-5xx answer will do)
  if (opts.probe !== false) {
    let last = '';
    try {
      await waitUntil(
        async () => {
          try {
            if (tls) {
              const status = await httpsProbe(mcpUrl, opts.tlsClient ?? {}, 2_000);
              last = `HTTP ${status}`;
              return status < 500;
            }
            const res = await fetch(mcpUrl, {
              method: 'GET',
              headers: { accept: 'text/event-stream' },
              signal: AbortSignal.timeout(2_000),
            });
            last = `HTTP ${res.status}`;
            await res.body?.cancel();
            return res.status < 500;
          } catch (err) {
            last = (err as Error).message;
            return false;
          }
        },
        { timeoutMs: readyTimeoutMs, intervalMs: 100, what: () => `GET ${mcpUrl} through Envoy to answer below 500 (last: ${last})` },
      );
      note(`probe GET ${mcpUrl}: ${last}`);
    } catch (err) {
      return failWithLogs('probing Envoy', err);
    }
  }

  let closing: Promise<void> | undefined;
  return {
    mcpUrl,
    baseUrl,
    serverUrl: (name: string) => {
      if (!(name in cfg.servers)) throw new Error(`stack has no server "${name}" (has ${Object.keys(cfg.servers).join(', ')})`);
      return `${baseUrl}/servers/${name}/mcp`;
    },
    get adminUrl() {
      return `http://${actualAdmin}`;
    },
    envoyAdminUrl: `http://${envoyAdmin}`,
    internalUrl: `http://${internal}`,
    envoy: envoyHandle,
    processor: {
      get running() {
        return processorRunning;
      },
      get grpcAddress() {
        return actualGrpc;
      },
      get adminAddress() {
        return actualAdmin;
      },
      stop: () => stopProcessor(),
      start: () => startProcessor(),
    },
    demo,
    config: cfg,
    configPath: childConfigPath,
    processorPid: () => (processorRunning ? childPid : null),
    reload: async (raw) => {
      if (reloadProcessor === null) throw new Error('reload() needs the in-process processor; a child reloads its config file');
      return reloadProcessor(parseConfig(raw));
    },
    envoyYaml,
    logs,
    processorLogLines: () =>
      processorOutput
        .text()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>),
    close: () => {
      closing ??= teardown();
      return closing;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// node:test helpers

function wantLogs(failed: boolean): boolean {
  return failed || process.env['STACK_LOGS'] === 'always';
}

function dumpLogs(label: string, stack: Stack): void {
  process.stderr.write(`\n######## stack logs: ${label} ########${stack.logs()}######## end of stack logs ########\n`);
}

/**
 * Inside a `describe()`: starts a stack in `before`, closes it in `after`, and dumps its logs to
 * stderr if any test of the suite failed. Returns a getter (the stack exists only once `before` ran).
 * `opts` may be a function, called in `before`, for options that depend on something started
 * first (e.g. a JWKS server's port).
 */
export function useStack(opts: StackOptions | (() => StackOptions | Promise<StackOptions>) = {}): () => Stack {
  let stack: Stack | undefined;
  let failed = false;
  let label = 'suite';
  before(async () => {
    stack = await startStack(typeof opts === 'function' ? await opts() : opts);
  });
  afterEach((t) => {
    if ((t as unknown as { passed?: boolean }).passed === false) {
      failed = true;
      label = t.fullName;
    }
  });
  after(async () => {
    if (stack === undefined) return;
    if (wantLogs(failed)) dumpLogs(label, stack);
    await stack.close();
  });
  return () => {
    if (stack === undefined) throw new Error('useStack: the stack is only available inside tests (after `before` ran)');
    return stack;
  };
}

/** Inside a `test()`: starts a stack that is closed when `t` ends (logs dumped to stderr if `t` failed). */
export async function withStack(t: TestContext, opts: StackOptions = {}): Promise<Stack> {
  const stack = await startStack(opts);
  t.after(async (ctx) => {
    const failed = (ctx as unknown as { passed?: boolean }).passed === false;
    if (wantLogs(failed)) dumpLogs(t.fullName, stack);
    await stack.close();
  });
  return stack;
}
