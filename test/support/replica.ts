/**
 * A processor replica as its own process (the CLI's `serve`), killable and restartable on the same
 * addresses, and how Envoy sees the replicas: for tests that run several.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { httpGet, OutputBuffer, stopChild, trackChild, waitUntil } from './proc.js';

const CLI = fileURLToPath(new URL('../../src/main.js', import.meta.url));

/** One processor replica as its own process, killable and restartable on the same addresses. */
export class Replica {
  private child: ChildProcess | null = null;
  readonly output = new OutputBuffer(2 * 1024 * 1024);

  constructor(
    private readonly configFile: string,
    readonly grpc: string,
    readonly admin: string,
  ) {}

  async start(): Promise<void> {
    const child = spawn(process.execPath, [CLI, 'serve', '--config', this.configFile, '--grpc', this.grpc, '--admin', this.admin], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    trackChild(child);
    this.output.attach(child);
    this.child = child;
    await waitUntil(async () => (await httpGet(`http://${this.admin}/readyz`).catch(() => ({ status: 0 }))).status === 200, {
      timeoutMs: 15_000,
      what: () => `replica ${this.grpc} ready\n${this.output.text()}`,
    });
  }

  kill(): void {
    this.child?.kill('SIGKILL');
  }

  /** SIGKILL, resolved with the time the process was gone (its sockets closed by the kernel). */
  killed(): Promise<number> {
    const child = this.child;
    if (child === null || child.exitCode !== null || child.signalCode !== null) return Promise.resolve(Date.now());
    return new Promise((resolve) => {
      child.once('exit', () => resolve(Date.now()));
      child.kill('SIGKILL');
    });
  }

  /** Freezes the process (SIGSTOP): it holds its connections but answers nothing, like a hung one. */
  pause(): void {
    this.child?.kill('SIGSTOP');
  }

  resume(): void {
    this.child?.kill('SIGCONT');
  }

  async stop(): Promise<void> {
    if (this.child !== null) await stopChild(this.child);
  }

  async requestsServed(): Promise<number> {
    const text = (await httpGet(`http://${this.admin}/metrics`)).text;
    return text
      .split('\n')
      .filter((l) => l.startsWith('mcp_gateway_requests_total{'))
      .reduce((a, l) => a + Number(l.split(' ').pop()), 0);
  }
}

/** Processor hosts Envoy currently considers healthy. */
export async function healthyProcessorHosts(envoyAdmin: string): Promise<number> {
  const text = (await httpGet(`${envoyAdmin}/clusters`)).text;
  const hosts = new Set<string>();
  const failed = new Set<string>();
  for (const line of text.split('\n')) {
    if (!line.startsWith('mcpgw_processor::')) continue;
    const host = line.split('::')[1]!;
    if (!/^[\d.]+:\d+$/.test(host)) continue;
    hosts.add(host);
    if (line.includes('::health_flags::') && !line.endsWith('::healthy')) failed.add(host);
  }
  return hosts.size - failed.size;
}

/** Waits until Envoy sees exactly `n` healthy processor hosts. */
export async function waitForProcessorHosts(envoyAdmin: string, n: number): Promise<void> {
  await waitUntil(async () => (await healthyProcessorHosts(envoyAdmin)) === n, {
    timeoutMs: 15_000,
    what: () => `${n} healthy processor hosts in Envoy`,
  }).catch(async (err: Error) => {
    const clusters = (await httpGet(`${envoyAdmin}/clusters`)).text.split('\n').filter((l) => l.startsWith('mcpgw_processor::'));
    throw new Error(`${err.message}\n${clusters.join('\n')}`);
  });
}
