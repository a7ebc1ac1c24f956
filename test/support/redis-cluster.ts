/**
 * Throwaway Redis Cluster and Redis Sentinel deployments for tests: real redis-server processes on
 * loopback, no persistence, everything in one temp dir that is removed on `stop()` (or when the
 * test process exits). Failover is quick: cluster-node-timeout and Sentinel's down-after are 1 s.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { haveRedisServer } from './redis.js';
import { onProcessExit, OutputBuffer, stopChild, tail, trackChild, waitForExit, waitUntil } from './proc.js';

const HOST = '127.0.0.1';
const run = promisify(execFile);

/** Runs one redis-cli command against `port`; resolves its output (trimmed). */
export async function redisCli(port: number, ...args: string[]): Promise<string> {
  const { stdout } = await run('redis-cli', ['-h', HOST, '-p', String(port), ...args], { timeout: 5_000 });
  return stdout.trim();
}

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, HOST, () => s.close(() => resolve(true)));
  });
}

const taken = new Set<number>();

/** `count` free ports whose cluster-bus twin (port + 10000) is free too. */
async function clusterPorts(count: number): Promise<number[]> {
  const ports: number[] = [];
  for (let attempt = 0; ports.length < count && attempt < 2_000; attempt++) {
    const p = 20_000 + Math.floor(Math.random() * 20_000);
    if (taken.has(p) || taken.has(p + 10_000) || ports.includes(p)) continue;
    if ((await canBind(p)) && (await canBind(p + 10_000))) {
      ports.push(p);
      taken.add(p);
    }
  }
  if (ports.length < count) throw new Error('no free port pairs for a Redis Cluster');
  return ports;
}

/** One redis-server (or Sentinel) process. */
export class RedisProcess {
  private child: ChildProcess | null = null;
  readonly output = new OutputBuffer(256 * 1024);

  constructor(
    readonly port: number,
    private readonly args: readonly string[],
  ) {}

  get address(): string {
    return `${HOST}:${this.port}`;
  }

  get alive(): boolean {
    return this.child !== null;
  }

  async start(): Promise<void> {
    const child = trackChild(spawn('redis-server', [...this.args], { stdio: ['ignore', 'pipe', 'pipe'] }));
    this.output.attach(child);
    this.child = child;
    await waitUntil(
      async () => {
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`redis-server exited early:\n${tail(this.output.text(), 4_000)}`);
        return (await redisCli(this.port, 'PING').catch(() => '')) === 'PONG';
      },
      { timeoutMs: 10_000, intervalMs: 25, what: () => `redis on ${this.port}` },
    );
  }

  /** SIGKILL: the node is gone at once, with whatever it had not replicated. */
  async kill(): Promise<void> {
    const child = this.child;
    this.child = null;
    if (child === null) return;
    child.kill('SIGKILL');
    await waitForExit(child);
  }

  async stop(): Promise<void> {
    const child = this.child;
    this.child = null;
    if (child !== null) await stopChild(child, 2_000);
  }
}

/** A Redis Cluster of `masters` primaries with `replicas` replicas each. */
export class RedisCluster {
  private constructor(
    readonly nodes: RedisProcess[],
    private readonly dir: string,
    private readonly forgetDir: () => void,
  ) {}

  static async start(opts: { masters?: number; replicas?: number } = {}): Promise<RedisCluster> {
    if (!haveRedisServer()) throw new Error('redis-server is not installed');
    const masters = opts.masters ?? 3;
    const replicas = opts.replicas ?? 1;
    const dir = mkdtempSync(join(tmpdir(), 'mcpgw-cluster-'));
    const forgetDir = onProcessExit(() => rmSync(dir, { recursive: true, force: true }));
    const ports = await clusterPorts(masters * (1 + replicas));
    const nodes = ports.map(
      (p) =>
        new RedisProcess(p, [
          '--port', String(p),
          '--bind', HOST,
          '--cluster-enabled', 'yes',
          '--cluster-config-file', join(dir, `nodes-${p}.conf`),
          '--cluster-node-timeout', '1000',
          // A replica that lost its primary may take over however stale it thinks it is.
          '--cluster-replica-validity-factor', '0',
          '--dir', dir,
          '--save', '',
          '--appendonly', 'no',
          // Replicas sync at once instead of after the default 5 s pause for more replicas to join.
          '--repl-diskless-sync-delay', '0',
          '--loglevel', 'warning',
        ]),
    );
    const cluster = new RedisCluster(nodes, dir, forgetDir);
    try {
      await Promise.all(nodes.map((n) => n.start()));
      await run('redis-cli', ['--cluster', 'create', ...nodes.map((n) => n.address), '--cluster-replicas', String(replicas), '--cluster-yes'], {
        timeout: 30_000,
      });
      await cluster.waitForOk();
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  /** Seed addresses for `redis.cluster.nodes`. */
  get seeds(): string[] {
    return this.nodes.map((n) => n.address);
  }

  /** Some live node. */
  private live(): RedisProcess {
    const n = this.nodes.find((x) => x.alive);
    if (n === undefined) throw new Error('no live cluster node');
    return n;
  }

  /** `CLUSTER NODES` of a live node as { port, role, slots }. */
  async topology(): Promise<{ port: number; master: boolean; failed: boolean; ranges: [number, number][] }[]> {
    const text = await redisCli(this.live().port, 'CLUSTER', 'NODES');
    return text.split('\n').map((line) => {
      const f = line.split(' ');
      const port = Number(f[1]!.split('@')[0]!.split(':').pop());
      const flags = f[2]!.split(',');
      const ranges = f.slice(8).filter((r) => /^\d/.test(r)).map((r) => {
        const [a, b] = r.split('-').map(Number);
        return [a!, b ?? a!] as [number, number];
      });
      return { port, master: flags.includes('master'), failed: flags.includes('fail') || flags.includes('fail?'), ranges };
    });
  }

  /** The node that currently serves `key` (its primary), as Redis computes the slot. */
  async masterOf(key: string): Promise<RedisProcess> {
    const slot = Number(await redisCli(this.live().port, 'CLUSTER', 'KEYSLOT', key));
    const owner = (await this.topology()).find((n) => n.master && !n.failed && n.ranges.some(([a, b]) => slot >= a && slot <= b));
    const node = this.nodes.find((n) => n.port === owner?.port);
    if (node === undefined) throw new Error(`no primary serves slot ${slot}`);
    return node;
  }

  /** Waits until every live node says cluster_state:ok, every slot has a live primary and every live replica is in sync. */
  async waitForOk(timeoutMs = 20_000): Promise<void> {
    await waitUntil(
      async () => {
        for (const n of this.nodes.filter((x) => x.alive)) {
          const info = await redisCli(n.port, 'CLUSTER', 'INFO').catch(() => '');
          if (!info.includes('cluster_state:ok')) return false;
          const repl = await redisCli(n.port, 'INFO', 'replication').catch(() => '');
          if (repl.includes('role:slave') && !repl.includes('master_link_status:up')) {
            // A replica of a primary that is gone stays down until promoted or re-pointed: only
            // count replicas whose primary is alive.
            const m = /master_port:(\d+)/.exec(repl);
            if (m !== null && this.nodes.some((x) => x.alive && x.port === Number(m[1]))) return false;
          }
        }
        const topo = await this.topology();
        const alive = new Set(this.nodes.filter((x) => x.alive).map((x) => x.port));
        const covered = topo.filter((n) => n.master && alive.has(n.port)).reduce((a, n) => a + n.ranges.reduce((s, [x, y]) => s + y - x + 1, 0), 0);
        return covered === 16384;
      },
      { timeoutMs, intervalMs: 50, what: 'cluster_state:ok with every slot served by a live primary' },
    );
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.stop()));
    rmSync(this.dir, { recursive: true, force: true });
    this.forgetDir();
  }
}

