import { ERROR_TABLE, type GatewayErrorCode } from './codes.js';

/**
 * The only error a client may see. Anything else thrown on the request path is rendered as
 * `GW_ERR_INTERNAL` with a generic message; its details go to the log only.
 */
export class GatewayError extends Error {
  readonly code: GatewayErrorCode;
  /** Extra response headers (e.g. `Allow`, `WWW-Authenticate`). */
  readonly headers: Readonly<Record<string, string>>;
  /** Optional JSON-RPC `error.data`. */
  readonly data: unknown;

  constructor(
    code: GatewayErrorCode,
    message?: string,
    opts: { headers?: Record<string, string>; data?: unknown; cause?: unknown } = {},
  ) {
    super(message ?? ERROR_TABLE[code].message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'GatewayError';
    this.code = code;
    this.headers = opts.headers ?? {};
    this.data = opts.data;
  }

  get httpStatus(): number {
    return ERROR_TABLE[this.code].http;
  }

  get jsonrpcCode(): number {
    return ERROR_TABLE[this.code].jsonrpc;
  }
}

/** Normalises anything thrown into a client-safe GatewayError. */
export function toGatewayError(err: unknown): GatewayError {
  return err instanceof GatewayError ? err : new GatewayError('GW_ERR_INTERNAL', undefined, { cause: err });
}
