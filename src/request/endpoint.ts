import type { Decision, ResponseStep } from './decision.js';
import type { Headers } from './state.js';

/**
 * What an endpoint does with the phases of one admitted, authenticated HTTP request. The
 * exchange picks the endpoint once, at request headers, and calls it phase by phase; each phase
 * hands the next what it needs through the handler, never through the exchange.
 */
export interface EndpointHandler {
  /** Whether Envoy sends this request's response phases to the processor (when false, the operation ends with the request). */
  readonly seesResponse: boolean;
  requestHeaders(endOfStream: boolean): Promise<Decision>;
  requestBody(body: Buffer): Promise<Decision>;
  responseHeaders(headers: Headers): Promise<ResponseStep>;
  /** The operation ended (answered, finished or cut short): release what the request held. */
  end(): void;
}
