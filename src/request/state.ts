import type { Identity } from '../auth/identity.js';
import type { JsonRpcId, JsonRpcMessage } from '../mcp/message.js';
import type { ClientEnvelope } from '../mcp/modern.js';
import type { OperationStatus } from '../observability/operations.js';
import type { TraceContext } from '../observability/trace.js';
import type { AuditRecord } from '../policy/audit.js';
import type { Tenant } from '../policy/tenants.js';
import type { HeaderSet } from './decision.js';

/** Header map as Envoy sent it (lower-case names, pseudo-headers included). */
export type Headers = ReadonlyMap<string, string>;

/** The two MCP endpoints on the client listener. */
export type Endpoint = 'aggregated' | 'passthrough';

/** Who is calling: set once, when the request is admitted. */
export interface Caller {
  readonly identity: Identity;
  readonly tenant: Tenant;
}

/**
 * Everything known about one HTTP request as it passes through the gateway. The exchange owns it;
 * stages read what they need and return what they found, and the exchange or the endpoint writes
 * it here for the stages that come later (the response phases, the operation record).
 */
export interface RequestState {
  readonly startedAt: number;
  /** Request headers as Envoy sent them. */
  readonly headers: Headers;
  /** HTTP method. */
  readonly method: string;
  readonly trace: TraceContext;
  endpoint: Endpoint | null;
  /** null until authentication ran (and on requests refused before it). */
  caller: Caller | null;
  /** The JSON-RPC message of a POST, once parsed. */
  message: JsonRpcMessage | null;
  /** Size of the request body, when there was one. */
  requestBytes: number | null;
  /** Server the request went to, or was about to (operation record, access log, audit). */
  server: string | null;
  /** Tool name as the upstream knows it (tools/call only). */
  tool: string | null;
  /** The tool was found in a catalog when the call was routed (a bounded metric label). */
  toolKnown: boolean;
  /** The `traceparent` upstreams get (a child span of `trace`), made on first use. */
  upstreamTraceparent: string | null;
  /** `RateLimit-*` headers of an allowed request: the exchange puts them on its response. */
  limitHeaders: readonly HeaderSet[] | null;
  /** The access decision that let the request through, written on its operation line. */
  allowed: AuditRecord | null;
  /** An access decision refused the request (it has its own audit line). */
  refused: boolean;
  /** What the filters did to the request (`<filter>:<action>`), for its operation line; null: nothing. */
  filters: string[] | null;
  /** What the answer cache did (hit, miss, or filled with the server's answer); null: not cached. */
  cache: 'hit' | 'miss' | 'filled' | null;
  /** How the operation ended, for the record. */
  status: OperationStatus;
  errorCode: string | number | null;
  httpStatus: number | null;
  /**
   * Envoy takes a response the processor streams itself for this request (its body mode lets
   * a streamed immediate response through).
   */
  canStream: boolean;
  /**
   * A 2026-07-28 request's own client (capabilities, info, log level): what a server of that
   * revision is told instead of what the bridge session holds.
   */
  modernClient: ClientEnvelope | null;
}

/** A fresh state for a request that just arrived. */
export function newRequestState(headers: Headers, trace: TraceContext, startedAt: number): RequestState {
  return {
    startedAt,
    headers,
    method: headers.get(':method') ?? 'GET',
    trace,
    endpoint: null,
    caller: null,
    message: null,
    requestBytes: null,
    server: null,
    tool: null,
    toolKnown: false,
    upstreamTraceparent: null,
    limitHeaders: null,
    allowed: null,
    refused: false,
    filters: null,
    cache: null,
    status: 'success',
    errorCode: null,
    httpStatus: null,
    canStream: false,
    modernClient: null,
  };
}

/** JSON-RPC id of the message, for error bodies (null for notifications and before parsing). */
export function requestId(state: RequestState): JsonRpcId | null {
  const msg = state.message;
  return msg !== null && msg.kind !== 'notification' ? msg.id : null;
}

/** The JSON-RPC method (`response` for a client's answer), or null before parsing. */
export function rpcMethod(state: RequestState): string | null {
  const msg = state.message;
  return msg === null ? null : msg.kind === 'response' ? 'response' : msg.method;
}
