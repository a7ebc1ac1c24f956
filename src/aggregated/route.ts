import type { RuntimeServer } from '../config/runtime.js';
import { GatewayError } from '../errors/gateway-error.js';
import { idKey, isObject, stringifyJson, type JsonObject, type JsonRpcId, type JsonRpcMessage } from '../mcp/message.js';
import { isModernVersion, MODERN_PROTOCOL_VERSIONS, routingHeaders, withEnvelope, withoutInputCapabilities, type ClientEnvelope } from '../mcp/modern.js';
import { respondAccepted, type RespondDecision } from '../request/decision.js';
import { aggregatedListFilter, checkBoundOwner, checkNameAccess, checkServerAccess } from '../request/guard.js';
import { limitRequest } from '../request/limit.js';
import { routeToServer, withTraceMeta, type UpstreamTarget } from '../request/mutations.js';
import { prepareToolCall } from '../request/transform.js';
import type { Caller, RequestState } from '../request/state.js';
import type { GatewaySession, UpstreamSession } from '../sessions/store.js';
import { NO_CAPABILITIES } from '../upstream/profiles.js';
import type { AggregatedContext } from './context.js';
import { askingCall, asksClient, sessionClient } from './asks.js';
import { holdCall, holdsCall } from './held.js';
import { keepSubscription, keepsSubscription } from './subscriptions.js';
import type { CacheFill, Forwarded, ModernCall, Routed } from './forwarded.js';
import { localAnswer } from './response.js';
import type { CachePlan } from '../cache/answers.js';
import type { Owned } from './naming.js';

/** Where a routed request goes, with its params in the upstream's own names. */
interface Resolved {
  readonly server: RuntimeServer;
  readonly params: JsonObject;
  /** The upstream's tool name (tools/call only). */
  readonly tool: string | null;
}

/**
 * Finds the server that owns what a request names and checks the caller may use it. The client's
 * session is being looked up meanwhile: a resolver that needs it waits for it.
 */
type Resolver = (ctx: AggregatedContext, state: RequestState, caller: Caller, params: JsonObject, session: Promise<GatewaySession>) => Promise<Resolved>;

/** tools/call and prompts/get: by the prefixed name; a forbidden name looks exactly like a missing one. */
function byName(kind: 'tools' | 'prompts'): Resolver {
  const code = kind === 'tools' ? 'GW_ERR_TOOL_UNKNOWN' : 'GW_ERR_PROMPT_UNKNOWN';
  const label = kind === 'tools' ? 'Unknown tool' : 'Unknown prompt';
  return async (ctx, state, caller, params, session) => {
    const name = params['name'];
    if (typeof name !== 'string') throw new GatewayError('GW_ERR_PARAMS_INVALID', 'Invalid params: name is required');
    const absent = (): GatewayError => new GatewayError(code, `${label}: ${name}`);
    // A prefixed name resolves at once: its access check then comes before the session's, as
    // every other refusal's does (the audit names the last refusal).
    const owned = ownerOfName(ctx, kind, name) ?? (ctx.naming.anyUnprefixed ? await unprefixedOwner(ctx, caller, kind, name, session) : null);
    const server = owned === null ? undefined : ctx.rc.servers.get(owned.server);
    if (owned === null || server === undefined || !ctx.naming.selected(kind, server.name, owned.name)) throw absent();
    checkServerAccess(ctx, state, caller, server.name, absent);
    checkNameAccess(ctx, state, caller, kind, server.name, owned.name, absent);
    if (!(await inCatalog(ctx, server, kind, owned.name, session))) throw absent();
    return { server, params: { ...params, name: owned.name }, tool: kind === 'tools' ? owned.name : null };
  };
}

/**
 * Whether a name is in the catalog the client sees. Most calls name what every client sees, found
 * in the default catalog without waiting for the session; otherwise the catalog of the client's
 * profile decides (a tool the server offers only to clients that can answer sampling, say), or
 * the session's own list (session-lists.ts).
 */
