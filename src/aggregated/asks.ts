import { randomBytes } from 'node:crypto';
import type { RuntimeServer } from '../config/runtime.js';
import { GatewayError } from '../errors/gateway-error.js';
import { errorBody, isObject, parseJsonObject, stringifyJson, type JsonObject, type JsonRpcId } from '../mcp/message.js';
import { inputCapabilities, MULTI_ROUND_TRIP, routingHeaders, withEnvelope, type ClientEnvelope } from '../mcp/modern.js';
import { MCP_METHOD_HEADER, MCP_NAME_HEADER } from '../mcp/headers.js';
import { sseEventText } from '../mcp/sse.js';
import { EVENT_STREAM_HEADERS, respondAccepted, type LocalStream, type RespondDecision, type StreamSink } from '../request/decision.js';
import { sessionHeader } from './session-scope.js';
import { clientError } from '../request/outcome.js';
import type { RequestState } from '../request/state.js';
import { parseClientMetadata } from '../sessions/limits.js';
import type { GatewaySession, UpstreamSession } from '../sessions/store.js';
import { findResponse, UpstreamBadReply } from '../upstream/client.js';
import type { AggregatedContext } from './context.js';
import { askEventId } from './event-ids.js';
import { answerText } from './response.js';
import type { Forwarded, Routed } from './forwarded.js';
import { pause } from './server-stream.js';

/**
 * A session-based client (2025-11-25 and older) calling a server that speaks only 2026-07-28,
 * which asks its client things by answering `input_required`. When the client's session declares
 * sampling, elicitation or roots, the gateway makes such a call itself. Questions become
 * server→client requests on the POST's event stream, which the gateway then closes (SSE
 * polling): the client answers each request with a POST, as it always does, and resumes the
 * stream with `GET` and the last event id. That GET waits for every answer, retries the call with
 * them and the server's `requestState`, and carries the result (or the next round of questions)
 * to the client. What was asked and answered is kept in the session store under an id of its
 * own, so the answers, the resumed GET and the retry may each reach any replica.
 */

/** Every id of a question the gateway puts to a client starts so (`<prefix><ask id>.<key>`). */
const ASK_ID_PREFIX = 'mcpgw-ask.';

/** How soon a client resumes the closed stream (the SSE `retry` field): the GET then waits. */
const RESUME_AFTER_MS = 250;

/** How often a resumed GET looks for the answers while it waits. */
const POLL_MS = 100;

/** A comment this often keeps a waiting GET open through idle timeouts. */
const KEEPALIVE_MS = 15_000;

/** Rounds a server may go on answering `input_required` without asking anything (requestState only). */
const MAX_SILENT_ROUNDS = 10;

/** What a round of questions needs to carry the call on, wherever the answers land. */
interface AskRecord {
  readonly session: string;
  readonly server: string;
  readonly protocolVersion: string;
  readonly method: string;
  /** The call's params as the server takes them, without the envelope and the retry fields. */
  readonly params: JsonObject;
  /** The client's id of the call: the final answer carries it. */
  readonly clientId: JsonRpcId;
  readonly requestState: string | null;
  /** The questions' keys (the server's). */
  readonly keys: readonly string[];
}

/** The client a session speaks for, as a server of the sessionless revision is told about it. */
export function sessionClient(session: GatewaySession): ClientEnvelope {
  const { capabilities, clientInfo } = parseClientMetadata(session.clientMetadata);
  return { capabilities, clientInfo, logLevel: session.logLevel };
}

/** Whether the gateway makes this call to a sessionless server itself, to carry its questions to `client`. */
export function asksClient(client: ClientEnvelope, requestMethod: string, params: JsonObject): boolean {
  if (!MULTI_ROUND_TRIP.has(requestMethod) || isObject(params['task'])) return false;
  return inputCapabilities(client.capabilities) !== null;
}

/** Makes the call and answers the POST: with the result, or with the server's questions as requests. */
export async function askingCall(
  ctx: AggregatedContext,
  state: RequestState,
  session: GatewaySession,
  server: RuntimeServer,
  upstream: UpstreamSession,
  message: JsonObject,
  requestMethod: string,
  client: ClientEnvelope,
): Promise<RespondDecision> {
  const params = isObject(message['params']) ? message['params'] : {};
  const clientId = message['id'] as JsonRpcId;
  const call = { session: session.id, server: server.name, protocolVersion: upstream.protocolVersion, method: requestMethod, params, clientId };
  const step = await callRound(ctx, client, server, call, null, undefined);
  const fwd = forwarded(session, server, upstream, requestMethod);
  const headers = [sessionHeader(ctx, session.id)];
  if (step.kind === 'answer') {
    return { kind: 'respond', status: 200, headers: [...headers, { key: 'content-type', value: 'application/json' }], body: answerText(ctx, state, fwd, step.data), details: 'mcpgw_held_call' };
  }
  return { kind: 'respond', status: 200, headers: [...headers, ...EVENT_STREAM_HEADERS], body: await ask(ctx, { ...call, requestState: step.requestState }, step.inputRequests), details: 'mcpgw_input_required' };
}

