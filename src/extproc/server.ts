import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { Exchange, type GatewayContext } from '../exchange.js';
import { respondError, type Decision, type LocalStream, type RespondDecision, type StreamDecision } from '../request/decision.js';
import { GatewayError } from '../errors/gateway-error.js';
import type { Headers } from '../request/state.js';
import { EXT_PROC_FILTER, REQUEST_HEADER_ATTRIBUTES } from '../envoy/contract.js';
import { withPort } from '../lib/host-port.js';
import { loadHealthService, type HealthState } from './health.js';
import { loadExternalProcessorService, type HttpHeadersMsg, type ProcessingRequestMsg, type ProcessingResponseMsg } from './proto.js';
import { streamedBody, streamedHeaders, toProcessingResponse, type Phase } from './render.js';

/**
 * Most a streamed response may have waiting for a slow client: beyond it the stream is ended (an
 * MCP client resumes it with `Last-Event-ID`) rather than held in memory without bound.
 */
const MAX_STREAM_BUFFER_BYTES = 4 * 1024 * 1024;

type ProcessCall = grpc.ServerDuplexStream<ProcessingRequestMsg, ProcessingResponseMsg>;

/** Converts Envoy's header list (values in `raw_value`) into a lower-case map. */
export function headerMap(msg: HttpHeadersMsg | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const h of msg?.headers?.headers ?? []) {
    const value = h.raw_value !== undefined && h.raw_value.length > 0 ? h.raw_value.toString('latin1') : (h.value ?? '');
    const prev = out.get(h.key);
    out.set(h.key, prev === undefined ? value : `${prev}, ${value}`);
  }
  return out;
}

/**
 * The request headers Envoy sent as attributes with the first message of a stream (a POST decided
 * at its body: its headers message is skipped), or null when there are none.
 */
export function attributeHeaders(req: ProcessingRequestMsg): Map<string, string> | null {
  const fields = req.attributes?.[EXT_PROC_FILTER]?.fields;
  if (fields === undefined) return null;
  const out = new Map<string, string>();
  for (const [header, attribute] of HEADER_ATTRIBUTE_ENTRIES) {
    const v = fields[attribute]?.stringValue;
    if (v !== undefined) out.set(header, v);
  }
  return out;
}

const HEADER_ATTRIBUTE_ENTRIES = Object.entries(REQUEST_HEADER_ATTRIBUTES);

/**
 * Whether Envoy takes a streamed immediate response for this request: only while the request
 * body is not sent to the processor, or sent full-duplex (an Envoy that routes GET /mcp with
 * another body mode treats it as a spurious message and fails the request). Envoy sends the
 * effective mode with the first message; absent means NONE.
 */
function streamsAllowed(req: ProcessingRequestMsg): boolean {
  const mode = req.protocol_config?.request_body_mode ?? 'NONE';
  return mode === 'NONE' || mode === 'FULL_DUPLEX_STREAMED';
}

/**
 * Whether the request is held for a streamed answer: its route sends the body full-duplex
 * (subscriptions/listen). Envoy then routes the request the moment request headers are answered,
 * and takes a streamed immediate response only as that answer; so the headers are answered only
 * once the whole body is in (Envoy sends body chunks without waiting for replies to them).
 */
function holdsForStream(req: ProcessingRequestMsg): boolean {
  return req.protocol_config?.request_body_mode === 'FULL_DUPLEX_STREAMED' && req.request_headers?.end_of_stream !== true;
}

/**
 * Drives one Exchange from one ext_proc gRPC stream. Envoy requires exactly one reply per
 * message, in order, so messages are handled strictly one after another on a promise chain.
 * A request-level failure never fails the gRPC stream: it becomes an ImmediateResponse.
 */
