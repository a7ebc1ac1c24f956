import { createHash } from 'node:crypto';
import { GlobSet } from '../lib/glob.js';
import { isObject, type JsonObject } from '../mcp/message.js';
import type { AnswerMethod, CacheConfig, ServerCacheConfig, VaryKey } from './schema.js';
import type { AnswerStore, CacheKey } from './store.js';
import type { Logger } from 'pino';
import type { Metrics } from '../observability/metrics.js';

/**
 * Which answers of servers the gateway keeps and serves again, and under which key. An answer is
 * looked up only after the caller's request passed every check a request to the server passes
 * (its policy allowed the server and the name, its limits, the filters on its arguments): a cached
 * answer never reaches a caller its policy would refuse. Unless `vary` says otherwise each caller's
 * answers are its own (the key holds its identity).
 */

/** One configured answer cache, compiled. */
interface Rule {
  readonly ttlMs: number;
  readonly tenant: boolean;
  readonly identity: boolean;
  /** tools/call only: the tools whose results are kept. */
  readonly tools: GlobSet | null;
}

/** Who is asking, as far as a cache key may depend on it. */
export interface CacheCaller {
  /** The identity's subject (one per client, tenant and issuer). */
  readonly subject: string;
  /** null: no tenant. */
  readonly tenant: string | null;
}

/** A request whose answer may be cached: where it is looked up, and how long a fill may live. */
export interface CachePlan {
  readonly key: CacheKey;
  /** The server's own URI, prompt name or tool name the answer is of. */
  readonly entity: string;
  readonly ttlMs: number;
  /** Whether callers share the answer (the key holds no identity). */
  readonly shared: boolean;
  readonly maxBytes: number;
}

/** Which catalog kind's change drops which answers. */
const METHOD_OF_KIND: Readonly<Record<'tools' | 'prompts' | 'resources', AnswerMethod>> = {
  tools: 'tools/call',
  prompts: 'prompts/get',
  resources: 'resources/read',
};

export class AnswerCache {
  /**
   * Told of each resource read kept, so that the gateway hears when it changes (its own
   * subscription with the server); set by whoever listens to the servers.
   */
  onResourceKept: ((server: string, uri: string) => void) | null = null;

  private constructor(
    /** server → method → its rule (absent: not cached). */
    private readonly rules: ReadonlyMap<string, ReadonlyMap<string, Rule>>,
    private readonly store: AnswerStore | null,
    private readonly maxBytes: number,
  ) {}

  /** No answer cache configured: nothing is looked up, nothing kept. */
  static readonly NONE = new AnswerCache(new Map(), null, 0);

  static compile(
    config: { readonly cache: CacheConfig; readonly servers: Readonly<Record<string, { readonly cache?: ServerCacheConfig | undefined }>> },
    store: (cfg: CacheConfig) => AnswerStore,
  ): AnswerCache {
    const rules = new Map<string, Map<string, Rule>>();
    for (const [server, s] of Object.entries(config.servers)) {
      const own = new Map<string, Rule>();
      for (const method of ['resources/read', 'prompts/get', 'tools/call'] as const) {
        const rule = compileRule(method, s.cache, config.cache);
        if (rule !== null) own.set(method, rule);
      }
      if (own.size > 0) rules.set(server, own);
    }
    if (rules.size === 0) return AnswerCache.NONE;
    return new AnswerCache(rules, store(config.cache), config.cache.max_entry_bytes);
  }

  /** Whether any answer is cached at all. */
  get enabled(): boolean {
    return this.store !== null;
  }

  /** Whether a server's answers to `method` are cached (no I/O). */
  caches(server: string, method: string): boolean {
    return this.rules.get(server)?.has(method) === true;
  }

  /**
   * The cache plan of a request to a server, in the server's own names (`tool` for tools/call):
   * null when its answer is not cached.
   */
  plan(server: string, method: string, tool: string | null, params: JsonObject, caller: CacheCaller, callerInArguments = false): CachePlan | null {
    const rule = this.rules.get(server)?.get(method);
    if (rule === undefined) return null;
    let entity: unknown;
    let variant: unknown[];
    if (method === 'resources/read') {
      entity = params['uri'];
      variant = [];
    } else {
      if (method === 'tools/call' && (tool === null || rule.tools?.test(tool) !== true)) return null;
      entity = method === 'tools/call' ? tool : params['name'];
      variant = [canonicalJson(params['arguments'] ?? {})];
    }
    if (typeof entity !== 'string') return null;
    // Arguments the gateway fills in for the caller (its context, templated defaults) are not in
    // the key: what the server answers may depend on them, so such answers stay the caller's own.
    const identity = rule.identity || callerInArguments;
    if (rule.tenant) variant.push(caller.tenant);
    if (identity) variant.push(caller.subject);
    return {
      key: { server, method, entity: digest(entity), variant: digest(JSON.stringify(variant)) },
      entity,
      ttlMs: rule.ttlMs,
      shared: !identity,
      maxBytes: this.maxBytes,
    };
  }

  /** The result kept for a plan, as the server sent it (JSON text), or null. */
  async get(plan: CachePlan): Promise<string | null> {
    return this.store === null ? null : this.store.get(plan.key);
  }

