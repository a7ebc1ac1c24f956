import type { Logger } from 'pino';
import type { RedisClient } from '../state/redis.js';
import { LuaScript } from '../state/script.js';

/**
 * Where cached answers live: this replica's memory, or Redis (shared by every replica, so an
 * answer cached by one is served by all and an invalidation heard by one reaches all).
 */

/** One cached answer: of a server's method, for one resource, prompt or tool (`entity`), in one variant. */
export interface CacheKey {
  readonly server: string;
  readonly method: string;
  /** The upstream's own URI, prompt name or tool name. */
  readonly entity: string;
  /** What else the answer depends on (arguments, tenant, identity), hashed. */
  readonly variant: string;
}

export interface AnswerStore {
  /** The answer kept under the key, or null (none, expired, or the store is unreachable). */
  get(key: CacheKey): Promise<string | null>;
  /** Keeps an answer for `ttlMs`. */
  put(key: CacheKey, value: string, ttlMs: number): Promise<void>;
  /** Drops every variant of one entity (a resource the server said changed). */
  dropEntity(server: string, method: string, entity: string): Promise<void>;
  /** Drops every answer of a server's method (its list changed). */
  dropMethod(server: string, method: string): Promise<void>;
}

interface MemoryEntry {
  readonly value: string;
  readonly expiresAt: number;
  readonly group: string;
}

/** Separates the parts of a memory key (never in a server name or method). */
const SEP = '\u0000';

/**
 * Answers in this replica's memory, bounded by count and bytes; the least recently used go first.
 * Expired entries are dropped when met (and by the bounds).
 */
export class MemoryAnswerStore implements AnswerStore {
  private readonly entries = new Map<string, MemoryEntry>();
  /** Keys by server and method, then entity: what an invalidation drops. */
  private readonly groups = new Map<string, Set<string>>();
  private bytes = 0;

  constructor(
    private readonly maxEntries: number,
    private readonly maxBytes: number,
    private readonly now: () => number = Date.now,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  async get(key: CacheKey): Promise<string | null> {
    const k = memoryKey(key);
    const e = this.entries.get(k);
    if (e === undefined) return null;
    this.entries.delete(k);
    if (e.expiresAt <= this.now()) {
      this.forget(k, e);
      return null;
    }
    // Most recently used goes last: eviction takes from the front.
    this.entries.set(k, e);
    return e.value;
  }

  async put(key: CacheKey, value: string, ttlMs: number): Promise<void> {
    // An answer larger than the whole store would only empty it.
    if (value.length > this.maxBytes) return;
    const k = memoryKey(key);
    const old = this.entries.get(k);
    if (old !== undefined) {
      this.entries.delete(k);
      this.forget(k, old);
    }
    const group = groupKey(key.server, key.method, key.entity);
    const e = { value, expiresAt: this.now() + ttlMs, group };
    this.entries.set(k, e);
    this.bytes += value.length;
    let members = this.groups.get(group);
    if (members === undefined) this.groups.set(group, (members = new Set()));
    members.add(k);
    while (this.entries.size > this.maxEntries || this.bytes > this.maxBytes) {
      const [oldest, entry] = this.entries.entries().next().value as [string, MemoryEntry];
      this.entries.delete(oldest);
      this.forget(oldest, entry);
    }
  }

  async dropEntity(server: string, method: string, entity: string): Promise<void> {
    this.dropGroup(groupKey(server, method, entity));
  }

  async dropMethod(server: string, method: string): Promise<void> {
    const prefix = `${server}${SEP}${method}${SEP}`;
    for (const group of [...this.groups.keys()]) if (group.startsWith(prefix)) this.dropGroup(group);
  }

  private dropGroup(group: string): void {
    const members = this.groups.get(group);
    if (members === undefined) return;
    for (const k of members) {
      const e = this.entries.get(k);
      if (e !== undefined) this.bytes -= e.value.length;
      this.entries.delete(k);
    }
    this.groups.delete(group);
  }

  /** Forgets an entry already taken out of `entries`. */
  private forget(k: string, e: MemoryEntry): void {
    this.bytes -= e.value.length;
    const members = this.groups.get(e.group);
    members?.delete(k);
    if (members?.size === 0) this.groups.delete(e.group);
  }
}

function groupKey(server: string, method: string, entity: string): string {
  return `${server}${SEP}${method}${SEP}${entity}`;
}

function memoryKey(key: CacheKey): string {
  return `${groupKey(key.server, key.method, key.entity)}${SEP}${key.variant}`;
}

/**
 * Drops every hash the index of a server's method names, and the index, in one step (no answer
 * put meanwhile survives). The hashes share the index's hash tag, so they are on its node.
 */
const DROP_METHOD = new LuaScript(`
local members = redis.call('SMEMBERS', KEYS[1])
for i = 1, #members do redis.call('DEL', members[i]) end
redis.call('DEL', KEYS[1])
return #members
`);

/**
 * Answers in Redis. Layout (P = redis.key_prefix, T = the hash tag {P cache <server> <method>}):
 * - `T:e:<entity hash>`: a hash per resource, prompt or tool; field = variant, value =
 *   `<expiry ms>\n<answer>`; the key expires with its longest-lived field.
 * - `T:i`: the set of those hashes, so a list change drops them all.
 * A field past its expiry is treated as absent (and removed when met).
 */
export class RedisAnswerStore implements AnswerStore {
  private warnedAt = 0;

