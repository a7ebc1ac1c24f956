import { createHash } from 'node:crypto';
import { callerEntries } from '../aggregated/answers.js';
import { identity as makeIdentity, subjectParts, type Identity } from '../auth/identity.js';
import type { RuntimeServer } from '../config/runtime.js';
import type { Config } from '../config/schema.js';
import type { GatewayContext } from '../exchange.js';
import { CATALOG_KINDS, KIND_INFO, type CatalogKind } from '../mcp/protocol.js';
import type { AuditEntry, AuditFilter, BucketLevel, HealthChange, HealthSample, LimitMinute, RecentActivity } from '../observability/recent.js';
import { entryRefusal } from '../request/guard.js';
import type { Caller } from '../request/state.js';
import { parseClientMetadata } from '../sessions/limits.js';
import type { GatewaySession, SessionStore } from '../sessions/store.js';
import type { HealthMonitor, ServerHealth } from '../upstream/health.js';
import { NO_CAPABILITIES } from '../upstream/profiles.js';

/**
 * What each console page shows, as the JSON its API serves: the pages render these objects and
 * nothing else, so the console is one client of the API. Everything is read from the config in
 * force and this replica's memory (sessions from the shared store when there is one).
 */

/** A bad query or form value: answered 400 (or 404 for what is not there) with this message. */
export class AdminInputError extends Error {
  constructor(
    message: string,
    readonly status: 400 | 404 | 409 | 413 | 422 = 400,
  ) {
    super(message);
  }
}

/** What the console reads, at the moment of the request. */
export interface AdminSources {
  readonly context: GatewayContext;
  readonly health: HealthMonitor;
  /** Null until the console is on (it then keeps the recent past from that moment). */
  readonly recent: RecentActivity | null;
}

// ------------------------------------------------------------------------------------------------
// servers

/** Catalog sizes of one server (null: not fetched, or the server does not offer the kind). */
export type CatalogSizes = Readonly<Record<CatalogKind, number | null>>;

export interface ServerView extends ServerHealth {
  readonly url: string;
  readonly catalog: CatalogSizes;
  readonly samples: readonly HealthSample[];
  readonly changes: readonly HealthChange[];
}

export interface ServersView {
  readonly servers: readonly ServerView[];
}

/** How long the servers page waits for a catalog not fetched yet before showing it as unknown. */
const CATALOG_WAIT_MS = 3000;

export async function serversView(src: AdminSources): Promise<ServersView> {
  const { context, health, recent } = src;
  recent?.keepServers(new Set(context.rc.servers.keys()));
  const catalog = context.catalog;
  const sizeOf = async (server: RuntimeServer, kind: CatalogKind): Promise<number | null> => {
    const cached = catalog.cachedItems(server.name, kind, NO_CAPABILITIES);
    // A server the health checks left out is not asked: its last catalog (if any) is shown.
    if (cached !== null || catalog.excludes(server.name)) return cached?.length ?? null;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), CATALOG_WAIT_MS)));
    const items = await Promise.race([catalog.serverItems(server, kind, NO_CAPABILITIES), late]).finally(() => clearTimeout(timer));
    return items?.length ?? null;
  };
  return {
    servers: await Promise.all(
      health.snapshot().map(async (h) => {
        const server = context.rc.servers.get(h.server)!;
        const sizes = Object.fromEntries(await Promise.all(CATALOG_KINDS.map(async (k) => [k, await sizeOf(server, k)] as const))) as Record<CatalogKind, number | null>;
        const history = recent?.healthOf(h.server) ?? { samples: [], changes: [] };
        return { ...h, url: server.url.origin + server.url.pathname, catalog: sizes, samples: history.samples, changes: history.changes };
      }),
    ),
  };
}

// ------------------------------------------------------------------------------------------------
// catalog

/**
 * Whose eyes the catalog is seen through: a tenant, a client (an `auth.api_keys` id, whose tenant
 * and groups come with it, or any other id), groups; or an anonymous caller.
 */
export interface CatalogAs {
  readonly tenant?: string;
  readonly client?: string;
  readonly groups?: readonly string[];
  readonly anonymous?: boolean;
}

export interface CatalogEntryView {
  /** The name (or URI) as /mcp shows it. */
  readonly name: string;
  /** The name (or URI) the server knows it by. */
  readonly upstream_name: string;
  readonly description: string | null;
  /** Whether the chosen caller sees it (always true without one). */
  readonly visible: boolean;
  /** Why the chosen caller does not see it (the decision's reason, as audit lines name it). */
  readonly hidden_because?: string;
}

export interface CatalogServerView {
  readonly name: string;
  /** Left out of lists: the health checks found it unhealthy. */
  readonly excluded: boolean;
  readonly entries: Readonly<Record<CatalogKind, readonly CatalogEntryView[]>>;
}

