import type { RuntimeServer } from '../config/runtime.js';
import { GatewayError } from '../errors/gateway-error.js';
import { ERROR_TABLE } from '../errors/codes.js';
import { MCP_METHOD_HEADER, routingHeaderMismatch, SESSION_HEADER } from '../mcp/headers.js';
import { errorBody, idKey, parseJsonObject, parseMessage, stringifyJson, type JsonObject } from '../mcp/message.js';
import { LIST_KINDS, type CatalogKind } from '../mcp/protocol.js';
import { messageRewriter } from '../mcp/sse.js';
import { checkPostBody } from '../request/admit.js';
import type { RequestContext } from '../request/context.js';
import { CONTINUE, type ResponseStep } from '../request/decision.js';
import type { EndpointHandler } from '../request/endpoint.js';
import { checkNameAccess, checkServerAccess, checkSessionOwner, filterListMessage, filtersLists, sessionSubject } from '../request/guard.js';
import { limitRequest } from '../request/limit.js';
import { passthroughRequest, replaceBody, rewriteResponseBody, withTraceMeta } from '../request/mutations.js';
import { filterToolResult, prepareToolCall } from '../request/transform.js';
import { envoyFailure } from '../request/outcome.js';
import { requestId, type Caller, type Headers, type RequestState } from '../request/state.js';
import type { SessionStore } from '../sessions/store.js';

/** What the passthrough endpoint needs beyond the shared request stages. */
export interface PassthroughContext extends RequestContext {
  /** Where passthrough sessions are bound to the identity that created them. */
  readonly sessions: SessionStore;
}

/**
 * `/servers/<name>/mcp`: one server, its own names and sessions, as if the client spoke to it
 * directly, with the gateway's identity, policy, limits, credentials and trace context applied.
 */
export function passthroughEndpoint(ctx: PassthroughContext, state: RequestState, server: RuntimeServer): EndpointHandler {
  const caller = state.caller!;
  /** A list request whose response policy must filter. */
  let filteredList: CatalogKind | null = null;
  /** A tool call whose result the filters look at: the tool, and its outputSchema (when results are checked). */
  let filteredResult: { tool: string; outputSchema: unknown } | null = null;
  return {
    seesResponse: !server.openPassthrough,

    async requestHeaders(endOfStream) {
      checkServerAccess(ctx, state, caller, server.name, null);
      await checkSession(ctx, state, caller, server);
      state.server = server.name;
      checkPostBody(ctx, state, endOfStream);
      return passthroughRequest(ctx, state, server);
    },

    async requestBody(body) {
      if (body.length > ctx.rc.maxBodyBytes) throw new GatewayError('GW_ERR_BODY_TOO_LARGE');
      const msg = parseMessage(body);
      state.message = msg;
      // The routing headers may choose Envoy's route (a long-lived subscriptions/listen): they must
      // say what the body says, and only a request or notification has a method to say.
      const mismatch =
        msg.kind === 'response'
          ? state.headers.get(MCP_METHOD_HEADER) === undefined
            ? null
            : 'Mcp-Method header on a message that is not a request'
          : routingHeaderMismatch(state.headers, msg.method, msg.params);
      if (mismatch !== null) throw new GatewayError('GW_ERR_HEADER_MISMATCH', `Header mismatch: ${mismatch}`);
      if (msg.kind !== 'request') return CONTINUE;
      if (msg.method === 'tools/call' && typeof msg.params?.['name'] === 'string') state.tool = msg.params['name'];
      filteredList = checkPolicy(ctx, state, caller, server, msg.method, msg.params);
      state.limitHeaders = await limitRequest(ctx, state, { server: server.name, tool: state.tool, method: msg.method });
      const params = state.tool === null || msg.params === undefined ? msg.params : await prepareToolCall(ctx, state, server.name, state.tool, msg.params);
      if (state.tool !== null && filtersResults(ctx, server.name, state.tool)) {
        const checked = ctx.validation.checksResults(server.name, state.tool);
        filteredResult = { tool: state.tool, outputSchema: checked ? await ctx.toolSchema(server.name, state.tool, 'outputSchema') : null };
      }
      return replaceBody(stringifyJson({ ...msg.raw, params: withTraceMeta(state, params) }));
    },

    async responseHeaders(headers) {
      const failure = envoyFailure(ctx, server, headers);
      if (failure !== null) throw failure;
      await bindSession(ctx, state, caller, server, headers);
      if (filteredResult !== null) return filterResult(ctx, state, server, filteredResult.tool, filteredResult.outputSchema, headers);
      return filteredList === null ? { decision: CONTINUE, body: null } : filterList(ctx, state, caller, server, filteredList, headers);
    },

    end() {},
  };
}

/**
 * Passthrough sessions are the upstream's own, but bound like gateway sessions (when auth is
 * configured): another identity's session, or one the gateway never saw created, is unknown.
 */
