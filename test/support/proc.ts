/**
 * Child-process plumbing shared by the test support code and `npm run dev`: output capture with
 * per-line callbacks, bounded stop, and a registry that SIGKILLs every tracked child when this
 * Node process exits (normally, by uncaught exception, or by SIGINT/SIGTERM/SIGHUP when nobody
 * else handles those signals).
 */
import type { ChildProcess } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';

const tracked = new Set<ChildProcess>();
const exitCleanups = new Set<() => void>();
let hooksInstalled = false;

function killTracked(signal: NodeJS.Signals): void {
  for (const child of tracked) {
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
  }
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', () => {
    killTracked('SIGKILL');
    for (const fn of exitCleanups) {
      try {
        fn();
      } catch {
        // best effort
      }
    }
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      // When the program has its own handler it is in charge of stopping children (the 'exit'
      // hook still catches stragglers). Otherwise behave like the default: clean up, then die
      // of the same signal.
      if (process.listenerCount(sig) > 1) return;
      killTracked('SIGKILL');
      process.off(sig, onSignal);
      process.kill(process.pid, sig);
    };
    process.on(sig, onSignal);
  }
}

/** Registers `child` to be SIGKILLed if this process exits while it still runs. */
export function trackChild(child: ChildProcess): ChildProcess {
  installHooks();
  tracked.add(child);
  const forget = (): void => {
    tracked.delete(child);
  };
  child.once('exit', forget);
  child.once('error', forget);
  return child;
}

/**
 * Lets this process exit even though `child` (and its output pipes) still run: a leaked child
 * then cannot hang a test file forever; the 'exit' hook above kills it instead.
 */
export function unrefChild(child: ChildProcess): ChildProcess {
  child.unref();
  for (const stream of [child.stdout, child.stderr]) {
    (stream as unknown as { unref?: () => void } | null)?.unref?.();
  }
  return child;
}

/**
 * Runs synchronous `fn` when this process exits (e.g. removing a temp dir of a child that was
 * never stopped). Returns a function that unregisters it.
 */
export function onProcessExit(fn: () => void): () => void {
  installHooks();
  exitCleanups.add(fn);
  return () => {
    exitCleanups.delete(fn);
  };
}

/** SIGKILLs every tracked child that is still running (synchronous). */
export function killAllTracked(): void {
  killTracked('SIGKILL');
}

export function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** Resolves once `child` has exited (immediately if it already has, or never started). */
export function waitForExit(child: ChildProcess): Promise<void> {
  if (hasExited(child) || child.pid === undefined) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.once('error', () => resolve());
  });
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
export async function stopChild(child: ChildProcess, graceMs = 5_000): Promise<void> {
  if (hasExited(child) || child.pid === undefined) return;
  child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const exited = await Promise.race([
    waitForExit(child).then(() => true),
    new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), graceMs);
    }),
  ]);
  clearTimeout(timer);
  if (!exited) {
    child.kill('SIGKILL');
    await waitForExit(child);
  }
}

export type OutputStream = 'stdout' | 'stderr';

/**
 * Collects a child's stdout and stderr in memory (interleaved, oldest output dropped beyond
 * `maxChars`) and hands every complete line to `onLine`.
 */
export class OutputBuffer {
  private chunks: string[] = [];
  private size = 0;
  private dropped = 0;
  private readonly partial: Record<OutputStream, string> = { stdout: '', stderr: '' };
  private readonly maxChars: number;
  private readonly onLine: ((line: string, stream: OutputStream) => void) | undefined;

  constructor(maxChars = 4 * 1024 * 1024, onLine?: (line: string, stream: OutputStream) => void) {
    this.maxChars = maxChars;
    this.onLine = onLine;
  }

  /** Pipes `child`'s stdout/stderr (when they are pipes) into this buffer. */
  attach(child: ChildProcess): this {
    child.stdout?.setEncoding('utf8').on('data', (d: string) => this.push('stdout', d));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => this.push('stderr', d));
    child.once('close', () => this.flush());
    return this;
  }

  push(stream: OutputStream, data: string): void {
    this.chunks.push(data);
    this.size += data.length;
    while (this.size > this.maxChars && this.chunks.length > 1) {
      const first = this.chunks.shift() ?? '';
      this.size -= first.length;
      this.dropped += first.length;
    }
    if (this.onLine !== undefined) {
      const lines = (this.partial[stream] + data).split('\n');
      this.partial[stream] = lines.pop() ?? '';
      for (const line of lines) this.onLine(line, stream);
    }
  }

  /** Emits any unterminated last line. */
  flush(): void {
    if (this.onLine === undefined) return;
    for (const stream of ['stdout', 'stderr'] as const) {
      if (this.partial[stream] !== '') this.onLine(this.partial[stream], stream);
      this.partial[stream] = '';
    }
  }

  text(): string {
    const head = this.dropped > 0 ? `[... ${this.dropped} earlier characters dropped ...]\n` : '';
    return head + this.chunks.join('');
  }
}

/** The last `max` characters of `text`. */
export function tail(text: string, max = 20_000): string {
  return text.length <= max ? text : `[...]\n${text.slice(text.length - max)}`;
}

/** Polls `check` every `intervalMs` until it returns true; throws `describe()` on timeout. */
export async function waitUntil(
  check: () => Promise<boolean> | boolean,
  opts: { timeoutMs: number; intervalMs?: number; what: string | (() => string) },
): Promise<void> {
  const deadline = Date.now() + opts.timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${opts.timeoutMs} ms waiting for ${typeof opts.what === 'string' ? opts.what : opts.what()}`);
    }
    await sleep(opts.intervalMs ?? 50);
  }
}

/**
 * A one-shot GET without connection reuse (unlike global `fetch`, whose kept-alive sockets hold
 * the event loop open for seconds after the last readiness poll).
 */
export function httpGet(url: string, timeoutMs = 2_000): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: 'GET', agent: false, timeout: timeoutMs }, (res) => {
      res.setEncoding('utf8');
      let text = '';
      res.on('data', (d: string) => {
        text += d;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out after ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}
