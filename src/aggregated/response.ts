import type { RuntimeServer } from '../config/runtime.js';
import { GatewayError } from '../errors/gateway-error.js';
import { ERROR_TABLE } from '../errors/codes.js';
import { errorBody, idKey, isObject, parseJsonObject, stringifyJson, type JsonObject } from '../mcp/message.js';
import { DROP_EVENT, isEventStream, isJson, messageRewriter } from '../mcp/sse.js';
import { SESSION_HEADER } from '../mcp/headers.js';
import { forgotSession, LOG_LEVELS } from '../mcp/protocol.js';
import { CONTINUE, type Decision, type HeaderSet, type RespondDecision, type ResponseStep } from '../request/decision.js';
import { replaceBody, rewriteResponseBody, setResponseHeaders } from '../request/mutations.js';
import { filterToolResult } from '../request/transform.js';
import { invalidateAnswers } from '../cache/answers.js';
import { sessionHeader } from './session-scope.js';
import { sessionSubject } from '../request/guard.js';
import { NO_CAPABILITIES } from '../upstream/profiles.js';
import { envoyFailure } from '../request/outcome.js';
import { requestId, type Headers, type RequestState } from '../request/state.js';
import type { AggregatedContext } from './context.js';
import { postEventId } from './event-ids.js';
import { rewriteUpstreamMessage, type RewriteEffects } from './rewrite.js';
import type { CacheFill, Forwarded, ModernCall } from './forwarded.js';

/**
 * Largest upstream message (SSE event or JSON body) held for renaming; larger ones stream
 * untouched. Results that can carry resource URIs are held up to max_buffered_response_bytes
 * instead, and refused beyond it: a URI left without its server's prefix could not be read back.
 */
const MAX_REWRITE_BYTES = 1024 * 1024;

/**
 * JSON results (not SSE) that carry resource URIs or task ids to namespace; other JSON results
 * pass untouched.
 */
const REWRITTEN_RESULTS: ReadonlySet<string> = new Set(['tools/call', 'resources/read', 'prompts/get', 'tasks/get', 'tasks/result', 'tasks/cancel']);

/**
 * The response to a forwarded request: the client sees the gateway's session id, aggregated
 * names in what the upstream sent, and a JSON-RPC error naming the server when Envoy could not
 * reach it. An upstream that lost the client's session (404, or a 400 that says so) gets a new
 * one and the request once more.
 */
export async function aggregatedResponse(ctx: AggregatedContext, state: RequestState, fwd: Forwarded | null, headers: Headers): Promise<ResponseStep> {
  if (fwd === null) return { decision: CONTINUE, body: null };
  const step = await responseStep(ctx, state, fwd, headers);
  if (fwd.modern === null || step.decision.kind !== 'continue') return step;
  // A sessionless client never sees the upstream session its bridge holds.
  const d = step.decision;
  return { ...step, decision: { ...d, removeHeaders: [...(d.removeHeaders ?? []), SESSION_HEADER] } };
}