export interface CatalogView {
  /** The caller the view is for; null: every entry, unfiltered. */
  readonly as: { readonly tenant: string | null; readonly client: string | null; readonly groups: readonly string[]; readonly method: string } | null;
  /** How many entries of each kind the caller's lists hold (all of them without a caller). */
  readonly visible: Readonly<Record<CatalogKind, number>>;
  readonly servers: readonly CatalogServerView[];
  /** Who can be chosen: the configured tenants and the `auth.api_keys` client ids. */
  readonly choices: { readonly tenants: readonly string[]; readonly clients: readonly string[] };
}

/**
 * The caller a view is for, made as the request path would make it from such a credential: an
 * API key's own identity; an anonymous caller only where anonymous callers get in (or no
 * authentication is configured, where every caller is one); else an authenticated caller of the
 * tenant, the client id and groups chosen (as a token would name them).
 */
function viewer(ctx: GatewayContext, as: CatalogAs): Caller {
  const auth = ctx.rc.source.auth;
  const key = as.client === undefined ? undefined : auth?.api_keys.find((k) => k.id === as.client);
  let who: Identity;
  if (key !== undefined && as.anonymous !== true) {
    if (as.tenant !== undefined && as.tenant !== (key.tenant ?? undefined)) {
      throw new AdminInputError(`client ${key.id} belongs to tenant ${key.tenant ?? '(none)'}, not ${as.tenant}`);
    }
    who = makeIdentity('api_key', { clientId: key.id, tenant: key.tenant ?? null, groups: [...key.groups, ...(as.groups ?? [])] });
  } else if (auth === undefined || as.anonymous === true) {
    if (auth !== undefined && !auth.allow_anonymous) throw new AdminInputError('anonymous callers are refused here (auth.allow_anonymous is off)');
    const tenant = auth?.anonymous_tenant ?? as.tenant ?? null;
    if (as.tenant !== undefined && auth?.anonymous_tenant !== undefined && as.tenant !== auth.anonymous_tenant) {
      throw new AdminInputError(`anonymous callers belong to tenant ${auth.anonymous_tenant} (auth.anonymous_tenant), not ${as.tenant}`);
    }
    who = makeIdentity('anonymous', { clientId: null, tenant, groups: [] });
  } else {
    who = makeIdentity('jwt', { clientId: as.client ?? null, tenant: as.tenant ?? null, groups: as.groups ?? [] });
  }
  const resolved = ctx.guard.tenants.resolve(who);
  if (!resolved.ok) {
    throw new AdminInputError(
      resolved.reason === 'no_tenant' ? 'choose a tenant: every caller needs one when tenants are configured' : `tenant ${String(who.tenant)} is not configured`,
    );
  }
  return { identity: who, tenant: resolved.tenant };
}

export async function catalogView(src: AdminSources, as: CatalogAs | null): Promise<CatalogView> {
  const ctx = src.context;
  const caller = as === null ? null : viewer(ctx, as);
  const perServer = new Map<string, Record<CatalogKind, CatalogEntryView[]>>(
    ctx.rc.serverList.map((s) => [s.name, { tools: [], prompts: [], resources: [], resourceTemplates: [] }]),
  );
  const visible = { tools: 0, prompts: 0, resources: 0, resourceTemplates: 0 };
  await Promise.all(
    CATALOG_KINDS.map(async (kind) => {
      const merged = (await ctx.catalog.list(kind)).items;
      const seen = caller === null ? null : new Set(callerEntries(ctx, caller, kind, merged));
      visible[kind] = seen?.size ?? merged.length;
      const idField = KIND_INFO[kind].idField;
      for (const e of merged) {
        const shown = seen === null || seen.has(e);
        const why = shown || caller === null ? null : (entryRefusal(ctx, caller, kind, e.server, e.upstreamName) ?? 'name_taken_by_another_server');
        const description = e.item['description'];
        perServer.get(e.server)?.[kind].push({
          name: String(e.item[idField]),
          upstream_name: e.upstreamName,
          description: typeof description === 'string' ? description : null,
          visible: shown,
          ...(why === null ? {} : { hidden_because: why }),
        });
      }
    }),
  );
  const source = ctx.rc.source;
  return {
    as: caller === null ? null : { tenant: ctx.guard.tenants.enabled ? caller.tenant.name : null, client: caller.identity.clientId, groups: caller.identity.groups, method: caller.identity.method },
    visible,
    servers: ctx.rc.serverList.map((s) => ({ name: s.name, excluded: ctx.catalog.excludes(s.name), entries: perServer.get(s.name)! })),
    choices: { tenants: Object.keys(source.tenants ?? {}), clients: (source.auth?.api_keys ?? []).map((k) => k.id) },
  };
}