async function inCatalog(ctx: AggregatedContext, server: RuntimeServer, kind: 'tools' | 'prompts', name: string, lookup: Promise<GatewaySession>): Promise<boolean> {
  if (ctx.catalog.cachedHas(server, kind, name, NO_CAPABILITIES)) return true;
  const session = await lookup;
  const profile = ctx.catalog.profiles.of(session.clientMetadata);
  // A list the server keeps for this session only decides for it; a name neither list has may be
  // one the server just added in this session.
  const own = await ctx.sessionLists.own(session, server, kind, () => ctx.catalog.serverItems(server, kind, profile));
  if (own !== null) return own.some((i) => i['name'] === name) || ctx.sessionLists.findOwn(session, server, kind, name);
  return (await ctx.catalog.has(server, kind, name, profile)) || ctx.sessionLists.findOwn(session, server, kind, name);
}

/**
 * The server and own name a prefixed tool or prompt name stands for. A renamed tool answers to
 * its new name only.
 */
function ownerOfName(ctx: AggregatedContext, kind: 'tools' | 'prompts', name: string): Owned | null {
  const owned = ctx.naming.parseName(name);
  if (owned === null || kind !== 'tools' || ctx.naming.toolOverride(owned.server, owned.name)?.name === undefined) return owned;
  return null;
}

/**
 * The server whose claim on an unprefixed name (or URI) the caller gets: the catalog settled who
 * claims it (catalog.ts); the strongest claim the caller may use wins, as in its lists. When no
 * usable claim is there, the first one: the checks that follow refuse it (and audit that).
 */
async function claimOf(ctx: AggregatedContext, caller: Caller, kind: 'tools' | 'prompts' | 'resources', id: string): Promise<Owned | null> {
  const claimants = await ctx.catalog.claimants(kind, id);
  if (claimants === undefined) return null;
  const keep = aggregatedListFilter(ctx, caller, kind);
  const c = (keep === null ? undefined : claimants.find((x) => keep(x.server, x.upstreamName))) ?? claimants[0]!;
  return { server: c.server, name: c.upstreamName };
}

/**
 * The server an unprefixed tool or prompt name belongs to. The catalog's claims decide (a
 * renamed tool, a route, a server with `prefix: never` or `on-collision`); a name they do not
 * hold (a list the catalog has not fetched, one a client profile or a session has of its own)
 * goes by the config: a renamed tool, then a route, then, of the servers that keep their own
 * names whose entry of that name the caller may see (server and name policy), the first (config
 * order) whose catalog has it; with one such server, that one (the catalog check that follows
 * decides whether the name exists).
 */
async function unprefixedOwner(ctx: AggregatedContext, caller: Caller, kind: 'tools' | 'prompts', name: string, session: Promise<GatewaySession>): Promise<Owned | null> {
  const claimed = await claimOf(ctx, caller, kind, name);
  if (claimed !== null) return claimed;
  const renamed = kind === 'tools' ? ctx.naming.renamed(name) : null;
  if (renamed !== null) return renamed;
  const routed = ctx.naming.routed(kind, name);
  if (routed !== null) return { server: routed, name };
  const servers = unprefixedCandidates(ctx, caller, kind, name);
  if (servers.length <= 1) return servers.length === 0 ? null : { server: servers[0]!.name, name };
  const cached = servers.find((s) => ctx.catalog.cachedHas(s, kind, name, NO_CAPABILITIES));
  if (cached !== undefined) return { server: cached.name, name };
  const profile = ctx.catalog.profiles.of((await session).clientMetadata);
  for (const s of servers) if ((await ctx.catalog.serverItems(s, kind, profile))?.some((i) => i['name'] === name)) return { server: s.name, name };
  return null;
}

/**
 * The servers that keep their own names whose entry `id` of `kind` the caller may use, in config
 * order: `prefix: never` ones, and `on-collision` ones unless another server claims `id` too; a
 * tool renamed in the config is not among them under its own name.
 */
function unprefixedCandidates(ctx: AggregatedContext, caller: Caller, kind: 'tools' | 'prompts' | 'resources', id: string): RuntimeServer[] {
  const keep = aggregatedListFilter(ctx, caller, kind);
  const collided = ctx.naming.collided[kind].has(id);
  return ctx.naming.unprefixed
    .filter((s) => (keep === null || keep(s, id)) && !(collided && ctx.naming.mode(s) === 'on-collision') && (kind !== 'tools' || ctx.naming.toolOverride(s, id)?.name === undefined))
    .map((s) => ctx.rc.servers.get(s)!);
}

