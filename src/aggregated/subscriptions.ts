import type { RuntimeServer } from '../config/runtime.js';
import { GatewayError } from '../errors/gateway-error.js';
import { isObject, type JsonObject, type JsonRpcId } from '../mcp/message.js';
import { MAX_RESOURCE_SUBSCRIPTIONS } from '../mcp/modern.js';
import { respondResult, type Decision } from '../request/decision.js';
import type { GatewaySession } from '../sessions/store.js';
import type { AggregatedContext } from './context.js';

/**
 * Resource subscriptions of session-based clients to servers of the sessionless revision (MCP
 * 2026-07-28), which have no `resources/subscribe`: their clients say what they want to hear on
 * each `subscriptions/listen`. The gateway answers such a client's subscribe and unsubscribe
 * itself and keeps what it subscribed to in its session (every replica sees it); the client's
 * standalone stream (server-stream.ts) then holds a listen of each such server, asking for exactly
 * those URIs, and carries their updates as the client's revision has them.
 */

const METHODS: ReadonlySet<string> = new Set(['resources/subscribe', 'resources/unsubscribe']);

/** Whether the gateway keeps this request (to a sessionless server) in the client's session. */
export function keepsSubscription(requestMethod: string): boolean {
  return METHODS.has(requestMethod);
}

/** Whether a server's capabilities offer resource subscriptions. */
export function offersSubscriptions(caps: JsonObject | null): boolean {
  const r = caps?.['resources'];
  return isObject(r) && r['subscribe'] === true;
}

/**
 * Subscribes the session's client to (or unsubscribes it from) a resource of a sessionless server:
 * `uri` is the server's own. A server that offers no subscriptions refuses as it would itself; a
 * session holds at most MAX_RESOURCE_SUBSCRIPTIONS of them.
 */
export async function keepSubscription(
  ctx: AggregatedContext,
  session: GatewaySession,
  server: RuntimeServer,
  requestMethod: string,
  id: JsonRpcId,
  params: JsonObject,
): Promise<Decision> {
  const uri = params['uri'] as string; // resolved (route.ts), so a string
  const subscribe = requestMethod === 'resources/subscribe';
  if (subscribe) {
    if (!offersSubscriptions(await ctx.catalog.capabilities(server))) {
      throw new GatewayError('GW_ERR_METHOD_UNKNOWN', `Method not found: ${server.name} offers no resource subscriptions`);
    }
    let held = 0;
    for (const uris of session.subscriptions.values()) held += uris.size;
    if (held >= MAX_RESOURCE_SUBSCRIPTIONS && session.subscriptions.get(server.name)?.has(uri) !== true) {
      throw new GatewayError('GW_ERR_PARAMS_INVALID', `Invalid params: a session holds at most ${MAX_RESOURCE_SUBSCRIPTIONS} resource subscriptions; unsubscribe from one first`);
    }
  }
  await ctx.sessions.setSubscribed(session, server.name, uri, subscribe);
  ctx.streams.subscriptionsChanged(session.id);
  return respondResult(id, {});
}
