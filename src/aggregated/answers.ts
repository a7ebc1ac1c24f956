import { GatewayError } from '../errors/gateway-error.js';
import { SESSION_HEADER } from '../mcp/headers.js';
import { isObject, stringifyJson, type JsonObject, type JsonRpcId } from '../mcp/message.js';
import { GATEWAY_INFO, KIND_INFO, LIST_KINDS, negotiateVersion, type CatalogKind } from '../mcp/protocol.js';
import { EVENT_STREAM_HEADERS, respondAccepted, respondResult, type RespondDecision, type StreamDecision } from '../request/decision.js';
import { aggregatedListFilter, checkSessionOwner, serverVisible, sessionSubject, tenantLabel } from '../request/guard.js';
import { clientIp } from '../request/limit.js';
import { sessionHeader, storeSessionId } from './session-scope.js';
import type { Caller, RequestState } from '../request/state.js';
import { clientMetadataText, sessionOwner } from '../sessions/limits.js';
import type { GatewaySession } from '../sessions/store.js';
import type { ClientProfile } from '../upstream/profiles.js';
import { renameEntry, type MergedEntry } from './merge.js';
import { AskStream, clientAnswer } from './asks.js';
import type { AggregatedContext } from './context.js';
import { parseEventId } from './event-ids.js';
import type { Routed } from './forwarded.js';
import { forward, inflightKeyOf } from './route.js';
import { listTasks } from './tasks.js';

/**
 * What the aggregated endpoint answers itself: initialize, ping, logging/setLevel, the merged
 * lists, the notifications it consumes, and DELETE of a session.
 */

/** A method the gateway answers on its own, from a live session. */
type Answer = (ctx: AggregatedContext, state: RequestState, session: GatewaySession, id: JsonRpcId, params: JsonObject) => Promise<RespondDecision>;

const ping: Answer = async (_ctx, _state, _session, id) => respondResult(id, {});

const setLogLevel: Answer = async (ctx, state, session, id, params) => {
  // Without a server that logs, the gateway has no logging capability and answers as such a server would.
  const visible = ctx.rc.serverList.filter((s) => serverVisible(ctx, state.caller!, s.name));
  const caps = await Promise.all(visible.map((s) => ctx.catalog.capabilities(s)));
  if (!caps.some((c) => c !== null && isObject(c['logging']))) throw new GatewayError('GW_ERR_METHOD_UNKNOWN', 'Method not found: logging/setLevel');
  const level = params['level'];
  if (typeof level !== 'string') throw new GatewayError('GW_ERR_PARAMS_INVALID', 'Invalid params: level is required');
  await ctx.sessions.setLogLevel(session, level);
  await ctx.upstreamSessions.callAll(ctx.rc, session, 'logging/setLevel', { level });
  return respondResult(id, {});
};

function list(kind: CatalogKind): Answer {
  return async (ctx, state, session, id, params) => respondResult(id, await listResult(ctx, state, session, kind, params['cursor']));
}

/**
 * One page of a merged list as this session's client sees it: its profile's catalog, its own
 * lists where it has some, what its policy allows, paged with the gateway's cursor.
 */
export async function listResult(
  ctx: AggregatedContext,
  state: RequestState,
  session: GatewaySession,
  kind: CatalogKind,
  cursor: unknown,
  /** Receives how long the list may be kept by its servers' cache hints. */
  freshness?: { ttlMs: number },
): Promise<JsonObject> {
  const profile = ctx.catalog.profiles.of(session.clientMetadata);
  const merged = await ctx.catalog.list(kind, profile);
  // A session's own lists carry no hints.
  if (freshness !== undefined) freshness.ttlMs = session.ownLists.size === 0 ? ctx.catalog.freshForMs(merged) : 0;
  const entries = session.ownLists.size === 0 ? merged.items : await withSessionLists(ctx, session, kind, profile, merged.items);
  const items = callerEntries(ctx, state.caller!, kind, entries);
  const pageSize = ctx.rc.pageSize;
  const offset = decodeCursor(cursor, kind);
  const result: JsonObject = { [KIND_INFO[kind].key]: items.slice(offset, offset + pageSize).map((e) => e.item) };
  if (offset + pageSize < items.length) result['nextCursor'] = encodeCursor(kind, offset + pageSize);
  return result;
}