  constructor(
    private readonly redis: RedisClient,
    private readonly keyPrefix: string,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  async get(key: CacheKey): Promise<string | null> {
    const hash = this.entityKey(key.server, key.method, key.entity);
    try {
      const raw = await this.redis.hget(hash, key.variant);
      if (raw === null) return null;
      const nl = raw.indexOf('\n');
      if (nl > 0 && Number(raw.slice(0, nl)) > this.now()) return raw.slice(nl + 1);
      void this.redis.hdel(hash, key.variant).catch(() => {});
      return null;
    } catch (err) {
      this.unreachable(err);
      return null;
    }
  }

  async put(key: CacheKey, value: string, ttlMs: number): Promise<void> {
    const hash = this.entityKey(key.server, key.method, key.entity);
    const index = this.indexKey(key.server, key.method);
    try {
      await this.redis
        .multi()
        .hset(hash, key.variant, `${this.now() + ttlMs}\n${value}`)
        // A new key gets the ttl; a key that lives shorter than this answer lives as long.
        .pexpire(hash, ttlMs, 'NX')
        .pexpire(hash, ttlMs, 'GT')
        .sadd(index, hash)
        .pexpire(index, ttlMs, 'NX')
        .pexpire(index, ttlMs, 'GT')
        .exec();
    } catch (err) {
      this.unreachable(err);
    }
  }

  async dropEntity(server: string, method: string, entity: string): Promise<void> {
    const hash = this.entityKey(server, method, entity);
    try {
      await this.redis.multi().del(hash).srem(this.indexKey(server, method), hash).exec();
    } catch (err) {
      this.unreachable(err);
    }
  }

  async dropMethod(server: string, method: string): Promise<void> {
    try {
      await DROP_METHOD.run(this.redis, [this.indexKey(server, method)], []);
    } catch (err) {
      this.unreachable(err);
    }
  }

  private tag(server: string, method: string): string {
    return `${this.keyPrefix}{${this.keyPrefix}cache ${server} ${method}}`;
  }

  private entityKey(server: string, method: string, entity: string): string {
    return `${this.tag(server, method)}:e:${entity}`;
  }

  private indexKey(server: string, method: string): string {
    return `${this.tag(server, method)}:i`;
  }

  /** A cache that cannot be reached is a miss, never an error: said once per half minute. */
  private unreachable(err: unknown): void {
    const now = this.now();
    if (now - this.warnedAt < 30_000) return;
    this.warnedAt = now;
    this.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'answer cache unreachable in redis; answers come from the servers meanwhile');
  }
}
