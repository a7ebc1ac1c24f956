import { isObject, type JsonObject, type JsonRpcId } from '../mcp/message.js';
import { sseDataPayloads } from '../mcp/sse.js';
import { forgotSession } from '../mcp/protocol.js';
import type { RuntimeServer } from '../config/runtime.js';
import { BACKEND_HEADER } from '../envoy/contract.js';
import { MCP_METHOD_HEADER, MCP_NAME_HEADER } from '../mcp/headers.js';
import { isModernVersion, routingHeaders, withEnvelope, type ClientEnvelope } from '../mcp/modern.js';
import { GATEWAY_INFO } from '../mcp/protocol.js';

/** What came back from one POST to an upstream. */
export interface UpstreamReply {
  readonly status: number;
  readonly contentType: string;
  readonly sessionId: string | null;
  /** The raw body text (JSON or SSE). */
  readonly body: string;
}

/** An upstream JSON-RPC error, carried so callers can tell "down" from "said no". */
export class UpstreamRpcError extends Error {
  constructor(
    readonly server: string,
    readonly rpcCode: number,
    message: string,
  ) {
    super(message);
    this.name = 'UpstreamRpcError';
  }
}

/** The upstream could not be reached, or did not answer in time. */
export class UpstreamUnreachable extends Error {
  constructor(
    readonly server: string,
    readonly timedOut: boolean,
    cause: unknown,
  ) {
    super(`upstream ${server} ${timedOut ? 'timed out' : 'unreachable'}`, { cause });
    this.name = 'UpstreamUnreachable';
  }
}

/** The upstream answered, but not with the JSON-RPC response asked for. */
export class UpstreamBadReply extends Error {
  constructor(
    readonly server: string,
    readonly method: string,
    readonly status: number,
  ) {
    super(`upstream ${server} answered ${method} with HTTP ${status}`);
    this.name = 'UpstreamBadReply';
  }
}

/** The upstream's reply was larger than the caller can hold. */
export class UpstreamReplyTooLarge extends Error {
  constructor(
    readonly server: string,
    readonly limitBytes: number,
  ) {
    super(`upstream ${server} sent a reply over ${limitBytes} bytes`);
    this.name = 'UpstreamReplyTooLarge';
  }
}

/** The upstream answered a session id with 404 (or the 400 some servers give): it forgot the session. */
export class UpstreamSessionGone extends Error {
  constructor(
    readonly server: string,
    detail = 'no longer knows the session',
  ) {
    super(`upstream ${server} ${detail}`);
    this.name = 'UpstreamSessionGone';
  }
}

/** Per-call options. */
export interface PostOptions {
  readonly sessionId?: string | null;
  readonly protocolVersion?: string;
  readonly timeoutMs?: number;
  readonly method?: 'POST' | 'DELETE';
  /** Largest reply body read (default: unbounded, for the gateway's own small calls). */
  readonly maxBytes?: number;
  /** Extra request headers (a modern request's routing headers). */
  readonly headers?: Readonly<Record<string, string>>;
  /** Who the call speaks for, when the server speaks a modern (sessionless) revision. */
  readonly client?: ClientEnvelope;
}

/** The gateway speaking for itself to a modern server. */
const GATEWAY_CLIENT: ClientEnvelope = { capabilities: {}, clientInfo: GATEWAY_INFO };

/** Options of {@link UpstreamClient.openStream}. */
export interface StreamOptions {
  readonly sessionId: string | null;
  readonly protocolVersion: string;
  /** The upstream's own id of the last event seen: the server resumes after it. */
  readonly lastEventId?: string | null;
  /** Ends the stream (and the request, if it is still opening). */
  readonly signal: AbortSignal;
  /** For a server of a sessionless revision: what its `subscriptions/listen` stream is to carry. */
  readonly listen?: JsonObject;
}

/**
 * The processor's own MCP calls to upstreams (session set-up, catalogs, fan-out notifications).
 * They go through Envoy's internal listener, tagged with the backend header, so they use the same
 * clusters (TLS, load balancing, failover) as client traffic and never re-enter ext_proc.
 */
export class UpstreamClient {
  private nextId = 1;

