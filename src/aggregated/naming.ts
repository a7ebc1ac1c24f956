import type { Config } from '../config/schema.js';
import { GlobSet, globMatches } from '../lib/glob.js';
import { ExactId, type JsonRpcId } from '../mcp/message.js';
import { TOOL_NAME } from '../mcp/protocol.js';

/** How `/mcp` names what one server has (`servers.<name>.prefix`, default `gateway.prefix`). */
export type PrefixMode = 'always' | 'never' | 'on-collision';

/** The kinds of names the aggregated endpoint exposes. */
export type NamedKind = 'tools' | 'prompts' | 'resources' | 'resourceTemplates';

/** `servers.<name>.tools.<tool>`: what the gateway shows of one tool instead of the server's own. */
export interface ToolOverride {
  readonly name?: string | undefined;
  readonly description?: string | undefined;
  readonly title?: string | undefined;
}

/** One entry of `routes`: names (or URIs) of a kind that match `pattern` belong to `server`. */
export interface NameRoute {
  readonly kind: 'tools' | 'prompts' | 'resources';
  readonly pattern: string;
  readonly server: string;
}

/**
 * How strongly a server claims an unprefixed name. Of several servers claiming one name, the
 * strongest claim a caller may use wins (ties: config order); an `on-collision` claim shared with
 * any other claim falls back to the prefixed form.
 */
export const CLAIM = { onCollision: 0, never: 1, routed: 2, renamed: 3 } as const;
export type Claim = (typeof CLAIM)[keyof typeof CLAIM];

/** A name as `/mcp` shows it, and the claim behind an unprefixed one (null: the prefixed form). */
export interface Exposure {
  readonly id: string;
  readonly claim: Claim | null;
}

/** What Namespace needs besides the server names and the separator. */
export interface NamingOptions {
  /** Each server's prefix mode; absent: `always`. */
  readonly modes?: ReadonlyMap<string, PrefixMode>;
  /** Per-server tool overrides, by the server's own tool name. */
  readonly tools?: ReadonlyMap<string, ReadonlyMap<string, ToolOverride>>;
  /** `routes`, in order: the first that matches decides. */
  readonly routes?: readonly NameRoute[];
  /** What a virtual server shows (absent: everything of its servers). */
  readonly selection?: Selection;
}

/**
 * A virtual server's choice of entries: globs on the server's own tool and prompt names, or on
 * `<server-glob>/<name-glob>`; globs (`*`) on resource URIs and templates. Absent kinds: all.
 */
export interface Selection {
  readonly tools?: readonly string[] | undefined;
  readonly prompts?: readonly string[] | undefined;
  readonly resources?: readonly string[] | undefined;
}

/** One selection pattern: a name glob, for the servers a server glob matches (null: all). */
interface Selector {
  readonly server: string | null;
  readonly name: string;
}

const SERVER_REQUEST_ID_PREFIX = 'mcpgw:';

/** A name or URI resolved back to its owning server. */
export interface Owned {
  readonly server: string;
  readonly name: string;
}

/**
 * Reversible naming on the aggregated endpoint.
 *
 * - tools and prompts: `<server><sep><name>`; a result that breaks the spec's tool-name rules is
 *   not exposed (returns null) rather than silently altered.
 * - resource URIs and templates: `<server>+<uri>`. Server names are `[a-z][a-z0-9-]*`, which is
 *   valid in a URI scheme and never contains `+`, so the first `+` always splits server from the
 *   upstream URI (`git+ssh://…` stays intact) and two servers' identical URIs never collide.
 * - task ids: `<server>+<taskId>`, split the same way as URIs;
 * - server→client request ids: `mcpgw:<server>:<n|s><id>`, so a client's answer finds its way
 *   back to the upstream that asked, with the upstream's own id restored.
 *
 * Names without a prefix (see expose): a tool renamed in the config; a name or URI a `routes`
 * entry gives to its server; everything of a server with `prefix: never`; and, with
 * `prefix: on-collision`, what no other server claims too. What such a name belongs to is decided
 * with the catalog (catalog.ts, route.ts), not here; the prefixed form of a server with
 * `prefix: never` is not its (that server may have such names of its own).
 */
export class Namespace {
  private readonly servers: ReadonlySet<string>;
  private readonly modes: ReadonlyMap<string, PrefixMode>;
  private readonly tools: ReadonlyMap<string, ReadonlyMap<string, ToolOverride>>;
  /** Renamed tools by their new name. */
  private readonly renames: ReadonlyMap<string, Owned>;
  private readonly routeList: readonly NameRoute[];
  private readonly routeSets: Readonly<Record<NameRoute['kind'], GlobSet>>;
  private readonly routeTargets: Readonly<Record<NameRoute['kind'], readonly string[]>>;
  /** Servers whose names and URIs may be exposed as they are (`never`, `on-collision`), in config order. */
  readonly unprefixed: readonly string[];
  /** Whether any name may be exposed without a prefix (false: every name is prefixed, nothing to look up). */
  readonly anyUnprefixed: boolean;
  private readonly selectors: Readonly<Record<'tools' | 'prompts' | 'resources', readonly Selector[] | null>>;

