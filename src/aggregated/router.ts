import type { JsonRpcMessage } from '../mcp/message.js';
import type { RequestState } from '../request/state.js';
import type { AggregatedContext } from './context.js';
import type { Routed } from './forwarded.js';
import { GatewayError } from '../errors/gateway-error.js';
import { PROTOCOL_VERSION_HEADER } from '../mcp/headers.js';
import { claimsModern, isModernVersion, mayBeModern } from '../mcp/modern.js';
import { routeInSession } from './session-router.js';
import { routeStateless } from './stateless-router.js';

/**
 * How one MCP revision family handles a message on the aggregated endpoint. Revisions that
 * change the message flow itself (sessions, handshakes) get a router of their own beside the
 * others; the endpoint picks one per request.
 */
export type AggregatedRouter = (ctx: AggregatedContext, state: RequestState, msg: JsonRpcMessage) => Promise<Routed>;

/**
 * The router for a message: 2026-07-28 and later are sessionless, the revisions before
 * session-based. A version header naming a modern revision makes a modern request; one naming a
 * revision the gateway does not know does when the body claims a revision too (the modern router
 * then answers with the revision's errors); otherwise it is a session-based client naming a
 * revision the gateway does not speak.
 */
export function routerFor(state: RequestState, msg: JsonRpcMessage): AggregatedRouter {
  if (!mayBeModern(state.headers)) return routeInSession;
  if (isModernVersion(state.headers.get(PROTOCOL_VERSION_HEADER)) || (msg.kind !== 'response' && claimsModern(msg.params))) return routeStateless;
  throw new GatewayError('GW_ERR_PROTOCOL_VERSION_UNSUPPORTED', `Unsupported MCP-Protocol-Version: ${state.headers.get(PROTOCOL_VERSION_HEADER)}`);
}
