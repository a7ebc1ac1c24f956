/**
 * Drives the real ext_proc stream handler (and so the real Exchange and request stages) through
 * an in-memory stand-in for one gRPC stream: what Envoy would send in, what the processor writes
 * back. No sockets; pair it with {@link InMemoryUpstream} for the processor's own upstream calls.
 */
import { EventEmitter } from 'node:events';
import type * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import type { GatewayContext } from '../../src/exchange.js';
import { handleProcessStream } from '../../src/extproc/server.js';
import type { ProcessingRequestMsg, ProcessingResponseMsg } from '../../src/extproc/proto.js';

/** One ext_proc gRPC stream, in memory. */
export class FakeCall extends EventEmitter {
  readonly written: ProcessingResponseMsg[] = [];
  ended = false;
  destroyed = false;
  readonly metadata = { get: (): unknown[] => [] };
  write(msg: ProcessingResponseMsg): boolean {
    this.written.push(msg);
    this.emit('wrote');
    return true;
  }
  end(): void {
    this.ended = true;
  }
  destroy(): void {
    this.destroyed = true;
  }
  /** Resolves once `n` messages have been written. */
  async replies(n: number): Promise<ProcessingResponseMsg[]> {
    while (this.written.length < n) await new Promise((r) => this.once('wrote', r));
    return this.written;
  }
  /** Sends one message and resolves to the reply written for it. */
  async send(msg: ProcessingRequestMsg): Promise<ProcessingResponseMsg> {
    const n = this.written.filter(isReply).length;
    this.emit('data', msg);
    for (;;) {
      const replies = this.written.filter(isReply);
      if (replies.length > n) return replies[n]!;
      await new Promise((r) => this.once('wrote', r));
    }
  }
}

/** Messages that are not replies (a request for more time) are written beside them. */
function isReply(m: ProcessingResponseMsg): boolean {
  return !('override_message_timeout' in m);
}

const SILENT = pino({ level: 'silent' });

/** A new stream handled by the real handler with `ctx`. */
export function startCall(ctx: GatewayContext): FakeCall {
  const call = new FakeCall();
  handleProcessStream(call as unknown as grpc.ServerDuplexStream<ProcessingRequestMsg, ProcessingResponseMsg>, () => ctx, SILENT);
  return call;
}

function headerList(h: Record<string, string>): { headers: { key: string; raw_value: Buffer }[] } {
  return { headers: Object.entries(h).map(([key, v]) => ({ key, raw_value: Buffer.from(v) })) };
}

export function requestHeaders(h: Record<string, string>, endOfStream = false): ProcessingRequestMsg {
  return { request: 'request_headers', request_headers: { headers: headerList(h), end_of_stream: endOfStream } };
}

export function requestBody(body: unknown): ProcessingRequestMsg {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  return { request: 'request_body', request_body: { body: Buffer.from(text), end_of_stream: true } };
}

export function responseHeaders(h: Record<string, string>): ProcessingRequestMsg {
  return { request: 'response_headers', response_headers: { headers: headerList(h) } };
}

export function responseBody(text: string, endOfStream = true): ProcessingRequestMsg {
  return { request: 'response_body', response_body: { body: Buffer.from(text), end_of_stream: endOfStream } };
}

/** Request headers of an MCP POST to `path`. */
export function mcpPost(path: string, extra: Record<string, string> = {}): Record<string, string> {
  return { ':method': 'POST', ':path': path, ':authority': '127.0.0.1:8080', accept: 'application/json, text/event-stream', 'content-type': 'application/json', ...extra };
}

type Mutation = { header_mutation?: { set_headers?: { header: { key: string; raw_value: Buffer } }[]; remove_headers?: string[] }; body_mutation?: { body?: Buffer; clear_body?: boolean }; clear_route_cache?: boolean };

/** What a phase reply asks Envoy to change (continue replies only); body null: unchanged, '' cleared. */
export function mutationOf(reply: ProcessingResponseMsg): { set: Map<string, string>; removed: string[]; body: string | null; clearRouteCache: boolean } {
  const phase = Object.values(reply).find((v) => typeof v === 'object' && v !== null && 'response' in v) as { response?: Mutation } | undefined;
  const r = phase?.response ?? {};
  const set = new Map<string, string>();
  for (const h of r.header_mutation?.set_headers ?? []) set.set(h.header.key, h.header.raw_value.toString());
  return { set, removed: r.header_mutation?.remove_headers ?? [], body: r.body_mutation?.clear_body === true ? '' : (r.body_mutation?.body?.toString() ?? null), clearRouteCache: r.clear_route_cache === true };
}

/** A local answer: status, headers and the JSON body. */
export function immediateOf(reply: ProcessingResponseMsg): { status: number; headers: Map<string, string>; json: Record<string, unknown> | null } {
  const imm = reply['immediate_response'] as { status: { code: number }; headers: { set_headers: { header: { key: string; raw_value: Buffer } }[] }; body: Buffer } | undefined;
  if (imm === undefined) throw new Error(`not an immediate response: ${JSON.stringify(Object.keys(reply))}`);
  const headers = new Map(imm.headers.set_headers.map((h) => [h.header.key, h.header.raw_value.toString()]));
  const text = imm.body.toString();
  return { status: imm.status.code, headers, json: text === '' ? null : (JSON.parse(text) as Record<string, unknown>) };
}