/** The entries of a merged list one caller sees: what its policy allows, one entry per name. */
export function callerEntries(ctx: AggregatedContext, caller: Caller, kind: CatalogKind, entries: readonly MergedEntry[]): readonly MergedEntry[] {
  // Each caller sees only what it may use: filtered at answer time, never cached across callers.
  const keep = aggregatedListFilter(ctx, caller, kind);
  return firstOfEachName(ctx, kind, keep === null ? entries : entries.filter((e) => keep(e.server, e.upstreamName)));
}

/**
 * An unprefixed name several servers claim, as one caller sees them: the entry of the strongest
 * claim the caller may use (ties: config order), the one a call of that name is routed to.
 */
function firstOfEachName(ctx: AggregatedContext, kind: CatalogKind, items: readonly MergedEntry[]): readonly MergedEntry[] {
  if (!ctx.naming.anyUnprefixed) return items;
  const idField = KIND_INFO[kind].idField;
  const best = new Map<unknown, MergedEntry>();
  for (const e of items) {
    const id = e.item[idField];
    const held = best.get(id);
    if (held === undefined || (e.claim ?? -1) > (held.claim ?? -1)) best.set(id, e);
  }
  if (best.size === items.length) return items;
  return items.filter((e) => best.get(e.item[idField]) === e);
}

/**
 * The catalog's entries with each server's own list for this session in place of the catalog's
 * where the session has one (session-lists.ts), in server order.
 */
async function withSessionLists(
  ctx: AggregatedContext,
  session: GatewaySession,
  kind: CatalogKind,
  profile: ClientProfile,
  items: readonly MergedEntry[],
): Promise<readonly MergedEntry[]> {
  const owned = await Promise.all(
    ctx.rc.serverList.map((s) => (ctx.catalog.excludes(s.name) ? null : ctx.sessionLists.own(session, s, kind, () => ctx.catalog.serverItems(s, kind, profile)))),
  );
  if (owned.every((o) => o === null)) return items;
  const idField = KIND_INFO[kind].idField;
  const out: MergedEntry[] = [];
  ctx.rc.serverList.forEach((s, i) => {
    const own = owned[i];
    if (own === null || own === undefined) {
      for (const e of items) if (e.server === s.name) out.push(e);
      return;
    }
    for (const item of own) {
      const renamed = renameEntry(kind, s.name, item, ctx.naming);
      if (renamed === null) continue;
      const upstreamName = String(item[idField]);
      const exposed = ctx.naming.expose(kind, s.name, upstreamName);
      out.push({ server: s.name, upstreamName, item: renamed, claim: exposed !== null && exposed.id === renamed[idField] ? exposed.claim : null });
    }
  });
  return out;
}

/** Methods the gateway answers itself once a session exists (initialize creates one). */
export const ANSWERS: ReadonlyMap<string, Answer> = new Map<string, Answer>([
  ['ping', ping],
  ['logging/setLevel', setLogLevel],
  ['tasks/list', listTasks],
  ...[...LIST_KINDS].map(([method, kind]) => [method, list(kind)] as const),
]);

/**
 * initialize: a new gateway session, with the union of what the visible upstreams offer. The
 * session counts against the caller's `gateway.max_sessions_per_client` (its identity, or its
 * address when anonymous) and `gateway.max_sessions`; see sessions/limits.ts.
 */
export async function initialize(ctx: AggregatedContext, state: RequestState, caller: Caller, id: JsonRpcId, params: JsonObject | undefined): Promise<RespondDecision> {
  const p = params ?? {};
  const protocolVersion = negotiateVersion(p['protocolVersion']);
  const clientMetadata = clientMetadataText(p, ctx.rc.maxClientMetadataBytes);
  const offer = await serversOffer(ctx, caller);
  const identity = sessionSubject(caller);
  const session = await ctx.sessions.create({
    protocolVersion,
    clientMetadata,
    identity,
    tenant: tenantLabel(ctx, state),
    owner: sessionOwner(identity, identity === null ? clientIp(state) : null),
  });
  return respondResult(
    id,
    { protocolVersion, capabilities: offer.capabilities, serverInfo: GATEWAY_INFO, ...offer.instructions },
    [sessionHeader(ctx, session.id)],
    'mcpgw_initialize',
  );
}

