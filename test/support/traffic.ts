/**
 * Steady MCP traffic through Envoy while something fails underneath, with every answer recorded:
 * for failover tests that must show what clients saw, not only that things recovered.
 */
import { rawRequest } from './mcp-client.js';

/** One request's fate. */
export interface Outcome {
  /** When it was sent (ms since the epoch). */
  readonly at: number;
  /** How long until the answer (or the client gave up). */
  readonly ms: number;
  /** HTTP status; 0 when no HTTP answer came at all. */
  readonly status: number;
  /** The JSON-RPC error code, when the answer was one. */
  readonly rpcCode: number | null;
  readonly message: string;
}

/** Sends `body` on `session` from `workers` loops, a pause of `gapMs` between a loop's requests, until stopped. */
export class Traffic {
  readonly outcomes: Outcome[] = [];
  private running = true;
  private readonly loops: Promise<void>[];

  constructor(url: string, session: string, body: (i: number) => object, opts: { workers: number; gapMs: number; timeoutMs: number; headers?: Record<string, string> }) {
    let n = 0;
    this.loops = Array.from({ length: opts.workers }, async () => {
      while (this.running) {
        const at = Date.now();
        try {
          const r = await rawRequest(url, { headers: { ...opts.headers, 'mcp-session-id': session }, body: body(n++), timeoutMs: opts.timeoutMs });
          const err = (r.json as { error?: { code?: number; message?: string } } | undefined)?.error;
          this.outcomes.push({ at, ms: Date.now() - at, status: r.status, rpcCode: err?.code ?? null, message: err?.message ?? '' });
        } catch (e) {
          this.outcomes.push({ at, ms: Date.now() - at, status: 0, rpcCode: null, message: String(e) });
        }
        await new Promise((resolve) => setTimeout(resolve, opts.gapMs));
      }
    });
  }

  /** Outcomes sent at or after `t`. */
  since(t: number): Outcome[] {
    return this.outcomes.filter((o) => o.at >= t);
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }
}

/** Figures of a failover window: what clients saw from `from` on. */
export function summarize(outcomes: readonly Outcome[], from: number): Record<string, number> {
  const after = outcomes.filter((o) => o.at >= from);
  const errors = after.filter((o) => o.status !== 200 && o.status !== 429);
  const lastError = errors.reduce((a, o) => Math.max(a, o.at + o.ms), from);
  const recovered = after.find((o) => (o.status === 200 || o.status === 429) && o.at >= lastError);
  return {
    requests: after.length,
    errors: errors.length,
    error_window_ms: errors.length === 0 ? 0 : lastError - Math.min(...errors.map((o) => o.at)),
    recovered_after_ms: recovered === undefined ? -1 : recovered.at + recovered.ms - from,
    max_latency_ms: after.reduce((a, o) => Math.max(a, o.ms), 0),
  };
}