/** A client's answer to one of the gateway's questions; null when the id is not one of them. */
export async function clientAnswer(ctx: AggregatedContext, session: GatewaySession, id: JsonRpcId, raw: JsonObject): Promise<Routed | null> {
  if (typeof id !== 'string' || !id.startsWith(ASK_ID_PREFIX)) return null;
  const dot = id.indexOf('.', ASK_ID_PREFIX.length);
  const askId = id.slice(ASK_ID_PREFIX.length, dot);
  const key = id.slice(dot + 1);
  const held = dot < 0 ? null : await ctx.sessions.getAsk(askId);
  const record = held === null ? null : (parseJsonObject(held.record) as AskRecord | null);
  // Only the session asked may answer, and only what it was asked.
  if (record === null || record.session !== session.id || !record.keys.includes(key)) {
    ctx.log.warn({ id: id.slice(0, 100) }, 'client answered a question the gateway did not ask it; dropped');
  } else {
    const answer = isObject(raw['result']) ? { result: raw['result'] } : { error: isObject(raw['error']) ? raw['error'] : { code: -32603, message: 'no result' } };
    await ctx.sessions.answerAsk(askId, key, stringifyJson(answer));
  }
  return { decision: respondAccepted(), forwarded: null };
}

/** The resumed stream of a round of questions: waits for the answers, then carries the call on. */
export class AskStream implements LocalStream {
  private readonly abort = new AbortController();
  private sink: StreamSink | null = null;
  private keepalive: NodeJS.Timeout | null = null;

  constructor(
    private readonly ctx: AggregatedContext,
    private readonly state: RequestState,
    private readonly session: GatewaySession,
    private readonly askId: string,
  ) {}

  start(sink: StreamSink): void {
    this.sink = sink;
    this.keepalive = setInterval(() => sink.write(': keepalive\n\n'), KEEPALIVE_MS);
    this.keepalive.unref();
    void this.run().finally(() => {
      // Ended here (not by the client leaving): the client sees the end of the stream.
      if (!this.abort.signal.aborted) sink.end();
      this.close();
    });
  }

  close(): void {
    if (this.keepalive !== null) clearInterval(this.keepalive);
    this.keepalive = null;
    this.abort.abort();
  }

  private async run(): Promise<void> {
    const { ctx, session } = this;
    const answered = await this.answers();
    if (answered === null) return; // nothing to resume (expired, someone else's), or the client left
    const { record, answers } = answered;
    const server = ctx.rc.servers.get(record.server);
    let text: string;
    try {
      if (server === undefined) throw new GatewayError('GW_ERR_UPSTREAM_UNAVAILABLE', `Upstream server unavailable: ${record.server}`);
      const refused = record.keys.map((k) => answers.get(k)!).find((a) => isObject(a['error']));
      if (refused !== undefined) {
        // The client would not answer: the call ends with its refusal.
        await ctx.sessions.dropAsk(this.askId);
        const e = refused['error'] as JsonObject;
        text = errorBody(record.clientId, typeof e['code'] === 'number' ? e['code'] : -32603, `The client refused the server's request: ${String(e['message'] ?? '')}`);
      } else {
        const inputResponses: JsonObject = {};
        for (const k of record.keys) inputResponses[k] = answers.get(k)!['result'] ?? null;
        const step = await callRound(ctx, sessionClient(session), server, record, record.requestState, inputResponses);
        await ctx.sessions.dropAsk(this.askId);
        if (step.kind === 'input') {
          this.sink?.write(await ask(ctx, { ...record, requestState: step.requestState }, step.inputRequests));
          return;
        }
        const fwd = forwarded(session, server, { sessionId: null, protocolVersion: record.protocolVersion }, record.method);
        text = answerText(ctx, this.state, fwd, step.data);
      }
    } catch (err) {
      const e = clientError(err);
      text = errorBody(record.clientId, e.jsonrpcCode, e.message);
    }
    this.sink?.write(sseEventText(null, text));
  }

