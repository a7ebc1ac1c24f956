import { z } from 'zod';
import { DurationSchema, durationMs } from '../lib/duration.js';
import { urlSchema } from '../lib/url.js';

/**
 * `redis`: the shared state store (sessions, rate limits, quotas). Leaving the section out keeps
 * everything in process memory.
 */
export const RedisSchema = z
  .strictObject({
    url: urlSchema(
      (u) => u.protocol === 'redis:' || u.protocol === 'rediss:',
      'expected redis://[user:password@]host:port[/db] or rediss://… for TLS',
    ).describe('Redis to keep rate limits, quotas and sessions in, shared by all processor replicas'),
    key_prefix: z
      .string()
      .regex(/^[A-Za-z0-9:_.-]{0,64}$/, 'up to 64 characters from [A-Za-z0-9:_.-]')
      .default('mcpgw:')
      .describe('Prefix of every key the gateway writes, so several gateways can share one Redis'),
    timeout: DurationSchema.refine((v) => durationMs(v) < 60_000, 'a Redis command timeout must be under a minute, e.g. 100ms or 1s')
      .default('100ms')
      .describe('Longest one Redis command may take before the request goes on without it (see limits_on_error)'),
    limits_on_error: z
      .enum(['fail-open', 'fail-closed'])
      .default('fail-open')
      .describe('When Redis is unreachable: fail-open lets requests through unlimited; fail-closed refuses them with 503'),
  })
  .describe('Shared state for multiple processor replicas; without it limits and sessions are per process');
export type RedisConfig = z.infer<typeof RedisSchema>;

/** `redis.timeout` in milliseconds. */
export function redisTimeoutMs(cfg: RedisConfig): number {
  return durationMs(cfg.timeout);
}
