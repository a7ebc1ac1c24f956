import { randomFillSync } from 'node:crypto';

/** A W3C trace context as the gateway carries it. */
export interface TraceContext {
  readonly traceId: string;
  /** The span id of the caller (the client's span, or ours when we started the trace). */
  readonly parentId: string;
  readonly flags: string;
  readonly tracestate: string | null;
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?$/;
const ZERO_TRACE = '0'.repeat(32);
const ZERO_SPAN = '0'.repeat(16);

// Ids come from a pool refilled in bulk: one getrandom() per 512 ids instead of one per id,
// which showed up in the processor's profile as a syscall on every request.
const pool = Buffer.alloc(8192);
let poolAt = pool.length;

function randomHex(bytes: number): string {
  if (poolAt + bytes > pool.length) {
    randomFillSync(pool);
    poolAt = 0;
  }
  const hex = pool.toString('hex', poolAt, poolAt + bytes);
  poolAt += bytes;
  return hex;
}

/**
 * Honours a valid `traceparent` (W3C Trace Context level 1; a future version is read for its
 * known fields as the spec asks), otherwise starts a new sampled trace.
 */
export function traceFrom(traceparent: string | undefined, tracestate: string | undefined): TraceContext {
  if (traceparent !== undefined) {
    const m = TRACEPARENT.exec(traceparent.trim().toLowerCase());
    if (m !== null && m[1] !== 'ff' && m[2] !== ZERO_TRACE && m[3] !== ZERO_SPAN && (m[1] !== '00' || traceparent.trim().length === 55)) {
      return { traceId: m[2]!, parentId: m[3]!, flags: m[4]!, tracestate: tracestate ?? null };
    }
  }
  return { traceId: randomHex(16), parentId: randomHex(8), flags: '01', tracestate: null };
}

/** The `traceparent` the gateway sends upstream: same trace, a new span for the gateway hop. */
export function childTraceparent(ctx: TraceContext): string {
  return `00-${ctx.traceId}-${randomHex(8)}-${ctx.flags}`;
}