// ------------------------------------------------------------------------------------------------
// sessions

/** How the console names a session: a digest of its id (the id itself lets an anonymous caller in). */
export function sessionRef(id: string): string {
  return createHash('sha256').update(id).digest('hex').slice(0, 16);
}

export interface SessionView {
  readonly ref: string;
  readonly tenant: string | null;
  /** Who opened it: the auth method and client id (null: anonymous). */
  readonly method: string | null;
  readonly client_id: string | null;
  readonly client: string | null;
  readonly protocol_version: string;
  readonly created_at: string | null;
  readonly last_seen: string;
  readonly age_seconds: number | null;
  readonly idle_seconds: number;
  readonly upstream: readonly { readonly server: string; readonly protocol_version: string; readonly stateless: boolean }[];
  readonly subscriptions: number;
}

export interface SessionsView {
  readonly total: number;
  readonly per_tenant: Readonly<Record<string, number>>;
  readonly sessions: readonly SessionView[];
  /** Where the sessions are: this replica's memory, or the store every replica shares. */
  readonly store: 'memory' | 'shared';
}

/** Most sessions a page lists (the total counts them all). */
const SESSIONS_SHOWN = 500;
/** Most sessions searched for the one to end. */
const SESSIONS_SEARCHED = 100_000;
/** Ids hashed between two turns of the event loop while searching (the processor serves requests meanwhile). */
const SEARCH_SLICE = 2_000;
/** Refs remembered from the lists this console served. */
const REFS_KEPT = 10_000;

/**
 * The session ids behind the refs this console listed, so ending a listed session needs no
 * search; a ref listed elsewhere (another replica's console) is searched for among live sessions.
 */
export class SessionRefs {
  private readonly ids = new Map<string, string>();

  remember(id: string): string {
    const ref = sessionRef(id);
    this.ids.delete(ref);
    this.ids.set(ref, id);
    if (this.ids.size > REFS_KEPT) this.ids.delete(this.ids.keys().next().value!);
    return ref;
  }

  forget(ref: string): void {
    this.ids.delete(ref);
  }

  async find(store: SessionStore, ref: string): Promise<string | null> {
    const known = this.ids.get(ref);
    if (known !== undefined) return known;
    const ids = await store.liveIds(SESSIONS_SEARCHED);
    for (let i = 0; i < ids.length; i += SEARCH_SLICE) {
      if (i > 0) await new Promise((resolve) => setImmediate(resolve));
      const hit = ids.slice(i, i + SEARCH_SLICE).find((id) => sessionRef(id) === ref);
      if (hit !== undefined) return hit;
    }
    return null;
  }
}

function describeSession(s: GatewaySession, now: number): SessionView {
  const who = s.identity === null ? null : subjectParts(s.identity);
  let client: string | null = null;
  try {
    const { name, version } = parseClientMetadata(s.clientMetadata).clientInfo;
    if (typeof name === 'string') client = typeof version === 'string' ? `${name} ${version}` : name;
  } catch {
    // No client info to show.
  }
  return {
    ref: sessionRef(s.id),
    tenant: s.tenant ?? null,
    method: who?.method ?? null,
    client_id: who?.clientId ?? null,
    client,
    protocol_version: s.protocolVersion,
    created_at: s.createdAt === undefined ? null : new Date(s.createdAt).toISOString(),
    last_seen: new Date(s.lastSeen).toISOString(),
    age_seconds: s.createdAt === undefined ? null : Math.max(0, Math.round((now - s.createdAt) / 1000)),
    idle_seconds: Math.max(0, Math.round((now - s.lastSeen) / 1000)),
    upstream: [...s.upstream].map(([server, u]) => ({ server, protocol_version: u.protocolVersion, stateless: u.sessionId === null })),
    subscriptions: [...s.subscriptions.values()].reduce((n, uris) => n + uris.size, 0),
  };
}

export async function sessionsView(src: AdminSources, refs: SessionRefs): Promise<SessionsView> {
  const store = src.context.sessions;
  const { total, sessions } = await store.list(SESSIONS_SHOWN);
  const now = Date.now();
  const shown = sessions.map((s) => {
    refs.remember(s.id);
    return describeSession(s, now);
  });
  const perTenant: Record<string, number> = {};
  // Counted over every session when they are all shown; else over the most recent ones.
  for (const s of shown) perTenant[s.tenant ?? '(none)'] = (perTenant[s.tenant ?? '(none)'] ?? 0) + 1;
  return { total, per_tenant: perTenant, sessions: shown, store: store.shared ? 'shared' : 'memory' };
}

/**
 * Ends a session as its client's DELETE would: the session, its server→client streams, its own
 * lists and its upstream sessions. The client's next request finds it unknown (404) and starts over.
 */