  constructor(
    private readonly internalBaseUrl: string,
    private readonly defaultTimeoutMs: number,
    /** Per-server credentials the gateway itself presents upstream (never a client's). */
    private readonly credentialsFor: (server: string) => readonly { key: string; value: string }[] = () => [],
  ) {}

  /** Sends one raw JSON-RPC body and reads the whole reply. */
  async post(server: RuntimeServer, body: string | null, opts: PostOptions = {}): Promise<UpstreamReply> {
    const headers: Record<string, string> = {
      [BACKEND_HEADER]: server.name,
      accept: 'application/json, text/event-stream',
    };
    if (body !== null) headers['content-type'] = 'application/json';
    for (const h of this.credentialsFor(server.name)) headers[h.key] = h.value;
    if (opts.sessionId) headers['mcp-session-id'] = opts.sessionId;
    if (opts.protocolVersion) headers['mcp-protocol-version'] = opts.protocolVersion;
    if (opts.headers !== undefined) Object.assign(headers, opts.headers);
    let res: Response;
    try {
      res = await fetch(this.internalBaseUrl + server.path, {
        method: opts.method ?? 'POST',
        headers,
        body,
        signal: AbortSignal.timeout(opts.timeoutMs ?? this.defaultTimeoutMs),
      });
    } catch (err) {
      throw new UpstreamUnreachable(server.name, (err as Error).name === 'TimeoutError', err);
    }
    const text = await readBody(res, server.name, opts.maxBytes);
    return {
      status: res.status,
      contentType: res.headers.get('content-type') ?? '',
      sessionId: res.headers.get('mcp-session-id'),
      body: text,
    };
  }

  /**
   * Calls one method and returns its result. Throws UpstreamSessionGone when the server no longer knows the session,
   * UpstreamUnreachable or UpstreamBadReply when the server can't be reached or answers garbage,
   * and UpstreamRpcError when it answers with a JSON-RPC error.
   */
  async call(
    server: RuntimeServer,
    method: string,
    params: JsonObject | undefined,
    opts: PostOptions = {},
  ): Promise<{ result: JsonObject; reply: UpstreamReply }> {
    const id = `gw-${this.nextId++}`;
    const msg: JsonObject = { jsonrpc: '2.0', id, method };
    if (isModernVersion(opts.protocolVersion)) {
      // No session: every request names the revision and the client, and repeats its routing.
      msg['params'] = withEnvelope(params, opts.protocolVersion!, opts.client ?? GATEWAY_CLIENT);
      const route = routingHeaders(method, params);
      opts = { ...opts, headers: { ...opts.headers, [MCP_METHOD_HEADER]: route.method, ...(route.name === null ? {} : { [MCP_NAME_HEADER]: route.name }) } };
    } else if (params !== undefined) msg['params'] = params;
    const reply = await this.post(server, JSON.stringify(msg), opts);
    if (opts.sessionId && forgotSession(reply.status, reply.body)) throw new UpstreamSessionGone(server.name);
    const response = findResponse(reply, id);
    if (response === null) throw new UpstreamBadReply(server.name, method, reply.status);
    const error = response['error'];
    if (isObject(error)) {
      throw new UpstreamRpcError(server.name, Number(error['code']), String(error['message'] ?? 'error'));
    }
    const result = response['result'];
    return { result: isObject(result) ? result : {}, reply };
  }

  /** Sends a notification; resolves once the upstream accepted it (or gave up). */
  async notify(server: RuntimeServer, method: string, params: JsonObject | undefined, opts: PostOptions = {}): Promise<void> {
    // A modern server takes no notifications from clients over HTTP.
    if (isModernVersion(opts.protocolVersion)) return;
    const msg: JsonObject = { jsonrpc: '2.0', method };
    if (params !== undefined) msg['params'] = params;
    const reply = await this.post(server, JSON.stringify(msg), opts);
    if (opts.sessionId && forgotSession(reply.status, reply.body)) throw new UpstreamSessionGone(server.name);
  }

