import type { AggregatedContext } from './aggregated/context.js';
import { aggregatedEndpoint } from './aggregated/endpoint.js';
import { passthroughEndpoint, type PassthroughContext } from './passthrough/endpoint.js';
import { admit, authenticate } from './request/admit.js';
import { checkViewAccess } from './request/guard.js';
import { CONTINUE, respondError, type BodyDecider, type BodyRewriter, type ContinueDecision, type Decision, type RespondDecision, type ResponseStep } from './request/decision.js';
import type { EndpointHandler } from './request/endpoint.js';
import { decidedAtBody, withLimitHeaders } from './request/mutations.js';
import { accessLogMetadata, clientError, recordOperation } from './request/outcome.js';
import { newRequestState, requestId, type Headers, type RequestState } from './request/state.js';
import { traceFrom } from './observability/trace.js';
import { GatewayError } from './errors/gateway-error.js';

/**
 * Live exchanges, whose phases in work one coarse timer checks against Envoy's message timeout
 * (rather than a timer per phase: almost every phase ends in well under a millisecond, and the
 * deadlines are seconds). An intrusive list: a Set would give every exchange an identity hash,
 * which measurably costs on the hot path.
 */
let liveHead: Exchange | null = null;
const SWEEP_MS = 250;
let sweeper: NodeJS.Timeout | null = null;

function sweepPhases(): void {
  const now = performance.now();
  for (let x = liveHead; x !== null; x = x.nextLive) x.check(now);
}

/** Everything the request path shares: what both endpoints and the shared stages need. */
export interface GatewayContext extends AggregatedContext, PassthroughContext {
  /** Each virtual server's context, by its path: `/mcp`'s, over its own servers and names. */
  readonly views: ReadonlyMap<string, AggregatedContext>;
}

/** What the exchange may ask of the ext_proc stream besides replies. */
export interface StreamControl {
  /** Asks Envoy to wait up to `ms` for the reply to the message being processed (once per message). */
  extendTimeout(ms: number): void;
  /** Replies to the message being processed now; the phase's own result, when it comes, is dropped. */
  answerNow(decision: Decision): void;
}

/**
 * One HTTP request through the gateway, driven phase by phase by its ext_proc stream. It picks
 * the endpoint once, at request headers, runs that endpoint's phases, and owns what every request
 * shares: failures rendered as JSON-RPC errors, the `RateLimit-*` headers on the response, the
 * access-log metadata, the processor's deadline per message, and the operation record when the
 * request ends. Pass-through by default: anything not configured costs nothing.
 */
export class Exchange {
  private state: RequestState | null = null;
  private endpoint: EndpointHandler | null = null;
  private body: BodyRewriter | BodyDecider | null = null;
  private finished = false;
  /** The processor streams the response itself: its end is the request's normal end. */
  private streaming = false;
  /** The answer given when the processor stopped waiting on a phase. */
  private abandoned: RespondDecision | null = null;
  /** When the phase in work started (0: none in work), and whether Envoy was asked for more time. */
  private phaseSince = 0;
  private extended = false;
  /** Neighbours in the list of live exchanges. */
  nextLive: Exchange | null = null;
  private prevLive: Exchange | null = null;
  private live = true;

  constructor(
    private readonly ctx: GatewayContext,
    private readonly stream: StreamControl,
    /** Envoy's own span context for this request, when Envoy traces. */
    private readonly envoyTraceparent?: string,
  ) {
    this.nextLive = liveHead;
    if (liveHead !== null) liveHead.prevLive = this;
    liveHead = this;
    sweeper ??= setInterval(sweepPhases, SWEEP_MS).unref();
  }

