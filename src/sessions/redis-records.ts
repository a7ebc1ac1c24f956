import { LuaScript } from '../state/script.js';
import type { RedisClient } from '../state/redis.js';
import type { BindingKind } from './store.js';

/*
 * What the store keeps beside the sessions, each in a key of its own (outside the sessions' hash
 * slot, P = redis.key_prefix):
 *   P p:<server>:<id>  string: identity a passthrough session is bound to ('' = anonymous); PX idleMs
 *   P t:<server>:<id>  string: identity an upstream task is bound to, the same way
 *   P ask:<id>         hash: the questions put to a session's client (`r`) and its answers (`a:<key>`); PX ttl
 */

/** Sets a field only while the hash exists, and only once (1), else nothing (0). */
const ANSWER_ASK = "if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) end return 0";

/** KEYS: binding. ARGV: identity ('' = anonymous), idleMs. Reply: 1 if bound to it (now or already), 0 if another identity holds it. */
const BIND = new LuaScript(`
local v = redis.call('GET', KEYS[1])
if v and v ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`);

/** KEYS: binding. ARGV: idleMs. Reply: the bound identity, or nil if unknown; a hit restarts its idle timer. */
const TOUCH_BINDING = new LuaScript(`
local v = redis.call('GET', KEYS[1])
if v then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return v
`);

/** Upstreams choose their own session ids (some use signed tokens); Envoy bounds headers anyway. */
const MAX_UPSTREAM_ID_LENGTH = 8 * 1024;

/** One Redis call under the store's outage tracking (`key` scopes it to its Cluster slot). */
export type RedisRunner = (op: string, call: (redis: RedisClient) => Promise<unknown>, key?: string) => Promise<unknown>;

/** Bindings of upstream ids to identities, and the questions put to sessions' clients, in Redis. */
export class RedisRecords {
  constructor(
    private readonly keyPrefix: string,
    private readonly idleMs: number,
    private readonly run: RedisRunner,
  ) {}

  async bind(kind: BindingKind, server: string, id: string, identity: string | null): Promise<boolean> {
    if (id.length === 0 || id.length > MAX_UPSTREAM_ID_LENGTH) return false;
    const key = this.bindingKey(kind, server, id);
    const reply = await this.run('bind', (r) => BIND.run(r, [key], [identity ?? '', this.idleMs]), key);
    return reply === 1;
  }

  async boundOwner(kind: BindingKind, server: string, id: string): Promise<string | null | undefined> {
    if (id.length === 0 || id.length > MAX_UPSTREAM_ID_LENGTH) return undefined;
    const key = this.bindingKey(kind, server, id);
    const reply = await this.run('boundOwner', (r) => TOUCH_BINDING.run(r, [key], [this.idleMs]), key);
    return typeof reply === 'string' ? (reply === '' ? null : reply) : undefined;
  }

  async putAsk(id: string, record: string, ttlMs: number): Promise<void> {
    const key = this.askKey(id);
    await this.run('putAsk', (r) => r.multi().del(key).hset(key, 'r', record).pexpire(key, ttlMs).exec(), key);
  }

  async answerAsk(id: string, key: string, answer: string): Promise<boolean> {
    const k = this.askKey(id);
    // Only while the record lives (an answer never outlives or revives its question), and the
    // first answer stands (a request is answered once).
    const reply = await this.run('answerAsk', (r) => r.eval(ANSWER_ASK, 1, k, `a:${key}`, answer), k);
    return reply === 1;
  }

  async getAsk(id: string): Promise<{ readonly record: string; readonly answers: ReadonlyMap<string, string> } | null> {
    const key = this.askKey(id);
    const all = (await this.run('getAsk', (r) => r.hgetall(key), key)) as Record<string, string>;
    const record = all['r'];
    if (record === undefined) return null;
    const answers = new Map<string, string>();
    for (const [f, v] of Object.entries(all)) if (f.startsWith('a:')) answers.set(f.slice(2), v);
    return { record, answers };
  }

  async dropAsk(id: string): Promise<void> {
    const key = this.askKey(id);
    await this.run('dropAsk', (r) => r.del(key), key);
  }

  private askKey(id: string): string {
    return `${this.keyPrefix}ask:${id}`;
  }

  private bindingKey(kind: BindingKind, server: string, id: string): string {
    return `${this.keyPrefix}${kind === 'passthrough' ? 'p' : 't'}:${server}:${id}`;
  }
}