  constructor(
    serverNames: Iterable<string>,
    readonly separator: string,
    opts: NamingOptions = {},
  ) {
    const names = [...serverNames];
    this.servers = new Set(names);
    this.modes = opts.modes ?? new Map();
    this.tools = opts.tools ?? new Map();
    this.unprefixed = names.filter((n) => this.mode(n) !== 'always');
    const renames = new Map<string, Owned>();
    for (const [server, overrides] of this.tools) {
      for (const [tool, o] of overrides) if (o.name !== undefined) renames.set(o.name, { server, name: tool });
    }
    this.renames = renames;
    this.routeList = opts.routes ?? [];
    const of = (kind: NameRoute['kind']): NameRoute[] => this.routeList.filter((r) => r.kind === kind);
    // URI patterns keep `?` literal (the query delimiter).
    this.routeSets = {
      tools: new GlobSet(of('tools').map((r) => r.pattern)),
      prompts: new GlobSet(of('prompts').map((r) => r.pattern)),
      resources: new GlobSet(of('resources').map((r) => r.pattern), { questionMark: false }),
    };
    this.routeTargets = { tools: of('tools').map((r) => r.server), prompts: of('prompts').map((r) => r.server), resources: of('resources').map((r) => r.server) };
    this.anyUnprefixed = this.unprefixed.length > 0 || renames.size > 0 || this.routeList.length > 0;
    const sel = opts.selection ?? {};
    // Tool and prompt names hold no `/` (the tool-name rules), so the first one splits off a server glob.
    const named = (patterns: readonly string[] | undefined): Selector[] | null =>
      patterns === undefined
        ? null
        : patterns.map((p) => {
            const slash = p.indexOf('/');
            return slash < 0 ? { server: null, name: p } : { server: p.slice(0, slash), name: p.slice(slash + 1) };
          });
    this.selectors = {
      tools: named(sel.tools),
      prompts: named(sel.prompts),
      resources: sel.resources === undefined ? null : sel.resources.map((p) => ({ server: null, name: p })),
    };
  }

  /** Whether a server's entry (its own name or URI) is among what this endpoint shows. */
  selected(kind: NamedKind, server: string, id: string): boolean {
    const k = kind === 'resourceTemplates' ? 'resources' : kind;
    const selectors = this.selectors[k];
    if (selectors === null) return true;
    const q = k !== 'resources';
    return selectors.some((x) => (x.server === null || globMatches(x.server, server)) && globMatches(x.name, id, { questionMark: q }));
  }

  /** The naming a config asks for. */
  static fromConfig(config: Config, selection?: Selection): Namespace {
    const modes = new Map<string, PrefixMode>();
    const tools = new Map<string, ReadonlyMap<string, ToolOverride>>();
    for (const [name, s] of Object.entries(config.servers)) {
      modes.set(name, s.prefix ?? config.gateway.prefix);
      if (s.tools !== undefined) tools.set(name, new Map(Object.entries(s.tools)));
    }
    const routes: NameRoute[] = (config.routes ?? []).map((r) =>
      r.tools !== undefined
        ? { kind: 'tools', pattern: r.tools, server: r.server }
        : r.prompts !== undefined
          ? { kind: 'prompts', pattern: r.prompts, server: r.server }
          : { kind: 'resources', pattern: r.resources!, server: r.server },
    );
    return new Namespace(Object.keys(config.servers), config.gateway.tool_separator, { modes, tools, routes, ...(selection === undefined ? {} : { selection }) });
  }

  /** A server's prefix mode. */
  mode(server: string): PrefixMode {
    return this.modes.get(server) ?? 'always';
  }

  /** What the config shows of a server's tool instead of its own name, description or title. */
  toolOverride(server: string, tool: string): ToolOverride | undefined {
    return this.tools.get(server)?.get(tool);
  }

  /** The server's tool a configured new name stands for. */
  renamed(name: string): Owned | null {
    return this.renames.get(name) ?? null;
  }

  /** The server the first `routes` entry that matches gives a name or URI of `kind` to. */
  routed(kind: NamedKind, id: string): string | null {
    const k = kind === 'resourceTemplates' ? 'resources' : kind;
    if (this.routeTargets[k].length === 0) return null;
    const i = this.routeSets[k].firstMatch(id);
    return i < 0 ? null : this.routeTargets[k][i]!;
  }