async function checkSession(ctx: PassthroughContext, state: RequestState, caller: Caller, server: RuntimeServer): Promise<void> {
  if (!ctx.guard.auth.enabled) return;
  const id = state.headers.get(SESSION_HEADER);
  if (id === undefined || id === '') return;
  const owner = await ctx.sessions.boundOwner('passthrough', server.name, id);
  if (owner === undefined) throw new GatewayError('GW_ERR_SESSION_UNKNOWN');
  checkSessionOwner(ctx, state, caller, owner, server.name);
}

/** A session an upstream just created on passthrough is bound to the caller that created it. */
async function bindSession(ctx: PassthroughContext, state: RequestState, caller: Caller, server: RuntimeServer, headers: Headers): Promise<void> {
  if (!ctx.guard.auth.enabled) return;
  const id = headers.get(SESSION_HEADER);
  if (id === undefined || id === '' || id === state.headers.get(SESSION_HEADER)) return;
  await ctx.sessions.bind('passthrough', server.name, id, sessionSubject(caller));
}

/**
 * Per-name policy on passthrough: names are the upstream's own, so checks run on them directly.
 * Returns the catalog kind of a list request whose response must be filtered.
 */
function checkPolicy(ctx: RequestContext, state: RequestState, caller: Caller, server: RuntimeServer, method: string, params: JsonObject | undefined): CatalogKind | null {
  if (!ctx.guard.filtersNames && !ctx.guard.auditing) return null;
  const listKind = LIST_KINDS.get(method);
  if (listKind !== undefined) return filtersLists(ctx) ? listKind : null;
  const name = params?.['name'];
  const uri = params?.['uri'];
  if ((method === 'tools/call' || method === 'prompts/get') && typeof name === 'string') {
    const tool = method === 'tools/call';
    const absent = (): GatewayError => new GatewayError(tool ? 'GW_ERR_TOOL_UNKNOWN' : 'GW_ERR_PROMPT_UNKNOWN', `${tool ? 'Unknown tool' : 'Unknown prompt'}: ${name}`);
    checkNameAccess(ctx, state, caller, tool ? 'tools' : 'prompts', server.name, name, absent);
  } else if (method.startsWith('resources/') && typeof uri === 'string') {
    checkNameAccess(ctx, state, caller, 'resources', server.name, uri, () => new GatewayError('GW_ERR_RESOURCE_UNKNOWN', `Resource not found: ${uri}`, { data: { uri } }));
  }
  return null;
}

/** Whether a tool's results on passthrough go through the filters (PII on results, the structuredContent check). */
function filtersResults(ctx: RequestContext, server: string, tool: string): boolean {
  return ctx.pii.for(server, tool, 'results') !== null || ctx.validation.checksResults(server, tool);
}

/**
 * A tool call's answer, through the same filters as on `/mcp` (each message whole, JSON or SSE,
 * whatever the chunks it came in). It fails closed: an answer too large to hold and scan whole
 * becomes a JSON-RPC error, never an unscanned result.
 */
function filterResult(ctx: RequestContext, state: RequestState, server: RuntimeServer, tool: string, outputSchema: unknown, headers: Headers): ResponseStep {
  const id = requestId(state);
  const scan = (data: string): string | null => {
    const msg = parseJsonObject(data);
    if (msg === null || msg['method'] !== undefined || idKey(msg['id']) !== idKey(id)) return null;
    return filterToolResult(ctx, state, server.name, tool, msg, () => outputSchema) ? stringifyJson(msg) : null;
  };
  const body = messageRewriter(headers.get('content-type') ?? '', scan, ctx.rc.maxBufferedResponseBytes, tooLarge(ctx, state, server, 'an answer'));
  return body === null ? { decision: CONTINUE, body: null } : { decision: rewriteResponseBody([]), body };
}

/** The error that replaces an upstream message too large to hold and check (`what`: a list, an answer). */
function tooLarge(ctx: RequestContext, state: RequestState, server: RuntimeServer, what: string): () => string {
  return () => {
    const e = ERROR_TABLE.GW_ERR_UPSTREAM_TOO_LARGE;
    state.status = 'error';
    state.errorCode = 'GW_ERR_UPSTREAM_TOO_LARGE';
    return errorBody(requestId(state), e.jsonrpc, `${e.message}: ${server.name} sent ${what} over ${ctx.rc.maxBufferedResponseBytes} bytes`);
  };
}

/**
 * A list response leaves out what the caller may not use. It fails closed: a response too large
 * to hold and check whole becomes a JSON-RPC error for the list request, never an unfiltered list.
 */
function filterList(ctx: RequestContext, state: RequestState, caller: Caller, server: RuntimeServer, kind: CatalogKind, headers: Headers): ResponseStep {
  const filter = (d: string): string | null => filterListMessage(ctx, caller, server.name, kind, d);
  const body = messageRewriter(headers.get('content-type') ?? '', filter, ctx.rc.maxBufferedResponseBytes, tooLarge(ctx, state, server, 'a list'));
  return body === null ? { decision: CONTINUE, body: null } : { decision: rewriteResponseBody([]), body };
}
