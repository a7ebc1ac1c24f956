import type { Logger } from 'pino';
import type { RuntimeConfig, RuntimeServer } from '../config/runtime.js';
import { isObject, type JsonObject } from '../mcp/message.js';
import { CATALOG_KINDS, KIND_INFO, readAllPages, type CatalogKind } from '../mcp/protocol.js';
import type { ControlSessions } from '../upstream/control.js';
import { ClientProfiles, NO_CAPABILITIES, type ClientProfile } from '../upstream/profiles.js';
import { CLAIM, type Claim, type Namespace } from './naming.js';

const MAX_PAGES = 1000;

interface ListEntry {
  readonly items: readonly JsonObject[];
  readonly fetchedAt: number;
  /** How long the server said its list may be kept (`ttlMs`), when it said; the cache keeps it no longer. */
  readonly ttlMs: number | null;
  /** The server offers this kind of list at all (an empty list it does not offer sets no freshness). */
  readonly offered: boolean;
}

/** Shortest a server's cache hint keeps a catalog entry: a hint of 0 must not make every list an upstream call. */
const MIN_HINT_MS = 1000;

interface ServerLists {
  lists: Partial<Record<CatalogKind, ListEntry>>;
  refreshing: Partial<Record<CatalogKind, Promise<void>>>;
}

/** One entry of an aggregated list: its server, the name the upstream knows, and the renamed entry. */
export interface MergedEntry {
  readonly server: string;
  readonly upstreamName: string;
  readonly item: JsonObject;
  /** How strongly it claims its unprefixed name (null: shown prefixed). */
  readonly claim?: Claim | null;
}

/** A server's claim on an unprefixed name: of several, the strongest a caller may use is the one it gets. */
export interface Claimant {
  readonly server: string;
  readonly upstreamName: string;
}

/** What the catalog reports when the servers' names collide, each time that set changes. */
export type CollisionReport = (kind: CatalogKind, collisions: readonly Collision[]) => void;

/** One name several servers claim: who gets it (for callers that may use it) and who does not. */
export interface Collision {
  readonly name: string;
  /** In the order callers get them: the first one a caller may use wins. */
  readonly claimants: readonly string[];
  /** `on-collision` servers whose entry keeps its prefix because of it. */
  readonly prefixed: readonly string[];
}

/** The aggregated view of one kind, in server order, already renamed for the aggregated endpoint. */
export interface MergedList {
  readonly version: string;
  readonly items: readonly MergedEntry[];
  /**
   * Until when (catalog clock) every server's part of the list stays fresh, by the cache hints
   * the servers gave: the earliest wins, a server that offers the list and gave none makes it
   * stale at once, one that does not offer it sets nothing.
   */
  readonly freshUntil: number;
  /** Unprefixed names and the servers claiming each, strongest claim first (ties: config order). */
  readonly claims: ReadonlyMap<string, readonly Claimant[]>;
}

/** How many client profiles get a catalog of their own (each costs a session and lists per server). */
const MAX_PROFILES = 16;

/**
 * Each upstream's tools, prompts, resources and templates, fetched over the gateway's own
 * session per upstream (never a client's), cached for the configured TTL and served stale while
 * a refresh runs. An upstream that is down is left out, so one bad server never breaks the
 * aggregate. One catalog per client profile (profiles.ts): a client that declares sampling,
 * elicitation, roots or tasks sees the tools servers offer only to such clients, at the cost of
 * one catalog per distinct capability set, not one list call per client.
 */
export class Catalog {
  /** By server, then profile key. */
  private readonly state = new Map<string, Map<string, ServerLists>>();
  /** By `<kind>\n<profile key>`. */
  private readonly merged = new Map<string, MergedList>();
  readonly profiles: ClientProfiles;
  /** Servers the health monitor currently reports unhealthy. */
  private excluded: ReadonlySet<string> = new Set();

  constructor(
    private readonly rc: RuntimeConfig,
    private readonly control: ControlSessions,
    private readonly naming: Namespace,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
    /** Told of the servers' name collisions whenever they change. */
    private readonly onCollisions: CollisionReport = () => {},
  ) {
    for (const s of rc.serverList) this.state.set(s.name, new Map());
    this.profiles = new ClientProfiles(MAX_PROFILES, (p) => this.dropProfile(p));
  }

  /** How long a client may keep a merged list by its servers' cache hints (0: no longer than now). */
  freshForMs(list: MergedList): number {
    return Math.max(0, list.freshUntil - this.now());
  }

  /** Whether a server speaks the sessionless revision (see ControlSessions.speaksModern). */
  speaksModern(server: RuntimeServer): Promise<boolean> {
    return this.control.speaksModern(server);
  }

  /** What the upstream tells clients to read, or null. */
  instructions(server: RuntimeServer): Promise<string | null> {
    return this.control.instructions(server);
  }

