import { z } from 'zod';
import { DurationSchema, durationMs } from '../lib/duration.js';
import { urlSchema } from '../lib/url.js';

/** `host:port` of one Redis node or Sentinel (a name, IPv4 or bracketed IPv6 host). */
const NodeAddressSchema = z
  .string()
  .regex(/^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$/, 'expected host:port, e.g. redis-0.redis:6379 or [::1]:6379')
  .refine((v) => {
    const m = /:([0-9]{1,5})$/.exec(v);
    // A malformed address already has its message from the pattern above.
    return m === null || (Number(m[1]) >= 1 && Number(m[1]) <= 65535);
  }, 'port must be 1-65535');

const NodeListSchema = z.array(NodeAddressSchema).min(1, 'list at least one host:port').max(64);

/** `redis.cluster`: a Redis Cluster, found through any of its nodes. */
export const RedisClusterSchema = z
  .strictObject({
    nodes: NodeListSchema.describe(
      'Some nodes of the Redis Cluster as host:port (one reachable node is enough; the rest are discovered)',
    ),
  })
  .describe('Redis Cluster: keys spread over several primaries, each with replicas that take over when it fails');

/** `redis.sentinel`: a primary with replicas, watched by Redis Sentinel. */
export const RedisSentinelSchema = z
  .strictObject({
    name: z
      .string()
      .regex(/^[A-Za-z0-9._-]{1,64}$/, 'up to 64 characters from [A-Za-z0-9._-]')
      .describe('The name the Sentinels know the primary by (`sentinel monitor <name> …`)'),
    nodes: NodeListSchema.describe('Sentinels as host:port; the gateway asks them for the current primary'),
    password: z
      .string()
      .min(1)
      .optional()
      .describe("The Sentinels' own password (`requirepass` in sentinel.conf), if they have one; redis.password is for the data nodes"),
    db: z.number().int().min(0).max(15).default(0).describe('Database number on the primary'),
  })
  .describe('Redis Sentinel: one primary with replicas; when the primary fails a replica is promoted and the gateway follows it');

/**
 * `redis`: the shared state store (sessions, rate limits, quotas). Leaving the section out keeps
 * everything in process memory. Exactly one of `url` (one Redis), `cluster` and `sentinel` says
 * where it is.
 */
export const RedisSchema = z
  .strictObject({
    url: urlSchema(
      (u) => u.protocol === 'redis:' || u.protocol === 'rediss:',
      'expected redis://[user:password@]host:port[/db] or rediss://… for TLS',
    )
      .optional()
      .describe('One Redis (optionally with replicas it manages itself) to keep rate limits, quotas and sessions in, shared by all processor replicas'),
    cluster: RedisClusterSchema.optional(),
    sentinel: RedisSentinelSchema.optional(),
    username: z
      .string()
      .min(1)
      .optional()
      .describe('ACL user on the Redis data nodes (cluster and sentinel; with url it goes in the URL)'),
    password: z
      .string()
      .min(1)
      .optional()
      .describe('Password of the Redis data nodes (cluster and sentinel; with url it goes in the URL). Use ${REDIS_PASSWORD}'),
    tls: z
      .boolean()
      .optional()
      .describe('Connect with TLS (cluster and sentinel, to data nodes and Sentinels alike; with url use rediss://)'),
    key_prefix: z
      .string()
      .regex(/^[A-Za-z0-9:_.-]{0,64}$/, 'up to 64 characters from [A-Za-z0-9:_.-]')
      .default('mcpgw:')
      .describe('Prefix of every key the gateway writes, so several gateways can share one Redis'),
    // A value the duration syntax already refused is not judged again here.
    timeout: DurationSchema.refine((v) => !DurationSchema.safeParse(v).success || durationMs(v) < 60_000, 'a Redis command timeout must be under a minute, e.g. 100ms or 1s')
      .default('100ms')
      .describe('Longest one Redis command may take before the request goes on without it (see limits_on_error)'),
    limits_on_error: z
      .enum(['fail-open', 'fail-closed'])
      .default('fail-open')
      .describe('When Redis is unreachable: fail-open lets requests through unlimited; fail-closed refuses them with 503'),
  })
  .superRefine((cfg, ctx) => {
    const modes = (['url', 'cluster', 'sentinel'] as const).filter((m) => cfg[m] !== undefined);
    if (modes.length !== 1) {
      ctx.addIssue({
        code: 'custom',
        path: modes.length === 0 ? [] : [modes[1]!],
        message:
          modes.length === 0
            ? 'say where Redis is: exactly one of redis.url (one Redis), redis.cluster (Redis Cluster) or redis.sentinel (Sentinel)'
            : `redis.${modes.join(', redis.')} are exclusive: set exactly one of url, cluster and sentinel`,
      });
    }
    if (cfg.url !== undefined) {
      for (const f of ['username', 'password'] as const) {
        if (cfg[f] !== undefined) {
          ctx.addIssue({
            code: 'custom',
            path: [f],
            message: `with redis.url the ${f} goes in the URL (redis://user:password@host:port); redis.${f} is for cluster and sentinel`,
          });
        }
      }
      if (cfg.tls !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['tls'], message: 'with redis.url, TLS is chosen by the scheme (rediss://); redis.tls is for cluster and sentinel' });
      }
    }
  })
  .describe('Shared state for multiple processor replicas; without it limits and sessions are per process');
export type RedisConfig = z.infer<typeof RedisSchema>;

/** `redis.timeout` in milliseconds. */
export function redisTimeoutMs(cfg: RedisConfig): number {
  return durationMs(cfg.timeout);
}
