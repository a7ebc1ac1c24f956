/**
 * A small closed-loop MCP load generator on `node:http`.
 *
 * Each worker is one MCP client session: `initialize` (reads `mcp-session-id`), then
 * `notifications/initialized`, then `tools/call` in a loop, one request in flight at a time, over
 * a keep-alive Agent shared by the target's workers (maxSockets = concurrency, so every worker
 * effectively keeps its own connection). Every response body is read to the end and checked for
 * the expected echo text; anything else counts as an error. Latency is taken with
 * `process.hrtime.bigint()` from just before the request is issued to the end of the body.
 *
 * The same code drives every target, so whatever it costs is the same for all rows. A target may
 * add headers of its own (credentials, per worker), which then go on every request of the worker.
 */
import { Agent, request, type IncomingHttpHeaders } from 'node:http';

export const PROTOCOL_VERSION = '2025-11-25';
const REQUEST_TIMEOUT_MS = 30_000;

export interface TargetSpec {
  /** Short key: a … h. */
  readonly key: string;
  readonly label: string;
  /** Full endpoint URL, e.g. http://127.0.0.1:8080/mcp. */
  readonly url: string;
  /** Tool name to call on this endpoint (`echo` or `alpha__echo`). */
  readonly tool: string;
  /** What the echo result starts with (`alpha: `). */
  readonly expectPrefix: string;
  /**
   * Instead of `tools/call`, ask for `tools/list` and expect a tool of this name in the answer
   * (the aggregated list the gateway serves from its catalog).
   */
  readonly listExpects?: string;
  /**
   * Extra headers a worker sends on every request (e.g. `authorization`), by worker index; called
   * once per worker when the worker is created.
   */
  readonly headersFor?: (worker: number) => Readonly<Record<string, string>>;
  /** Every call of a worker sends the same arguments (so an answer cache serves all but its first). */
  readonly sameArguments?: boolean;
}

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** Latencies (ms) and counts of one measured phase. */
export interface PhaseResult {
  readonly latenciesMs: Float64Array;
  readonly ok: number;
  readonly errors: number;
  readonly elapsedMs: number;
  /** First few distinct error descriptions, for the report. */
  readonly errorSamples: string[];
}

const BASE_HEADERS = {
  'content-type': 'application/json',
  accept: 'application/json, text/event-stream',
} as const;

function describe(reply: Reply): string {
  const body = reply.body.length > 160 ? `${reply.body.slice(0, 160)}…` : reply.body;
  return `HTTP ${reply.status}: ${body.replace(/\s+/g, ' ')}`;
}

class Worker {
  private sessionId = '';
  private nextId = 1;
  /** BASE_HEADERS plus the target's per-worker headers (credentials). */
  private readonly baseHeaders: Readonly<Record<string, string>>;
  private readonly hostname: string;
  private readonly port: number;
  private readonly path: string;
  /** Prefix of the `tools/call` body up to the id; the rest is appended per call. */
  private readonly callPrefix = '{"jsonrpc":"2.0","method":"tools/call","params":{"name":';

  constructor(
    private readonly target: TargetSpec,
    private readonly agent: Agent,
    private readonly index: number,
  ) {
    const u = new URL(target.url);
    this.hostname = u.hostname;
    this.port = Number(u.port || 80);
    this.path = u.pathname + u.search;
    this.baseHeaders = { ...BASE_HEADERS, ...target.headersFor?.(index) };
  }

