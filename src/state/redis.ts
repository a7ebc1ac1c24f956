import { Redis } from 'ioredis';

/** How the processor connects to Redis (built from the `redis:` config section). */
export interface RedisConnectionOptions {
  /** `redis://[user:password@]host:port[/db]` or `rediss://…` for TLS. */
  readonly url: string;
  /** Upper bound for every command; a slower answer counts as a failure. */
  readonly commandTimeoutMs: number;
  /** `CLIENT SETNAME`, to recognise gateway connections in `CLIENT LIST`. */
  readonly connectionName?: string;
}

/** Longest pause between reconnect attempts: short, so the gateway notices a restarted Redis quickly. */
const MAX_RECONNECT_DELAY_MS = 1_000;

/**
 * Creates the one ioredis client a processor shares between rate limiting and sessions, set up so
 * that Redis trouble never holds a request:
 *
 * - `commandTimeout`: every command settles within the bound, even if Redis hangs.
 * - no offline queue, no retries per request: while disconnected, commands fail at once instead of
 *   queueing for a reconnect; a rate-limit decision or session read that arrives late is worthless.
 * - no resending of in-flight commands after a reconnect, for the same reason (a resent `take`
 *   would spend a token for a request that was already answered).
 * - RESP2 (`protocol: 2`): ioredis 6 defaults to RESP3 and then refuses servers older than Redis 6;
 *   the gateway uses nothing RESP3 adds.
 * - reconnect forever with backoff capped at 1 s, so recovery is automatic.
 *
 * The client connects in the background; see {@link waitForRedis} to wait for it at start-up.
 */
export function createRedisClient(opts: RedisConnectionOptions): Redis {
  const client = new Redis(opts.url, {
    protocol: 2,
    commandTimeout: opts.commandTimeoutMs,
    connectTimeout: Math.max(1_000, opts.commandTimeoutMs * 10),
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 5), MAX_RECONNECT_DELAY_MS),
    connectionName: opts.connectionName ?? 'mcp-gateway',
    lazyConnect: false,
  });
  // ioredis prints every failed reconnect attempt to the console unless someone listens; outages
  // are logged once per component by OutageTracker instead.
  client.on('error', () => {});
  return client;
}

/**
 * Resolves true once `client` is ready, false if that takes longer than `timeoutMs` (the gateway
 * then starts degraded and recovers when Redis appears, rather than refusing to start).
 */
export function waitForRedis(client: Redis, timeoutMs: number): Promise<boolean> {
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

/** The Redis URL without credentials, for logs: `redis://host:port/db`. */
export function describeRedisUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname === '/' ? '' : u.pathname}`;
  } catch {
    return '(unparseable redis url)';
  }
}
