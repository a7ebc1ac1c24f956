import { GatewayError } from '../errors/gateway-error.js';
import { MCP_METHOD_HEADER, PROTOCOL_VERSION_HEADER } from '../mcp/headers.js';
import { parseMessage } from '../mcp/message.js';
import { isModernVersion } from '../mcp/modern.js';
import { isSupportedVersion } from '../mcp/protocol.js';
import { acceptsMcp, checkPostBody } from '../request/admit.js';
import type { EndpointHandler } from '../request/endpoint.js';
import { ADMITTED } from '../request/mutations.js';
import type { RequestState } from '../request/state.js';
import { deleteSession, openServerStream } from './answers.js';
import type { AggregatedContext } from './context.js';
import { aggregatedResponse } from './response.js';
import type { Forwarded } from './forwarded.js';
import { routerFor } from './router.js';

const ALLOW = { allow: 'GET, POST, DELETE' };

/** The GET stream's version header (a POST's is checked with its body, see router.ts). */
function checkVersion(state: RequestState): void {
  const version = state.headers.get(PROTOCOL_VERSION_HEADER);
  if (version !== undefined && !isSupportedVersion(version)) {
    throw new GatewayError('GW_ERR_PROTOCOL_VERSION_UNSUPPORTED', `Unsupported MCP-Protocol-Version: ${version}`);
  }
}

/**
 * `/mcp`: every configured server behind one MCP endpoint, with the gateway's own sessions,
 * merged lists and prefixed names.
 */
export function aggregatedEndpoint(ctx: AggregatedContext, state: RequestState): EndpointHandler {
  /** What the request phase sent upstream, for the response phases. */
  let forwarded: Forwarded | null = null;
  return {
    seesResponse: true,

    async requestHeaders(endOfStream) {
      checkPostBody(ctx, state, endOfStream);
      // 2026-07-28 has no server→client stream and no session to delete.
      if (state.method !== 'POST' && isModernVersion(state.headers.get(PROTOCOL_VERSION_HEADER))) throw new GatewayError('GW_ERR_HTTP_METHOD_NOT_ALLOWED', undefined, { headers: { allow: 'POST' } });
      switch (state.method) {
        case 'POST':
          break;
        case 'DELETE':
          return deleteSession(ctx, state);
        case 'GET':
          // An Envoy whose route for GET /mcp sends request bodies cannot take a streamed
          // response: there the stream is not offered, as the spec allows.
          if (!state.canStream) throw new GatewayError('GW_ERR_HTTP_METHOD_NOT_ALLOWED', undefined, { headers: { allow: 'POST, DELETE' } });
          checkVersion(state);
          return openServerStream(ctx, state);
        default:
          throw new GatewayError('GW_ERR_HTTP_METHOD_NOT_ALLOWED', undefined, { headers: ALLOW });
      }
      const h = state.headers;
      if (!acceptsMcp(h.get('accept') ?? '')) throw new GatewayError('GW_ERR_HTTP_NOT_ACCEPTABLE');
      if (!/^application\/json\s*(;|$)/i.test(h.get('content-type') ?? '')) throw new GatewayError('GW_ERR_HTTP_UNSUPPORTED_MEDIA_TYPE');
      return ADMITTED;
    },

    async requestBody(body) {
      if (body.length > ctx.rc.maxBodyBytes) throw new GatewayError('GW_ERR_BODY_TOO_LARGE');
      const msg = parseMessage(body);
      state.message = msg;
      // A POST held for a streamed answer came on the listen route (its Mcp-Method header said
      // subscriptions/listen): that route leads nowhere upstream, so nothing else may pass it.
      if (state.canStream && !(msg.kind === 'request' && msg.method === 'subscriptions/listen')) {
        throw new GatewayError('GW_ERR_HEADER_MISMATCH', 'Header mismatch: Mcp-Method is not the body\'s method', { data: { mismatch: { header: MCP_METHOD_HEADER } } });
      }
      const routed = await routerFor(state, msg)(ctx, state, msg);
      forwarded = routed.forwarded;
      return routed.decision;
    },

    responseHeaders(headers) {
      return aggregatedResponse(ctx, state, forwarded, headers);
    },

    end() {
      if (forwarded?.inflightKey != null) ctx.inflight.delete(forwarded.inflightKey);
    },
  };
}