export function handleProcessStream(call: ProcessCall, getContext: () => GatewayContext, log: Logger): void {
  const ctx = getContext(); // one config per request, read once
  // With Envoy tracing on, the ext_proc call carries Envoy's span context: a request without its
  // own traceparent then joins Envoy's trace instead of starting a second one.
  const envoyTrace = call.metadata.get('traceparent')[0];
  let chain: Promise<void> = Promise.resolve();
  let closed = false;
  // Not a reply: Envoy takes it as a longer deadline for the message it is waiting on.
  const extendTimeout = (ms: number): void => {
    if (!closed) call.write({ override_message_timeout: { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 } });
  };
  // The message being processed, for a reply given before its phase handler returns.
  let current: Phase | null = null;
  const answerNow = (decision: Decision): void => {
    if (closed || current === null || decision.kind === 'stream') return;
    call.write(toProcessingResponse(decision, current));
    finish();
  };
  const stream = new Exchange(ctx, { extendTimeout, answerNow }, typeof envoyTrace === 'string' ? envoyTrace : undefined);

  /** The response the processor streams itself, while it lasts. */
  let local: LocalStream | null = null;
  /** The body so far of a request held for a streamed answer (its headers are not answered yet). */
  let held: { chunks: Buffer[]; bytes: number } | null = null;
  const maxHeldBytes = ctx.rc.maxBodyBytes;
  const finish = (): void => {
    if (closed) return;
    closed = true;
    local?.close();
    local = null;
    stream.done();
  };

  // A streamed immediate response: headers now, then one message per chunk, no reply expected.
  const startStream = (d: StreamDecision): void => {
    local = d.body;
    call.write(streamedHeaders(d));
    d.body.start({
      write(chunk) {
        if (closed) return false;
        call.write(streamedBody(chunk, false));
        return call.writableLength <= MAX_STREAM_BUFFER_BYTES;
      },
      end() {
        if (closed) return;
        call.write(streamedBody('', true));
        finish();
        call.end();
      },
    });
  };

  const step = async (req: ProcessingRequestMsg): Promise<void> => {
    // Answered already: what Envoy still sends (the rest of a full-duplex body) needs no reply.
    if (closed) return;
    let decision: Decision;
    const phase = req.request;
    if (phase === 'request_headers' || phase === 'request_body' || phase === 'response_headers' || phase === 'response_body') current = phase;
    switch (phase) {
      case 'request_headers': {
        const h: Headers = headerMap(req.request_headers);
        const eos = req.request_headers?.end_of_stream === true;
        // A request with a body is decided at its body: only a held one can be answered by a stream.
        const hold = holdsForStream(req);
        decision = await stream.onRequestHeaders(h, eos, eos ? streamsAllowed(req) : hold);
        if (decision.kind === 'continue' && hold) {
          held = { chunks: [], bytes: 0 };
          return; // answered once the body is in
        }
        break;
      }
      case 'request_body': {
        const chunk = req.request_body?.body ?? Buffer.alloc(0);
        if (held === null) {
          decision = await stream.onRequestBody(chunk, attributeHeaders(req));
          break;
        }
        // Kept up to one byte past the limit: the endpoint refuses a body that long.
        if (held.bytes <= maxHeldBytes) held.chunks.push(chunk.subarray(0, maxHeldBytes + 1 - held.bytes));
        held.bytes += chunk.length;
        if (req.request_body?.end_of_stream !== true && held.bytes <= maxHeldBytes) return;
        const body = Buffer.concat(held.chunks);
        held = null;
        // The reply answers the request headers Envoy still waits on.
        current = 'request_headers';
        decision = await stream.onRequestBody(body);
        if (closed) {
          // The client left (or the stream was answered) while the answer was made: what it holds goes.
          if (decision.kind === 'stream') decision.body.close();
          return;
        }
        if (decision.kind === 'stream') startStream(decision);
        else call.write(toProcessingResponse(decision.kind === 'respond' ? decision : heldWithoutAnswer(), 'request_headers'));
        if (decision.kind !== 'stream') finish();
        return;
      }
      case 'response_headers':
        decision = await stream.onResponseHeaders(headerMap(req.response_headers));
        break;
      case 'response_body':
        decision = await stream.onResponseBody(req.response_body?.body ?? Buffer.alloc(0), req.response_body?.end_of_stream === true);
        break;
      case 'request_trailers':
        // A held request's trailers end its body; nothing else waits on a reply to them.
        if (held !== null) return step({ request: 'request_body', request_body: { body: Buffer.alloc(0), end_of_stream: true } } as ProcessingRequestMsg);
        if (!closed) call.write({ [phase]: {} });
        return;
      case 'response_trailers':
        if (!closed) call.write({ [phase]: {} });
        return;
      default:
        log.warn({ phase }, 'ext_proc message without a known phase; ignored');
        return;
    }
    if (closed) {
      if (decision.kind === 'stream') decision.body.close();
      return;
    }
    if (decision.kind === 'stream') {
      if (phase === 'request_headers') startStream(decision);
      else {
        log.error({ phase }, 'a streamed response can only answer request headers');
        decision.body.close();
      }
      return;
    }
    call.write(toProcessingResponse(decision, phase));
    if (decision.kind === 'respond') finish();
  };

  call.on('data', (req: ProcessingRequestMsg) => {
    chain = chain.then(() => step(req)).catch((err: unknown) => {
      // Only a bug gets here (phase handlers turn request errors into responses).
      log.error({ err }, 'ext_proc stream handler failed');
      finish();
      if (!call.destroyed) call.destroy(err instanceof Error ? err : new Error(String(err)));
    });
  });
  call.on('end', () => {
    void chain.finally(() => {
      finish();
      call.end();
    });
  });
  call.on('error', (err: Error & { code?: number }) => {
    if (err.code !== grpc.status.CANCELLED) log.debug({ err }, 'ext_proc stream error');
    finish();
  });
  call.on('cancelled', finish);
  call.on('close', finish);
}

