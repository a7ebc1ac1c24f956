import { randomBytes } from 'node:crypto';
import { GatewayError } from '../errors/gateway-error.js';

/**
 * An integer id beyond 2^53, kept as the exact text the peer sent: a JavaScript number would
 * change its last digits, and JSON-RPC answers must carry the id back unchanged.
 */
export class ExactId {
  constructor(readonly text: string) {}

  /** Serialises as a marker that {@link stringifyJson} turns back into the bare number. */
  toJSON(): string {
    return `${EXACT_MARK}${this.text}${EXACT_END}`;
  }
}

/** A JSON-RPC id as MCP allows it (no null for requests). */
export type JsonRpcId = string | number | ExactId;

// Per process and unguessable, so no text a client sends can pass for a marker.
const NONCE = randomBytes(6).toString('hex');
const EXACT_MARK = `\u0000${NONCE}:`;
const EXACT_END = '\u0000';
// The marker as it reads inside JSON text (JSON.stringify writes NUL as the escape \u0000).
const EXACT_PROBE = `\\u0000${NONCE}:`;
const EXACT_IN_JSON = new RegExp(`"\\\\u0000${NONCE}:([-+.0-9eE]+)\\\\u0000"`, 'g');

/**
 * Parses one JSON-RPC message's text. Where its `id` (or a cancellation's `params.requestId`) is
 * an integer too large for a JavaScript number, that value becomes an {@link ExactId} holding the
 * digits as sent (rare: the message is parsed a second time for it).
 */
export function parseJson(text: string): unknown {
  const value: unknown = JSON.parse(text);
  if (!isObject(value)) return value;
  const params = value['params'];
  if (isUnsafeInteger(value['id']) || (isObject(params) && isUnsafeInteger(params['requestId']))) return parseExactIds(text);
  return value;
}

/** A JSON object parsed as {@link parseJson} does, or null for anything else (invalid JSON included). */
export function parseJsonObject(text: string): JsonObject | null {
  let value: unknown;
  try {
    value = parseJson(text);
  } catch {
    return null;
  }
  return isObject(value) ? value : null;
}

function isUnsafeInteger(v: unknown): boolean {
  return typeof v === 'number' && Number.isInteger(v) && !Number.isSafeInteger(v);
}

function parseExactIds(text: string): unknown {
  const found: [JsonObject, string, string][] = [];
  const root: unknown = JSON.parse(text, function (this: JsonObject, key: string, v: unknown, ctx?: { source?: string }) {
    if ((key === 'id' || key === 'requestId') && isUnsafeInteger(v) && ctx?.source !== undefined) found.push([this, key, ctx.source]);
    return v;
  });
  if (!isObject(root)) return root;
  for (const [holder, key, source] of found) {
    if ((holder === root && key === 'id') || (holder === root['params'] && key === 'requestId')) holder[key] = new ExactId(source);
  }
  return root;
}

/**
 * Serialises a JSON-RPC message: {@link ExactId}s come out as the exact numbers they were. A
 * value nested too deeply to serialise is the sender's fault: an invalid request, not a crash.
 */
export function stringifyJson(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value);
  } catch (err) {
    if (err instanceof RangeError) throw new GatewayError('GW_ERR_INVALID_REQUEST', 'Invalid Request: nested too deeply');
    throw err;
  }
  return text.includes(EXACT_PROBE) ? text.replace(EXACT_IN_JSON, '$1') : text;
}

/** A key for an id that is the same for equal ids of any representation (in-flight maps). */
export function idKey(id: unknown): string {
  if (typeof id === 'number') return `n${id}`;
  if (id instanceof ExactId) return `n${id.text}`;
  return typeof id === 'string' ? `s${id}` : 'x';
}

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
    value = parseJson(typeof body === 'string' ? body : body.toString('utf8'));
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
  return typeof id === 'string' || (typeof id === 'number' && Number.isInteger(id)) || id instanceof ExactId;
}

/** Serialises a JSON-RPC result. */
export function resultBody(id: JsonRpcId | null, result: unknown): string {
  return stringifyJson({ jsonrpc: '2.0', id, result });
}

/** Serialises a JSON-RPC error. */
export function errorBody(id: JsonRpcId | null, code: number, message: string, data?: unknown): string {
  const error: JsonObject = { code, message };
  if (data !== undefined) error['data'] = data;
  return stringifyJson({ jsonrpc: '2.0', id, error });
}
