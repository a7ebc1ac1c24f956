/**
 * Thrown on the session path when the shared state store (Redis) cannot answer in time.
 *
 * Deliberately not a `GatewayError`: the state layer knows nothing of the error table. The request path maps it
 * to `GW_ERR_STATE_UNAVAILABLE` (HTTP 503, JSON-RPC -32000, `Retry-After: 1`).
 */
export class StateUnavailableError extends Error {
  /** The gateway error code the request path answers with. */
  readonly code = 'GW_ERR_STATE_UNAVAILABLE';

  constructor(what: string, opts: { cause?: unknown } = {}) {
    super(`shared state unavailable: ${what}`, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'StateUnavailableError';
  }
}
