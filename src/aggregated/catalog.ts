import type { Logger } from 'pino';
import type { RuntimeConfig, RuntimeServer } from '../config/runtime.js';
import { isObject, type JsonObject } from '../mcp/message.js';
import { CATALOG_KINDS, KIND_INFO, readAllPages, type CatalogKind } from '../mcp/protocol.js';
import type { ControlSessions } from '../upstream/control.js';
import { ClientProfiles, NO_CAPABILITIES, type ClientProfile } from '../upstream/profiles.js';
import { mergeEntries, type Claimant, type Collision, type Merge, type MergedEntry } from './merge.js';
import type { Namespace } from './naming.js';

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

/** What the catalog reports when the servers' names collide, each time that set changes. */
export type CollisionReport = (kind: CatalogKind, collisions: readonly Collision[]) => void;

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

/** The part of a catalog its views share. */
interface CatalogCore {
  readonly state: Map<string, Map<string, ServerLists>>;
  readonly profiles: ClientProfiles;
  excluded: ReadonlySet<string>;
  readonly views: Catalog[];
  /** Told of each server's tools as fetched, before they are served (tool pinning). */
  screen: ToolScreen | null;
}

/** Looks at a server's tools as fetched (`everyClient`: the list every client gets). */
export type ToolScreen = (server: string, tools: readonly JsonObject[], everyClient: boolean) => Promise<void>;

/** A profile pushed out of the bounded set: its catalog and the gateway's sessions for it go. */
function dropProfile(state: Map<string, Map<string, ServerLists>>, views: readonly Catalog[], control: ControlSessions, profile: ClientProfile): void {
  for (const lists of state.values()) lists.delete(profile.key);
  for (const v of views) v.forgetProfile(profile);
  control.dropProfile(profile);
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
  /** By `<kind>\n<profile key>`. */
  private readonly merged = new Map<string, MergedList>();
  /** What every view of the catalog shares: the fetched lists, the profiles, the health exclusions. */
  private readonly core: CatalogCore;
  /** The last collisions reported, per kind (as JSON), so each change is reported once. */
  private readonly reported = new Map<CatalogKind, string>();

  constructor(
    private readonly rc: RuntimeConfig,
    private readonly control: ControlSessions,
    private readonly naming: Namespace,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
    /** Told of the servers' name collisions whenever they change. */
    private readonly onCollisions: CollisionReport = () => {},
    core?: CatalogCore,
  ) {
    if (core === undefined) {
      const state = new Map<string, Map<string, ServerLists>>();
      for (const s of rc.serverList) state.set(s.name, new Map());
      const views: Catalog[] = [];
      core = { state, views, excluded: new Set(), screen: null, profiles: new ClientProfiles(MAX_PROFILES, (p) => dropProfile(state, views, control, p)) };
    }
    this.core = core;
    core.views.push(this);
  }

  /**
   * The same catalog as a virtual server sees it: only its servers (`rc`), named its way
   * (`naming`). The servers' lists are fetched and kept once, for every view.
   */
  view(rc: RuntimeConfig, naming: Namespace, onCollisions: CollisionReport = () => {}): Catalog {
    return new Catalog(rc, this.control, naming, this.log, this.now, onCollisions, this.core);
  }

  /** Has every server's tools looked at as fetched, before any client is served them (every view). */
  screenTools(screen: ToolScreen): void {
    this.core.screen = screen;
  }

  /** Client profiles with a catalog of their own (shared by every view). */
  get profiles(): ClientProfiles {
    return this.core.profiles;
  }

  /** The fetched lists by server, then profile key (shared by every view). */
  private get state(): Map<string, Map<string, ServerLists>> {
    return this.core.state;
  }

  /** Servers the health monitor currently reports unhealthy. */
  private get excluded(): ReadonlySet<string> {
    return this.core.excluded;
  }

  /** Drops one profile's merged lists (its fetched ones went with it). */
  forgetProfile(profile: ClientProfile): void {
    for (const kind of CATALOG_KINDS) this.merged.delete(`${kind}\n${profile.key}`);
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
    let freshUntil = Infinity;
    perServer.forEach((entry) => {
      if (entry !== null && entry.offered) freshUntil = Math.min(freshUntil, entry.ttlMs === null ? entry.fetchedAt : entry.fetchedAt + this.ttlOf(kind, entry));
    });
    const m = mergeEntries(kind, perServer.map((e, i) => (e === null ? null : { server: this.rc.serverList[i]!.name, items: e.items })), this.naming);
    for (const l of m.leftOut) {
      this.log.warn(
        { server: l.server, kind, name: l.name },
        l.why === 'invalid_name' ? 'catalog entry left out: name would break the tool-name rules' : "catalog entry left out: its unprefixed name reads as another server's prefixed one",
      );
    }
    // The collisions every client's names follow are those of the catalog every client gets.
    if (profile === NO_CAPABILITIES) this.noteCollisions(kind, m);
    const merged: MergedList = { version, items: m.items, freshUntil: freshUntil === Infinity ? 0 : freshUntil, claims: m.claims };
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
    this.core.excluded = servers;
  }

  /** A server's tool's `inputSchema` (or `outputSchema`) in the catalog every client gets (null: no such tool, or down). */
  async toolSchema(server: string, tool: string, which: 'inputSchema' | 'outputSchema' = 'inputSchema'): Promise<unknown> {
    const s = this.rc.servers.get(server);
    if (s === undefined) return null;
    return (await this.serverItems(s, 'tools', NO_CAPABILITIES))?.find((i) => i['name'] === tool)?.[which] ?? null;
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

  /** Fetches every catalog now (start-up warm-up); never throws. */
  async warmUp(): Promise<void> {
    await this.control.warmUp(async () => {
      await Promise.all(this.rc.serverList.flatMap((s) => CATALOG_KINDS.map((k) => this.serverList(s, k))));
    });
  }

  /** Hands the settled collisions to the naming, and reports them (logged and metered) when they changed. */
  private noteCollisions(kind: CatalogKind, m: Merge): void {
    this.naming.noteCollisions(kind, m.collided);
    const key = JSON.stringify(m.collisions);
    if (this.reported.get(kind) === key) return;
    this.reported.set(kind, key);
    for (const c of m.collisions) {
      this.log.warn(
        { kind, name: c.name, servers: c.claimants, winner: c.claimants[0] ?? null, prefixed: c.prefixed, event: 'name_collision' },
        'servers share an unprefixed name: each caller gets the first of them it may use; on-collision servers keep their prefix',
      );
    }
    this.onCollisions(kind, m.collisions);
  }

  /** The servers claiming an unprefixed name in the default catalog, strongest first; undefined when none does. */
  async claimants(kind: CatalogKind, id: string, profile: ClientProfile = NO_CAPABILITIES): Promise<readonly Claimant[] | undefined> {
    return (await this.list(kind, profile)).claims.get(id);
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
    if (kind === 'tools' && this.core.screen !== null) await this.core.screen(server.name, items, profile === NO_CAPABILITIES);
    st.lists[kind] = { items, fetchedAt: this.now(), ttlMs: hints.ttlMs, offered: true };
  }
}
