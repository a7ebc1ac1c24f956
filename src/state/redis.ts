import { Cluster, Redis, type Command, type RedisOptions } from 'ioredis';
import type { RedisConfig } from './schema.js';

/** Any client the gateway talks to Redis through: one Redis (plain or found via Sentinel) or a Cluster. */
export type RedisClient = Redis | Cluster;

/** Where Redis is: one of the three modes of the `redis:` config section. */
export type RedisTarget =
  | { readonly mode: 'single'; readonly url: string }
  | { readonly mode: 'cluster'; readonly nodes: readonly string[] }
  | { readonly mode: 'sentinel'; readonly name: string; readonly nodes: readonly string[]; readonly sentinelPassword?: string; readonly db: number };

/** How the processor connects to Redis (built from the `redis:` config section). */
export interface RedisConnectionOptions {
  readonly target: RedisTarget;
  /** Data-node credentials for cluster and sentinel (a URL carries its own). */
  readonly username?: string;
  readonly password?: string;
  /** TLS for cluster and sentinel (a URL says `rediss://`). */
  readonly tls?: boolean;
  /**
   * Bound for every command; a slower answer counts as a failure. Only time in which this process
   * could have read the answer counts, up to 10 times this in all (see {@link armCommandTimeout}).
   */
  readonly commandTimeoutMs: number;
  /** `CLIENT SETNAME`, to recognise gateway connections in `CLIENT LIST`. */
  readonly connectionName?: string;
}

/** The connection options of a `redis:` config section. */
export function redisConnectionOptions(cfg: RedisConfig, commandTimeoutMs: number): RedisConnectionOptions {
  let target: RedisTarget;
  if (cfg.cluster !== undefined) target = { mode: 'cluster', nodes: cfg.cluster.nodes };
  else if (cfg.sentinel !== undefined) {
    const s = cfg.sentinel;
    target = { mode: 'sentinel', name: s.name, nodes: s.nodes, db: s.db, ...(s.password === undefined ? {} : { sentinelPassword: s.password }) };
  } else target = { mode: 'single', url: cfg.url! };
  return {
    target,
    commandTimeoutMs,
    tls: cfg.tls === true,
    ...(cfg.username === undefined ? {} : { username: cfg.username }),
    ...(cfg.password === undefined ? {} : { password: cfg.password }),
  };
}

/** Longest pause between reconnect attempts: short, so the gateway notices a restarted Redis quickly. */
const MAX_RECONNECT_DELAY_MS = 1_000;

function backoff(times: number): number {
  return Math.min(50 * 2 ** Math.min(times, 5), MAX_RECONNECT_DELAY_MS);
}

/** `host:port` or `[v6]:port` → ioredis's `{ host, port }`. */
export function parseNodeAddress(addr: string): { host: string; port: number } {
  const i = addr.lastIndexOf(':');
  const host = addr.slice(0, i).replace(/^\[(.*)\]$/, '$1');
  return { host, port: Number(addr.slice(i + 1)) };
}

/**
 * Creates the one ioredis client a processor shares between rate limiting and sessions, set up so
 * that Redis trouble never holds a request:
 *
 * - a command timeout: every command settles within a bound, even if Redis hangs; time in which
 *   this process was blocked does not count against it (see {@link armCommandTimeout}).
 * - no offline queue, no retries per request: while disconnected, commands fail at once instead of
 *   queueing for a reconnect; a rate-limit decision or session read that arrives late is worthless.
 * - no resending of in-flight commands after a reconnect, for the same reason (a resent `take`
 *   would spend a token for a request that was already answered).
 * - RESP2 (`protocol: 2`): ioredis 6 defaults to RESP3 and then refuses servers older than Redis 6;
 *   the gateway uses nothing RESP3 adds.
 * - reconnect forever with backoff capped at 1 s, so recovery is automatic.
 *
 * Cluster: the client learns the slot map from any listed node and follows MOVED/ASK redirects;
 * when a primary fails, commands for its slots fail (within the timeout) until a replica is
 * promoted and the client has refreshed its map. Sentinel: the client asks the Sentinels for the
 * primary, and reconnects to the new one when they announce a failover (or the old one answers
 * READONLY because it was demoted).
 *
 * The client connects in the background; see {@link waitForRedis} to wait for it at start-up.
 */
