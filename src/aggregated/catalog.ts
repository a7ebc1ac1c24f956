import type { Logger } from 'pino';
import type { RuntimeConfig, RuntimeServer } from '../config/runtime.js';
import { isObject, type JsonObject } from '../mcp/message.js';
import { CATALOG_KINDS, KIND_INFO, type CatalogKind } from '../mcp/protocol.js';
import type { ControlSessions } from '../upstream/control.js';
import type { Namespace } from './naming.js';

const MAX_PAGES = 1000;

interface ListEntry {
  readonly items: readonly JsonObject[];
  readonly fetchedAt: number;
}

interface ServerLists {
  lists: Partial<Record<CatalogKind, ListEntry>>;
  refreshing: Partial<Record<CatalogKind, Promise<void>>>;
}

/** One entry of an aggregated list: its server, the name the upstream knows, and the renamed entry. */
export interface MergedEntry {
  readonly server: string;
  readonly upstreamName: string;
  readonly item: JsonObject;
}

/** The aggregated view of one kind, in server order, already renamed for the aggregated endpoint. */
export interface MergedList {
  readonly version: string;
  readonly items: readonly MergedEntry[];
}

/**
 * Each upstream's tools, prompts, resources and templates, fetched over the gateway's own
 * session per upstream (never a client's), cached for the configured TTL and served stale while
 * a refresh runs. An upstream that is down is left out, so one bad server never breaks the
 * aggregate.
 */
export class Catalog {
  private readonly state = new Map<string, ServerLists>();
  private readonly merged = new Map<CatalogKind, MergedList>();
  /** Servers the health monitor currently reports unhealthy. */
  private excluded: ReadonlySet<string> = new Set();

  constructor(
    private readonly rc: RuntimeConfig,
    private readonly control: ControlSessions,
    private readonly naming: Namespace,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    for (const s of rc.serverList) this.state.set(s.name, { lists: {}, refreshing: {} });
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
  async list(kind: CatalogKind): Promise<MergedList> {
    const excluded = this.excluded;
    const perServer = await Promise.all(this.rc.serverList.map((s) => (excluded.has(s.name) ? null : this.serverList(s, kind))));
    const version = perServer.map((e, i) => `${this.rc.serverList[i]!.name}@${e?.fetchedAt ?? 'x'}`).join(',');
    const cached = this.merged.get(kind);
    if (cached !== undefined && cached.version === version) return cached;
    const items: MergedEntry[] = [];
    const idField = KIND_INFO[kind].idField;
    perServer.forEach((entry, i) => {
      if (entry === null) return;
      const server = this.rc.serverList[i]!.name;
      for (const item of entry.items) {
        const renamed = renameEntry(kind, server, item, this.naming);
        if (renamed === null) {
          this.log.warn({ server, kind, name: item['name'] ?? item['uri'] }, 'catalog entry left out: name would break the tool-name rules');
          continue;
        }
        items.push({ server, upstreamName: String(item[idField]), item: renamed });
      }
    });
    const merged: MergedList = { version, items };
    this.merged.set(kind, merged);
    return merged;
  }

  /**
   * Whether `name` exists in a server's catalog of `kind`. A miss on a catalog older than a few
   * seconds triggers one refresh, so a tool added upstream is found without waiting for the TTL.
   */
  async has(server: RuntimeServer, kind: 'tools' | 'prompts', name: string): Promise<boolean> {
    let entry = await this.serverList(server, kind);
    const found = (e: ListEntry | null): boolean => e !== null && e.items.some((i) => i['name'] === name);
    if (found(entry)) return true;
    if (entry !== null && this.now() - entry.fetchedAt > 2000) {
      this.invalidate(server.name, kind);
      entry = await this.serverList(server, kind);
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
    this.stateOf(server).lists = {};
  }

  /** Sets the servers to leave out of lists (health monitor); a server coming back is refetched. */
  setExcluded(servers: ReadonlySet<string>): void {
    for (const name of this.excluded) if (!servers.has(name)) this.invalidate(name);
    this.excluded = servers;
  }

  /** True if `name` is in the server's cached catalog of `kind` (no I/O: for bounded metric labels). */
  knows(server: string, kind: CatalogKind, name: string): boolean {
    const items = this.state.get(server)?.lists[kind]?.items;
    if (items === undefined) return false;
    const key = KIND_INFO[kind].idField;
    return items.some((i) => i[key] === name);
  }

  /** Marks a server's list stale (e.g. after notifications/tools/list_changed). */
  invalidate(server: string, kind?: CatalogKind): void {
    const st = this.state.get(server);
    if (st === undefined) return;
    if (kind === undefined) st.lists = {};
    else delete st.lists[kind];
  }

  /** Fetches every catalog now (start-up warm-up); never throws. */
  async warmUp(): Promise<void> {
    await this.control.warmUp(async () => {
      await Promise.all(this.rc.serverList.flatMap((s) => CATALOG_KINDS.map((k) => this.serverList(s, k))));
    });
  }

  private stateOf(server: RuntimeServer): ServerLists {
    const st = this.state.get(server.name);
    if (st === undefined) throw new Error(`unknown server ${server.name}`);
    return st;
  }

  private async serverList(server: RuntimeServer, kind: CatalogKind): Promise<ListEntry | null> {
    const st = this.stateOf(server);
    const entry = st.lists[kind];
    if (entry !== undefined) {
      if (this.now() - entry.fetchedAt >= this.rc.catalogTtlMs[kind]) void this.refresh(server, st, kind);
      return entry;
    }
    await this.refresh(server, st, kind);
    return st.lists[kind] ?? null;
  }

  private refresh(server: RuntimeServer, st: ServerLists, kind: CatalogKind): Promise<void> {
    const running = st.refreshing[kind];
    if (running !== undefined) return running;
    const p = this.fetchList(server, st, kind)
      .catch((err: unknown) => this.control.markDown(server, err))
      .finally(() => {
        delete st.refreshing[kind];
      });
    st.refreshing[kind] = p;
    return p;
  }

  private async fetchList(server: RuntimeServer, st: ServerLists, kind: CatalogKind): Promise<void> {
    const caps = await this.control.capabilities(server);
    if (caps === null) return;
    const info = KIND_INFO[kind];
    const exposed = server.capabilities === null || server.capabilities.has(info.capability);
    if (!exposed || !isObject(caps[info.capability])) {
      st.lists[kind] = { items: [], fetchedAt: this.now() };
      return;
    }
    const items: JsonObject[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < MAX_PAGES; page++) {
      const res = await this.control.call(server, info.method, cursor === undefined ? undefined : { cursor });
      if (res === null) return;
      const batch = res[info.key];
      if (Array.isArray(batch)) for (const it of batch) if (isObject(it)) items.push(it);
      cursor = typeof res['nextCursor'] === 'string' && res['nextCursor'] !== '' ? res['nextCursor'] : undefined;
      if (cursor === undefined) break;
    }
    st.lists[kind] = { items, fetchedAt: this.now() };
  }
}

function renameEntry(kind: CatalogKind, server: string, item: JsonObject, ns: Namespace): JsonObject | null {
  switch (kind) {
    case 'tools':
    case 'prompts': {
      const name = typeof item['name'] === 'string' ? ns.qualifyName(server, item['name']) : null;
      return name === null ? null : { ...item, name };
    }
    case 'resources':
      return typeof item['uri'] === 'string' ? { ...item, uri: ns.qualifyUri(server, item['uri']) } : null;
    case 'resourceTemplates':
      return typeof item['uriTemplate'] === 'string' ? { ...item, uriTemplate: ns.qualifyUri(server, item['uriTemplate']) } : null;
  }
}
