import type { Logger } from 'pino';
import type { CatalogKind, RuntimeConfig, RuntimeServer } from '../config/runtime.js';
import { GatewayError } from '../errors/gateway-error.js';
import { isObject, type JsonObject } from '../jsonrpc/message.js';
import { UpstreamSessionGone, type UpstreamClient } from '../upstream/client.js';
import { GATEWAY_INFO, LATEST_PROTOCOL_VERSION } from '../pipeline/protocol.js';

/** The list method behind each catalog kind, its result key and the capability that gates it. */
export const KIND_INFO = {
  tools: { method: 'tools/list', key: 'tools', capability: 'tools' },
  prompts: { method: 'prompts/list', key: 'prompts', capability: 'prompts' },
  resources: { method: 'resources/list', key: 'resources', capability: 'resources' },
  resourceTemplates: { method: 'resources/templates/list', key: 'resourceTemplates', capability: 'resources' },
} as const satisfies Record<CatalogKind, { method: string; key: string; capability: string }>;

const MAX_PAGES = 1000;
const RETRY_DOWN_AFTER_MS = 2000;

interface ListEntry {
  readonly items: readonly JsonObject[];
  readonly fetchedAt: number;
}

interface ServerState {
  init: { sessionId: string | null; protocolVersion: string; capabilities: JsonObject; serverInfo: JsonObject } | null;
  initializing: Promise<void> | null;
  lists: Partial<Record<CatalogKind, ListEntry>>;
  refreshing: Partial<Record<CatalogKind, Promise<void>>>;
  downSince: number | null;
  lastError: string | null;
}

/** The aggregated view of one kind, in server order, already renamed for the aggregated endpoint. */
export interface MergedList {
  readonly version: string;
  readonly items: readonly { readonly server: string; readonly upstreamName: string; readonly item: JsonObject }[];
}

/**
 * Each upstream's tools, prompts, resources and templates, fetched over the gateway's own
 * session per upstream (never a client's), cached for the configured TTL and served stale while
 * a refresh runs. An upstream that is down is left out and retried after a short pause, so one
 * bad server never breaks the aggregate.
 */
export class Catalog {
  private readonly state = new Map<string, ServerState>();
  private readonly merged = new Map<CatalogKind, MergedList>();
  private warming = false;
  /** Servers the health monitor currently reports unhealthy. */
  private excluded: ReadonlySet<string> = new Set();

  constructor(
    private readonly rc: RuntimeConfig,
    private readonly upstream: UpstreamClient,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    for (const s of rc.serverList) {
      this.state.set(s.name, { init: null, initializing: null, lists: {}, refreshing: {}, downSince: null, lastError: null });
    }
  }

