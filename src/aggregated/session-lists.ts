import type { Logger } from 'pino';
import type { RuntimeConfig, RuntimeServer } from '../config/runtime.js';
import type { JsonObject } from '../mcp/message.js';
import { KIND_INFO, readAllPages, type CatalogKind } from '../mcp/protocol.js';
import { ownListKey, type GatewaySession, type SessionStore } from '../sessions/store.js';
import type { UpstreamClient } from '../upstream/client.js';
import type { Catalog } from './catalog.js';

/** Pages read of one session's list (as the catalog does for its own). */
const MAX_PAGES = 100;
/** Sessions' lists kept per replica, least recently used dropped first. */
const MAX_CACHED = 10_000;

interface Cached {
  readonly generation: number;
  /** null: the session's list equals the catalog's (the catalog serves it). */
  readonly items: readonly JsonObject[] | null;
  readonly fetchedAt: number;
}

/** What a session-list decision needs from the endpoint. */
export interface SessionListsDeps {
  readonly rc: RuntimeConfig;
  readonly catalog: Catalog;
  readonly sessions: SessionStore;
  readonly upstream: UpstreamClient;
  readonly log: Logger;
}

/**
 * Lists a server keeps for one client session only: resources it creates for the session, tools
 * it adds in it. The catalog (one per client profile) cannot see them, so a session whose server
 * showed it has such a list is served that server's list from its own upstream session:
 *
 * - a server announces a change in the client's session (`list_changed` on a POST answer or the
 *   GET stream), or links a resource in a result that its catalog does not list, or a call names
 *   a tool the catalog lacks but the session's list has: the session's list of that kind is marked
 *   changed (a new generation, kept with the session, so every replica sees it);
 * - the session's next list of that kind reads the server's list in its upstream session once;
 *   if it is the catalog's, the catalog serves the session again until the next change; if not,
 *   it is kept (per replica, for the catalog TTL) and served in the catalog's place.
 *
 * So a change the server makes for everyone costs each session that heard it one list call, and
 * a session with lists of its own costs one per TTL: never one per client list call.
 */
export class SessionLists {
  private readonly cache = new Map<string, Cached>();

