import type { GatewayError } from '../errors/gateway-error.js';
import { errorBody, resultBody, type JsonRpcId } from '../mcp/message.js';

/** A header to set on the request or response. */
export interface HeaderSet {
  readonly key: string;
  readonly value: string;
}

/** Let the message continue, optionally changed. */
export interface ContinueDecision {
  readonly kind: 'continue';
  readonly setHeaders?: readonly HeaderSet[];
  readonly removeHeaders?: readonly string[];
  /** Replacement body (request: whole buffered body; response: this chunk). */
  readonly body?: Buffer;
  readonly clearRouteCache?: boolean;
  /** Response body mode for this request (only on header replies). */
  readonly responseBodyMode?: 'NONE' | 'STREAMED' | 'BUFFERED';
  /** Dynamic metadata for Envoy's access log and later filters. */
  readonly metadata?: Readonly<Record<string, string>>;
  /**
   * Route metadata (envoy/contract.ts ROUTE_METADATA_NAMESPACE): the upstream route and the
   * values of the headers the route sets, for a request decided at its body.
   */
  readonly routeMetadata?: Readonly<Record<string, string>>;
}

/** Answer locally: Envoy sends this response and never contacts (or stops reading) the upstream. */
export interface RespondDecision {
  readonly kind: 'respond';
  readonly status: number;
  readonly headers: readonly HeaderSet[];
  readonly body: string;
  readonly details: string;
  readonly metadata?: Readonly<Record<string, string>>;
  /** For the operation record: did this answer carry an error, and which. */
  readonly errorCode?: string | number;
}

/** Where a response the processor streams itself goes, chunk by chunk. */
export interface StreamSink {
  /** Sends one chunk to the client; false once the client is too far behind to take more. */
  write(chunk: string): boolean;
  /** Ends the response (the client sees a clean end of stream). */
  end(): void;
}

/** A response body the processor produces itself, for as long as it lasts. */
export interface LocalStream {
  /** Starts producing; called once, after the response headers went out. */
  start(sink: StreamSink): void;
  /** The client went away (or the request ended otherwise): stop and release everything. */
  close(): void;
}

/**
 * Answer locally with a response the processor streams (Envoy's streamed immediate response):
 * headers now, then the body as `body` produces it. Only for requests without a body.
 */
export interface StreamDecision {
  readonly kind: 'stream';
  readonly status: number;
  readonly headers: readonly HeaderSet[];
  readonly body: LocalStream;
  readonly metadata?: Readonly<Record<string, string>>;
}

/** The headers of an event stream the processor serves itself. */
export const EVENT_STREAM_HEADERS: readonly HeaderSet[] = [
  { key: 'content-type', value: 'text/event-stream' },
  { key: 'cache-control', value: 'no-cache' },
];

/** What a phase handler tells the ext_proc layer to do. */
export type Decision = ContinueDecision | RespondDecision | StreamDecision;

/** The pass-through decision, shared. */
export const CONTINUE: ContinueDecision = Object.freeze({ kind: 'continue' });

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

/**
 * Rewrites a response body chunk by chunk (SSE events or a whole JSON body). Returns the bytes
 * to send in place of each chunk.
 */
export interface BodyRewriter {
  push(chunk: Buffer, end: boolean): Buffer;
}

/** Decides on a whole response body, which Envoy holds back until then (BUFFERED). */
export type BodyDecider = (body: Buffer) => Promise<Decision>;

/** What the response-headers phase decided: the reply, and what handles the body if one follows. */
export interface ResponseStep {
  readonly decision: Decision;
  /** null: the response body passes untouched (the operation ends with the headers). */
  readonly body: BodyRewriter | BodyDecider | null;
}