/** What the servers a caller may see offer together: their capabilities' union and their instructions. */
export async function serversOffer(ctx: AggregatedContext, caller: Caller): Promise<{ capabilities: JsonObject; instructions: { instructions?: string } }> {
  const visible = ctx.rc.serverList.filter((s) => serverVisible(ctx, caller, s.name));
  const [caps, instructions] = await Promise.all([
    Promise.all(visible.map((s) => ctx.catalog.capabilities(s))),
    Promise.all(visible.map(async (s) => ({ server: s.name, text: await ctx.catalog.instructions(s) }))),
  ]);
  return { capabilities: unionCapabilities(caps), instructions: mergedInstructions(instructions) };
}

/** The client's session, from its header; unknown, expired and other callers' sessions are all "not found". */
export async function requireSession(ctx: AggregatedContext, state: RequestState): Promise<GatewaySession> {
  const given = state.headers.get(SESSION_HEADER);
  if (given === undefined || given === '') throw new GatewayError('GW_ERR_SESSION_MISSING');
  const id = storeSessionId(ctx, given);
  const session = id === null ? null : await ctx.sessions.get(id);
  if (session === null) throw new GatewayError('GW_ERR_SESSION_UNKNOWN');
  checkSessionOwner(ctx, state, state.caller!, session.identity, null);
  return session;
}

/** DELETE: ends the client's session, its server→client streams and its upstream sessions. */
export async function deleteSession(ctx: AggregatedContext, state: RequestState): Promise<RespondDecision> {
  const session = await requireSession(ctx, state);
  await ctx.sessions.delete(session.id);
  ctx.streams.sessionEnded(session.id);
  ctx.sessionLists.forget(session.id);
  await ctx.upstreamSessions.terminateAll(ctx.rc, session);
  return { kind: 'respond', status: 200, headers: [], body: '', details: 'mcpgw_session_deleted' };
}

/**
 * GET: the session's server→client stream, served by the processor itself (every upstream
 * session's stream fanned in), or with a `Last-Event-ID` from a POST's answer, the rest of that
 * answer. See server-stream.ts.
 */
export async function openServerStream(ctx: AggregatedContext, state: RequestState): Promise<StreamDecision> {
  if (!/(^|[\s,])(text\/event-stream|text\/\*|\*\/\*)\s*(;|,|$)/i.test(state.headers.get('accept') ?? '')) throw new GatewayError('GW_ERR_HTTP_NOT_ACCEPTABLE');
  const session = await requireSession(ctx, state);
  const caller = state.caller!;
  const owner = { sessionId: session.id, caller };
  const last = state.headers.get('last-event-id');
  const point = last === undefined ? null : parseEventId(last, (s) => ctx.rc.servers.has(s) && serverVisible(ctx, caller, s));
  const body =
    point?.kind === 'post'
      ? ctx.streams.resumePost(ctx, owner, session, point)
      : point?.kind === 'ask'
        ? new AskStream(ctx, state, session, point.ask)
        : ctx.streams.fanIn(ctx, owner, session, point?.positions ?? new Map());
  return {
    kind: 'stream',
    status: 200,
    headers: [...EVENT_STREAM_HEADERS, sessionHeader(ctx, session.id)],
    body,
  };
}

const ACCEPTED: Routed = { decision: respondAccepted(), forwarded: null };

/** A client notification: cancellations go to the server running the request (wherever it runs), roots changes to every upstream. */
export async function notification(
  ctx: AggregatedContext,
  state: RequestState,
  session: GatewaySession,
  method: string,
  params: JsonObject | undefined,
  raw: JsonObject,
): Promise<Routed> {
  switch (method) {
    case 'notifications/cancelled': {
      const name = ctx.inflight.get(inflightKeyOf(session, params?.['requestId']));
      const server = name === undefined ? undefined : ctx.rc.servers.get(name);
      if (server !== undefined) return forward(ctx, state, session, server, raw, null, null);
      // Not running here: with shared sessions it may be running on another replica, which alone
      // knows the server. Every upstream session of this client hears the cancellation; a server
      // ignores one for a request it does not know, as MCP allows (ids are per session, so no other
      // client's request can match).
      if (ctx.sessions.shared) void ctx.upstreamSessions.broadcast(ctx.rc, session, method, params);
      return ACCEPTED;
    }
    case 'notifications/roots/list_changed':
      void ctx.upstreamSessions.broadcast(ctx.rc, session, method, params);
      return ACCEPTED;
    default:
      // notifications/initialized and anything else the gateway itself consumes.
      return ACCEPTED;
  }
}

