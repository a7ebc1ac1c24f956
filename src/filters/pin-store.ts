import { resolve } from 'node:path';
import type { RedisClient } from '../state/redis.js';
import { FilePinStore, RedisPinStore, type PinStore } from './pins.js';
import type { PinsConfig } from './schema.js';

/**
 * The pin store a config names: Redis when `pins.store` says so or, unless it says `file`, when
 * `redis` is configured (every replica shares the pins); otherwise the file `pins.file` beside the
 * config file.
 */
export function pinStore(
  config: { readonly pins?: PinsConfig | undefined; readonly redis?: { readonly key_prefix: string } | undefined },
  configDir: string,
  redis: RedisClient | null,
): PinStore {
  const useRedis = config.pins?.store === 'redis' || (config.pins?.store === undefined && config.redis !== undefined);
  if (useRedis && redis !== null) return new RedisPinStore(redis, config.redis!.key_prefix);
  return new FilePinStore(resolve(configDir, config.pins?.file ?? 'pins.json'));
}