/**
 * The server an unprefixed resource URI belongs to: the catalog's claims, then a route, then of
 * the servers that keep their own URIs the caller may see, the first whose resources list it, or
 * whose templates match it; with one such server, that one.
 */
async function unprefixedUriOwner(ctx: AggregatedContext, caller: Caller, uri: string): Promise<Owned | null> {
  const claimed = await claimOf(ctx, caller, 'resources', uri);
  if (claimed !== null) return claimed;
  const routed = ctx.naming.routed('resources', uri);
  if (routed !== null) return { server: routed, name: uri };
  const servers = unprefixedCandidates(ctx, caller, 'resources', uri);
  if (servers.length <= 1) return servers.length === 0 ? null : { server: servers[0]!.name, name: uri };
  for (const s of servers) if ((await ctx.catalog.serverItems(s, 'resources', NO_CAPABILITIES))?.some((i) => i['uri'] === uri)) return { server: s.name, name: uri };
  for (const s of servers) {
    const templates = await ctx.catalog.serverItems(s, 'resourceTemplates', NO_CAPABILITIES);
    if (templates?.some((t) => typeof t['uriTemplate'] === 'string' && templateMatches(t['uriTemplate'], uri))) return { server: s.name, name: uri };
  }
  return null;
}

/**
 * A session-based client as a server of the sessionless revision is told of it: without sampling,
 * elicitation and roots, which such a server asks for with input-required results that the
 * gateway does not turn into that client's server→client requests (the server then refuses what
 * needs them, rather than answering in a shape the client cannot read).
 */
function withoutInputKinds(client: ClientEnvelope): ClientEnvelope {
  return { ...client, capabilities: withoutInputCapabilities(client.capabilities) };
}

/** Longest URI matched against templates: longer ones never match (keeps matching cheap). */
const MAX_TEMPLATE_MATCH_LENGTH = 4096;

/**
 * Whether a URI could be an expansion of an RFC 6570 template: literal parts must match, a simple
 * `{var}` stands for one path segment's worth of characters, any other expression for anything.
 * Runs in time linear in the URI per template part (the set of positions each part can end at),
 * whatever the template: no backtracking for a hostile URI to exploit.
 */
export function templateMatches(template: string, uri: string): boolean {
  if (uri.length > MAX_TEMPLATE_MATCH_LENGTH) return false;
  const n = uri.length;
  let reach = new Uint8Array(n + 1);
  reach[0] = 1;
  let at = 0;
  const literal = (lit: string): void => {
    if (lit === '') return;
    const next = new Uint8Array(n + 1);
    for (let p = 0; p + lit.length <= n; p++) if (reach[p] === 1 && uri.startsWith(lit, p)) next[p + lit.length] = 1;
    reach = next;
  };
  for (const m of template.matchAll(/\{([^}]*)\}/g)) {
    literal(template.slice(at, m.index));
    const anything = /^[+#./;?&]/.test(m[1] ?? '');
    // Every position reachable from a reachable one without crossing what the expression cannot hold.
    const next = new Uint8Array(n + 1);
    let open = false;
    for (let p = 0; p <= n; p++) {
      if (reach[p] === 1) open = true;
      if (open) next[p] = 1;
      if (p < n && !anything && SEGMENT_END.has(uri[p]!)) open = false;
    }
    reach = next;
    at = m.index + m[0].length;
  }
  literal(template.slice(at));
  return reach[n] === 1;
}

/** What a simple `{var}` expansion never contains. */
const SEGMENT_END: ReadonlySet<string> = new Set(['/', '?', '#']);

/**
 * The server that owns a resource URI as the client names it and the server's own URI, when the
 * caller may read it; a forbidden URI looks exactly like a missing one.
 */
export async function resolveUri(ctx: AggregatedContext, state: RequestState, caller: Caller, uri: string): Promise<{ server: RuntimeServer; uri: string }> {
  const absent = (): GatewayError => new GatewayError('GW_ERR_RESOURCE_UNKNOWN', `Resource not found: ${uri}`, { data: { uri } });
  const owned = ctx.naming.parseUri(uri) ?? (ctx.naming.anyUnprefixed ? await unprefixedUriOwner(ctx, caller, uri) : null);
  const server = owned === null ? undefined : ctx.rc.servers.get(owned.server);
  if (owned === null || server === undefined || !ctx.naming.selected('resources', server.name, owned.name)) throw absent();
  checkServerAccess(ctx, state, caller, server.name, absent);
  checkNameAccess(ctx, state, caller, 'resources', server.name, owned.name, absent);
  return { server, uri: owned.name };
}