async function responseStep(ctx: AggregatedContext, state: RequestState, fwd: Forwarded, headers: Headers): Promise<ResponseStep> {
  const failure = envoyFailure(ctx, fwd.server, headers);
  if (failure !== null) throw failure;
  const status = Number(headers.get(':status') ?? '0');
  if (status === 404 && fwd.upstream.sessionId !== null) return { decision: await replayWithNewSession(ctx, state, fwd), body: null };

  const setHeaders = clientSessionHeaders(ctx, fwd);
  const ct = headers.get('content-type') ?? '';
  // An event stream's Cache-Control speaks of the stream (no proxy may buffer it), a JSON body's of the answer.
  if (fwd.fill !== null && isJson(ct)) fwd.fill.cacheControl = headers.get('cache-control') ?? null;
  if (status === 400 && fwd.upstream.sessionId !== null && isJson(ct)) {
    // Some servers answer a session they forgot with 400: the body tells, so Envoy holds it back.
    const decide = async (body: Buffer): Promise<Decision> =>
      forgotSession(status, body.toString('utf8')) ? replayWithNewSession(ctx, state, fwd) : CONTINUE;
    return { decision: { kind: 'continue', setHeaders, responseBodyMode: 'BUFFERED' }, body: decide };
  }
  if (fwd.createsTask && (isEventStream(ct) || isJson(ct))) {
    // The task's id reaches the client only once it is bound to the caller: any replica may
    // serve the client's next tasks/get. The answer is small (the task, not its result).
    return { decision: { kind: 'continue', setHeaders, responseBodyMode: 'BUFFERED' }, body: (b) => bindCreatedTasks(ctx, state, fwd, ct, b) };
  }
  const carriesUris = fwd.requestMethod !== null && REWRITTEN_RESULTS.has(fwd.requestMethod);
  // A 2026-07-28 client's every result gets its resultType.
  if (isEventStream(ct) || (isJson(ct) && (carriesUris || fwd.modern !== null))) {
    const bound = carriesUris ? Math.max(MAX_REWRITE_BYTES, ctx.rc.maxBufferedResponseBytes) : MAX_REWRITE_BYTES;
    const body = messageRewriter(ct, (d) => rewriteData(ctx, state, fwd, d), bound, carriesUris ? tooLargeToName(state, fwd.server.name, bound) : null, eventIds(fwd));
    return { decision: rewriteResponseBody(setHeaders), body };
  }
  return { decision: setResponseHeaders(setHeaders), body: null };
}

/**
 * The gateway's ids for the events of an upstream's SSE answer: a client resuming the answer
 * with `GET` names the server and its own event id through them (event-ids.ts).
 */
function eventIds(fwd: Forwarded): (id: string) => string {
  return (id) => postEventId(fwd.server.name, id, fwd.requestMethod);
}

/** The session header a client gets: the gateway's session; none for a sessionless (2026-07-28) client. */
function clientSessionHeaders(ctx: AggregatedContext, fwd: Forwarded): HeaderSet[] {
  return fwd.modern === null ? [sessionHeader(ctx, fwd.session.id)] : [];
}

/**
 * A session-based server's answer in the shape a 2026-07-28 client reads: the client's own id, a result says it is
 * complete (a resource read also how long it may be kept: not at all, by its caller only, as the
 * server said nothing), and a missing resource is -32602 (that revision retired -32002).
 */
function toModernShape(msg: JsonObject, requestMethod: string | null, call: ModernCall): boolean {
  let changed = false;
  if (msg['method'] === undefined && msg['id'] === call.upstreamId) {
    msg['id'] = call.clientId;
    changed = true;
  }
  const result = msg['result'];
  // What a caller may read follows its policy: never to be cached for others.
  if (isObject(result) && result['cacheScope'] === 'public') {
    result['cacheScope'] = 'private';
    changed = true;
  }
  if (isObject(result) && result['resultType'] === undefined) {
    result['resultType'] = 'complete';
    if (requestMethod === 'resources/read') {
      result['ttlMs'] ??= 0;
      result['cacheScope'] ??= 'private';
    }
    return true;
  }
  const error = msg['error'];
  if (isObject(error) && error['code'] === -32002) {
    error['code'] = -32602;
    return true;
  }
  return changed;
}

/** Whether a log message passes a request's `logLevel` (null: the request wants none). */
function logLevelAllows(threshold: string | null, params: unknown): boolean {
  if (threshold === null) return false;
  const level = isObject(params) ? params['level'] : undefined;
  const at = typeof level === 'string' ? LOG_LEVELS.indexOf(level) : -1;
  return at < 0 || at >= LOG_LEVELS.indexOf(threshold);
}

/** The error that replaces a result too large to hold and rename. */
function tooLargeToName(state: RequestState, server: string, bound: number): () => string {
  return () => {
    const e = ERROR_TABLE.GW_ERR_UPSTREAM_TOO_LARGE;
    state.status = 'error';
    state.errorCode = 'GW_ERR_UPSTREAM_TOO_LARGE';
    return errorBody(requestId(state), e.jsonrpc, `${e.message}: ${server} sent a message over ${bound} bytes`);
  };
}

/**
 * A task-augmented call's whole answer, renamed, once every task it created is bound to the
 * caller (tasks/get, tasks/result and tasks/cancel accept its id only from that identity).
 */