  /** Capabilities the upstream declared, intersected with what the config exposes; null if unknown/down. */
  async capabilities(server: RuntimeServer): Promise<JsonObject | null> {
    const caps = await this.control.capabilities(server);
    if (caps === null || server.capabilities === null) return caps;
    const out: JsonObject = {};
    for (const [k, v] of Object.entries(caps)) {
      if (server.capabilities.has(k as never)) out[k] = v;
    }
    return out;
  }

  /**
   * Entries of one kind across all servers, renamed; servers that are down, or that the health
   * monitor reports unhealthy, are left out.
   */
  async list(kind: CatalogKind, profile: ClientProfile = NO_CAPABILITIES): Promise<MergedList> {
    const excluded = this.excluded;
    const perServer = await Promise.all(this.rc.serverList.map((s) => (excluded.has(s.name) ? null : this.serverList(s, kind, profile))));
    const version = perServer.map((e, i) => `${this.rc.serverList[i]!.name}@${e?.fetchedAt ?? 'x'}`).join(',');
    const mergedKey = `${kind}\n${profile.key}`;
    const cached = this.merged.get(mergedKey);
    if (cached !== undefined && cached.version === version) return cached;
    let items: MergedEntry[] = [];
    const idField = KIND_INFO[kind].idField;
    let freshUntil = Infinity;
    perServer.forEach((entry, i) => {
      if (entry === null) return;
      if (entry.offered) freshUntil = Math.min(freshUntil, entry.ttlMs === null ? entry.fetchedAt : entry.fetchedAt + this.ttlOf(kind, entry));
      const server = this.rc.serverList[i]!.name;
      for (const item of entry.items) {
        const upstreamName = item[idField];
        const exposed = typeof upstreamName === 'string' ? this.naming.expose(kind, server, upstreamName) : null;
        if (exposed === null) {
          this.log.warn({ server, kind, name: item['name'] ?? item['uri'] }, 'catalog entry left out: name would break the tool-name rules');
          continue;
        }
        if (exposed.claim !== null && this.readsAsPrefixed(kind, exposed.id)) {
          // Calls would go to the server the prefix names: listing it here would show one
          // server's entry for another's tool.
          this.log.warn({ server, kind, name: exposed.id }, 'catalog entry left out: its unprefixed name reads as another server\'s prefixed one');
          continue;
        }
        items.push({ server, upstreamName: upstreamName as string, item: shownEntry(kind, server, item, exposed.id, this.naming), claim: exposed.claim });
      }
    });
    const settled = this.settleCollisions(kind, items);
    items = settled.items;
    const merged: MergedList = { version, items, freshUntil: freshUntil === Infinity ? 0 : freshUntil, claims: settled.claims };
    this.merged.set(mergedKey, merged);
    return merged;
  }

  /**
   * Whether `name` exists in a server's catalog of `kind`. A miss on a catalog older than a few
   * seconds triggers one refresh, so a tool added upstream is found without waiting for the TTL.
   */
  async has(server: RuntimeServer, kind: 'tools' | 'prompts', name: string, profile: ClientProfile = NO_CAPABILITIES): Promise<boolean> {
    let entry = await this.serverList(server, kind, profile);
    const found = (e: ListEntry | null): boolean => e !== null && e.items.some((i) => i['name'] === name);
    if (found(entry)) return true;
    if (entry !== null && this.now() - entry.fetchedAt > 2000) {
      delete this.stateOf(server, profile).lists[kind];
      entry = await this.serverList(server, kind, profile);
      return found(entry);
    }
    // Server down or unknown catalog: let the upstream decide rather than guess.
    return entry === null;
  }

  /**
   * A routed call found the server unreachable: drop its entries now rather than at the end of
   * the TTL, so aggregated lists stop offering what cannot be called.
   */
  reportUnavailable(server: RuntimeServer): void {
    this.control.markDown(server, new Error('routed request found it unreachable'));
    this.invalidate(server.name);
  }

  /** Whether the health monitor has the server left out of lists. */
  excludes(server: string): boolean {
    return this.excluded.has(server);
  }

  /** Sets the servers to leave out of lists (health monitor); a server coming back is refetched. */
  setExcluded(servers: ReadonlySet<string>): void {
    for (const name of this.excluded) if (!servers.has(name)) this.invalidate(name);
    this.excluded = servers;
  }

  /** One server's entries of `kind` as the upstream names them (null: down or unknown). */
  async serverItems(server: RuntimeServer, kind: CatalogKind, profile: ClientProfile): Promise<readonly JsonObject[] | null> {
    return (await this.serverList(server, kind, profile))?.items ?? null;
  }

