/**
 * A real, throwaway redis-server for tests: its own process on a free loopback port, no
 * persistence, no config file, nothing shared with a system Redis.
 *
 * `kill()` / `restart()` (same port, empty data) and `pause()` / `resume()` (SIGSTOP/SIGCONT: the
 * connection stays up but nothing answers) drive failure tests. The process is SIGKILLed when the
 * test process exits, even if a test forgets `stop()`.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.js';
import { onProcessExit, OutputBuffer, stopChild, tail, trackChild, waitForExit, waitUntil } from './proc.js';

const HOST = '127.0.0.1';
const START_TIMEOUT_MS = 10_000;

/** True if `redis-server` can be run here (scripts/ensure-tools.sh installs it). */
export function haveRedisServer(): boolean {
  const r = spawnSync('redis-server', ['--version'], { stdio: 'ignore' });
  return r.status === 0;
}

/** Sends PING over a fresh socket; true on `+PONG`. */
function ping(port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ host: HOST, port });
    let data = '';
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      sock.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    sock.setEncoding('utf8');
    sock.once('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d: string) => {
      data += d;
      if (data.includes('\r\n')) done(data.startsWith('+PONG'));
    });
    sock.once('error', () => done(false));
  });
}

/** One redis-server child process. */
export class RedisServer {
  private child: ChildProcess | null = null;
  private output = new OutputBuffer(256 * 1024);
  private readonly dir: string;
  private readonly forgetDir: () => void;

  private constructor(readonly port: number) {
    // redis-server may write files relative to its dir (it should not, with persistence off).
    this.dir = mkdtempSync(join(tmpdir(), 'mcpgw-redis-'));
    const dir = this.dir;
    this.forgetDir = onProcessExit(() => rmSync(dir, { recursive: true, force: true }));
  }

  /** Starts a server on a free port and waits until it answers PING. */
  static async start(): Promise<RedisServer> {
    if (!haveRedisServer()) {
      throw new Error('redis-server is not installed (run `bash scripts/ensure-tools.sh` or `apt-get install redis-server`)');
    }
    const server = new RedisServer(await freePort(HOST));
    await server.spawn();
    return server;
  }

  /** `redis://127.0.0.1:<port>`. */
  get url(): string {
    return `redis://${HOST}:${this.port}`;
  }

  /** The process id (null while killed). */
  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  /** SIGKILL: connections drop at once, all data is lost. */
  async kill(): Promise<void> {
    const child = this.child;
    if (child === null) return;
    this.child = null;
    child.kill('SIGCONT'); // a paused process would not die until continued on some systems
    child.kill('SIGKILL');
    await waitForExit(child);
  }

  /** Starts a fresh, empty server on the same port (after `kill()`). */
  async restart(): Promise<void> {
    await this.kill();
    await this.spawn();
  }

  /** SIGSTOP: the port still accepts connections, but no command is answered. */
  pause(): void {
    this.child?.kill('SIGSTOP');
  }

  /** SIGCONT after `pause()`. */
  resume(): void {
    this.child?.kill('SIGCONT');
  }

  /** Stops the server and removes its directory. */
  async stop(): Promise<void> {
    const child = this.child;
    this.child = null;
    if (child !== null) {
      child.kill('SIGCONT');
      await stopChild(child, 2_000);
    }
    rmSync(this.dir, { recursive: true, force: true });
    this.forgetDir();
  }

  /** What the server printed (for failure messages). */
  log(): string {
    return tail(this.output.text(), 4_000);
  }

  private async spawn(): Promise<void> {
    const args = [
      '--port', String(this.port),
      '--bind', HOST,
      '--save', '',
      '--appendonly', 'no',
      '--dir', this.dir,
      '--daemonize', 'no',
      '--protected-mode', 'yes',
      '--loglevel', 'warning',
    ];
    const child = trackChild(spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    this.output = new OutputBuffer(256 * 1024).attach(child);
    this.child = child;
    try {
      await waitUntil(async () => {
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`redis-server exited early:\n${this.log()}`);
        return ping(this.port);
      }, { timeoutMs: START_TIMEOUT_MS, intervalMs: 25, what: () => `redis-server on port ${this.port}\n${this.log()}` });
    } catch (err) {
      this.child = null;
      child.kill('SIGKILL');
      throw err;
    }
  }
}