  private post(body: string, headers: Record<string, string>): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const req = request(
        {
          agent: this.agent,
          hostname: this.hostname,
          port: this.port,
          path: this.path,
          method: 'POST',
          headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
        },
        (res) => {
          res.setEncoding('utf8');
          let text = '';
          res.on('data', (chunk: string) => {
            text += chunk;
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`)));
      req.end(body);
    });
  }

  /** initialize + notifications/initialized; throws with a description when the target refuses. */
  async open(): Promise<void> {
    const init = await this.post(
      JSON.stringify({
        jsonrpc: '2.0',
        id: 0,
        method: 'initialize',
        params: { protocolVersion: PROTOCOL_VERSION, capabilities: {}, clientInfo: { name: 'mcp-gateway-bench', version: '1.0.0' } },
      }),
      this.baseHeaders,
    );
    const sid = init.headers['mcp-session-id'];
    if (init.status !== 200 || typeof sid !== 'string' || sid === '') {
      throw new Error(`initialize on ${this.target.url} failed: ${describe(init)}`);
    }
    this.sessionId = sid;
    const note = await this.post(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }), this.sessionHeaders());
    if (note.status !== 202 && note.status !== 200) {
      throw new Error(`notifications/initialized on ${this.target.url} failed: ${describe(note)}`);
    }
  }

  private sessionHeaders(): Record<string, string> {
    return { ...this.baseHeaders, 'mcp-session-id': this.sessionId, 'mcp-protocol-version': PROTOCOL_VERSION };
  }

  /** One tools/call (or tools/list); resolves with null on success or an error description. */
  async call(): Promise<string | null> {
    const id = this.nextId++;
    if (this.target.listExpects !== undefined) return this.list(id, this.target.listExpects);
    const text = this.target.sameArguments === true ? `w${this.index}` : `w${this.index}-${id}`;
    const body = `${this.callPrefix}${JSON.stringify(this.target.tool)},"arguments":{"text":"${text}"}},"id":${id}}`;
    let reply: Reply;
    try {
      reply = await this.post(body, this.sessionHeaders());
    } catch (err) {
      return (err as Error).message;
    }
    if (reply.status !== 200) return describe(reply);
    if (!reply.body.includes(`${this.target.expectPrefix}${text}"`)) return `unexpected body: ${describe(reply)}`;
    if (reply.body.includes('"isError":true')) return `tool error: ${describe(reply)}`;
    return null;
  }

  private async list(id: number, name: string): Promise<string | null> {
    let reply: Reply;
    try {
      reply = await this.post(`{"jsonrpc":"2.0","method":"tools/list","id":${id}}`, this.sessionHeaders());
    } catch (err) {
      return (err as Error).message;
    }
    if (reply.status !== 200) return describe(reply);
    if (!reply.body.includes(`"id":${id}`) || !reply.body.includes(`"name":${JSON.stringify(name)}`)) return `unexpected body: ${describe(reply)}`;
    return null;
  }
}

/** One target's client side: its keep-alive Agent and `concurrency` initialised workers. */
export class TargetClient {
  private readonly agent: Agent;
  private workers: Worker[] = [];

  constructor(
    readonly spec: TargetSpec,
    readonly concurrency: number,
  ) {
    this.agent = new Agent({ keepAlive: true, maxSockets: concurrency, maxFreeSockets: concurrency });
  }

  /**
   * Opens one MCP session per worker (all at once, like `concurrency` clients arriving). A failed
   * session set-up is retried (up to `attempts` times per worker) so one transient failure does
   * not abort the bench; returns the failures that were retried.
   */
  async open(attempts = 3): Promise<string[]> {
    const workers = Array.from({ length: this.concurrency }, (_, i) => new Worker(this.spec, this.agent, i));
    const retried: string[] = [];
    await Promise.all(
      workers.map(async (w) => {
        for (let attempt = 1; ; attempt++) {
          try {
            await w.open();
            return;
          } catch (err) {
            if (attempt >= attempts) throw err;
            retried.push((err as Error).message);
            await new Promise((r) => setTimeout(r, 50 * attempt));
          }
        }
      }),
    );
    this.workers = workers;
    return retried;
  }

  /**
   * Runs a closed loop: every worker sends its next tools/call as soon as the previous one ended,
   * until `requests` calls were issued (or `durationMs` passed, when given instead).
   */
  async run(limit: { requests?: number; durationMs?: number }): Promise<PhaseResult> {
    const maxRequests = limit.requests ?? Number.POSITIVE_INFINITY;
    const capacity = Number.isFinite(maxRequests) ? maxRequests : 1 << 16;
    let latencies = new Float64Array(Math.max(16, capacity));
    let ok = 0;
    let errors = 0;
    let issued = 0;
    const errorSamples: string[] = [];
    const start = process.hrtime.bigint();
    const deadline = limit.durationMs === undefined ? null : start + BigInt(Math.round(limit.durationMs * 1e6));

    await Promise.all(
      this.workers.map(async (w) => {
        for (;;) {
          if (issued >= maxRequests) return;
          const t0 = process.hrtime.bigint();
          if (deadline !== null && t0 >= deadline) return;
          issued++;
          const err = await w.call();
          const t1 = process.hrtime.bigint();
          if (err === null) {
            if (ok === latencies.length) {
              const bigger = new Float64Array(latencies.length * 2);
              bigger.set(latencies);
              latencies = bigger;
            }
            latencies[ok++] = Number(t1 - t0) / 1e6;
          } else {
            errors++;
            if (errorSamples.length < 5 && !errorSamples.includes(err)) errorSamples.push(err);
          }
        }
      }),
    );
    const elapsedMs = Number(process.hrtime.bigint() - start) / 1e6;
    return { latenciesMs: latencies.slice(0, ok), ok, errors, elapsedMs, errorSamples };
  }

  close(): void {
    this.agent.destroy();
  }
}

/** Nearest-rank percentile of an ascending-sorted array (q in 0..1); NaN when empty. */
export function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length)));
  return sorted[rank - 1] ?? Number.NaN;
}