  /** The cached entries of `kind` for the profile, without fetching (null: none cached). */
  cachedItems(server: string, kind: CatalogKind, profile: ClientProfile): readonly JsonObject[] | null {
    return this.state.get(server)?.get(profile.key)?.lists[kind]?.items ?? null;
  }

  /** True if `name` is in the server's cached catalog of `kind` for the profile (no I/O, no refresh). */
  cachedHas(server: RuntimeServer, kind: 'tools' | 'prompts', name: string, profile: ClientProfile): boolean {
    return this.cachedItems(server.name, kind, profile)?.some((i) => i['name'] === name) ?? false;
  }

  /** True if `name` is in one of the server's cached catalogs of `kind` (no I/O: for bounded metric labels). */
  knows(server: string, kind: CatalogKind, name: string): boolean {
    const key = KIND_INFO[kind].idField;
    for (const st of this.state.get(server)?.values() ?? []) if (st.lists[kind]?.items.some((i) => i[key] === name)) return true;
    return false;
  }

  /** Marks a server's lists stale in every profile (e.g. after notifications/tools/list_changed). */
  invalidate(server: string, kind?: CatalogKind): void {
    for (const st of this.state.get(server)?.values() ?? []) {
      if (kind === undefined) st.lists = {};
      else delete st.lists[kind];
    }
  }

  /** A profile pushed out of the bounded set: its catalog and the gateway's sessions for it go. */
  private dropProfile(profile: ClientProfile): void {
    for (const lists of this.state.values()) lists.delete(profile.key);
    for (const kind of CATALOG_KINDS) this.merged.delete(`${kind}\n${profile.key}`);
    this.control.dropProfile(profile);
  }

  /** Fetches every catalog now (start-up warm-up); never throws. */
  async warmUp(): Promise<void> {
    await this.control.warmUp(async () => {
      await Promise.all(this.rc.serverList.flatMap((s) => CATALOG_KINDS.map((k) => this.serverList(s, k))));
    });
  }

  /**
   * Settles the unprefixed names several servers claim: an `on-collision` entry among them goes
   * back to its prefixed form; the others keep the name, strongest claim first (a rename, then a
   * route, then `prefix: never`; ties in config order), and each caller gets the first it may use.
   * Reports the collisions (logged once each time they change, and to the metrics).
   */
  private settleCollisions(kind: CatalogKind, items: MergedEntry[]): { items: MergedEntry[]; claims: Map<string, Claimant[]> } {
    const byName = new Map<string, number[]>();
    const idField = KIND_INFO[kind].idField;
    items.forEach((e, i) => {
      if (e.claim === null || e.claim === undefined) return;
      const id = String(e.item[idField]);
      const at = byName.get(id);
      if (at === undefined) byName.set(id, [i]);
      else at.push(i);
    });
    const collisions: Collision[] = [];
    const collided = new Set<string>();
    const claims = new Map<string, Claimant[]>();
    const out = items.slice();
    for (const [id, at] of byName) {
      if (at.length === 1) {
        const e = items[at[0]!]!;
        claims.set(id, [{ server: e.server, upstreamName: e.upstreamName }]);
        continue;
      }
      collided.add(id);
      const prefixed: string[] = [];
      const kept: MergedEntry[] = [];
      for (const i of at) {
        const e = items[i]!;
        if (e.claim !== CLAIM.onCollision) {
          kept.push(e);
          continue;
        }
        prefixed.push(e.server);
        const full = this.naming.prefixed(kind, e.server, e.upstreamName);
        out[i] = full === null ? (null as unknown as MergedEntry) : { ...e, item: shownEntry(kind, e.server, items[i]!.item, full, this.naming, e.upstreamName), claim: null };
      }
      // Stable: equal claims stay in config order.
      kept.sort((a, b) => (b.claim ?? 0) - (a.claim ?? 0));
      if (kept.length > 0) claims.set(id, kept.map((e) => ({ server: e.server, upstreamName: e.upstreamName })));
      collisions.push({ name: id, claimants: kept.map((e) => e.server), prefixed });
    }
    this.naming.noteCollisions(kind, collided);
    const key = JSON.stringify(collisions);
    if (this.reported.get(kind) !== key) {
      this.reported.set(kind, key);
      for (const c of collisions) {
        this.log.warn(
          { kind, name: c.name, servers: c.claimants, winner: c.claimants[0] ?? null, prefixed: c.prefixed, event: 'name_collision' },
          'servers share an unprefixed name: each caller gets the first of them it may use; on-collision servers keep their prefix',
        );
      }
      this.onCollisions(kind, collisions);
    }
    return { items: out.filter((e) => e !== null), claims };
  }

  /** The last collisions reported, per kind (as JSON), so each change is reported once. */
  private readonly reported = new Map<CatalogKind, string>();