async function bindCreatedTasks(ctx: AggregatedContext, state: RequestState, fwd: Forwarded, ct: string, body: Buffer): Promise<Decision> {
  const created: string[] = [];
  const bound = Math.max(MAX_REWRITE_BYTES, ctx.rc.maxBufferedResponseBytes);
  const rewriter = messageRewriter(ct, (d) => rewriteData(ctx, state, fwd, d, (id) => created.push(id)), bound, null, eventIds(fwd));
  const out = rewriter === null ? body : rewriter.push(body, true);
  await bindTasks(ctx, state, fwd, created);
  return replaceBody(out);
}

/** Binds the tasks a call created to its caller; a task id another caller holds fails the call. */
async function bindTasks(ctx: AggregatedContext, state: RequestState, fwd: Forwarded, upstreamTaskIds: readonly string[]): Promise<void> {
  const identity = sessionSubject(state.caller!);
  const bound = await Promise.all(upstreamTaskIds.map((id) => ctx.sessions.bind('task', fwd.server.name, id, identity)));
  if (bound.includes(false)) {
    ctx.log.warn({ server: fwd.server.name }, 'a server reused a task id that belongs to another caller; the call is refused');
    throw new GatewayError('GW_ERR_TASK_CONFLICT', `${ERROR_TABLE.GW_ERR_TASK_CONFLICT.message}: ${fwd.server.name}`);
  }
}

/**
 * One upstream message as text → its aggregated form, or null when nothing changes. A task the
 * message says was created goes to `onTask` (outside a task-augmented call, bound in the background).
 */
function rewriteData(
  ctx: AggregatedContext,
  state: RequestState,
  fwd: Forwarded,
  data: string,
  onTask: (upstreamTaskId: string) => void = (id) => bindInBackground(ctx, state, fwd, id),
): string | null | typeof DROP_EVENT {
  const msg = parseJsonObject(data);
  if (msg === null) return null;
  // 2026-07-28: log messages only at the level the request asked for, none if it asked for none.
  if (fwd.modern !== null && msg['method'] === 'notifications/message' && !logLevelAllows(fwd.modern.logLevel, msg['params'])) return DROP_EVENT;
  const sent = state.message;
  const answers = fwd.modern !== null ? msg['id'] === fwd.modern.upstreamId : sent?.kind === 'request' && idKey(msg['id']) === idKey(sent.id);
  if (msg['method'] === undefined && answers) observeResponse(state, msg);
  if (answers && fwd.fill !== null && isObject(msg['result'])) keepAnswer(ctx, state, fwd.fill, msg['result']);
  const effects: RewriteEffects = {};
  const filtered = answers && state.tool !== null && filterToolResult(ctx, state, fwd.server.name, state.tool, msg, () => outputSchemaOf(ctx, fwd.server.name, state.tool!));
  const reshaped = fwd.modern !== null && toModernShape(msg, fwd.requestMethod, fwd.modern);
  const changed = rewriteUpstreamMessage(msg, fwd.server.name, fwd.requestMethod, ctx.naming, effects) || reshaped || filtered;
  if (effects.listChanged !== undefined) ctx.sessionLists.listChanged(fwd.session, fwd.server.name, effects.listChanged);
  if (effects.listChanged !== undefined || effects.resourceUpdated !== undefined) invalidateAnswers(ctx, fwd.server.name, effects);
  if (effects.linked !== undefined) {
    const listed =
      ctx.catalog.cachedItems(fwd.server.name, 'resources', ctx.catalog.profiles.of(fwd.session.clientMetadata)) ??
      ctx.catalog.cachedItems(fwd.server.name, 'resources', NO_CAPABILITIES);
    ctx.sessionLists.resourcesLinked(fwd.session, fwd.server.name, listed, effects.linked);
  }
  if (effects.taskCreated !== undefined) onTask(effects.taskCreated);
  if (!changed) return null;
  try {
    return stringifyJson(msg);
  } catch {
    // Too deeply nested to write again: the upstream's own bytes go on unchanged.
    return null;
  }
}

