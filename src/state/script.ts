import { createHash } from 'node:crypto';
import type { RedisClient } from './redis.js';

/**
 * A Lua script run with EVALSHA, falling back to EVAL when the server does not know it
 * (`NOSCRIPT`: first use, or Redis restarted and lost its script cache). EVAL also caches the
 * script, so the fallback happens once per Redis restart, not per call.
 */
export class LuaScript {
  /** SHA-1 of the source, as Redis names cached scripts. */
  readonly sha: string;

  constructor(readonly source: string) {
    this.sha = createHash('sha1').update(source).digest('hex');
  }

  /** Runs the script with `keys` and `args`; rejects with the client's error (timeouts included). */
  async run(redis: RedisClient, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    try {
      return await redis.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (!isNoScript(err)) throw err;
      return redis.eval(this.source, keys.length, ...keys, ...args);
    }
  }
}

function isNoScript(err: unknown): boolean {
  return err instanceof Error && err.message.startsWith('NOSCRIPT');
}