  /** Waits until every question of the round has its answer; null when there is nothing to wait for. */
  private async answers(): Promise<{ record: AskRecord; answers: Map<string, JsonObject> } | null> {
    const deadline = Date.now() + this.ctx.rc.inputRequiredMs;
    while (!this.abort.signal.aborted && Date.now() < deadline) {
      const held = await this.ctx.sessions.getAsk(this.askId);
      const record = held === null ? null : (parseJsonObject(held.record) as AskRecord | null);
      if (held === null || record === null || record.session !== this.session.id) return null;
      if (record.keys.every((k) => held.answers.has(k))) {
        const answers = new Map<string, JsonObject>();
        for (const [k, v] of held.answers) answers.set(k, parseJsonObject(v) ?? {});
        return { record, answers };
      }
      if (!(await pause(POLL_MS, this.abort.signal))) return null;
    }
    return null;
  }
}

/** What one round of the call came back with. */
type Round = { readonly kind: 'answer'; readonly data: string } | { readonly kind: 'input'; readonly requestState: string | null; readonly inputRequests: JsonObject };

/**
 * Sends the call (with a round's answers and the server's state) in the client's name and reads
 * the whole reply; a server that only hands back its state is called again at once.
 */
async function callRound(
  ctx: AggregatedContext,
  client: ClientEnvelope,
  server: RuntimeServer,
  call: Omit<AskRecord, 'requestState' | 'keys'>,
  requestState: string | null,
  inputResponses: JsonObject | undefined,
): Promise<Round> {
  for (let round = 0; ; round++) {
    const params: JsonObject = { ...call.params };
    if (inputResponses !== undefined) params['inputResponses'] = inputResponses;
    if (requestState !== null) params['requestState'] = requestState;
    const route = routingHeaders(call.method, call.params);
    const body = stringifyJson({ jsonrpc: '2.0', id: call.clientId, method: call.method, params: withEnvelope(params, call.protocolVersion, client) });
    const reply = await ctx.upstream.post(server, body, {
      protocolVersion: call.protocolVersion,
      timeoutMs: server.replayTimeoutMs,
      maxBytes: ctx.rc.maxBufferedResponseBytes,
      headers: { [MCP_METHOD_HEADER]: route.method, ...(route.name === null ? {} : { [MCP_NAME_HEADER]: route.name }) },
    });
    const response = findResponse(reply, call.clientId);
    if (response === null) throw new UpstreamBadReply(server.name, call.method, reply.status);
    const result = response['result'];
    if (!isObject(result) || result['resultType'] !== 'input_required') return { kind: 'answer', data: stringifyJson(response) };
    const asked = isObject(result['inputRequests']) ? result['inputRequests'] : {};
    const next = typeof result['requestState'] === 'string' ? result['requestState'] : null;
    if (Object.keys(asked).length > 0) return { kind: 'input', requestState: next, inputRequests: asked };
    if (round >= MAX_SILENT_ROUNDS) throw new GatewayError('GW_ERR_UPSTREAM_UNAVAILABLE', `Upstream server unavailable: ${server.name} kept asking for nothing`);
    requestState = next;
    inputResponses = undefined;
  }
}

/** Files a round of questions and renders them as the event stream the client gets (then closed). */
async function ask(ctx: AggregatedContext, call: Omit<AskRecord, 'keys'>, inputRequests: JsonObject): Promise<string> {
  const askId = randomBytes(18).toString('base64url');
  const keys = Object.keys(inputRequests);
  const record: AskRecord = { ...call, keys };
  await ctx.sessions.putAsk(askId, stringifyJson(record), ctx.rc.inputRequiredMs);
  let out = `retry: ${RESUME_AFTER_MS}\n\n`;
  keys.forEach((key, n) => {
    const q = inputRequests[key];
    const request: JsonObject = { jsonrpc: '2.0', id: `${ASK_ID_PREFIX}${askId}.${key}`, method: isObject(q) ? String(q['method']) : '' };
    if (isObject(q) && isObject(q['params'])) request['params'] = q['params'];
    out += sseEventText(askEventId(askId, n), stringifyJson(request));
  });
  return out;
}

/** The call as the response rewriting sees it. */
function forwarded(session: GatewaySession, server: RuntimeServer, upstream: UpstreamSession, requestMethod: string): Forwarded {
  return { session, server, upstream, body: '', requestMethod, inflightKey: null, createsTask: false, modern: null, fill: null };
}