  /**
   * How `/mcp` shows a server's entry of `kind` (its own name or URI `id`), before collisions with
   * other servers are settled (catalog.ts); null when no valid name can show it. A renamed tool
   * keeps its new name; a name a route gives to this server is shown as it is, one a route gives
   * to another server only prefixed; otherwise the server's prefix mode decides.
   */
  expose(kind: NamedKind, server: string, id: string): Exposure | null {
    const named = kind === 'tools' || kind === 'prompts';
    if (kind === 'tools') {
      const renamed = this.tools.get(server)?.get(id)?.name;
      if (renamed !== undefined) return { id: renamed, claim: CLAIM.renamed };
    }
    const route = this.routed(kind, id);
    let claim: Claim | null = null;
    if (route === server) claim = CLAIM.routed;
    else if (route === null) {
      const mode = this.mode(server);
      claim = mode === 'never' ? CLAIM.never : mode === 'on-collision' ? CLAIM.onCollision : null;
    }
    if (claim === null) {
      const prefixed = this.prefixed(kind, server, id);
      return prefixed === null ? null : { id: prefixed, claim: null };
    }
    return named && !TOOL_NAME.test(id) ? null : { id, claim };
  }

  /** The prefixed form of a server's name or URI (null: a name that would break the tool-name rules). */
  prefixed(kind: NamedKind, server: string, id: string): string | null {
    if (kind === 'tools' || kind === 'prompts') {
      const full = server + this.separator + id;
      return TOOL_NAME.test(full) ? full : null;
    }
    return `${server}+${id}`;
  }

  /**
   * Resolves a prefixed aggregated tool/prompt name to its server and upstream name. The prefix of
   * a server with `prefix: never` is not read as one (its own names may look like that).
   */
  parseName(qualified: string): Owned | null {
    const sep = this.separator;
    let at = qualified.indexOf(sep);
    while (at > 0) {
      const server = qualified.slice(0, at);
      if (this.servers.has(server) && this.mode(server) !== 'never') {
        const name = qualified.slice(at + sep.length);
        return name.length > 0 ? { server, name } : null;
      }
      at = qualified.indexOf(sep, at + 1);
    }
    return null;
  }

  /**
   * The aggregated form of an upstream resource URI or URI template a message carries. An
   * `on-collision` URI another server lists too (catalog.ts reports which) keeps its prefix.
   */
  qualifyUri(server: string, uri: string): string {
    const e = this.expose('resources', server, uri)!;
    return e.claim === CLAIM.onCollision && this.collided.resources.has(uri) ? `${server}+${uri}` : e.id;
  }

  /** Resolves a namespaced aggregated resource URI to its server and the upstream's own URI. */
  parseUri(qualified: string): Owned | null {
    const owned = this.splitPlus(qualified);
    return owned === null || this.mode(owned.server) === 'never' ? null : owned;
  }

  /** Names and URIs of each kind that more than one server claims (the catalog keeps it current). */
  readonly collided: Record<NamedKind, ReadonlySet<string>> = { tools: new Set(), prompts: new Set(), resources: new Set(), resourceTemplates: new Set() };

  /** The catalog settled the collisions of one kind. */
  noteCollisions(kind: NamedKind, ids: ReadonlySet<string>): void {
    this.collided[kind] = ids;
  }

  /** The id a task an upstream created carries on the aggregated endpoint. */
  qualifyTaskId(server: string, taskId: string): string {
    return `${server}+${taskId}`;
  }

  /** Resolves an aggregated task id to its server and the upstream's own task id. */
  parseTaskId(qualified: string): Owned | null {
    return this.splitPlus(qualified);
  }

  private splitPlus(qualified: string): Owned | null {
    const plus = qualified.indexOf('+');
    if (plus <= 0) return null;
    const server = qualified.slice(0, plus);
    const name = qualified.slice(plus + 1);
    return this.servers.has(server) && name.length > 0 ? { server, name } : null;
  }

  /** The id a server→client request carries on the aggregated endpoint. */
  qualifyServerRequestId(server: string, id: JsonRpcId): string {
    if (id instanceof ExactId) return `${SERVER_REQUEST_ID_PREFIX}${server}:n${id.text}`;
    return `${SERVER_REQUEST_ID_PREFIX}${server}:${typeof id === 'number' ? 'n' : 's'}${id}`;
  }

  /** Resolves a client's answer id back to the upstream and its original id. */
  parseServerRequestId(id: JsonRpcId): { server: string; id: JsonRpcId } | null {
    if (typeof id !== 'string' || !id.startsWith(SERVER_REQUEST_ID_PREFIX)) return null;
    const colon = id.indexOf(':', SERVER_REQUEST_ID_PREFIX.length);
    if (colon < 0) return null;
    const server = id.slice(SERVER_REQUEST_ID_PREFIX.length, colon);
    if (!this.servers.has(server)) return null;
    const kind = id[colon + 1];
    const rest = id.slice(colon + 2);
    if (kind === 's') return { server, id: rest };
    if (kind === 'n' && /^-?[0-9]+$/.test(rest)) {
      const n = Number(rest);
      return { server, id: Number.isSafeInteger(n) ? n : new ExactId(rest) };
    }
    return null;
  }
}