/** resources/read, subscribe and unsubscribe: by the namespaced URI. */
const byUri: Resolver = async (ctx, state, caller, params) => {
  const uri = params['uri'];
  if (typeof uri !== 'string') throw new GatewayError('GW_ERR_PARAMS_INVALID', 'Invalid params: uri is required');
  const owned = await resolveUri(ctx, state, caller, uri);
  return { server: owned.server, params: { ...params, uri: owned.uri }, tool: null };
};

/** completion/complete: by the prompt name or resource-template URI it refers to. */
const byReference: Resolver = async (ctx, state, caller, params, session) => {
  const ref = params['ref'];
  if (!isObject(ref)) throw new GatewayError('GW_ERR_PARAMS_INVALID', 'Invalid params: ref is required');
  const byPrompt = ref['type'] === 'ref/prompt';
  const key = byPrompt ? 'name' : 'uri';
  const value = ref[key];
  const absent = (): GatewayError => new GatewayError('GW_ERR_PARAMS_INVALID', `Invalid params: unknown reference ${String(value)}`);
  const owned =
    typeof value !== 'string'
      ? null
      : byPrompt
        ? (ownerOfName(ctx, 'prompts', value) ?? (ctx.naming.anyUnprefixed ? await unprefixedOwner(ctx, caller, 'prompts', value, session) : null))
        : (ctx.naming.parseUri(value) ?? (ctx.naming.anyUnprefixed ? await unprefixedUriOwner(ctx, caller, value) : null));
  const server = owned === null ? undefined : ctx.rc.servers.get(owned.server);
  if (owned === null || server === undefined || !ctx.naming.selected(byPrompt ? 'prompts' : 'resourceTemplates', server.name, owned.name)) throw absent();
  checkServerAccess(ctx, state, caller, server.name, absent);
  checkNameAccess(ctx, state, caller, byPrompt ? 'prompts' : 'resourceTemplates', server.name, owned.name, absent);
  return { server, params: { ...params, ref: { ...ref, [key]: owned.name } }, tool: null };
};

/**
 * tasks/get, tasks/result and tasks/cancel: by the namespaced task id, and only for the identity
 * the task was created for; anyone else's task looks exactly like a missing one.
 */
const byTaskId: Resolver = async (ctx, state, caller, params) => {
  const taskId = params['taskId'];
  if (typeof taskId !== 'string') throw new GatewayError('GW_ERR_PARAMS_INVALID', 'Invalid params: taskId is required');
  const absent = (): GatewayError => new GatewayError('GW_ERR_TASK_UNKNOWN', `Task not found: ${taskId}`);
  const owned = ctx.naming.parseTaskId(taskId);
  const server = owned === null ? undefined : ctx.rc.servers.get(owned.server);
  if (owned === null || server === undefined) throw absent();
  checkServerAccess(ctx, state, caller, server.name, absent);
  const owner = await ctx.sessions.boundOwner('task', server.name, owned.name);
  if (owner === undefined) throw absent();
  checkBoundOwner(ctx, state, caller, owner, server.name, 'task_not_owned', absent);
  return { server, params: { ...params, taskId: owned.name }, tool: null };
};

/** Request methods routed to the server that owns the named entity, and how each finds it. */
const RESOLVERS: ReadonlyMap<string, Resolver> = new Map([
  ['tools/call', byName('tools')],
  ['prompts/get', byName('prompts')],
  ['resources/read', byUri],
  ['resources/subscribe', byUri],
  ['resources/unsubscribe', byUri],
  ['completion/complete', byReference],
  ['tasks/get', byTaskId],
  ['tasks/result', byTaskId],
  ['tasks/cancel', byTaskId],
]);

/** Whether a request method is routed to one server (rather than answered by the gateway). */
export function isRouted(method: string): boolean {
  return RESOLVERS.has(method);
}

