import { ExactId, type JsonRpcId } from '../mcp/message.js';

/** SEP-986: tool (and, by our choice, prompt) names on the aggregated endpoint. */
const TOOL_NAME = /^[A-Za-z0-9_.-]{1,128}$/;

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
 * Servers configured with `prefix: never` keep their own tool and prompt names and URIs; what such
 * a name belongs to is found in the catalog (route.ts), not here.
 */
export class Namespace {
  private readonly servers: ReadonlySet<string>;
  private readonly unprefixedSet: ReadonlySet<string>;
  /** Servers whose names and URIs are exposed as they are, in config order. */
  readonly unprefixed: readonly string[];

  constructor(
    serverNames: Iterable<string>,
    readonly separator: string,
    unprefixed: Iterable<string> = [],
  ) {
    this.servers = new Set(serverNames);
    this.unprefixed = [...unprefixed];
    this.unprefixedSet = new Set(this.unprefixed);
  }

  /** The aggregated name for an upstream tool or prompt, or null if it would be invalid. */
  qualifyName(server: string, name: string): string | null {
    const full = this.unprefixedSet.has(server) ? name : server + this.separator + name;
    return TOOL_NAME.test(full) ? full : null;
  }

  /** Resolves a prefixed aggregated tool/prompt name to its server and upstream name. */
  parseName(qualified: string): Owned | null {
    const sep = this.separator;
    let at = qualified.indexOf(sep);
    while (at > 0) {
      const server = qualified.slice(0, at);
      if (this.servers.has(server) && !this.unprefixedSet.has(server)) {
        const name = qualified.slice(at + sep.length);
        return name.length > 0 ? { server, name } : null;
      }
      at = qualified.indexOf(sep, at + 1);
    }
    return null;
  }

  /** The aggregated form of an upstream resource URI or URI template. */
  qualifyUri(server: string, uri: string): string {
    return this.unprefixedSet.has(server) ? uri : `${server}+${uri}`;
  }

  /** Resolves a namespaced aggregated resource URI to its server and the upstream's own URI. */
  parseUri(qualified: string): Owned | null {
    const owned = this.splitPlus(qualified);
    return owned === null || this.unprefixedSet.has(owned.server) ? null : owned;
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