export async function endSession(src: AdminSources, refs: SessionRefs, ref: string): Promise<SessionView> {
  if (!/^[0-9a-f]{16}$/.test(ref)) throw new AdminInputError('a session reference is 16 hex digits');
  const ctx = src.context;
  const found = await refs.find(ctx.sessions, ref);
  refs.forget(ref);
  const ended = found === null ? null : await ctx.sessions.delete(found);
  if (ended === null) throw new AdminInputError(`no live session ${ref}`, 404);
  ctx.streams.sessionEnded(ended.id);
  ctx.sessionLists.forget(ended.id);
  await ctx.upstreamSessions.terminateAll(ctx.rc, ended);
  return describeSession(ended, Date.now());
}

// ------------------------------------------------------------------------------------------------
// audit

export interface AuditView {
  readonly capacity: number;
  readonly held: number;
  readonly filter: AuditFilter;
  readonly entries: readonly AuditEntry[];
}

/** Most entries one page shows. */
const AUDIT_SHOWN = 500;

export function auditView(src: AdminSources, filter: AuditFilter, max = AUDIT_SHOWN): AuditView {
  const recent = src.recent;
  return {
    capacity: recent?.auditCapacity ?? 0,
    held: recent?.auditSize ?? 0,
    filter,
    entries: recent?.auditTail(filter, Math.min(max, AUDIT_SHOWN)) ?? [],
  };
}

// ------------------------------------------------------------------------------------------------
// limits

export interface LimitsView {
  readonly configured: readonly string[];
  readonly near_empty: readonly BucketLevel[];
  readonly refused: readonly { readonly limit: string; readonly total: number; readonly minutes: readonly LimitMinute[] }[];
}

export function limitsView(src: AdminSources): LimitsView {
  return {
    configured: src.context.limiter.describe(),
    near_empty: src.recent?.bucketsNearEmpty(50) ?? [],
    refused: src.recent?.refusalsByLimit() ?? [],
  };
}

// ------------------------------------------------------------------------------------------------
// config

export const MASK = '•••';

/** Keys whose values are secrets wherever they appear. */
const SECRET_KEY = /pass(word)?|secret|token|credential|authori[sz]ation|api[_-]?key|^key$|key_sha256|private|username/i;

/** Whole subtrees that hold secrets: upstream credential headers, and arguments the gateway fills in for callers. */
const SECRET_SUBTREE = new Set(['headers', 'arguments']);

/** The members of a JSON Web Key that are safe to show (a private key's other members are not). */
const PUBLIC_JWK_MEMBERS = new Set(['kty', 'kid', 'alg', 'use', 'key_ops', 'crv', 'x', 'y', 'n', 'e']);

/** A URL's password and query values masked (query strings carry API keys as often as userinfo does). */
function maskUrl(value: string): string {
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) return value;
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    return value;
  }
  if (u.password === '' && u.username === '' && u.search === '') return value;
  if (u.password !== '') u.password = 'MASKED';
  else if (u.username !== '') u.username = 'MASKED';
  for (const k of [...u.searchParams.keys()]) u.searchParams.set(k, 'MASKED');
  return u.href.replaceAll('MASKED', MASK);
}

/**
 * The config with its secrets masked: upstream credential headers, injected arguments, passwords
 * and user names, key hashes, private JWK members, and the password and query of any URL. What is
 * left shows how the gateway is set up, not how to get in.
 */
export function maskConfig(value: unknown, key = '', secret = false): unknown {
  if (typeof value === 'string') return secret || SECRET_KEY.test(key) ? MASK : maskUrl(value);
  if (typeof value === 'number' || typeof value === 'boolean') return secret ? MASK : value;
  if (Array.isArray(value)) return value.map((v) => maskConfig(v, key, secret));
  if (value !== null && typeof value === 'object') {
    const jwk = key === 'keys' && 'kty' in value;
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => {
        // `headers` and `arguments` maps hold secrets; a switch of that name (logging.arguments) does not.
        const subtree = SECRET_SUBTREE.has(k) && v !== null && typeof v === 'object';
        return [k, maskConfig(v, k, secret || subtree || (jwk && !PUBLIC_JWK_MEMBERS.has(k)))];
      }),
    );
  }
  return value;
}

export interface ConfigView {
  readonly hash: string;
  readonly loaded_at: string;
  readonly file: string | null;
  /** Whether the console may apply a validated config (`admin.allow_apply`). */
  readonly apply: boolean;
  readonly config: unknown;
}

export function configView(config: Config, hash: string, loadedAt: number, file: string | undefined): ConfigView {
  return { hash, loaded_at: new Date(loadedAt).toISOString(), file: file ?? null, apply: config.admin.allow_apply, config: maskConfig(config) };
}