/**
 * Resolves a routed request to its server, applies its limits and sends it there. Neither the
 * resolving nor the limits need the client's session, so its lookup runs beside them: with Redis,
 * the session and the limit decision travel in one round trip (the client pipelines them). A
 * missing session still wins over anything the limits say.
 */
export async function routeRequest(
  ctx: AggregatedContext,
  state: RequestState,
  sessionLookup: Promise<GatewaySession>,
  msg: Extract<JsonRpcMessage, { kind: 'request' }>,
  modern: ModernCall | null = null,
): Promise<Routed> {
  const [found, limited] = await Promise.allSettled([sessionLookup, resolveAndLimit(ctx, state, msg, sessionLookup)]);
  if (found.status === 'rejected') {
    // Refused for its session: whatever the name check said, nothing was let through.
    state.allowed = null;
    throw found.reason;
  }
  if (limited.status === 'rejected') throw limited.reason;
  const session = found.value;
  const resolved = limited.value;
  const inflightKey = inflightKeyOf(session, msg.id);
  ctx.inflight.set(inflightKey, resolved.server.name);
  state.server = resolved.server.name;
  const params = resolved.tool === null ? resolved.params : await prepareToolCall(ctx, state, resolved.server.name, resolved.tool, resolved.params);
  const createsTask = msg.method === 'tools/call' && isObject(resolved.params['task']);
  // Looked up once the request passed everything a request to the server passes.
  const plan = createsTask ? null : cachePlan(ctx, state, resolved, msg.method);
  if (plan !== null) {
    const cached = await ctx.answers.get(plan);
    cacheLookedUp(ctx, state, resolved.server.name, msg.method, cached !== null);
    if (cached !== null) {
      ctx.inflight.delete(inflightKey);
      return { decision: cachedAnswer(ctx, state, session, resolved.server, msg, cached, modern), forwarded: null };
    }
  }
  const message = { ...msg.raw, params: withTraceMeta(state, params) };
  try {
    const routed = await forward(ctx, state, session, resolved.server, message, msg.method, inflightKey, { createsTask, modern, fill: plan === null ? null : { plan, cacheControl: null } });
    // Answered here (a held call): nothing is in flight any more.
    if (routed.forwarded === null) ctx.inflight.delete(inflightKey);
    return routed;
  } catch (err) {
    ctx.inflight.delete(inflightKey);
    throw err;
  }
}

async function resolveAndLimit(
  ctx: AggregatedContext,
  state: RequestState,
  msg: Extract<JsonRpcMessage, { kind: 'request' }>,
  session: Promise<GatewaySession>,
): Promise<Resolved> {
  const resolve = RESOLVERS.get(msg.method)!;
  let resolved: Resolved;
  try {
    resolved = await resolve(ctx, state, state.caller!, msg.params ?? {}, session);
  } catch (err) {
    // Calls to names that do not resolve still spend budget: probing must not be free.
    await limitRequest(ctx, state, { server: null, tool: null, method: msg.method });
    throw err;
  }
  state.tool = resolved.tool;
  // Resolved through the catalog the client sees: a known name, whatever the cache holds by now.
  state.toolKnown = resolved.tool !== null;
  state.limitHeaders = await limitRequest(ctx, state, { server: resolved.server.name, tool: resolved.tool, method: msg.method });
  return resolved;
}

/** The in-flight key of a client request, so a later cancellation finds the server running it. */
export function inflightKeyOf(session: GatewaySession, id: unknown): string {
  return `${session.id}\n${idKey(id)}`;
}

/**
 * Points Envoy at the server's route with the client's upstream session and the rewritten message.
 * A server that speaks a sessionless revision gets the message as that revision has it: the
 * client (its capabilities and info from the session) in `_meta`, and the routing headers.
 */
