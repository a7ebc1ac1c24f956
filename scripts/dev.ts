/**
 * `npm run dev`: the whole gateway on your machine, on the ports of a config file.
 *
 *   node dist/scripts/dev.js [--config deploy/dev/gateway.yaml] [--log-level info] [--envoy-log-level warn]
 *
 * Starts a demo MCP server for every configured server whose URL is on loopback (unless something
 * already listens there), the processor (`node dist/src/main.js serve`), and Envoy with the
 * bootstrap from `node dist/src/main.js envoy-config`; waits until all are ready, prints where to
 * connect, and runs until Ctrl-C / SIGTERM, then stops everything. Child output is prefixed with
 * the component name.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { resolve as resolvePath, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';

import { sha256Hex } from '../src/auth/api-keys.js';
import { loadConfigFile } from '../src/config/load.js';
import type { Config } from '../src/config/schema.js';
import { PROCESSOR_NODE_FLAGS } from '../src/lib/node-flags.js';
import { startDemoServer } from '../test/fixtures/mcp-servers/demo-server.js';
import { startEnvoy, type EnvoyHandle } from '../test/support/envoy.js';
import { isPortOpen } from '../test/support/ports.js';
import { httpGet, killAllTracked, OutputBuffer, stopChild, trackChild, waitUntil } from '../test/support/proc.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MAIN_JS = join(ROOT, 'dist', 'src', 'main.js');
const DEFAULT_CONFIG = join(ROOT, 'deploy', 'dev', 'gateway.yaml');

const USAGE = `usage: npm run dev -- [--config FILE] [--log-level LEVEL] [--envoy-log-level LEVEL]

  --config FILE            gateway config (default deploy/dev/gateway.yaml)
  --log-level LEVEL        processor log level: trace|debug|info|warn|error (default info)
  --envoy-log-level LEVEL  Envoy log level: trace|debug|info|warn|error (default warn)
`;

type DemoServer = Awaited<ReturnType<typeof startDemoServer>>;

// ---------------------------------------------------------------------------------------------
// output

const COMPONENT_WIDTH = 9;
function say(component: string, line: string): void {
  process.stdout.write(`[${component}]`.padEnd(COMPONENT_WIDTH + 3) + line + '\n');
}
const dev = (line: string): void => say('dev', line);

/** Pino JSON lines → `12:00:00 INFO message key=value ...`; anything else unchanged. */
function formatProcessorLine(line: string): string {
  if (!line.startsWith('{')) return line;
  try {
    const rec = JSON.parse(line) as Record<string, unknown>;
    const { level, time, msg, service: _service, pid: _pid, hostname: _hostname, ...rest } = rec;
    const clock = typeof time === 'string' ? (time.split('T')[1] ?? time).replace(/\.\d+Z$/, '') : '';
    const fields = Object.entries(rest)
      .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
      .join(' ');
    return `${clock} ${String(level ?? '').toUpperCase().padEnd(5)} ${String(msg ?? '')}${fields ? `  ${fields}` : ''}`;
  } catch {
    return line;
  }
}

// ---------------------------------------------------------------------------------------------