  constructor(
    private readonly deps: SessionListsDeps,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * A server said a list changed in this client's session: the catalog's copy goes (every
   * profile), and the session's own list is marked changed.
   */
  listChanged(session: GatewaySession, server: string, kind: 'tools' | 'prompts' | 'resources'): void {
    for (const k of kind === 'resources' ? (['resources', 'resourceTemplates'] as const) : [kind]) {
      this.deps.catalog.invalidate(server, k);
      this.mark(session, server, k);
    }
  }

  /**
   * A result in this session links resources of `server`: one its catalog does not list (or no
   * catalog was read yet), and the session's list (as last read) does not either, is likely one
   * the server made for the session.
   */
  resourcesLinked(session: GatewaySession, server: string, catalogItems: readonly JsonObject[] | null, uris: readonly string[]): void {
    const key = ownListKey(server, 'resources');
    const generation = session.ownLists.get(key);
    const cached = this.cache.get(this.cacheKey(session, key));
    const read = generation !== undefined && cached !== undefined && cached.generation === generation;
    // Marked and not read since: the session's next list reads it anyway.
    if (generation !== undefined && !read) return;
    // No catalog read yet: unknown, so the session's next list reads its own once.
    const known = (uri: string): boolean =>
      (catalogItems?.some((r) => r['uri'] === uri) ?? false) || (read && (cached.items?.some((r) => r['uri'] === uri) ?? false));
    if (!uris.every(known)) this.mark(session, server, 'resources');
  }

  /**
   * The session's own entries of `kind` from `server` (upstream names), or null when the catalog
   * serves the session (no list of its own, equal to the catalog's, or the server unreachable).
   */
  async own(session: GatewaySession, server: RuntimeServer, kind: CatalogKind, catalogItems: () => Promise<readonly JsonObject[] | null>): Promise<readonly JsonObject[] | null> {
    const key = ownListKey(server.name, kind);
    const generation = session.ownLists.get(key);
    if (generation === undefined) return null;
    const cacheKey = this.cacheKey(session, key);
    const cached = this.cache.get(cacheKey);
    if (cached !== undefined && cached.generation === generation && (cached.items === null || this.now() - cached.fetchedAt < this.deps.rc.catalogTtlMs[kind])) {
      this.touch(cacheKey, cached);
      return cached.items;
    }
    const items = await this.read(session, server, kind);
    if (items === null) return null;
    const catalog = await catalogItems();
    const same = catalog !== null && sameEntries(kind, items, catalog);
    this.touch(cacheKey, { generation, items: same ? null : items, fetchedAt: this.now() });
    return same ? null : items;
  }

  /**
   * A call names a tool or prompt the catalog lacks: whether the session's own list has it (the
   * server added it in this session). Found, the session's list is kept as its own from now on.
   */
  async findOwn(session: GatewaySession, server: RuntimeServer, kind: 'tools' | 'prompts', name: string): Promise<boolean> {
    if (!session.upstream.has(server.name)) return false;
    const key = ownListKey(server.name, kind);
    const cacheKey = this.cacheKey(session, key);
    const current = session.ownLists.get(key) ?? 0;
    // One read per catalog TTL however many unknown names a client tries.
    const cached = this.cache.get(cacheKey);
    let items = cached !== undefined && cached.generation === current && cached.items !== null && this.now() - cached.fetchedAt < this.deps.rc.catalogTtlMs[kind] ? cached.items : null;
    if (items === null) {
      items = await this.read(session, server, kind);
      if (items === null) return false;
      this.touch(cacheKey, { generation: current, items, fetchedAt: this.now() });
    }
    if (!items.some((i) => i['name'] === name)) return false;
    if (session.ownLists.has(key)) return true;
    const generation = await this.deps.sessions.markOwnList(session, server.name, kind);
    this.touch(cacheKey, { generation, items, fetchedAt: this.now() });
    return true;
  }

  /** The session ended: its lists go. */
  forget(sessionId: string): void {
    const prefix = `${sessionId}\n`;
    for (const key of this.cache.keys()) if (key.startsWith(prefix)) this.cache.delete(key);
  }

  private mark(session: GatewaySession, server: string, kind: CatalogKind): void {
    this.deps.sessions.markOwnList(session, server, kind).catch((err: unknown) => this.deps.log.warn({ server, kind, err }, 'session list change not recorded'));
  }

  /** The server's list of `kind` in the client's upstream session; null when it cannot be read. */
  private async read(session: GatewaySession, server: RuntimeServer, kind: CatalogKind): Promise<JsonObject[] | null> {
    const up = session.upstream.get(server.name);
    if (up === undefined) return null;
    const method = KIND_INFO[kind].method;
    const opts = { sessionId: up.sessionId, protocolVersion: up.protocolVersion };
    try {
      return await readAllPages(kind, MAX_PAGES, async (params) => (await this.deps.upstream.call(server, method, params, opts)).result);
    } catch (err) {
      this.deps.log.debug({ server: server.name, kind, err }, 'session list not read; the catalog serves it');
      return null;
    }
  }

  private cacheKey(session: GatewaySession, listKey: string): string {
    return `${session.id}\n${listKey}`;
  }

  private touch(key: string, value: Cached): void {
    this.cache.delete(key);
    this.cache.set(key, value);
    if (this.cache.size > MAX_CACHED) this.cache.delete(this.cache.keys().next().value!);
  }
}

/** Whether two lists hold the same entries (by name or URI; order aside). */
function sameEntries(kind: CatalogKind, a: readonly JsonObject[], b: readonly JsonObject[]): boolean {
  if (a.length !== b.length) return false;
  const id = KIND_INFO[kind].idField;
  const names = new Set(b.map((e) => e[id]));
  return a.every((e) => names.has(e[id]));
}
