import { GatewayError } from '../errors/gateway-error.js';
import { isObject, type JsonObject, type JsonRpcId, type JsonRpcMessage } from '../mcp/message.js';
import { ANONYMOUS_CLIENT_INFO, META, MODERN_PROTOCOL_VERSIONS, readEnvelope, type Envelope } from '../mcp/modern.js';
import { GATEWAY_INFO, LIST_KINDS, SUPPORTED_PROTOCOL_VERSIONS } from '../mcp/protocol.js';
import { respondAccepted, respondResult, type RespondDecision, type StreamDecision } from '../request/decision.js';
import { limitRequest } from '../request/limit.js';
import type { RequestState } from '../request/state.js';
import { listResult, serversOffer } from './answers.js';
import type { AggregatedContext } from './context.js';
import { openListen } from './listen.js';
import type { Routed } from './forwarded.js';
import { routeRequest } from './route.js';

/**
 * The aggregated endpoint for MCP 2026-07-28: no session, no handshake. Each request carries its
 * revision, its client's capabilities and its routing headers, all checked first; the gateway
 * answers `server/discover` and the merged lists itself and routes the rest to the server that
 * owns what it names, through the caller's bridge session (bridge.ts) to servers that still speak
 * a session-based revision. Results carry `resultType`; the cacheable ones `cacheScope:
 * "private"` (each caller's lists are filtered by its own policy) and a `ttlMs` no longer than
 * every server's cache hint allows (0 when a server gave none).
 */

/** Requests sent through bridge sessions by this replica (the ids they carry upstream). */
let bridgeRequests = 0;

/** Requests a 2026-07-28 client may route to a server. */
const ROUTED: ReadonlySet<string> = new Set(['tools/call', 'prompts/get', 'resources/read', 'completion/complete']);

/** A method the gateway answers itself for a 2026-07-28 client. */
type ModernAnswer = (ctx: AggregatedContext, state: RequestState, envelope: Envelope, id: JsonRpcId, params: JsonObject) => Promise<RespondDecision | StreamDecision>;

/** Not cached across callers: what a caller sees depends on its policy. */
const PRIVATE_NOW = { ttlMs: 0, cacheScope: 'private' } as const;
/** Never shared between callers (each caller's lists follow its policy); kept as long as every server allows. */
const PRIVATE = { cacheScope: 'private' } as const;

function modernResult(id: JsonRpcId, result: JsonObject): RespondDecision {
  return respondResult(id, { resultType: 'complete', ...result, _meta: { [META.serverInfo]: GATEWAY_INFO } });
}

const discover: ModernAnswer = async (ctx, state, _envelope, id) => {
  const offer = await serversOffer(ctx, state.caller!);
  return modernResult(id, {
    supportedVersions: [...MODERN_PROTOCOL_VERSIONS, ...SUPPORTED_PROTOCOL_VERSIONS],
    capabilities: modernCapabilities(offer.capabilities),
    ...offer.instructions,
    ...PRIVATE_NOW,
  });
};

const ANSWERS: ReadonlyMap<string, ModernAnswer> = new Map<string, ModernAnswer>([
  ['server/discover', discover],
  ['subscriptions/listen', openListen],
  ...[...LIST_KINDS].map(
    ([method, kind]) =>
      [
        method,
        (async (ctx, state, envelope, id, params) => {
          const session = await ctx.bridge.current(state, state.caller!, envelope);
          const freshness = { ttlMs: 0 };
          const result = await listResult(ctx, state, session, kind, params['cursor'], freshness);
          return modernResult(id, { ...result, ttlMs: freshness.ttlMs, ...PRIVATE });
        }) satisfies ModernAnswer,
      ] as const,
  ),
]);

/** The router for 2026-07-28 requests on /mcp. */
export async function routeStateless(ctx: AggregatedContext, state: RequestState, msg: JsonRpcMessage): Promise<Routed> {
  // Over HTTP a 2026-07-28 client sends no notifications (closing a stream cancels) and answers
  // no requests (input arrives with a retried request): what comes is accepted and dropped.
  if (msg.kind !== 'request') return { decision: respondAccepted(), forwarded: null };
  const params = msg.params ?? {};
  const envelope = readEnvelope(state.headers, msg.method, params);
  if (ROUTED.has(msg.method)) {
    // Every caller's requests share its bridge session: ids that clients choose freely (and
    // reuse) would collide upstream, so each request goes out with one of the gateway's.
    const upstreamId = `mcpgw-bridge-${++bridgeRequests}`;
    // A server of this revision is told about the client itself, not the bridge session.
    state.modernClient = { capabilities: envelope.capabilities, clientInfo: envelope.clientInfo ?? ANONYMOUS_CLIENT_INFO, logLevel: envelope.logLevel };
    const modern = { logLevel: envelope.logLevel, clientId: msg.id, upstreamId };
    try {
      return await routeRequest(ctx, state, ctx.bridge.current(state, state.caller!, envelope), inSessionRevision(msg, upstreamId), modern);
    } catch (err) {
      // This revision names a missing resource with -32602 (-32002 is retired).
      if (err instanceof GatewayError && err.code === 'GW_ERR_RESOURCE_UNKNOWN') throw new GatewayError('GW_ERR_PARAMS_INVALID', err.message, { data: err.data });
      throw err;
    }
  }
  state.limitHeaders = await limitRequest(ctx, state, { server: null, tool: null, method: msg.method });
  const answer = ANSWERS.get(msg.method);
  // initialize, ping, logging/setLevel, resources/subscribe and the rest are not of this revision.
  if (answer === undefined) throw new GatewayError('GW_ERR_METHOD_NOT_FOUND', `Method not found: ${msg.method}`);
  return { decision: await answer(ctx, state, envelope, msg.id, params), forwarded: null };
}

/**
 * A 2026-07-28 request as the bridge session sends it: with the gateway's id, and without the
 * per-request envelope in `_meta` (the upstream session carries revision and client), so a server
 * that speaks both eras reads it as the session-based request it is.
 */
function inSessionRevision(msg: Extract<JsonRpcMessage, { kind: 'request' }>, upstreamId: string): Extract<JsonRpcMessage, { kind: 'request' }> {
  const params: JsonObject = { ...msg.params };
  const meta = params['_meta'];
  if (isObject(meta)) {
    const rest: JsonObject = {};
    for (const [k, v] of Object.entries(meta)) if (!ENVELOPE_KEYS.has(k)) rest[k] = v;
    if (Object.keys(rest).length > 0) params['_meta'] = rest;
    else delete params['_meta'];
  }
  return { ...msg, params, raw: { ...msg.raw, id: upstreamId, params } };
}

const ENVELOPE_KEYS: ReadonlySet<string> = new Set([META.protocolVersion, META.clientCapabilities, META.clientInfo, META.logLevel]);

/**
 * The capabilities a 2026-07-28 client is offered: what the servers offer that reaches it today.
 * List changes and resource subscriptions reach it on `subscriptions/listen` (listen.ts); logging
 * and tasks are not carried to it yet.
 */
function modernCapabilities(legacy: JsonObject): JsonObject {
  const out: JsonObject = {};
  for (const kind of ['tools', 'prompts', 'resources'] as const) {
    const offered = legacy[kind];
    if (!isObject(offered)) continue;
    const mine: JsonObject = {};
    if (offered['listChanged'] === true) mine['listChanged'] = true;
    if (kind === 'resources' && offered['subscribe'] === true) mine['subscribe'] = true;
    out[kind] = mine;
  }
  if (isObject(legacy['completions'])) out['completions'] = {};
  return out;
}