export function createRedisClient(opts: RedisConnectionOptions): RedisClient {
  const common: RedisOptions = {
    protocol: 2,
    // Not ioredis's `commandTimeout`: see armCommandTimeout, installed on every connection below.
    connectTimeout: Math.max(1_000, opts.commandTimeoutMs * 10),
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    connectionName: opts.connectionName ?? 'mcp-gateway',
    // Commands issued in the same tick (a request's session lookup and its limit decision) leave
    // in one write: one round trip.
    enableAutoPipelining: true,
    ...(opts.username === undefined ? {} : { username: opts.username }),
    ...(opts.password === undefined ? {} : { password: opts.password }),
    ...(opts.tls === true ? { tls: {} } : {}),
  };
  const t = opts.target;
  let client: RedisClient;
  if (t.mode === 'cluster') {
    client = new Cluster(
      t.nodes.map(parseNodeAddress),
      {
        enableOfflineQueue: false,
        clusterRetryStrategy: backoff,
        // A command that meets a failing primary is answered (with an error) rather than parked
        // until the cluster has promoted a replica: the caller decides what a missing answer means.
        retryDelayOnFailover: 50,
        retryDelayOnClusterDown: 50,
        retryDelayOnTryAgain: 50,
        maxRedirections: 4,
        slotsRefreshTimeout: Math.max(1_000, opts.commandTimeoutMs * 10),
        slotsRefreshInterval: 5_000,
        scaleReads: 'master',
        enableAutoPipelining: true,
        lazyConnect: false,
        redisOptions: common,
      },
    );
  } else if (t.mode === 'sentinel') {
    client = new Redis({
      ...common,
      sentinels: t.nodes.map(parseNodeAddress),
      name: t.name,
      db: t.db,
      ...(t.sentinelPassword === undefined ? {} : { sentinelPassword: t.sentinelPassword }),
      ...(opts.tls === true ? { enableTLSForSentinelMode: true, sentinelTLS: {} } : {}),
      sentinelCommandTimeout: Math.max(1_000, opts.commandTimeoutMs * 10),
      sentinelRetryStrategy: backoff,
      failoverDetector: true,
      // A demoted primary refuses writes: reconnect (through the Sentinels) instead of failing on.
      reconnectOnError: (err) => err.message.startsWith('READONLY'),
      enableOfflineQueue: false,
      retryStrategy: backoff,
      lazyConnect: false,
    });
  } else {
    client = new Redis(t.url, { ...common, enableOfflineQueue: false, retryStrategy: backoff, lazyConnect: false });
  }
  // ioredis prints every failed reconnect attempt to the console unless someone listens; outages
  // are logged once per component by OutageTracker instead.
  client.on('error', () => {});
  if (client instanceof Cluster) client.on('+node', (node: Redis) => boundCommands(node, opts.commandTimeoutMs));
  else boundCommands(client, opts.commandTimeoutMs);
  return client;
}

const ARMED = Symbol('mcpgw.commandTimeoutArmed');

/** However starved the process is, a command settles within this many times its timeout. */
export const COMMAND_WAIT_CAP_FACTOR = 10;

/** A timer this much later than due means the event loop was blocked, not merely busy. */
const STALL_MS = 5;

/**
 * Makes `command` fail with `Command timed out` unless it is answered within `ms` of time in
 * which this process could have read the answer, and within `ms × COMMAND_WAIT_CAP_FACTOR` in any
 * case. On a process that is not starved, a Redis that does not answer fails the command `ms`
 * plus one turn of the event loop after it was sent. Arming it again (a command re-sent after a
 * redirect) changes nothing.
 *
 * Why not ioredis's `commandTimeout`: its timer rejects the command as soon as it fires. When the
 * event loop was blocked (garbage collection, a large body, a CPU-starved machine) past the
 * deadline, libuv runs due timers *before* it polls sockets, so the timer fires although Redis
 * answered meanwhile and the answer sits unread in the socket: a request fails with 503 for
 * nothing. Here, when the timer fires, the loop first goes round once (setImmediate runs after the
 * poll phase, which reads such an answer). And the time the timer fired late is time in which
 * the process could not have read anything: it is given back, so a process that was descheduled
 * while Redis (descheduled too) had not answered yet waits for it as long as an awake one would.
 */
export function armCommandTimeout(command: Command, ms: number): void {
  const c = command as Command & { [ARMED]?: true };
  if (c[ARMED] === true || command.isSettled) return;
  c[ARMED] = true;
  const sent = performance.now();
  const capAt = sent + ms * COMMAND_WAIT_CAP_FACTOR;
  let blocked = 0;
  let timer: NodeJS.Timeout;
  const arm = (wait: number): void => {
    const due = performance.now() + wait;
    timer = setTimeout(() => {
      if (command.isSettled) return;
      const late = performance.now() - due;
      setImmediate(() => {
        if (command.isSettled) return;
        const now = performance.now();
        if (late > STALL_MS && now < capAt) {
          blocked += late;
          arm(Math.min(late, capAt - now));
          return;
        }
        const waited = Math.round(now - sent);
        command.reject(new Error(blocked > 0 ? `Command timed out after ${waited} ms (the event loop was blocked for ${Math.round(blocked)} ms of it)` : 'Command timed out'));
      });
    }, wait);
  };
  arm(ms);
  const clear = (): void => clearTimeout(timer);
  command.promise.then(clear, clear);
}

/** Arms {@link armCommandTimeout} on every command `redis` sends (ioredis itself overrides `sendCommand` per instance the same way). */
function boundCommands(redis: Redis, ms: number): void {
  const send = redis.sendCommand.bind(redis);
  redis.sendCommand = (command, stream) => {
    armCommandTimeout(command, ms);
    return send(command, stream);
  };
}

/**
 * Resolves true once `client` is ready, false if that takes longer than `timeoutMs` (the gateway
 * then starts degraded and recovers when Redis appears, rather than refusing to start).
 */
export function waitForRedis(client: RedisClient, timeoutMs: number): Promise<boolean> {
  if (client.status === 'ready') return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      client.off('ready', onReady);
      resolve(ok);
    };
    const onReady = (): void => done(true);
    const timer = setTimeout(() => done(false), timeoutMs);
    timer.unref();
    client.once('ready', onReady);
  });
}

/** Where Redis is, without credentials, for logs: `redis://host:port/db`, `cluster h:p,…`, `sentinel name@h:p,…`. */
export function describeRedisTarget(t: RedisTarget): string {
  if (t.mode === 'cluster') return `cluster ${t.nodes.join(',')}`;
  if (t.mode === 'sentinel') return `sentinel ${t.name}@${t.nodes.join(',')}`;
  return describeRedisUrl(t.url);
}

/** The Redis URL without credentials, for logs: `redis://host:port/db`. */
export function describeRedisUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname === '/' ? '' : u.pathname}`;
  } catch {
    return '(unparseable redis url)';
  }
}
