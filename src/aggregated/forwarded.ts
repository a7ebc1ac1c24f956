import type { CachePlan } from '../cache/answers.js';
import type { RuntimeServer } from '../config/runtime.js';
import type { JsonRpcId } from '../mcp/message.js';
import type { Decision } from '../request/decision.js';
import type { GatewaySession, UpstreamSession } from '../sessions/store.js';

/**
 * What the request phase of a message on the aggregated endpoint hands its response phases: the
 * decision, and for a message sent upstream, where it went and how its answer is to be shaped.
 */

/** A request the aggregated endpoint sent upstream: what its response phases need to know. */
export interface Forwarded {
  readonly session: GatewaySession;
  readonly server: RuntimeServer;
  readonly upstream: UpstreamSession;
  /** The body sent upstream (kept for the one replay after an upstream forgets its session). */
  readonly body: string;
  /** The JSON-RPC method of a forwarded request (null for notifications and client answers). */
  readonly requestMethod: string | null;
  /** A task-augmented call: the upstream answers with a task, bound to the caller before the client sees its id. */
  readonly createsTask: boolean;
  /** Entry in the in-flight map, released when the request ends. */
  readonly inflightKey: string | null;
  /** Set for a 2026-07-28 client's request: its answer takes that revision's shape. */
  readonly modern: ModernCall | null;
  /** Set when the answer is to be cached (a miss of the answer cache). */
  readonly fill: CacheFill | null;
}

/** Where a routed request's answer is kept, and what its server said about keeping it. */
export interface CacheFill {
  readonly plan: CachePlan;
  /** The server's Cache-Control header, once its answer's headers came. */
  cacheControl: string | null;
}

/** What the answer to a 2026-07-28 client's request needs to know of it. */
export interface ModernCall {
  /** The level the client asked log messages for (`_meta`); null: none are sent to it. */
  readonly logLevel: string | null;
  /** The client's request id, restored on the answer. */
  readonly clientId: JsonRpcId;
  /** The id the request carried upstream: unique, as callers share a bridge session. */
  readonly upstreamId: JsonRpcId;
}

/** The outcome of a message's request phase on the aggregated endpoint. */
export interface Routed {
  readonly decision: Decision;
  /** Set when the message goes upstream. */
  readonly forwarded: Forwarded | null;
}