export async function forward(
  ctx: AggregatedContext,
  state: RequestState,
  session: GatewaySession,
  server: RuntimeServer,
  message: JsonObject,
  requestMethod: string | null,
  inflightKey: string | null,
  opts: ForwardOptions = {},
): Promise<Routed> {
  const { createsTask = false, modern = null, fill = null } = opts;
  state.server = server.name;
  // A 2026-07-28 client's request goes to a server that speaks that revision as it is (no
  // session); to any other, in the client's (or its bridge's) upstream session.
  const client = state.modernClient;
  let upstream: UpstreamSession;
  if (client !== null && (await ctx.catalog.speaksModern(server))) upstream = { sessionId: null, protocolVersion: MODERN_PROTOCOL_VERSIONS[0]! };
  else {
    if (client !== null) {
      session = await ctx.bridge.forServer(state, state.caller!, session, client);
      const params = isObject(message['params']) ? message['params'] : {};
      if (holdsCall(client, requestMethod, params)) return holdCall(ctx, state, session, server, message, requestMethod!, client);
    }
    upstream = await ctx.upstreamSessions.get(session, server);
  }
  let target: UpstreamTarget = { server, sessionId: upstream.sessionId, protocolVersion: upstream.protocolVersion };
  let body: string;
  if (!isModernVersion(upstream.protocolVersion)) body = stringifyJson(message);
  else {
    // Such a server takes no notifications or answers from clients over HTTP.
    if (requestMethod === null) return { decision: respondAccepted(), forwarded: null };
    const params = isObject(message['params']) ? message['params'] : undefined;
    // A session-based client that can be asked things: the gateway carries the server's questions.
    const speaksFor = client ?? sessionClient(session);
    if (client === null && asksClient(speaksFor, requestMethod, params ?? {})) {
      return { decision: await askingCall(ctx, state, session, server, upstream, message, requestMethod, speaksFor), forwarded: null };
    }
    // Its resource subscriptions, which that revision hears on listen streams: kept in the session.
    if (client === null && keepsSubscription(requestMethod)) {
      return { decision: await keepSubscription(ctx, session, server, requestMethod, message['id'] as JsonRpcId, params ?? {}), forwarded: null };
    }
    body = stringifyJson({ ...message, params: withEnvelope(params, upstream.protocolVersion, client ?? withoutInputKinds(speaksFor)) });
    target = { ...target, routing: routingHeaders(requestMethod, params) };
  }
  const decision = routeToServer(ctx, state, target, body);
  return { decision, forwarded: { session, server, upstream, body, requestMethod, inflightKey, createsTask, modern, fill } };
}

/** What a routed request's answer is shaped and kept by, beyond where it goes. */
interface ForwardOptions {
  /** A task-augmented call: the task in its answer is bound to the caller. */
  readonly createsTask?: boolean;
  /** A 2026-07-28 client's request. */
  readonly modern?: ModernCall | null;
  /** The cache its answer is kept in. */
  readonly fill?: CacheFill | null;
}

/** Where a routed request's answer would be cached, when its server's answers to it are (no I/O). */
function cachePlan(ctx: AggregatedContext, state: RequestState, resolved: Resolved, method: string): CachePlan | null {
  if (!ctx.answers.caches(resolved.server.name, method)) return null;
  const caller = state.caller!;
  const callerInArguments = resolved.tool !== null && ctx.transforms.changes(resolved.server.name, resolved.tool);
  return ctx.answers.plan(
    resolved.server.name,
    method,
    resolved.tool,
    resolved.params,
    { subject: caller.identity.subject, tenant: caller.tenant.implicit ? null : caller.tenant.name },
    callerInArguments,
  );
}

/** A cache lookup: metered, and on the operation line. */
function cacheLookedUp(ctx: AggregatedContext, state: RequestState, server: string, method: string, hit: boolean): void {
  const result = hit ? 'hit' : 'miss';
  state.cache = result;
  ctx.metrics.cacheLookupInc(server, method, result);
}

/**
 * A cached result answers the request: in the shape an answer from the server would reach this
 * client (renamed, filtered, in its revision's shape), without anything going upstream.
 */
function cachedAnswer(
  ctx: AggregatedContext,
  state: RequestState,
  session: GatewaySession,
  server: RuntimeServer,
  msg: Extract<JsonRpcMessage, { kind: 'request' }>,
  result: string,
  modern: ModernCall | null,
): RespondDecision {
  const fwd: Forwarded = {
    session,
    server,
    upstream: { sessionId: null, protocolVersion: '' },
    body: '',
    requestMethod: msg.method,
    inflightKey: null,
    createsTask: false,
    modern,
    fill: null,
  };
  return localAnswer(ctx, state, fwd, `{"jsonrpc":"2.0","id":${stringifyJson(msg.id)},"result":${result}}`, 'mcpgw_cached');
}
