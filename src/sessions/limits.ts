import { isIP } from 'node:net';
import { GatewayError } from '../errors/gateway-error.js';
import { isObject, stringifyJson, type JsonObject } from '../mcp/message.js';

/**
 * How much session state the gateway keeps, and for whom.
 *
 * - Each client (an authenticated identity, or for anonymous callers the client's address, IPv6 by
 *   its /64) keeps at most `gateway.max_sessions_per_client` live sessions: a new one ends that
 *   client's least recently used session, whose upstream sessions are ended with it. Only that
 *   client's own sessions are ever ended for it.
 * - The gateway keeps at most `gateway.max_sessions` live sessions: beyond that a new session is
 *   refused (503 `GW_ERR_SESSION_LIMIT`, `Retry-After`), and every existing one keeps working.
 * - A session keeps the client's `capabilities` and `clientInfo` (to open its upstream sessions
 *   with them) as JSON text of at most `gateway.max_client_metadata_bytes`; a larger initialize
 *   is refused with -32602.
 *
 * Idle sessions never count: they are ended as expired when they are in the way.
 */

export const DEFAULT_MAX_SESSIONS = 10_000;
export const DEFAULT_MAX_SESSIONS_PER_CLIENT = 100;
export const DEFAULT_MAX_CLIENT_METADATA_BYTES = 16 * 1024;

/** The caps a session store enforces. */
export interface SessionLimits {
  /** Live sessions in the whole store (all replicas, with Redis). */
  readonly maxSessions: number;
  /** Live sessions of one owner (see {@link sessionOwner}). */
  readonly maxSessionsPerClient: number;
}

/** Longest `Retry-After` a refusal names: a deleted session can free a slot at any moment. */
export const MAX_RETRY_AFTER_SECONDS = 60;

/**
 * Whose quota a new session counts against: the identity it is bound to, or, for anonymous
 * callers, their address (all anonymous callers without a known address share one quota).
 */
export function sessionOwner(identity: string | null, ip: string | null): string {
  if (identity !== null) return `id:${identity}`;
  return `ip:${ip === null ? 'unknown' : addressBucket(ip)}`;
}

/**
 * The address an anonymous client is counted by: IPv4 as is (IPv4-mapped IPv6 too), IPv6 by its
 * /64, the smallest block a single site is normally given. Anything else is used verbatim.
 */
export function addressBucket(ip: string): string {
  const bare = ip.replace(/%.*$/, '');
  const family = isIP(bare);
  if (family === 4) return bare;
  if (family !== 6) return ip;
  const lower = bare.toLowerCase();
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(lower);
  if (mapped !== null) return mapped[1]!;
  return `${expandIpv6(lower).slice(0, 4).join(':')}::/64`;
}

/** The eight groups of an IPv6 address, without leading zeros (an embedded IPv4 tail becomes two groups). */
function expandIpv6(addr: string): string[] {
  let text = addr;
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4 !== null) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? (text.split('::') as [string, string]) : [text, null];
  const left = head === '' ? [] : head.split(':');
  const right = tail === null || tail === '' ? [] : tail.split(':');
  const zeros = tail === null ? [] : Array<string>(8 - left.length - right.length).fill('0');
  return [...left, ...zeros, ...right].map((g) => parseInt(g, 16).toString(16));
}

/** Seconds a refused client should wait: until the least recently used session idles out, 1 to 60. */
export function retryAfterSeconds(msUntilFree: number): number {
  return Math.min(MAX_RETRY_AFTER_SECONDS, Math.max(1, Math.ceil(msUntilFree / 1000)));
}

/** The refusal of a session beyond `gateway.max_sessions`. */
export function sessionLimitError(maxSessions: number, msUntilFree: number): GatewayError {
  const seconds = retryAfterSeconds(msUntilFree);
  return new GatewayError(
    'GW_ERR_SESSION_LIMIT',
    `Service Unavailable: the gateway holds its maximum of ${maxSessions} sessions (gateway.max_sessions); retry later`,
    { headers: { 'retry-after': String(seconds) }, data: { limit: 'gateway.max_sessions', retry_after_seconds: seconds } },
  );
}

/** What a session keeps of the client's initialize, parsed. */
export interface ClientMetadata {
  readonly capabilities: JsonObject;
  readonly clientInfo: JsonObject;
}

const UNKNOWN_CLIENT: JsonObject = { name: 'unknown', version: '0' };

/**
 * The client's `capabilities` and `clientInfo` from initialize params, as the JSON text a session
 * keeps: unchanged (every capability, experimental ones included, reaches the upstreams as the
 * client sent it), or refused with -32602 when over `maxBytes` of UTF-8.
 */
export function clientMetadataText(params: JsonObject, maxBytes: number): string {
  const caps = params['capabilities'];
  const info = params['clientInfo'];
  // Kept with the session and replayed to every upstream: it must be writable (not nested too deeply).
  const text = stringifyJson({
    capabilities: isObject(caps) ? caps : {},
    clientInfo: isObject(info) ? info : UNKNOWN_CLIENT,
  });
  const bytes = Buffer.byteLength(text);
  if (bytes > maxBytes) {
    throw new GatewayError(
      'GW_ERR_PARAMS_INVALID',
      `Invalid params: capabilities and clientInfo take ${bytes} bytes, over the ${maxBytes} the gateway keeps per session (gateway.max_client_metadata_bytes)`,
      { data: { limit: 'gateway.max_client_metadata_bytes', max_bytes: maxBytes, bytes } },
    );
  }
  return text;
}

/** Parses what {@link clientMetadataText} produced (as stored by either session store). */
export function parseClientMetadata(text: string): ClientMetadata {
  const v: unknown = JSON.parse(text);
  if (!isObject(v)) return { capabilities: {}, clientInfo: UNKNOWN_CLIENT };
  return {
    capabilities: isObject(v['capabilities']) ? v['capabilities'] : {},
    clientInfo: isObject(v['clientInfo']) ? v['clientInfo'] : UNKNOWN_CLIENT,
  };
}
