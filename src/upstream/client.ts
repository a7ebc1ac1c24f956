import { GatewayError } from '../errors/gateway-error.js';
import { isObject, type JsonObject, type JsonRpcId } from '../jsonrpc/message.js';
import { sseDataPayloads } from '../jsonrpc/sse.js';
import type { RuntimeServer } from '../config/runtime.js';
import { BACKEND_HEADER } from '../routing/headers.js';

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

/** The upstream answered 404 to a session id: it forgot the session. */
export class UpstreamSessionGone extends Error {
  constructor(readonly server: string) {
    super(`upstream ${server} no longer knows the session`);
    this.name = 'UpstreamSessionGone';
  }
}

/** Per-call options. */
export interface PostOptions {
  readonly sessionId?: string | null;
  readonly protocolVersion?: string;
  readonly timeoutMs?: number;
  readonly method?: 'POST' | 'DELETE';
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
    let res: Response;
    try {
      res = await fetch(this.internalBaseUrl + server.path, {
        method: opts.method ?? 'POST',
        headers,
        body,
        signal: AbortSignal.timeout(opts.timeoutMs ?? this.defaultTimeoutMs),
      });
    } catch (err) {
      const timeout = (err as Error).name === 'TimeoutError';
      throw new GatewayError(
        timeout ? 'GW_ERR_UPSTREAM_TIMEOUT' : 'GW_ERR_UPSTREAM_UNAVAILABLE',
        `${timeout ? 'Upstream server timed out' : 'Upstream server unavailable'}: ${server.name}`,
        { cause: err },
      );
    }
    const text = await res.text().catch((err: unknown) => {
      throw new GatewayError('GW_ERR_UPSTREAM_UNAVAILABLE', `Upstream server unavailable: ${server.name}`, { cause: err });
    });
    return {
      status: res.status,
      contentType: res.headers.get('content-type') ?? '',
      sessionId: res.headers.get('mcp-session-id'),
      body: text,
    };
  }

  /**
   * Calls one method and returns its result. Throws UpstreamSessionGone on 404 with a session,
   * GatewayError(UPSTREAM_UNAVAILABLE) when the server can't be reached or answers garbage, and
   * UpstreamRpcError when it answers with a JSON-RPC error.
   */
  async call(
    server: RuntimeServer,
    method: string,
    params: JsonObject | undefined,
    opts: PostOptions = {},
  ): Promise<{ result: JsonObject; reply: UpstreamReply }> {
    const id = `gw-${this.nextId++}`;
    const msg: JsonObject = { jsonrpc: '2.0', id, method };
    if (params !== undefined) msg['params'] = params;
    const reply = await this.post(server, JSON.stringify(msg), opts);
    if (reply.status === 404 && opts.sessionId) throw new UpstreamSessionGone(server.name);
    const response = findResponse(reply, id);
    if (response === null) {
      throw new GatewayError(
        'GW_ERR_UPSTREAM_UNAVAILABLE',
        `Upstream server unavailable: ${server.name} answered ${method} with HTTP ${reply.status}`,
      );
    }
    const error = response['error'];
    if (isObject(error)) {
      throw new UpstreamRpcError(server.name, Number(error['code']), String(error['message'] ?? 'error'));
    }
    const result = response['result'];
    return { result: isObject(result) ? result : {}, reply };
  }

  /** Sends a notification; resolves once the upstream accepted it (or gave up). */
  async notify(server: RuntimeServer, method: string, params: JsonObject | undefined, opts: PostOptions = {}): Promise<void> {
    const msg: JsonObject = { jsonrpc: '2.0', method };
    if (params !== undefined) msg['params'] = params;
    const reply = await this.post(server, JSON.stringify(msg), opts);
    if (reply.status === 404 && opts.sessionId) throw new UpstreamSessionGone(server.name);
  }

  /** Ends an upstream session (DELETE), ignoring servers that don't support it. */
  async terminate(server: RuntimeServer, sessionId: string, protocolVersion: string): Promise<void> {
    await this.post(server, null, { sessionId, protocolVersion, method: 'DELETE' });
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
