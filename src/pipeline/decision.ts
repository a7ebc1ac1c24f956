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
  readonly responseBodyMode?: 'NONE' | 'STREAMED';
  /** Dynamic metadata for Envoy's access log and later filters. */
  readonly metadata?: Readonly<Record<string, string>>;
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

/** What a phase handler tells the ext_proc layer to do. */
export type Decision = ContinueDecision | RespondDecision;

/** The pass-through decision, shared. */
export const CONTINUE: ContinueDecision = Object.freeze({ kind: 'continue' });