function hostPort(hp: string): { host: string; port: number } {
  const i = hp.lastIndexOf(':');
  return { host: hp.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(hp.slice(i + 1)) };
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      config: { type: 'string', short: 'c' },
      'log-level': { type: 'string' },
      'envoy-log-level': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help === true) {
    process.stdout.write(USAGE);
    return 0;
  }
  const configPath = values.config !== undefined ? resolvePath(values.config) : DEFAULT_CONFIG;
  const logLevel = values['log-level'] ?? 'info';
  const envoyLogLevel = values['envoy-log-level'] ?? 'warn';

  const config: Config = await loadConfigFile(configPath);
  const g = config.gateway;
  const processorAddress = Array.isArray(g.processor) ? (g.processor[0] as string) : g.processor;
  dev(`config ${configPath}`);

  // --- everything we start, stopped in reverse order
  const demos: Array<{ name: string; server: DemoServer }> = [];
  let processor: ChildProcess | undefined;
  let envoy: EnvoyHandle | undefined;
  let shuttingDown = false;

  const stopAll = async (): Promise<void> => {
    if (envoy !== undefined) {
      dev('stopping envoy');
      await envoy.stop().catch((e: unknown) => dev(`envoy stop: ${(e as Error).message}`));
    }
    if (processor !== undefined) {
      dev('stopping processor');
      await stopChild(processor).catch((e: unknown) => dev(`processor stop: ${(e as Error).message}`));
    }
    for (const { name, server } of demos.reverse()) {
      await server.close().catch((e: unknown) => dev(`${name} close: ${(e as Error).message}`));
    }
    if (demos.length > 0) dev('stopped demo servers');
  };

  let finish: (code: number) => void = () => undefined;
  const finished = new Promise<number>((resolve) => {
    finish = resolve;
  });
  const shutdown = (code: number, reason: string): void => {
    if (shuttingDown) return;
    shuttingDown = true;
    dev(reason);
    void stopAll().then(() => finish(code));
  };
  let interrupts = 0;
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      if (++interrupts > 1) {
        dev(`${sig} again: killing everything now`);
        killAllTracked();
        process.exit(130);
      }
      shutdown(0, `${sig}: shutting down`);
    });
  }
  /** A component died on its own: give a signal that hit the whole process group a moment to arrive first. */
  const unexpectedExit = (what: string): void => {
    setTimeout(() => {
      if (!shuttingDown) shutdown(1, `${what}; stopping the rest`);
    }, 300);
  };

  try {
    // --- ports the gateway needs must be free (Envoy binds with SO_REUSEPORT, so a second dev
    // stack would otherwise silently share 8080 with the first)
    const wanted: Array<[string, string]> = [
      ['gateway.listen', g.listen],
      ['gateway.internal', g.internal],
      ['gateway.envoy_admin', g.envoy_admin],
      ['gateway.processor', processorAddress],
      ['gateway.admin', g.admin],
    ];
    for (const [field, addr] of wanted) {
      const { host, port } = hostPort(addr);
      if (await isPortOpen(port, host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host)) {
        throw new Error(`${field} ${addr} is already in use (another \`npm run dev\` still running?)`);
      }
    }

    // --- demo servers
    for (const [name, server] of Object.entries(config.servers)) {
      const url = new URL(server.url);
      if (!LOOPBACK.has(url.hostname)) {
        dev(`${name}: ${server.url} is not on loopback; not starting a demo server for it`);
        continue;
      }
      const host = url.hostname === 'localhost' ? '127.0.0.1' : url.hostname.replace(/^\[|\]$/g, '');
      const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
      if (await isPortOpen(port, host)) {
        dev(`${name}: something already listens on ${url.host}; using it as the upstream`);
        continue;
      }
      if (url.protocol !== 'http:' || url.pathname !== '/mcp') {
        dev(`${name}: note: demo servers speak plain http on /mcp, the config says ${server.url}`);
      }
      const demo = await startDemoServer({ name, port, host });
      demos.push({ name, server: demo });
      dev(`${name}: demo MCP server at ${demo.url}`);
    }

    // --- processor
    const processorOut = new OutputBuffer(1024 * 1024, (line) => say('processor', formatProcessorLine(line)));
    const child = trackChild(
      spawn(process.execPath, [...PROCESSOR_NODE_FLAGS, '--enable-source-maps', MAIN_JS, 'serve', '--config', configPath, '--log-level', logLevel], {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    );
    processor = child;
    processorOut.attach(child);
    let processorExit: string | undefined;
    child.on('exit', (code, signal) => {
      processorExit = signal !== null ? `killed by ${signal}` : `exited with code ${String(code)}`;
      if (!shuttingDown) {
        dev(`processor ${processorExit}`);
        unexpectedExit('the processor stopped');
      }
    });
    await waitUntil(
      async () => {
        if (processorExit !== undefined) throw new Error(`the processor ${processorExit} during start-up`);
        return (await httpGet(`http://${g.admin}/readyz`, 1_000).catch(() => ({ status: 0 }))).status === 200;
      },
      { timeoutMs: 20_000, intervalMs: 100, what: `the processor's http://${g.admin}/readyz` },
    );
    dev(`processor ready (pid ${child.pid ?? '?'})`);

    // --- envoy
    const { stdout: envoyYaml } = await promisify(execFile)(process.execPath, [MAIN_JS, 'envoy-config', '--config', configPath], {
      cwd: ROOT,
      maxBuffer: 16 * 1024 * 1024,
      encoding: 'utf8',
    });
    const started = await startEnvoy(envoyYaml, {
      name: 'envoy',
      logLevel: envoyLogLevel,
      keepAlive: true,
      readyTimeoutMs: 30_000,
      onOutput: (line) => say('envoy', line),
    });
    envoy = started;
    void started.waitForExit().then((how) => {
      if (!shuttingDown) {
        dev(`envoy ${how}`);
        unexpectedExit('Envoy stopped');
      }
    });
    dev(`envoy ready (pid ${started.pid})`);
  } catch (err) {
    dev(`start-up failed: ${(err as Error).message}`);
    shuttingDown = true;
    await stopAll();
    return 1;
  }

  // --- where to connect
  const base = `http://${g.listen.replace(/^0\.0\.0\.0:/, '127.0.0.1:')}`;
  const mcpUrl = `${base}/mcp`;
  const nameWidth = Math.max(...Object.keys(config.servers).map((n) => n.length));
  const lines = [
    '',
    'MCP gateway dev stack is up.',
    '',
    `  MCP endpoint:     ${mcpUrl}`,
    '  Passthrough:',
    ...Object.entries(config.servers).map(
      ([name, s]) => `    ${name.padEnd(nameWidth)}  ${base}/servers/${name}/mcp   (upstream ${s.url})`,
    ),
    `  Processor admin:  http://${g.admin}   (/healthz, /readyz, /metrics, /health/servers)`,
    ...(config.admin.console ? [`  Admin console:    http://${g.admin}/admin   (${consoleLogin(config)})`] : []),
    `  Envoy admin:      http://${g.envoy_admin}   (/stats, /clusters, /config_dump)`,
    '',
    `  MCP Inspector:    npx @modelcontextprotocol/inspector --transport http --server-url ${mcpUrl}`,
    '                    (or open it and pick transport "Streamable HTTP", URL above)',
    '',
    'Ctrl-C stops everything.',
    '',
  ];
  process.stdout.write(lines.join('\n') + '\n');

  return finished;
}

/** The dev config's console key (any user name, this as password); other keys are the operator's own. */
const DEV_CONSOLE_KEY = 'mcpgw-dev-console';

function consoleLogin(config: Config): string {
  const dev = config.admin.api_keys.some((k) => k.key_sha256.toLowerCase() === sha256Hex(DEV_CONSOLE_KEY));
  return dev ? `any user name, password ${DEV_CONSOLE_KEY}` : 'an admin.api_keys key as the password';
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`dev: ${err instanceof Error ? (err.name === "ConfigError" ? err.message : (err.stack ?? err.message)) : String(err)}\n`);
    killAllTracked();
    process.exit(1);
  },
);
