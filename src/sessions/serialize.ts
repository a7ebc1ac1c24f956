import { isObject, type JsonObject } from '../mcp/message.js';
import type { GatewaySession, UpstreamSession } from './store.js';

/**
 * How a gateway session is laid out in a Redis hash.
 *
 * One field per independently updated part, so replicas changing different parts (one sets the
 * log level while another adds an upstream session) never overwrite each other's writes:
 *
 * | field          | value                                                                 |
 * | -------------- | --------------------------------------------------------------------- |
 * | `m`            | JSON `{v: 1, protocolVersion, clientCapabilities, clientInfo, identity}`, written once |
 * | `l`            | log level (absent: none set)                                          |
 * | `u:<server>`   | JSON `{sessionId, protocolVersion}` of that server's upstream session |
 *
 * `lastSeen` is not in the hash: it is the session's score in the sessions index (a sorted set).
 */
export const META_FIELD = 'm';
export const LOG_LEVEL_FIELD = 'l';
export const UPSTREAM_FIELD_PREFIX = 'u:';

/** Version of the `m` field's layout, bumped if it ever changes incompatibly. */
const META_VERSION = 1;

/** The immutable part of a session, as `SessionStore.create` receives it. */
export type SessionInit = Omit<GatewaySession, 'id' | 'lastSeen' | 'upstream' | 'logLevel'>;

/** JSON for the `m` field. */
export function encodeMeta(init: SessionInit): string {
  return JSON.stringify({
    v: META_VERSION,
    protocolVersion: init.protocolVersion,
    clientCapabilities: init.clientCapabilities,
    clientInfo: init.clientInfo,
    identity: init.identity,
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
    }
  }
  if (meta === null || meta['v'] !== META_VERSION) return null;
  const { protocolVersion, clientCapabilities, clientInfo, identity } = meta;
  if (typeof protocolVersion !== 'string' || !isObject(clientCapabilities) || !isObject(clientInfo)) return null;
  if (!(identity === null || typeof identity === 'string')) return null;
  return { id, protocolVersion, clientCapabilities, clientInfo, identity, logLevel, lastSeen, upstream };
}

function parseJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return undefined;
  }
}
