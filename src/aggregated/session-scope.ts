import type { HeaderSet } from '../request/decision.js';
import { gatewaySessionHeader } from '../request/mutations.js';

/**
 * Session ids as each aggregated endpoint hands them out: `/mcp` the store's own id, a virtual
 * server `<scope>.<id>`. A session is only ever found on the endpoint that created it (the store's
 * ids are base64url: no `.`), so a virtual server's access rules cannot be stepped around with a
 * session made elsewhere.
 */
interface Scoped {
  readonly sessionScope: string | null;
}

/** The `Mcp-Session-Id` header for a session of this endpoint. */
export function sessionHeader(ctx: Scoped, storeId: string): HeaderSet {
  return gatewaySessionHeader(ctx.sessionScope === null ? storeId : `${ctx.sessionScope}.${storeId}`);
}

/** The store's id of a session id a client sent this endpoint; null when it is not one of this endpoint's. */
export function storeSessionId(ctx: Scoped, clientId: string): string | null {
  if (ctx.sessionScope === null) return clientId.includes('.') ? null : clientId;
  const prefix = `${ctx.sessionScope}.`;
  return clientId.startsWith(prefix) ? clientId.slice(prefix.length) : null;
}
