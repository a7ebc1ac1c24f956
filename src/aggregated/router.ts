import type { JsonRpcMessage } from '../mcp/message.js';
import type { RequestState } from '../request/state.js';
import type { AggregatedContext } from './context.js';
import type { Routed } from './route.js';
import { routeInSession } from './session-router.js';

/**
 * How one MCP revision family handles a message on the aggregated endpoint. Revisions that
 * change the message flow itself (sessions, handshakes) get a router of their own beside the
 * others; the endpoint picks one per request.
 */
export type AggregatedRouter = (ctx: AggregatedContext, state: RequestState, msg: JsonRpcMessage) => Promise<Routed>;

/** The router for a request. Every revision the gateway speaks today is session-based. */
export function routerFor(_state: RequestState): AggregatedRouter {
  return routeInSession;
}
