/**
 * The official Python MCP SDK as an upstream: a venv made on first use (under
 * node_modules/.cache, so a clean clone makes its own) with the pinned `mcp` release, and a server
 * written with it (test/fixtures/python/mcp_server.py) run as a child process.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { freePort, isPortOpen } from './ports.js';
import { OutputBuffer, stopChild, trackChild, waitUntil } from './proc.js';

/** The SDK release the tests run (2.x: its server class is `MCPServer`). */
export const PYTHON_MCP_VERSION = '2.3.0';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const VENV = join(ROOT, 'node_modules', '.cache', `mcpgw-python-mcp-${PYTHON_MCP_VERSION}`);
const SERVER_PY = join(ROOT, 'test', 'fixtures', 'python', 'mcp_server.py');
const run = promisify(execFile);

let venvReady: Promise<string> | null = null;

/** The venv's python, with `mcp` installed (made once per checkout; about 15 s with a warm pip cache). */
export function pythonWithMcp(): Promise<string> {
  venvReady ??= (async () => {
    const python = join(VENV, 'bin', 'python');
    const marker = join(VENV, '.mcp-installed');
    if (existsSync(marker)) return python;
    rmSync(VENV, { recursive: true, force: true });
    mkdirSync(join(VENV, '..'), { recursive: true });
    await run('python3', ['-m', 'venv', VENV], { timeout: 120_000 });
    await run(python, ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', `mcp==${PYTHON_MCP_VERSION}`], { timeout: 300_000 });
    writeFileSync(marker, `${PYTHON_MCP_VERSION}\n`);
    return python;
  })();
  return venvReady;
}

export interface PythonMcpServer {
  readonly url: string;
  readonly port: number;
  readonly output: OutputBuffer;
  /** Stops it and starts it again on the same port: every session it held is gone. */
  restart(): Promise<void>;
  close(): Promise<void>;
}

/** Starts the Python SDK server `name` on a free port; resolves once it accepts connections. */
export async function startPythonMcpServer(opts: { name: string; jsonResponse?: boolean }): Promise<PythonMcpServer> {
  const python = await pythonWithMcp();
  const port = await freePort();
  const output = new OutputBuffer(256 * 1024);
  let child: ChildProcess | null = null;
  const start = async (): Promise<void> => {
    const c = spawn(python, [SERVER_PY, '--port', String(port), '--name', opts.name, ...(opts.jsonResponse ? ['--json-response'] : [])], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    trackChild(c);
    output.attach(c);
    child = c;
    await waitUntil(() => isPortOpen(port), { timeoutMs: 20_000, what: () => `Python MCP server ${opts.name} on ${port}\n${output.text()}` });
  };
  await start();
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    port,
    output,
    async restart() {
      if (child !== null) await stopChild(child);
      await start();
    },
    async close() {
      if (child !== null) await stopChild(child);
    },
  };
}