  async onRequestHeaders(headers: Headers, endOfStream: boolean, canStream = false): Promise<Decision> {
    const state = newRequestState(headers, traceFrom(headers.get('traceparent') ?? this.envoyTraceparent, headers.get('tracestate')), performance.now());
    state.canStream = canStream;
    this.state = state;
    const d = await this.settle(state, async () => {
      const to = admit(this.ctx, headers, state.method);
      if (to.endpoint === 'answered') return to.decision;
      state.endpoint = to.endpoint;
      state.caller = await authenticate(this.ctx, state, to.endpoint === 'passthrough' ? to.server.name : null);
      if (to.endpoint === 'passthrough') this.endpoint = passthroughEndpoint(this.ctx, state, to.server);
      else if (to.view === null) this.endpoint = aggregatedEndpoint(this.ctx, state);
      else {
        // A virtual server: its own access rules, then /mcp's behaviour over its own servers and names.
        checkViewAccess(this.ctx, state, state.caller, to.view);
        this.endpoint = aggregatedEndpoint(this.ctx.views.get(to.view.path)!, state);
      }
      return this.endpoint.requestHeaders(endOfStream);
    });
    if (d.kind === 'stream') {
      // The operation lasts as long as the stream; it ends with the ext_proc stream.
      this.streaming = true;
      state.httpStatus = d.status;
      return { ...d, metadata: accessLogMetadata(this.ctx, state) };
    }
    if (!endOfStream || d.kind !== 'continue') return d;
    // A request without a body has no later request phase to carry the access-log metadata.
    if (this.endpoint?.seesResponse === false) this.finish(state);
    return { ...d, metadata: accessLogMetadata(this.ctx, state) };
  }

  /**
   * The request body. A POST Envoy sends only at its body comes with its headers as attributes
   * (`headersFirst`): the whole request is then decided in this one message, and what the
   * headers phase would have changed goes into the same reply.
   */
  async onRequestBody(body: Buffer, headersFirst: Headers | null = null): Promise<Decision> {
    let head: ContinueDecision | null = null;
    if (this.state === null) {
      const d = await this.onRequestHeaders(headersFirst ?? new Map(), false);
      if (d.kind !== 'continue') return d;
      head = d;
    }
    const state = this.started();
    state.requestBytes = body.length;
    let d: Decision = await this.settle(state, () => this.routed().requestBody(body));
    if (d.kind === 'stream') {
      // A request held for a streamed answer (subscriptions/listen): it lasts as long as the stream.
      this.streaming = true;
      state.httpStatus = d.status;
      return { ...d, metadata: accessLogMetadata(this.ctx, state) };
    }
    if (head !== null && d.kind === 'continue') d = decidedAtBody(this.ctx, head, d);
    d = { ...d, metadata: accessLogMetadata(this.ctx, state) };
    if (d.kind === 'continue' && this.endpoint?.seesResponse === false) this.finish(state);
    return d;
  }

  async onResponseHeaders(headers: Headers): Promise<Decision> {
    // Envoy's own answer to a request the processor never saw (a body over the buffer limit).
    if (this.state === null) return CONTINUE;
    const state = this.state;
    state.httpStatus = Number(headers.get(':status') ?? '0');
    let step: ResponseStep | null = null;
    const d = await this.settle(state, async () => {
      step = this.endpoint === null ? { decision: CONTINUE, body: null } : await this.endpoint.responseHeaders(headers);
      return step.decision;
    });
    if (d.kind === 'respond') return d;
    const body = (step as ResponseStep | null)?.body ?? null;
    if (body === null) this.finish(state);
    else this.body = body;
    return state.limitHeaders === null ? d : withLimitHeaders(d, state.limitHeaders);
  }

  /** Rewrites one response chunk; failures here pass the chunk through (the response has started). */
  async onResponseBody(chunk: Buffer, endOfStream: boolean): Promise<Decision> {
    const rw = this.body;
    if (rw === null) return CONTINUE;
    if (typeof rw === 'function') {
      // A body held back whole (BUFFERED): nothing has gone to the client yet.
      this.body = null;
      const state = this.started();
      const d = await this.settle(state, () => rw(chunk));
      this.finish(state);
      return d;
    }
    let out: Buffer;
    try {
      out = rw.push(chunk, endOfStream);
    } catch (err) {
      this.ctx.log.error({ err }, 'response rewrite failed; passing the rest through');
      this.body = null;
      return CONTINUE;
    }
    if (endOfStream && this.state !== null) this.finish(this.state);
    return out.equals(chunk) ? CONTINUE : { kind: 'continue', body: out };
  }