  /** Capabilities the upstream declared, intersected with what the config exposes; null if unknown/down. */
  async capabilities(server: RuntimeServer): Promise<JsonObject | null> {
    const st = this.stateOf(server);
    await this.ensureInit(server, st);
    if (st.init === null) return null;
    const caps = st.init.capabilities;
    if (server.capabilities === null) return caps;
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
    const perServer = await Promise.all(
      this.rc.serverList.map((s) => (excluded.has(s.name) ? null : this.serverList(s, kind))),
    );
    const version = perServer.map((e, i) => `${this.rc.serverList[i]!.name}@${e?.fetchedAt ?? 'x'}`).join(',');
    const cached = this.merged.get(kind);
    if (cached !== undefined && cached.version === version) return cached;
    const items: MergedList['items'][number][] = [];
    const ns = this.rc.namespace;
    perServer.forEach((entry, i) => {
      if (entry === null) return;
      const server = this.rc.serverList[i]!.name;
      for (const item of entry.items) {
        const renamed = renameEntry(kind, server, item, ns);
        if (renamed === null) {
          this.log.warn({ server, kind, name: item['name'] ?? item['uri'] }, 'catalog entry left out: name would break the tool-name rules');
          continue;
        }
        items.push({ server, upstreamName: String(item[kind === 'resources' ? 'uri' : kind === 'resourceTemplates' ? 'uriTemplate' : 'name']), item: renamed });
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
    const st = this.stateOf(server);
    this.markDown(server, st, new GatewayError('GW_ERR_UPSTREAM_UNAVAILABLE', 'routed request found it unreachable'));
    st.lists = {};
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
    const key = kind === 'resources' ? 'uri' : kind === 'resourceTemplates' ? 'uriTemplate' : 'name';
    return items.some((i) => i[key] === name);
  }

  /**
   * MCP ping over the gateway's own session with this server; resolves to the latency in ms.
   * A forgotten session is set up again once; any other failure rejects.
   */
  async ping(server: RuntimeServer, timeoutMs: number): Promise<number> {
    const st = this.stateOf(server);
    const started = performance.now();
    for (let attempt = 0; attempt < 2; attempt++) {
      if (st.init === null) {
        // A health check always tries, and its failure is the health monitor's verdict to make:
        // it must not start the catalog's retry pause (at start-up Envoy may not be up yet).
        await this.initialize(server, st);
        if (st.init === null) throw new Error('initialize failed');
      }
      try {
        await this.upstream.call(server, 'ping', undefined, {
          sessionId: st.init.sessionId,
          protocolVersion: st.init.protocolVersion,
          timeoutMs,
        });
        return performance.now() - started;
      } catch (err) {
        if (!(err instanceof UpstreamSessionGone)) throw err;
        st.init = null;
      }
    }
    throw new Error('upstream keeps forgetting the session');
  }

  /** Marks a server's list stale (e.g. after notifications/tools/list_changed). */
  invalidate(server: string, kind?: CatalogKind): void {
    const st = this.state.get(server);
    if (st === undefined) return;
    if (kind === undefined) st.lists = {};
    else delete st.lists[kind];
  }

  /**
   * Fetches every catalog now (start-up warm-up); never throws. A failure here does not start
   * the retry pause: at start-up Envoy may simply not be listening yet, and the first client
   * request should try again rather than find the server "down".
   */
  async warm(): Promise<void> {
    this.warming = true;
    try {
      await Promise.all(
        this.rc.serverList.flatMap((s) => (Object.keys(KIND_INFO) as CatalogKind[]).map((k) => this.serverList(s, k))),
      );
    } finally {
      this.warming = false;
    }
    for (const st of this.state.values()) st.downSince = null;
  }

  private stateOf(server: RuntimeServer): ServerState {
    const st = this.state.get(server.name);
    if (st === undefined) throw new Error(`unknown server ${server.name}`);
    return st;
  }

  private async serverList(server: RuntimeServer, kind: CatalogKind): Promise<ListEntry | null> {
    const st = this.stateOf(server);
    const entry = st.lists[kind];
    const ttl = this.rc.catalogTtlMs[kind];
    if (entry !== undefined) {
      if (this.now() - entry.fetchedAt >= ttl) void this.refresh(server, st, kind);
      return entry;
    }
    await this.refresh(server, st, kind);
    return st.lists[kind] ?? null;
  }

  private refresh(server: RuntimeServer, st: ServerState, kind: CatalogKind): Promise<void> {
    const running = st.refreshing[kind];
    if (running !== undefined) return running;
    const p = this.fetchList(server, st, kind)
      .catch((err: unknown) => this.markDown(server, st, err))
      .finally(() => {
        delete st.refreshing[kind];
      });
    st.refreshing[kind] = p;
    return p;
  }

  private async fetchList(server: RuntimeServer, st: ServerState, kind: CatalogKind): Promise<void> {
    await this.ensureInit(server, st);
    const init = st.init;
    if (init === null) return;
    const info = KIND_INFO[kind];
    const exposed = server.capabilities === null || server.capabilities.has(info.capability);
    if (!exposed || !isObject(init.capabilities[info.capability])) {
      st.lists[kind] = { items: [], fetchedAt: this.now() };
      return;
    }
    const items: JsonObject[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < MAX_PAGES; page++) {
      let res: JsonObject;
      try {
        res = (
          await this.upstream.call(server, info.method, cursor === undefined ? undefined : { cursor }, {
            sessionId: init.sessionId,
            protocolVersion: init.protocolVersion,
          })
        ).result;
      } catch (err) {
        if (err instanceof UpstreamSessionGone) {
          // The upstream restarted: set up a fresh catalog session and start the list over.
          st.init = null;
          await this.ensureInit(server, st);
          if (st.init === null) return;
          return this.fetchList(server, st, kind);
        }
        throw err;
      }
      const batch = res[info.key];
      if (Array.isArray(batch)) for (const it of batch) if (isObject(it)) items.push(it);
      cursor = typeof res['nextCursor'] === 'string' && res['nextCursor'] !== '' ? res['nextCursor'] : undefined;
      if (cursor === undefined) break;
    }
    st.lists[kind] = { items, fetchedAt: this.now() };
    if (st.downSince !== null) this.log.info({ server: server.name }, 'upstream is reachable again');
    st.downSince = null;
    st.lastError = null;
  }

  private async ensureInit(server: RuntimeServer, st: ServerState): Promise<void> {
    if (st.init !== null) return;
    if (st.downSince !== null && this.now() - st.downSince < RETRY_DOWN_AFTER_MS) return;
    if (st.initializing === null) {
      st.initializing = this.initialize(server, st)
        .catch((err: unknown) => this.markDown(server, st, err))
        .finally(() => {
          st.initializing = null;
        });
    }
    await st.initializing;
  }

  private async initialize(server: RuntimeServer, st: ServerState): Promise<void> {
    const { result, reply } = await this.upstream.call(server, 'initialize', {
      protocolVersion: LATEST_PROTOCOL_VERSION,
      capabilities: {},
      clientInfo: GATEWAY_INFO,
    });
    const protocolVersion = typeof result['protocolVersion'] === 'string' ? result['protocolVersion'] : LATEST_PROTOCOL_VERSION;
    await this.upstream.notify(server, 'notifications/initialized', undefined, {
      sessionId: reply.sessionId,
      protocolVersion,
    });
    st.init = {
      sessionId: reply.sessionId,
      protocolVersion,
      capabilities: isObject(result['capabilities']) ? result['capabilities'] : {},
      serverInfo: isObject(result['serverInfo']) ? result['serverInfo'] : {},
    };
  }

  private markDown(server: RuntimeServer, st: ServerState, err: unknown): void {
    const message = err instanceof Error ? err.message : String(err);
    if (st.downSince === null && !this.warming) this.log.warn({ server: server.name, err: message }, 'upstream left out of the catalog');
    st.downSince = this.now();
    st.lastError = message;
    st.init = null;
    if (!(err instanceof GatewayError)) this.log.debug({ server: server.name, err }, 'catalog fetch failed');
  }
}

function renameEntry(kind: CatalogKind, server: string, item: JsonObject, ns: RuntimeConfig['namespace']): JsonObject | null {
  switch (kind) {
    case 'tools':
    case 'prompts': {
      const name = typeof item['name'] === 'string' ? ns.qualifyName(server, item['name']) : null;
      return name === null ? null : { ...item, name };
    }
    case 'resources':
      return typeof item['uri'] === 'string' ? { ...item, uri: ns.qualifyUri(server, item['uri']) } : null;
    case 'resourceTemplates':
      return typeof item['uriTemplate'] === 'string'
        ? { ...item, uriTemplate: ns.qualifyUri(server, item['uriTemplate']) }
        : null;
  }
}
