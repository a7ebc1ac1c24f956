import { GatewayError } from '../errors/gateway-error.js';
import type { JsonRpcMessage } from '../mcp/message.js';
import { limitRequest } from '../request/limit.js';
import type { RequestState } from '../request/state.js';
import { ANSWERS, clientResponse, initialize, notification, requireSession } from './answers.js';
import type { AggregatedContext } from './context.js';
import type { Routed } from './forwarded.js';
import { isRouted, routeRequest } from './route.js';

/**
 * The aggregated endpoint for the session-based MCP revisions (2024-11-05 to 2025-11-25):
 * `initialize` opens a gateway session; every other message needs one, and is answered by the
 * gateway, routed to the server that owns what it names, or delivered where it belongs.
 */
export async function routeInSession(ctx: AggregatedContext, state: RequestState, msg: JsonRpcMessage): Promise<Routed> {
  if (msg.kind === 'request' && msg.method === 'initialize') {
    state.limitHeaders = await limitRequest(ctx, state, { server: null, tool: null, method: msg.method });
    return { decision: await initialize(ctx, state, state.caller!, msg.id, msg.params), forwarded: null };
  }
  if (msg.kind === 'request' && isRouted(msg.method)) return routeRequest(ctx, state, requireSession(ctx, state), msg);
  const session = await requireSession(ctx, state);
  switch (msg.kind) {
    case 'request': {
      // Gateway-answered methods are limited too: a client looping on tools/list must not escape.
      state.limitHeaders = await limitRequest(ctx, state, { server: null, tool: null, method: msg.method });
      const answer = ANSWERS.get(msg.method);
      if (answer === undefined) throw new GatewayError('GW_ERR_METHOD_UNKNOWN', `Method not found: ${msg.method}`);
      return { decision: await answer(ctx, state, session, msg.id, msg.params ?? {}), forwarded: null };
    }
    case 'notification':
      return notification(ctx, state, session, msg.method, msg.params, msg.raw);
    case 'response':
      return clientResponse(ctx, state, session, msg.id, msg.raw);
  }
}