  /** The servers claiming an unprefixed name in the default catalog, strongest first; undefined when none does. */
  async claimants(kind: CatalogKind, id: string, profile: ClientProfile = NO_CAPABILITIES): Promise<readonly Claimant[] | undefined> {
    return (await this.list(kind, profile)).claims.get(id);
  }

  /** Whether an unprefixed name or URI has the form of another server's prefixed one. */
  private readsAsPrefixed(kind: CatalogKind, id: string): boolean {
    return kind === 'tools' || kind === 'prompts' ? this.naming.parseName(id) !== null : this.naming.parseUri(id) !== null;
  }

  /** How long an entry is fresh: the configured TTL, or less when the server said less. */
  private ttlOf(kind: CatalogKind, entry: ListEntry): number {
    return entry.ttlMs === null ? this.rc.catalogTtlMs[kind] : Math.min(this.rc.catalogTtlMs[kind], Math.max(MIN_HINT_MS, entry.ttlMs));
  }

  private stateOf(server: RuntimeServer, profile: ClientProfile): ServerLists {
    const byProfile = this.state.get(server.name);
    if (byProfile === undefined) throw new Error(`unknown server ${server.name}`);
    let st = byProfile.get(profile.key);
    if (st === undefined) {
      st = { lists: {}, refreshing: {} };
      byProfile.set(profile.key, st);
    }
    return st;
  }

  private async serverList(server: RuntimeServer, kind: CatalogKind, profile: ClientProfile = NO_CAPABILITIES): Promise<ListEntry | null> {
    const st = this.stateOf(server, profile);
    const entry = st.lists[kind];
    if (entry !== undefined) {
      if (this.now() - entry.fetchedAt >= this.ttlOf(kind, entry)) void this.refresh(server, st, kind, profile);
      return entry;
    }
    await this.refresh(server, st, kind, profile);
    const fetched = st.lists[kind];
    if (fetched !== undefined) return fetched;
    // A profile the server would not serve gets what every client gets.
    return profile === NO_CAPABILITIES ? null : this.serverList(server, kind, NO_CAPABILITIES);
  }

  private refresh(server: RuntimeServer, st: ServerLists, kind: CatalogKind, profile: ClientProfile): Promise<void> {
    const running = st.refreshing[kind];
    if (running !== undefined) return running;
    const p = this.fetchList(server, st, kind, profile)
      .catch((err: unknown) => {
        if (profile === NO_CAPABILITIES) this.control.markDown(server, err);
        else this.log.debug({ server: server.name, profile: profile.key, err }, 'catalog of a client profile not fetched');
      })
      .finally(() => {
        delete st.refreshing[kind];
      });
    st.refreshing[kind] = p;
    return p;
  }

  private async fetchList(server: RuntimeServer, st: ServerLists, kind: CatalogKind, profile: ClientProfile): Promise<void> {
    const caps = await this.control.capabilities(server);
    if (caps === null) return;
    const info = KIND_INFO[kind];
    const exposed = server.capabilities === null || server.capabilities.has(info.capability);
    if (!exposed || !isObject(caps[info.capability])) {
      st.lists[kind] = { items: [], fetchedAt: this.now(), ttlMs: null, offered: false };
      return;
    }
    const hints = { ttlMs: null as number | null };
    const items = await readAllPages(kind, MAX_PAGES, (params) => this.control.call(server, info.method, params, profile), hints);
    if (items === null) return;
    st.lists[kind] = { items, fetchedAt: this.now(), ttlMs: hints.ttlMs, offered: true };
  }
}

/** An upstream's list entry in its aggregated form (null: its name would break the tool-name rules). */
export function renameEntry(kind: CatalogKind, server: string, item: JsonObject, ns: Namespace): JsonObject | null {
  const id = item[KIND_INFO[kind].idField];
  if (typeof id !== 'string') return null;
  const exposed = ns.expose(kind, server, id);
  if (exposed === null) return null;
  // An on-collision name another server claims too keeps its prefix here as in the merged list.
  const shown = exposed.claim === CLAIM.onCollision && ns.collided[kind].has(exposed.id) ? ns.prefixed(kind, server, id) : exposed.id;
  return shown === null ? null : shownEntry(kind, server, item, shown, ns);
}

/** An entry as `/mcp` shows it: its name or URI `shown`, and a tool's configured description and title. */
function shownEntry(kind: CatalogKind, server: string, item: JsonObject, shown: string, ns: Namespace, upstreamName?: string): JsonObject {
  const idField = KIND_INFO[kind].idField;
  const out: JsonObject = { ...item, [idField]: shown };
  if (kind === 'tools') {
    const o = ns.toolOverride(server, upstreamName ?? String(item[idField]));
    if (o?.description !== undefined) out['description'] = o.description;
    if (o?.title !== undefined) out['title'] = o.title;
  }
  return out;
}

