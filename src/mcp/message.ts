import { GatewayError } from '../errors/gateway-error.js';

/** A JSON-RPC id as MCP allows it (no null for requests). */
export type JsonRpcId = string | number;

/** Plain JSON object. */
export type JsonObject = Record<string, unknown>;

/** One classified client→server (or server→client) JSON-RPC message. */
export type JsonRpcMessage =
  | { kind: 'request'; id: JsonRpcId; method: string; params: JsonObject | undefined; raw: JsonObject }
  | { kind: 'notification'; method: string; params: JsonObject | undefined; raw: JsonObject }
  | { kind: 'response'; id: JsonRpcId; raw: JsonObject };

/** Returns true for a plain (non-array) object. */
export function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Parses one body into one JSON-RPC message, validating only the envelope (never params: those
 * are the upstream's business). This is the single JSON parse a request body gets.
 */
export function parseMessage(body: Buffer | string): JsonRpcMessage {
  let value: unknown;
  try {
    value = JSON.parse(typeof body === 'string' ? body : body.toString('utf8'));
  } catch {
    throw new GatewayError('GW_ERR_PARSE');
  }
  return classify(value);
}

/** Classifies an already-parsed value as a JSON-RPC message or throws GW_ERR_INVALID_REQUEST. */
export function classify(value: unknown): JsonRpcMessage {
  if (Array.isArray(value)) {
    throw new GatewayError('GW_ERR_INVALID_REQUEST', 'Invalid Request: batch arrays are not supported');
  }
  if (!isObject(value) || value['jsonrpc'] !== '2.0') {
    throw new GatewayError('GW_ERR_INVALID_REQUEST', 'Invalid Request: expected a JSON-RPC 2.0 object');
  }
  const { id, method, params } = value;
  const hasId = id !== undefined;
  if (hasId && !isValidId(id)) {
    throw new GatewayError('GW_ERR_INVALID_REQUEST', 'Invalid Request: id must be a string or an integer');
  }
  if (method !== undefined) {
    if (typeof method !== 'string' || method.length === 0) {
      throw new GatewayError('GW_ERR_INVALID_REQUEST', 'Invalid Request: method must be a non-empty string');
    }
    if (params !== undefined && !isObject(params)) {
      throw new GatewayError('GW_ERR_INVALID_REQUEST', 'Invalid Request: params must be an object');
    }
    return hasId
      ? { kind: 'request', id: id as JsonRpcId, method, params: params as JsonObject | undefined, raw: value }
      : { kind: 'notification', method, params: params as JsonObject | undefined, raw: value };
  }
  if (hasId && ('result' in value ? !('error' in value) : isObject(value['error']))) {
    return { kind: 'response', id: id as JsonRpcId, raw: value };
  }
  throw new GatewayError('GW_ERR_INVALID_REQUEST', 'Invalid Request: neither a request, a notification nor a response');
}

function isValidId(id: unknown): id is JsonRpcId {
  return typeof id === 'string' || (typeof id === 'number' && Number.isInteger(id));
}

/** Serialises a JSON-RPC result. */
export function resultBody(id: JsonRpcId | null, result: unknown): string {
  return JSON.stringify({ jsonrpc: '2.0', id, result });
}

/** Serialises a JSON-RPC error. */
export function errorBody(id: JsonRpcId | null, code: number, message: string, data?: unknown): string {
  const error: JsonObject = { code, message };
  if (data !== undefined) error['data'] = data;
  return JSON.stringify({ jsonrpc: '2.0', id, error });
}
