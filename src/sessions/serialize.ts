import { isObject, type JsonObject } from '../mcp/message.js';
import { parseClientMetadata } from './limits.js';
import { ownListKey, type GatewaySession, type SessionInit, type UpstreamSession } from './store.js';

export type { SessionInit } from './store.js';

/**
 * How a gateway session is laid out in a Redis hash.
 *
 * One field per independently updated part, so replicas changing different parts (one sets the
 * log level while another adds an upstream session) never overwrite each other's writes:
 *
 * | field          | value                                                                 |
 * | -------------- | --------------------------------------------------------------------- |
 * | `m`            | JSON `{v: 1, protocolVersion, clientCapabilities, clientInfo, identity, tenant?, createdAt?}`, written once |
 * | `o`            | digest of the session's owner: names its owner set, written once (absent on sessions from before the caps) |
 * | `l`            | log level (absent: none set)                                          |
 * | `u:<server>`   | JSON `{sessionId, protocolVersion}` of that server's upstream session |
 * | `c:<server>:<kind>` | generation of the list of `kind` that server keeps for this session only |
 * | `r:<server>:<uri>` | `1`: the client subscribed to that resource of a server of the sessionless revision |
 *
 * `lastSeen` is not in the hash: it is the session's score in the sessions index (a sorted set).
 */
export const META_FIELD = 'm';
export const LOG_LEVEL_FIELD = 'l';
export const UPSTREAM_FIELD_PREFIX = 'u:';
export const OWN_LIST_FIELD_PREFIX = 'c:';
export const SUBSCRIPTION_FIELD_PREFIX = 'r:';

/** The hash field of a subscription to `uri` of `server` (server names hold no `:`). */
export function subscriptionField(server: string, uri: string): string {
  return `${SUBSCRIPTION_FIELD_PREFIX}${server}:${uri}`;
}

/** The hash field of a session's own list of `kind` from `server` (server names hold no `:`). */
export function ownListField(server: string, kind: string): string {
  return `${OWN_LIST_FIELD_PREFIX}${server}:${kind}`;
}

/** Version of the `m` field's layout, bumped if it ever changes incompatibly. */
const META_VERSION = 1;

export const OWNER_FIELD = 'o';

/**
 * JSON for the `m` field. The client metadata is stored as objects (the layout every replica
 * reads), not as the text the session carries in memory.
 */
export function encodeMeta(init: Pick<SessionInit, 'protocolVersion' | 'clientMetadata' | 'identity' | 'tenant'>, createdAt?: number): string {
  const { capabilities, clientInfo } = parseClientMetadata(init.clientMetadata);
  return JSON.stringify({
    v: META_VERSION,
    protocolVersion: init.protocolVersion,
    clientCapabilities: capabilities,
    clientInfo,
    identity: init.identity,
    ...(init.tenant === undefined || init.tenant === null ? {} : { tenant: init.tenant }),
    ...(createdAt === undefined ? {} : { createdAt }),
  });
}

/** JSON for a `u:<server>` field; key order is fixed so equal sessions encode to equal strings. */
export function encodeUpstream(u: UpstreamSession): string {
  return JSON.stringify({ sessionId: u.sessionId, protocolVersion: u.protocolVersion });
}

/** Parses a `u:<server>` value; null if it is not one. */
export function decodeUpstream(s: string): UpstreamSession | null {
  const v = parseJson(s);
  if (!isObject(v)) return null;
  const { sessionId, protocolVersion } = v;
  if (!(sessionId === null || typeof sessionId === 'string') || typeof protocolVersion !== 'string') return null;
  return { sessionId, protocolVersion };
}

/**
 * Rebuilds a session from a flat `HGETALL` reply (`[field, value, field, value, …]`). Returns
 * null when the hash is empty or its `m` field is missing or malformed (an unknown session, as far
 * as the client is concerned). Malformed upstream entries are skipped: the gateway then just
 * creates a new upstream session.
 */
export function decodeSession(id: string, lastSeen: number, flat: readonly string[]): GatewaySession | null {
  let meta: JsonObject | null = null;
  let logLevel: string | null = null;
  const upstream = new Map<string, UpstreamSession>();
  const ownLists = new Map<string, number>();
  const subscriptions = new Map<string, Set<string>>();
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const field = flat[i]!;
    const value = flat[i + 1]!;
    if (field === META_FIELD) {
      const v = parseJson(value);
      meta = isObject(v) ? v : null;
    } else if (field === LOG_LEVEL_FIELD) {
      logLevel = value;
    } else if (field.startsWith(UPSTREAM_FIELD_PREFIX)) {
      const u = decodeUpstream(value);
      if (u !== null) upstream.set(field.slice(UPSTREAM_FIELD_PREFIX.length), u);
    } else if (field.startsWith(OWN_LIST_FIELD_PREFIX)) {
      const colon = field.indexOf(':', OWN_LIST_FIELD_PREFIX.length);
      const generation = Number(value);
      if (colon > 0 && Number.isSafeInteger(generation)) ownLists.set(ownListKey(field.slice(OWN_LIST_FIELD_PREFIX.length, colon), field.slice(colon + 1)), generation);
    } else if (field.startsWith(SUBSCRIPTION_FIELD_PREFIX)) {
      const colon = field.indexOf(':', SUBSCRIPTION_FIELD_PREFIX.length);
      if (colon > 0) {
        const server = field.slice(SUBSCRIPTION_FIELD_PREFIX.length, colon);
        const uris = subscriptions.get(server) ?? new Set<string>();
        uris.add(field.slice(colon + 1));
        subscriptions.set(server, uris);
      }
    }
  }
  if (meta === null || meta['v'] !== META_VERSION) return null;
  const { protocolVersion, clientCapabilities, clientInfo, identity, tenant, createdAt } = meta;
  if (typeof protocolVersion !== 'string' || !isObject(clientCapabilities) || !isObject(clientInfo)) return null;
  if (!(identity === null || typeof identity === 'string')) return null;
  const clientMetadata = JSON.stringify({ capabilities: clientCapabilities, clientInfo });
  return {
    id,
    protocolVersion,
    clientMetadata,
    identity,
    ...(typeof tenant === 'string' ? { tenant } : {}),
    ...(typeof createdAt === 'number' ? { createdAt } : {}),
    logLevel,
    lastSeen,
    upstream,
    ownLists,
    subscriptions,
  };
}

function parseJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return undefined;
  }
}
