/**
 * Names that Envoy's generated configuration and the processor both rely on. Changing one here
 * changes both sides together.
 */

/** Prefix shared by every header the gateway owns. */
export const HEADER_PREFIX = 'x-mcpgw-';

/**
 * Set by the processor to pick an upstream; Envoy's routes match on it. Envoy removes any
 * client-sent copy before the processor sees the request, and the processor never trusts one.
 */
export const BACKEND_HEADER = `${HEADER_PREFIX}backend`;

/** Namespace of the dynamic metadata the processor writes (Envoy's access log reads it). */
export const METADATA_NAMESPACE = 'mcp.gateway';

/** How long Envoy waits on the processor per ext_proc message: one rule, read by both sides. */
export interface ExtProcTimeouts {
  /** Envoy's `message_timeout`: the ordinary work for one message. */
  readonly messageMs: number;
  /** Envoy's `max_message_timeout`: the most the processor may ask for on one message. */
  readonly maxMessageMs: number;
  /** When the processor, still working on a message, asks Envoy for more time. */
  readonly extendAfterMs: number;
  /** How much more it asks for (`override_message_timeout`; the timer restarts then). */
  readonly extendToMs: number;
  /** When the processor stops waiting and answers with a timeout error itself, before Envoy would. */
  readonly deadlineMs: number;
}

/**
 * The ext_proc timeouts for a config. The slowest message is one that opens a new upstream
 * session (initialize, notifications/initialized, logging/setLevel: three calls of up to
 * `upstreamTimeoutMs`) after a cold catalog fetch, or one that opens a new session and replays a
 * request with the server's own timeout after the upstream lost the old one.
 */
export function extProcTimeouts(upstreamTimeoutMs: number, longestReplayMs: number): ExtProcTimeouts {
  const messageMs = upstreamTimeoutMs + 5000;
  const maxMessageMs = 6 * upstreamTimeoutMs + Math.max(longestReplayMs, upstreamTimeoutMs) + 10_000;
  const extendAfterMs = messageMs - 1000;
  return { messageMs, maxMessageMs, extendAfterMs, extendToMs: maxMessageMs - extendAfterMs, deadlineMs: maxMessageMs - 2000 };
}