/** A server's result to a request whose answers are cached, kept as the server sent it (before any rename or filter). */
function keepAnswer(ctx: AggregatedContext, state: RequestState, fill: CacheFill, result: JsonObject): void {
  let text: string;
  try {
    text = stringifyJson(result);
  } catch {
    return;
  }
  if (ctx.answers.keep(fill.plan, result, text, fill.cacheControl)) state.cache = 'filled';
}

/** A server's tool's `outputSchema` in the catalog every client gets (cached; no I/O). */
function outputSchemaOf(ctx: AggregatedContext, server: string, tool: string): unknown {
  return ctx.catalog.cachedItems(server, 'tools', NO_CAPABILITIES)?.find((t) => t['name'] === tool)?.['outputSchema'];
}

function bindInBackground(ctx: AggregatedContext, state: RequestState, fwd: Forwarded, upstreamTaskId: string): void {
  bindTasks(ctx, state, fwd, [upstreamTaskId]).catch((err: unknown) => ctx.log.warn({ server: fwd.server.name, err }, 'task not bound'));
}

/**
 * An answer the gateway has in hand (a held call's, upstream/held-calls.ts, or a cached one) as
 * the client reads it, renamed and shaped like any routed answer.
 */
export function localAnswer(ctx: AggregatedContext, state: RequestState, fwd: Forwarded, data: string, details: string): RespondDecision {
  const headers = [...clientSessionHeaders(ctx, fwd), { key: 'content-type', value: 'application/json' }];
  return { kind: 'respond', status: 200, headers, body: answerText(ctx, state, fwd, data), details };
}

/** An upstream's JSON-RPC response to a call the gateway made itself, as the client reads it (renamed, and reshaped for its revision). */
export function answerText(ctx: AggregatedContext, state: RequestState, fwd: Forwarded, data: string): string {
  const renamed = rewriteData(ctx, state, fwd, data);
  return typeof renamed === 'string' ? renamed : data;
}

/** Notes in the record whether the upstream's answer to the request was an error or a tool error. */
function observeResponse(state: RequestState, msg: JsonObject): void {
  const error = msg['error'];
  if (isObject(error)) {
    state.status = 'error';
    state.errorCode = typeof error['code'] === 'number' ? error['code'] : null;
  } else if (isObject(msg['result']) && msg['result']['isError'] === true) {
    state.status = 'tool_error';
  }
}

/**
 * The upstream forgot the client's session (restart or expiry): set up a new one and replay the
 * request once, through the internal listener, with the server's own timeout, answering the
 * client with what comes back. The reply is read whole (up to `max_buffered_response_bytes`):
 * Envoy has already committed to the first response, so only a local answer can replace it.
 */
async function replayWithNewSession(ctx: AggregatedContext, state: RequestState, fwd: Forwarded): Promise<RespondDecision> {
  const server: RuntimeServer = fwd.server;
  ctx.log.info({ server: server.name }, 'upstream lost its session; re-initialising and retrying once');
  const fresh = await ctx.upstreamSessions.renew(fwd.session, server, fwd.upstream);
  const reply = await ctx.upstream.post(server, fwd.body, {
    sessionId: fresh.sessionId,
    protocolVersion: fresh.protocolVersion,
    timeoutMs: server.replayTimeoutMs,
    maxBytes: ctx.rc.maxBufferedResponseBytes,
  });
  let body = reply.body;
  if (isEventStream(reply.contentType) || (isJson(reply.contentType) && fwd.requestMethod !== null)) {
    // The reply is already bounded by max_buffered_response_bytes: all of it is renamed.
    const created: string[] = [];
    const rewriter = messageRewriter(reply.contentType, (d) => rewriteData(ctx, state, fwd, d, (id) => created.push(id)), Math.max(MAX_REWRITE_BYTES, ctx.rc.maxBufferedResponseBytes), null, eventIds(fwd));
    if (rewriter !== null) body = rewriter.push(Buffer.from(body), true).toString('utf8');
    await bindTasks(ctx, state, fwd, created);
  }
  const headers = clientSessionHeaders(ctx, fwd);
  if (reply.contentType !== '') headers.push({ key: 'content-type', value: reply.contentType });
  return { kind: 'respond', status: reply.status, headers, body, details: 'mcpgw_upstream_session_renewed' };
}
