/**
 * `@modelcontextprotocol/server-everything`, the reference server that exercises every MCP
 * feature, run in its Streamable HTTP mode on a free loopback port.
 */
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { freePorts } from './ports.js';
import { OutputBuffer, stopChild, trackChild, waitUntil } from './proc.js';

export interface EverythingServer {
  /** `http://127.0.0.1:<port>/mcp`. */
  readonly url: string;
  /** What it printed (for a failing test's report). */
  output(): string;
  close(): Promise<void>;
}

export async function startEverythingServer(): Promise<EverythingServer> {
  const [port] = await freePorts(1);
  const entry = createRequire(import.meta.url).resolve('@modelcontextprotocol/server-everything/dist/index.js');
  const child = trackChild(spawn(process.execPath, [entry, 'streamableHttp'], { env: { ...process.env, PORT: String(port) }, stdio: ['ignore', 'pipe', 'pipe'] }));
  const out = new OutputBuffer().attach(child);
  await waitUntil(() => /listening on port/.test(out.text()), { timeoutMs: 20_000, what: `server-everything on ${port}:\n${out.text()}` });
  return { url: `http://127.0.0.1:${port}/mcp`, output: () => out.text(), close: () => stopChild(child) };
}