/** A client's answer to a server→client request: back to the upstream that asked, original id restored. */
export async function clientResponse(ctx: AggregatedContext, state: RequestState, session: GatewaySession, id: JsonRpcId, raw: JsonObject): Promise<Routed> {
  const answered = await clientAnswer(ctx, session, id, raw);
  if (answered !== null) return answered;
  const owner = ctx.naming.parseServerRequestId(id);
  const server = owner === null ? undefined : ctx.rc.servers.get(owner.server);
  if (owner === null || server === undefined || !serverVisible(ctx, state.caller!, server.name)) {
    ctx.log.warn({ id: String(id).slice(0, 100) }, 'client answered a request the gateway never sent; dropped');
    return ACCEPTED;
  }
  return forward(ctx, state, session, server, { ...raw, id: owner.id }, null, null);
}

/** The servers' instructions, each under its server's name (nothing when none gave any). */
function mergedInstructions(all: readonly { server: string; text: string | null }[]): { instructions?: string } {
  const parts = all.filter((i) => i.text !== null).map((i) => `## ${i.server}\n${i.text}`);
  return parts.length === 0 ? {} : { instructions: parts.join('\n\n') };
}

/**
 * Union of the upstreams' capabilities as the gateway offers them on /mcp. `listChanged` and
 * `resources.subscribe` are offered when some upstream offers them: the notifications reach
 * clients on the server→client stream (server-stream.ts), and subscriptions go to the server
 * that owns the resource. `tasks` is the union of what the servers offer (task-augmented
 * requests go to the server that owns the tool, task requests to the server that owns the task).
 */
export function unionCapabilities(caps: readonly (JsonObject | null)[]): JsonObject {
  const out: JsonObject = {};
  for (const c of caps) {
    if (c === null) continue;
    for (const kind of ['tools', 'prompts', 'resources'] as const) {
      const k = c[kind];
      if (!isObject(k)) continue;
      const merged = isObject(out[kind]) ? out[kind] : (out[kind] = {});
      if (k['listChanged'] === true) merged['listChanged'] = true;
      if (kind === 'resources' && k['subscribe'] === true) merged['subscribe'] = true;
    }
    if (isObject(c['completions'])) out['completions'] = {};
    if (isObject(c['logging'])) out['logging'] = {};
    if (isObject(c['tasks'])) out['tasks'] = unionOfObjects(isObject(out['tasks']) ? out['tasks'] : {}, c['tasks']);
  }
  return out;
}

/** Every key either object has, objects merged all the way down (capability flags are objects). */
function unionOfObjects(a: JsonObject, b: JsonObject): JsonObject {
  const out: JsonObject = { ...a };
  for (const [k, v] of Object.entries(b)) {
    if (!isObject(v) || k === '__proto__') continue;
    const mine = out[k];
    out[k] = unionOfObjects(isObject(mine) ? mine : {}, v);
  }
  return out;
}

function encodeCursor(kind: CatalogKind, offset: number): string {
  return Buffer.from(JSON.stringify({ k: kind, o: offset })).toString('base64url');
}

function decodeCursor(cursor: unknown, kind: CatalogKind): number {
  if (cursor === undefined) return 0;
  if (typeof cursor === 'string') {
    try {
      const v: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
      if (isObject(v) && v['k'] === kind && Number.isInteger(v['o']) && (v['o'] as number) >= 0) return v['o'] as number;
    } catch {
      // fall through to the error below
    }
  }
  throw new GatewayError('GW_ERR_PARAMS_INVALID', 'Invalid params: unknown cursor');
}
