import type { GatewayError } from '../errors/gateway-error.js';
import { errorBody, resultBody, type JsonRpcId } from '../jsonrpc/message.js';
import type { HeaderSet, RespondDecision } from './decision.js';

const JSON_CT: HeaderSet = { key: 'content-type', value: 'application/json' };

/** A JSON-RPC result answered by the gateway itself. */
export function respondResult(id: JsonRpcId, result: unknown, extra: readonly HeaderSet[] = [], details = 'mcpgw_answer'): RespondDecision {
  return { kind: 'respond', status: 200, headers: [JSON_CT, ...extra], body: resultBody(id, result), details };
}

/** 202 Accepted with no body (notifications and responses). */
export function respondAccepted(details = 'mcpgw_accepted'): RespondDecision {
  return { kind: 'respond', status: 202, headers: [], body: '', details };
}

/** A GatewayError rendered per the error table: its HTTP status and a JSON-RPC error body. */
export function respondError(err: GatewayError, id: JsonRpcId | null): RespondDecision {
  const headers: HeaderSet[] = [JSON_CT];
  for (const [key, value] of Object.entries(err.headers)) headers.push({ key, value });
  return {
    kind: 'respond',
    status: err.httpStatus,
    headers,
    body: errorBody(id, err.jsonrpcCode, err.message, err.data),
    details: err.code.toLowerCase(),
    errorCode: err.code,
  };
}