  /** The gRPC stream ended; an operation still open was cut short (client gone, reset). */
  done(): void {
    this.unlink();
    const state = this.state;
    if (state === null || this.finished) return;
    if (!this.streaming) state.status = 'cancelled';
    this.finish(state);
  }

  private unlink(): void {
    if (!this.live) return;
    this.live = false;
    if (this.prevLive !== null) this.prevLive.nextLive = this.nextLive;
    else liveHead = this.nextLive;
    if (this.nextLive !== null) this.nextLive.prevLive = this.prevLive;
    this.prevLive = null;
  }

  private started(): RequestState {
    if (this.state === null) throw new Error('ext_proc phase before request headers');
    return this.state;
  }

  private routed(): EndpointHandler {
    if (this.endpoint === null) throw new Error('ext_proc body phase for a request that was answered at its headers');
    return this.endpoint;
  }

  /**
   * Runs a phase under the processor's deadline. A phase still working when Envoy's message
   * timeout nears asks Envoy for more time, once, up to the most the config allows; one that
   * outlasts even that is answered with a timeout error rather than left to Envoy's bare 504.
   * A local answer, or a failure rendered as one, ends the operation.
   */
  private async settle(state: RequestState, phase: () => Promise<Decision>): Promise<Decision> {
    this.phaseSince = performance.now();
    this.extended = false;
    let d: Decision;
    try {
      d = await phase();
    } catch (err) {
      d = this.fail(state, err);
    }
    this.phaseSince = 0;
    if (this.abandoned !== null) {
      // Answered already with a timeout: a stream made meanwhile is never started.
      if (d.kind === 'stream') d.body.close();
      return this.abandoned;
    }
    return this.answered(state, d);
  }

  /** A local answer (or a failure rendered as one) ends the operation; limit headers go on it. */
  private answered(state: RequestState, given: Decision): Decision {
    if (given.kind !== 'respond') return given;
    const d = state.limitHeaders === null ? given : (withLimitHeaders(given, state.limitHeaders) as RespondDecision);
    state.httpStatus = d.status;
    if (d.errorCode !== undefined) {
      state.status = 'error';
      state.errorCode = d.errorCode;
    }
    this.finish(state);
    return d;
  }

  /**
   * Checks the phase in work against Envoy's message timeout: asks for more time once when it
   * runs long, and stops waiting at the deadline.
   */
  check(now: number): void {
    if (this.phaseSince === 0) return;
    const age = now - this.phaseSince;
    const { extendAfterMs, extendToMs, deadlineMs } = this.ctx.rc.extProc;
    if (age >= deadlineMs) {
      this.phaseSince = 0;
      this.giveUp();
    } else if (!this.extended && age >= extendAfterMs) {
      this.extended = true;
      this.stream.extendTimeout(extendToMs);
    }
  }

  /** Stops waiting on the phase in work: answers with a timeout error now, before Envoy gives up. */
  private giveUp(): void {
    const state = this.state;
    if (state === null || this.finished) return;
    const d = this.answered(state, respondError(new GatewayError('GW_ERR_UPSTREAM_TIMEOUT', 'Upstream server timed out: the gateway stopped waiting'), requestId(state)));
    this.abandoned = d as RespondDecision;
    this.stream.answerNow(d);
  }

  private fail(state: RequestState, err: unknown): RespondDecision {
    const gw = clientError(err);
    if (gw.code === 'GW_ERR_INTERNAL') this.ctx.log.error({ err }, 'internal error on the request path');
    return respondError(gw, requestId(state));
  }

  /** Ends the operation once: releases what the endpoint held, records metrics and the log line. */
  private finish(state: RequestState): void {
    if (this.finished) return;
    this.finished = true;
    this.endpoint?.end();
    recordOperation(this.ctx, state, performance.now());
  }
}