/** One primary, one replica and `sentinels` Sentinels watching them as `name`. */
export class RedisSentinelGroup {
  readonly name = 'mcpgw';

  private constructor(
    readonly primary: RedisProcess,
    readonly replica: RedisProcess,
    readonly sentinels: RedisProcess[],
    private readonly dir: string,
    private readonly forgetDir: () => void,
  ) {}

  static async start(opts: { sentinels?: number } = {}): Promise<RedisSentinelGroup> {
    if (!haveRedisServer()) throw new Error('redis-server is not installed');
    const dir = mkdtempSync(join(tmpdir(), 'mcpgw-sentinel-'));
    const forgetDir = onProcessExit(() => rmSync(dir, { recursive: true, force: true }));
    const count = opts.sentinels ?? 3;
    const [p1, p2, ...sp] = await clusterPorts(2 + count);
    const data = (p: number, extra: string[]): RedisProcess =>
      new RedisProcess(p, ['--port', String(p), '--bind', HOST, '--dir', dir, '--save', '', '--appendonly', 'no', '--repl-diskless-sync-delay', '0', '--loglevel', 'warning', ...extra]);
    const primary = data(p1!, []);
    const replica = data(p2!, ['--replicaof', HOST, String(p1)]);
    const sentinels = sp.map((p) => {
      const conf = join(dir, `sentinel-${p}.conf`);
      writeFileSync(
        conf,
        [
          `port ${p}`,
          `bind ${HOST}`,
          `dir ${dir}`,
          `sentinel monitor mcpgw ${HOST} ${p1} ${Math.floor(count / 2) + 1}`,
          'sentinel down-after-milliseconds mcpgw 1000',
          'sentinel failover-timeout mcpgw 5000',
          'sentinel parallel-syncs mcpgw 1',
          '',
        ].join('\n'),
      );
      return new RedisProcess(p, [conf, '--sentinel', '--loglevel', 'warning']);
    });
    const group = new RedisSentinelGroup(primary, replica, sentinels, dir, forgetDir);
    try {
      await primary.start();
      await replica.start();
      await Promise.all(sentinels.map((s) => s.start()));
      await waitUntil(async () => (await redisCli(p2!, 'INFO', 'replication')).includes('master_link_status:up'), {
        timeoutMs: 10_000,
        what: 'the replica in sync',
      });
      // Every Sentinel knows the replica and the other Sentinels before anything fails.
      await waitUntil(
        async () => {
          for (const s of sentinels) {
            const m = await redisCli(s.port, 'SENTINEL', 'MASTER', 'mcpgw');
            const lines = m.split('\n');
            const field = (k: string): number => Number(lines[lines.indexOf(k) + 1]);
            if (field('num-slaves') < 1 || field('num-other-sentinels') < count - 1) return false;
          }
          return true;
        },
        { timeoutMs: 15_000, what: 'Sentinels to discover the replica and each other' },
      );
    } catch (err) {
      await group.stop();
      throw err;
    }
    return group;
  }

  get sentinelAddresses(): string[] {
    return this.sentinels.map((s) => s.address);
  }

  /** The primary's port as the Sentinels currently name it. */
  async currentPrimaryPort(): Promise<number> {
    const s = this.sentinels.find((x) => x.alive)!;
    const out = await redisCli(s.port, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', 'mcpgw');
    return Number(out.split('\n')[1]);
  }

  async stop(): Promise<void> {
    await Promise.all([this.primary, this.replica, ...this.sentinels].map((n) => n.stop()));
    rmSync(this.dir, { recursive: true, force: true });
    this.forgetDir();
  }
}