  /**
   * Keeps a server's result for its plan when the server allows it: never a tool error or an
   * unfinished result; no longer than the server's own hints (`ttlMs`, Cache-Control max-age);
   * a result it marks private (cacheScope, Cache-Control) only in a cache each caller has of its
   * own. Whether it was kept.
   */
  keep(plan: CachePlan, result: JsonObject, text: string, cacheControl: string | null): boolean {
    if (this.store === null || text.length > plan.maxBytes) return false;
    if (result['isError'] === true || (result['resultType'] !== undefined && result['resultType'] !== 'complete')) return false;
    const hints = parseCacheControl(cacheControl);
    if (hints.noStore) return false;
    let ttlMs = plan.ttlMs;
    if (typeof result['ttlMs'] === 'number') ttlMs = Math.min(ttlMs, Math.max(0, result['ttlMs']));
    if (hints.maxAgeMs !== null) ttlMs = Math.min(ttlMs, hints.maxAgeMs);
    if (plan.shared && (hints.private || result['cacheScope'] === 'private')) return false;
    if (ttlMs <= 0) return false;
    void this.store.put(plan.key, text, ttlMs);
    if (plan.key.method === 'resources/read') this.onResourceKept?.(plan.key.server, plan.entity);
    return true;
  }

  /** A server said a resource changed: every caller's cached read of it goes. */
  async resourceUpdated(server: string, uri: string): Promise<boolean> {
    if (this.store === null || !this.caches(server, 'resources/read')) return false;
    await this.store.dropEntity(server, 'resources/read', digest(uri));
    return true;
  }

  /** A server said one of its lists changed: the answers about what is in it go. */
  async listChanged(server: string, kind: 'tools' | 'prompts' | 'resources'): Promise<boolean> {
    const method = METHOD_OF_KIND[kind];
    if (this.store === null || !this.caches(server, method)) return false;
    await this.store.dropMethod(server, method);
    return true;
  }
}

function compileRule(method: AnswerMethod, own: ServerCacheConfig | undefined, global: CacheConfig): Rule | null {
  const c = own?.[method] ?? global[method];
  if (c === undefined || c.ttl === 0) return null;
  const vary: readonly VaryKey[] = c.vary;
  return { ttlMs: c.ttl * 1000, tenant: vary.includes('tenant'), identity: vary.includes('identity'), tools: 'tools' in c ? new GlobSet(c.tools as readonly string[]) : null };
}

/** A short, fixed-length name for what a key holds (URIs and arguments may be long). */
function digest(text: string): string {
  return createHash('sha256').update(text).digest('base64url').slice(0, 32);
}

/** JSON with object keys in order: the same arguments give the same key whatever order they came in. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (isObject(value)) {
    const keys = Object.keys(value).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k])}`).join(',')}}`;
  }
  return JSON.stringify(value ?? null);
}

/** What an upstream's Cache-Control header allows a shared cache. */
export function parseCacheControl(header: string | null): { noStore: boolean; private: boolean; maxAgeMs: number | null } {
  const out = { noStore: false, private: false, maxAgeMs: null as number | null };
  if (header === null || header === '') return out;
  let maxAge: number | null = null;
  let sMaxAge: number | null = null;
  for (const part of header.toLowerCase().split(',')) {
    const [name, raw] = part.trim().split('=', 2) as [string, string | undefined];
    const seconds = raw === undefined ? NaN : Number(raw.replace(/^"|"$/g, ''));
    if (name === 'no-store' || name === 'no-cache') out.noStore = true;
    else if (name === 'private') out.private = true;
    else if (name === 'max-age' && Number.isFinite(seconds)) maxAge = Math.max(0, seconds);
    else if (name === 's-maxage' && Number.isFinite(seconds)) sMaxAge = Math.max(0, seconds);
  }
  const age = sMaxAge ?? maxAge;
  out.maxAgeMs = age === null ? null : age * 1000;
  return out;
}

/** What a server's notification said that may leave cached answers out of date. */
export interface AnswerChanges {
  readonly listChanged?: 'tools' | 'prompts' | 'resources';
  /** The server's own URI of a resource it said changed. */
  readonly resourceUpdated?: string;
}

/** Drops the cached answers a server's notification made stale, metered by why (in the background). */
export function invalidateAnswers(
  ctx: { readonly answers: AnswerCache; readonly metrics: Metrics; readonly log: Logger },
  server: string,
  changes: AnswerChanges,
  /** Said in place of the notification's own reason: `resync` when the gateway starts to listen again. */
  reason?: string,
): void {
  if (!ctx.answers.enabled) return;
  const dropped = (own: string) => (done: boolean) => {
    const given = reason ?? own;
    if (!done) return;
    ctx.metrics.cacheInvalidationInc(server, given);
    ctx.log.debug({ server, reason: given, ...changes }, 'cached answers dropped');
  };
  const failed = (err: unknown): void => ctx.log.warn({ server, err }, 'cached answers not invalidated');
  if (changes.resourceUpdated !== undefined) ctx.answers.resourceUpdated(server, changes.resourceUpdated).then(dropped('resource_updated'), failed);
  if (changes.listChanged !== undefined) ctx.answers.listChanged(server, changes.listChanged).then(dropped('list_changed'), failed);
}
