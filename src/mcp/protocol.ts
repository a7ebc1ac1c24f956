import { createRequire } from 'node:module';
import { isObject, type JsonObject } from './message.js';

/** Protocol revisions the gateway speaks to clients, newest first. */
export const SUPPORTED_PROTOCOL_VERSIONS = ['2025-11-25', '2025-06-18', '2025-03-26', '2024-11-05'] as const;

/** What the gateway offers when a client asks for a revision it does not know. */
export const LATEST_PROTOCOL_VERSION = SUPPORTED_PROTOCOL_VERSIONS[0];

/** The revision assumed when a request carries no MCP-Protocol-Version header (spec: 2025-03-26). */
export const DEFAULT_PROTOCOL_VERSION = '2025-03-26';

const SUPPORTED: ReadonlySet<string> = new Set(SUPPORTED_PROTOCOL_VERSIONS);

/** True if the gateway speaks this revision. */
export function isSupportedVersion(v: string): boolean {
  return SUPPORTED.has(v);
}

/** Picks the revision to answer an initialize with. */
export function negotiateVersion(requested: unknown): string {
  return typeof requested === 'string' && SUPPORTED.has(requested) ? requested : LATEST_PROTOCOL_VERSION;
}

/**
 * Whether an upstream's answer to a request that carried its session id says it no longer knows
 * that session: 404, as the spec asks, or the 400 "no valid session" that servers built on the
 * SDK examples give (a JSON-RPC error whose message speaks of the session).
 */
export function forgotSession(status: number, body: string): boolean {
  if (status === 404) return true;
  if (status !== 400 || body.length > 4096) return false;
  try {
    const msg: unknown = JSON.parse(body);
    const error = typeof msg === 'object' && msg !== null ? (msg as { error?: { message?: unknown } }).error : undefined;
    return typeof error?.message === 'string' && /session/i.test(error.message);
  } catch {
    return false;
  }
}

/** MCP log levels, least severe first. */
/** SEP-986: tool names (and, by the gateway's choice, prompt names on `/mcp`). */
export const TOOL_NAME = /^[A-Za-z0-9_.-]{1,128}$/;

export const LOG_LEVELS: readonly string[] = ['debug', 'info', 'notice', 'warning', 'error', 'critical', 'alert', 'emergency'];

/** Catalog kinds the gateway aggregates. */
export type CatalogKind = 'tools' | 'prompts' | 'resources' | 'resourceTemplates';

/** The list method behind each catalog kind, its result key, the capability that gates it and the field naming an entry. */
export const KIND_INFO = {
  tools: { method: 'tools/list', key: 'tools', capability: 'tools', idField: 'name' },
  prompts: { method: 'prompts/list', key: 'prompts', capability: 'prompts', idField: 'name' },
  resources: { method: 'resources/list', key: 'resources', capability: 'resources', idField: 'uri' },
  resourceTemplates: { method: 'resources/templates/list', key: 'resourceTemplates', capability: 'resources', idField: 'uriTemplate' },
} as const satisfies Record<CatalogKind, { method: string; key: string; capability: string; idField: string }>;

/**
 * Every entry of one list, following the server's cursors for at most `maxPages` pages;
 * `page(cursor)` asks for one page (null: the server could not be asked, and the list is null).
 */
export async function readAllPages(
  kind: CatalogKind,
  maxPages: number,
  page: (params: { cursor: string } | undefined) => Promise<JsonObject | null>,
  /** Receives the shortest `ttlMs` a page gave (servers of the sessionless revisions give one). */
  hints?: { ttlMs: number | null },
): Promise<JsonObject[] | null> {
  const key = KIND_INFO[kind].key;
  const items: JsonObject[] = [];
  let cursor: string | undefined;
  for (let n = 0; n < maxPages; n++) {
    const res = await page(cursor === undefined ? undefined : { cursor });
    if (res === null) return null;
    const batch = res[key];
    if (Array.isArray(batch)) for (const it of batch) if (isObject(it)) items.push(it);
    const ttl = res['ttlMs'];
    if (hints !== undefined && typeof ttl === 'number' && ttl >= 0) hints.ttlMs = Math.min(hints.ttlMs ?? ttl, ttl);
    cursor = typeof res['nextCursor'] === 'string' && res['nextCursor'] !== '' ? res['nextCursor'] : undefined;
    if (cursor === undefined) break;
  }
  return items;
}

/** Every catalog kind, in the order lists are fetched. */
export const CATALOG_KINDS: readonly CatalogKind[] = ['tools', 'prompts', 'resources', 'resourceTemplates'];

/** List methods and the catalog kind each one lists. */
export const LIST_KINDS: ReadonlyMap<string, CatalogKind> = new Map(CATALOG_KINDS.map((k) => [KIND_INFO[k].method, k]));

const pkg = createRequire(import.meta.url)('../../../package.json') as { name: string; version: string };

/** The gateway's serverInfo / clientInfo. */
export const GATEWAY_INFO = Object.freeze({ name: 'mcp-gateway', title: 'MCP Gateway', version: pkg.version });