  /**
   * Opens the upstream session's server→client stream (GET). Resolves with the response once its
   * headers arrived (within the call timeout); the body then streams for as long as the server or
   * `signal` allows.
   */
  async openStream(server: RuntimeServer, opts: StreamOptions): Promise<Response> {
    const headers: Record<string, string> = { [BACKEND_HEADER]: server.name, accept: 'text/event-stream' };
    for (const h of this.credentialsFor(server.name)) headers[h.key] = h.value;
    if (opts.sessionId) headers['mcp-session-id'] = opts.sessionId;
    if (opts.protocolVersion) headers['mcp-protocol-version'] = opts.protocolVersion;
    if (opts.lastEventId) headers['last-event-id'] = opts.lastEventId;
    let body: string | null = null;
    if (isModernVersion(opts.protocolVersion)) {
      // That revision's server→client channel is a long-lived subscriptions/listen POST.
      const method = 'subscriptions/listen';
      const params = withEnvelope({ notifications: opts.listen ?? {} }, opts.protocolVersion, GATEWAY_CLIENT);
      body = JSON.stringify({ jsonrpc: '2.0', id: `gw-${this.nextId++}`, method, params });
      Object.assign(headers, { accept: 'application/json, text/event-stream', 'content-type': 'application/json', [MCP_METHOD_HEADER]: method });
    }
    const connect = new AbortController();
    const timer = setTimeout(() => connect.abort(new DOMException('upstream stream did not open in time', 'TimeoutError')), this.defaultTimeoutMs);
    try {
      return await fetch(this.internalBaseUrl + server.path, { method: body === null ? 'GET' : 'POST', headers, body, signal: AbortSignal.any([opts.signal, connect.signal]) });
    } catch (err) {
      throw new UpstreamUnreachable(server.name, connect.signal.aborted, err);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Sends one request in a session and resolves with the response once its headers arrived
   * (within `connectMs`); its body (JSON, or an event stream) is the caller's to read, for as long
   * as the server or `signal` allows.
   */
  async postStream(server: RuntimeServer, body: string, opts: { sessionId: string | null; protocolVersion: string; signal: AbortSignal; connectMs: number }): Promise<Response> {
    const headers: Record<string, string> = {
      [BACKEND_HEADER]: server.name,
      accept: 'application/json, text/event-stream',
      'content-type': 'application/json',
      'mcp-protocol-version': opts.protocolVersion,
    };
    for (const h of this.credentialsFor(server.name)) headers[h.key] = h.value;
    if (opts.sessionId) headers['mcp-session-id'] = opts.sessionId;
    const connect = new AbortController();
    const timer = setTimeout(() => connect.abort(new DOMException('upstream did not answer in time', 'TimeoutError')), opts.connectMs);
    try {
      return await fetch(this.internalBaseUrl + server.path, { method: 'POST', headers, body, signal: AbortSignal.any([opts.signal, connect.signal]) });
    } catch (err) {
      throw new UpstreamUnreachable(server.name, connect.signal.aborted, err);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Ends an upstream session (DELETE), ignoring servers that don't support it. */
  async terminate(server: RuntimeServer, sessionId: string, protocolVersion: string): Promise<void> {
    await this.post(server, null, { sessionId, protocolVersion, method: 'DELETE' });
  }
}

/** Reads a reply body as text, refusing one over `maxBytes`; a broken stream counts as unreachable. */
async function readBody(res: Response, server: string, maxBytes: number | undefined): Promise<string> {
  try {
    if (maxBytes === undefined || res.body === null) return await res.text();
    const chunks: Uint8Array[] = [];
    let size = 0;
    for await (const chunk of res.body) {
      size += chunk.length;
      // Leaving the loop by throwing cancels the rest of the body.
      if (size > maxBytes) throw new UpstreamReplyTooLarge(server, maxBytes);
      chunks.push(chunk);
    }
    return Buffer.concat(chunks).toString('utf8');
  } catch (err) {
    if (err instanceof UpstreamReplyTooLarge) throw err;
    throw new UpstreamUnreachable(server, false, err);
  }
}

/** Finds the JSON-RPC response with `id` in a JSON or SSE reply body. */
export function findResponse(reply: UpstreamReply, id: JsonRpcId): JsonObject | null {
  const payloads = reply.contentType.includes('text/event-stream') ? sseDataPayloads(reply.body) : [reply.body];
  for (const p of payloads) {
    let v: unknown;
    try {
      v = JSON.parse(p);
    } catch {
      continue;
    }
    if (isObject(v) && v['id'] === id && ('result' in v || 'error' in v)) return v;
  }
  return null;
}
