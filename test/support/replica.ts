/**
 * A processor replica as its own process (the CLI's `serve`), killable and restartable on the same
 * addresses, and how Envoy sees the replicas: for tests that run several.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { hasExited, httpGet, OutputBuffer, stopChild, trackChild, waitForExit, waitUntil } from './proc.js';

const CLI = fileURLToPath(new URL('../../src/main.js', import.meta.url));

/** One processor replica as its own process, killable and restartable on the same addresses. */
export class Replica {
  private child: ChildProcess | null = null;
  readonly output = new OutputBuffer(2 * 1024 * 1024);

  constructor(
    private readonly configFile: string,
    readonly grpc: string,
    readonly admin: string,
    /** Node options before the script, e.g. the V8 flags the image starts the processor with. */
    private readonly nodeArgs: readonly string[] = [],
  ) {}

  async start(): Promise<void> {
    const child = spawn(process.execPath, [...this.nodeArgs, CLI, 'serve', '--config', this.configFile, '--grpc', this.grpc, '--admin', this.admin], {
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

  /** The process id (null before start). */
  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  /** True while the process runs. */
  get running(): boolean {
    return this.child !== null && !hasExited(this.child);
  }

  /** Sends SIGTERM (a graceful drain) without waiting; see {@link exited}. */
  terminate(): void {
    this.child?.kill('SIGTERM');
  }

  /** Resolves when the process has exited; rejects after `timeoutMs`. */
  async exited(timeoutMs = 20_000): Promise<void> {
    const child = this.child;
    if (child === null) return;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        waitForExit(child),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`replica ${this.grpc} did not exit within ${timeoutMs} ms\n${this.output.text().slice(-4000)}`)), timeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** `/readyz` status and text (status 0 when the admin port does not answer). */
  async readyz(): Promise<{ status: number; text: string }> {
    return httpGet(`http://${this.admin}/readyz`, 1_000).catch(() => ({ status: 0, text: '' }));
  }

  async stop(): Promise<void> {
    // SIGTERM drains first (a few seconds with several replicas), then in-flight streams finish.
    if (this.child !== null) await stopChild(this.child, 15_000);
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
