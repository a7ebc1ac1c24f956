import type { RuntimeServer } from '../config/runtime.js';
import { GatewayError } from '../errors/gateway-error.js';
import { isObject, stringifyJson, type JsonObject, type JsonRpcId } from '../mcp/message.js';
import { inputCapabilities, MULTI_ROUND_TRIP, type ClientEnvelope } from '../mcp/modern.js';
import { respondResult } from '../request/decision.js';
import { requestId, type RequestState } from '../request/state.js';
import type { GatewaySession } from '../sessions/store.js';
import { UpstreamSessionGone } from '../upstream/client.js';
import { isHeldState, type HeldIdentity, type Leg } from '../upstream/held-calls.js';
import { callerOwner } from './bridge.js';
import type { AggregatedContext } from './context.js';
import { localAnswer } from './response.js';
import type { Routed } from './forwarded.js';

/**
 * A 2026-07-28 client's request to a session-based server, when that server may ask the client
 * something on the way (the client declares sampling, elicitation or roots) or when it is the
 * retry that answers such a question: the gateway makes the call itself and holds it
 * (upstream/held-calls.ts); the client gets the answer, or an `input_required` result.
 */

/** Whether the gateway holds this request's call rather than letting Envoy forward it. */
export function holdsCall(client: ClientEnvelope, requestMethod: string | null, params: JsonObject): boolean {
  if (requestMethod === null || !MULTI_ROUND_TRIP.has(requestMethod) || isObject(params['task'])) return false;
  return params['requestState'] !== undefined || inputCapabilities(client.capabilities) !== null;
}

/** Makes (or resumes) the call of `message` in `session`'s upstream session, and answers the client. */
export async function holdCall(
  ctx: AggregatedContext,
  state: RequestState,
  session: GatewaySession,
  server: RuntimeServer,
  message: JsonObject,
  requestMethod: string,
  client: ClientEnvelope,
): Promise<Routed> {
  // The retry's answers are the gateway's to deliver; the server never sees these fields.
  const { requestState, inputResponses, ...params } = isObject(message['params']) ? message['params'] : {};
  const named = params['name'] ?? params['uri'];
  const who: HeldIdentity = { owner: callerOwner(state, state.caller!), server: server.name, method: requestMethod, name: typeof named === 'string' ? named : '' };
  const timeoutMs = server.replayTimeoutMs;
  let leg: Leg;
  if (requestState !== undefined) {
    // A state that is not the gateway's cannot be meant for a session-based server.
    if (!isHeldState(requestState)) throw new GatewayError('GW_ERR_PARAMS_INVALID', 'Invalid params: requestState is unknown or has expired; send the request again without it');
    leg = await ctx.held.resume(requestState, who, isObject(inputResponses) ? inputResponses : undefined, timeoutMs);
  } else {
    const body = stringifyJson({ ...message, params });
    const upstreamId = message['id'] as JsonRpcId;
    let upstream = await ctx.upstreamSessions.get(session, server);
    try {
      leg = await ctx.held.start(who, server, upstream, body, upstreamId, timeoutMs);
    } catch (err) {
      if (!(err instanceof UpstreamSessionGone)) throw err;
      upstream = await ctx.upstreamSessions.renew(session, server, upstream);
      leg = await ctx.held.start(who, server, upstream, body, upstreamId, timeoutMs);
    }
  }
  const clientId = requestId(state)!;
  if (leg.kind === 'input') {
    const asked = { resultType: 'input_required', inputRequests: leg.inputRequests, requestState: leg.requestState };
    return { decision: respondResult(clientId, asked, [], 'mcpgw_input_required'), forwarded: null };
  }
  const fwd = {
    session,
    server,
    upstream: leg.upstream,
    body: '',
    requestMethod,
    inflightKey: null,
    createsTask: false,
    modern: { logLevel: client.logLevel ?? null, clientId, upstreamId: leg.upstreamId },
    fill: null,
  };
  return { decision: localAnswer(ctx, state, fwd, leg.data, 'mcpgw_held_call'), forwarded: null };
}