/** A held request must be answered by the processor; continuing it would route it nowhere. */
function heldWithoutAnswer(): RespondDecision {
  return respondError(new GatewayError('GW_ERR_INTERNAL', 'Internal error: a held request was not answered'), null);
}

/**
 * Envoy resets its ext_proc stream at the end of every request. Node's HTTP/2 rapid-reset
 * protection (CVE-2023-44487: a bucket of 1000 resets refilled at 33/s) then answers sustained
 * traffic with GOAWAY about every 1,150 requests, failing every request in flight on the
 * connection. grpc-js does not expose the limit, so it is raised on the options it hands to
 * http2.createServer: still bounded, far above what one Envoy sends. (Envoy's
 * ext_proc_graceful_grpc_close avoids the resets instead, but crashed Envoy 1.40 at the end of
 * long streamed responses in our tests.)
 */
function allowEnvoyStreamResets(server: grpc.Server, log: Logger): void {
  const internals = server as unknown as { commonServerOptions?: Record<string, unknown> };
  if (internals.commonServerOptions === undefined) {
    log.warn('grpc-js internals changed: cannot raise the HTTP/2 stream-reset limit; expect GOAWAYs under load');
    return;
  }
  internals.commonServerOptions['streamResetBurst'] = 200_000;
  internals.commonServerOptions['streamResetRate'] = 100_000;
}

/**
 * The ext_proc gRPC server, which also serves `grpc.health.v1.Health` from `health` (Envoy's
 * active health check of the processor replicas).
 */
export async function startExtProcServer(
  address: string,
  getContext: () => GatewayContext,
  log: Logger,
  health: HealthState,
  /** More services on the same server (the xDS control plane). */
  extra: readonly { definition: grpc.ServiceDefinition; handlers: grpc.UntypedServiceImplementation }[] = [],
): Promise<{ server: grpc.Server; address: string }> {
  const server = new grpc.Server({
    'grpc.max_receive_message_length': 64 * 1024 * 1024,
    'grpc.max_send_message_length': 64 * 1024 * 1024,
    'grpc.max_concurrent_streams': 100_000,
    'grpc.keepalive_time_ms': 30_000,
    'grpc.keepalive_timeout_ms': 10_000,
    'grpc-node.max_session_memory': 256,
    // Per-call channelz bookkeeping costs a few percent per ext_proc stream and nobody reads it.
    'grpc.enable_channelz': 0,
  });
  allowEnvoyStreamResets(server, log);
  server.addService(loadExternalProcessorService(), {
    Process: (call: ProcessCall) => handleProcessStream(call, getContext, log),
  });
  server.addService(loadHealthService(), health.handlers());
  for (const s of extra) server.addService(s.definition, s.handlers);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
  });
  return { server, address: withPort(address, port) };
}
