/**
 * MCP clients for tests: the official SDK client over Streamable HTTP, plus raw `fetch` helpers
 * for the requests an SDK client would never send.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  LATEST_PROTOCOL_VERSION,
  ListRootsRequestSchema,
  type ClientCapabilities,
  type CreateMessageRequest,
  type CreateMessageResult,
  type ElicitRequest,
  type ElicitResult,
  type Root,
  type ServerNotification,
} from '@modelcontextprotocol/sdk/types.js';

export interface ConnectClientOptions {
  /** clientInfo (default `{ name: 'test-client', version: '0.0.0' }`). */
  name?: string;
  version?: string;
  /** Capabilities to declare; handlers below add theirs (`sampling`, `elicitation`, `roots`) automatically. */
  capabilities?: ClientCapabilities;
  /** Answers `sampling/createMessage`; declares the `sampling` capability. */
  onSampling?: (params: CreateMessageRequest['params']) => CreateMessageResult | Promise<CreateMessageResult>;
  /** Answers `elicitation/create`; declares the `elicitation` capability (form mode) unless `capabilities.elicitation` is given. */
  onElicitation?: (params: ElicitRequest['params']) => ElicitResult | Promise<ElicitResult>;
  /** Answers `roots/list`; declares `roots: { listChanged: true }`. */
  roots?: Root[] | (() => Root[] | Promise<Root[]>);
  /** Extra HTTP headers on every request (e.g. Authorization). */
  headers?: Record<string, string>;
  /** Resume an existing session instead of initializing a new one. */
  sessionId?: string;
  /** Custom fetch (e.g. to record requests). */
  fetch?: typeof fetch;
}

export interface ConnectedClient {
  client: Client;
  transport: StreamableHTTPClientTransport;
  /** The `Mcp-Session-Id` the server assigned, if any. */
  readonly sessionId: string | undefined;
  /** Every server notification the client received that no specific handler took, in order. */
  notifications: ServerNotification[];
  /** Sends DELETE for the session (errors ignored unless `strict`). */
  terminate(strict?: boolean): Promise<void>;
  /** Closes the client; with `{ terminate: true }` sends DELETE for the session first. */
  close(opts?: { terminate?: boolean }): Promise<void>;
}

/** Connects an SDK `Client` to `url` (a Streamable HTTP MCP endpoint) and runs `initialize`. */
export async function connectClient(url: string, opts: ConnectClientOptions = {}): Promise<ConnectedClient> {
  const capabilities: ClientCapabilities = { ...(opts.capabilities ?? {}) };
  if (opts.onSampling !== undefined) capabilities.sampling ??= {};
  if (opts.onElicitation !== undefined) capabilities.elicitation ??= { form: {} };
  if (opts.roots !== undefined) capabilities.roots ??= { listChanged: true };

  const client = new Client({ name: opts.name ?? 'test-client', version: opts.version ?? '0.0.0' }, { capabilities });
  const notifications: ServerNotification[] = [];
  client.fallbackNotificationHandler = async (n) => {
    notifications.push(n as ServerNotification);
  };

  const onSampling = opts.onSampling;
  if (onSampling !== undefined) {
    client.setRequestHandler(CreateMessageRequestSchema, async (req) => onSampling(req.params));
  }
  const onElicitation = opts.onElicitation;
  if (onElicitation !== undefined) {
    client.setRequestHandler(ElicitRequestSchema, async (req) => onElicitation(req.params));
  }
  const roots = opts.roots;
  if (roots !== undefined) {
    client.setRequestHandler(ListRootsRequestSchema, async () => ({
      roots: typeof roots === 'function' ? await roots() : roots,
    }));
  }

  const transport = new StreamableHTTPClientTransport(new URL(url), {
    ...(opts.headers !== undefined ? { requestInit: { headers: opts.headers } } : {}),
    ...(opts.sessionId !== undefined ? { sessionId: opts.sessionId } : {}),
    ...(opts.fetch !== undefined ? { fetch: opts.fetch } : {}),
  });
  await client.connect(transport);

  const terminate = async (strict = false): Promise<void> => {
    try {
      await transport.terminateSession();
    } catch (err) {
      if (strict) throw err;
    }
  };
  return {
    client,
    transport,
    get sessionId() {
      return transport.sessionId;
    },
    notifications,
    terminate,
    async close(closeOpts = {}) {
      if (closeOpts.terminate === true) await terminate();
      await client.close();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// raw HTTP

/** The tool names a fresh session on `url` lists (the session is ended after). */
export async function toolNames(url: string, headers?: Record<string, string>): Promise<string[]> {
  const c = await connectClient(url, headers === undefined ? {} : { headers });
  try {
    return (await c.client.listTools()).tools.map((t) => t.name);
  } finally {
    await c.close({ terminate: true });
  }
}

export interface RawResponse {
  status: number;
  headers: Headers;
  text: string;
  /**
   * The JSON body: for `application/json` the parsed body; for `text/event-stream` the last
   * message in the stream (normally the JSON-RPC response). Undefined if nothing parsed.
   */
  json?: unknown;
  /** For `text/event-stream` responses: every `data:` payload, parsed as JSON where possible. */
  messages: unknown[];
  /** The `Mcp-Session-Id` response header, if present. */
  sessionId: string | undefined;
}

export const DEFAULT_MCP_HEADERS: Readonly<Record<string, string>> = {
  accept: 'application/json, text/event-stream',
  'content-type': 'application/json',
};

/** Splits an SSE body into the `data:` payloads of its events (parsed as JSON when possible). */
export function parseSse(text: string): unknown[] {
  const out: unknown[] = [];
  for (const event of text.split(/\r?\n\r?\n/)) {
    const data = event
      .split(/\r?\n/)
      .filter((l) => l.startsWith('data:'))
      .map((l) => l.slice(5).replace(/^ /, ''));
    if (data.length === 0) continue;
    const payload = data.join('\n');
    try {
      out.push(JSON.parse(payload));
    } catch {
      out.push(payload);
    }
  }
  return out;
}

/**
 * An MCP HTTP response body as tests read it: for `text/event-stream` every `data:` payload and
 * the last one as `json`; otherwise the parsed JSON body (undefined if it is not JSON).
 */
export function parseMcpBody(text: string, contentType: string): { json: unknown; messages: unknown[] } {
  if (contentType.includes('text/event-stream')) {
    const messages = parseSse(text);
    return { json: messages.at(-1), messages };
  }
  if (text === '') return { json: undefined, messages: [] };
  try {
    return { json: JSON.parse(text), messages: [] };
  } catch {
    return { json: undefined, messages: [] };
  }
}

export interface RawRequestOptions {
  method?: string;
  /** Strings are sent exactly as given (for malformed-JSON tests); anything else is JSON-encoded. */
  body?: unknown;
  /** Merged over the MCP defaults (Accept + Content-Type); a header set to `undefined`/`null` is removed. */
  headers?: Record<string, string | undefined | null>;
  /** Abort after this long (default 10 s). Do not use on GET streams that stay open. */
  timeoutMs?: number;
  /** Aborts the request early (the test is done with it). */
  signal?: AbortSignal;
}

/** Any HTTP request with the MCP default headers; reads the whole body. */
export async function rawRequest(url: string, opts: RawRequestOptions = {}): Promise<RawResponse> {
  const method = opts.method ?? 'POST';
  const headers: Record<string, string> = { ...DEFAULT_MCP_HEADERS };
  for (const [k, v] of Object.entries(opts.headers ?? {})) {
    const key = k.toLowerCase();
    if (v === undefined || v === null) delete headers[key];
    else headers[key] = v;
  }
  let body: string | undefined;
  if (opts.body !== undefined) body = typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
  if (body === undefined) delete headers['content-type'];

  const res = await fetch(url, {
    method,
    headers,
    ...(body !== undefined ? { body } : {}),
    signal: opts.signal === undefined ? AbortSignal.timeout(opts.timeoutMs ?? 10_000) : AbortSignal.any([opts.signal, AbortSignal.timeout(opts.timeoutMs ?? 10_000)]),
  });
  const text = await res.text();
  const { json, messages } = parseMcpBody(text, res.headers.get('content-type') ?? '');
  return {
    status: res.status,
    headers: res.headers,
    text,
    ...(json !== undefined ? { json } : {}),
    messages,
    sessionId: res.headers.get('mcp-session-id') ?? undefined,
  };
}

/**
 * POSTs `body` to `url` with `Accept: application/json, text/event-stream` and
 * `Content-Type: application/json` (override or remove them via `headers`).
 */
export function postJson(
  url: string,
  body: unknown,
  headers?: Record<string, string | undefined | null>,
  opts: { timeoutMs?: number } = {},
): Promise<RawResponse> {
  return rawRequest(url, { method: 'POST', body, ...(headers !== undefined ? { headers } : {}), ...opts });
}

/**
 * Runs the MCP handshake by hand (`initialize` + `notifications/initialized`) and returns the
 * session id and the initialize result, for raw tests that need a session.
 */
export async function rawInitialize(
  url: string,
  opts: { headers?: Record<string, string>; protocolVersion?: string; capabilities?: ClientCapabilities } = {},
): Promise<{ sessionId: string | undefined; protocolVersion: string; result: unknown; response: RawResponse }> {
  const protocolVersion = opts.protocolVersion ?? LATEST_PROTOCOL_VERSION;
  const response = await postJson(
    url,
    {
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion, capabilities: opts.capabilities ?? {}, clientInfo: { name: 'raw-test-client', version: '0.0.0' } },
    },
    opts.headers,
  );
  const msg = response.json as { result?: { protocolVersion?: string }; error?: unknown } | undefined;
  if (response.status !== 200 || msg?.result === undefined) {
    throw new Error(`raw initialize failed: HTTP ${response.status}: ${response.text}`);
  }
  const negotiated = msg.result.protocolVersion ?? protocolVersion;
  const sessionHeaders: Record<string, string> = { ...(opts.headers ?? {}), 'mcp-protocol-version': negotiated };
  if (response.sessionId !== undefined) sessionHeaders['mcp-session-id'] = response.sessionId;
  const ack = await postJson(url, { jsonrpc: '2.0', method: 'notifications/initialized' }, sessionHeaders);
  if (ack.status !== 202 && ack.status !== 200) {
    throw new Error(`notifications/initialized answered HTTP ${ack.status}: ${ack.text}`);
  }
  return { sessionId: response.sessionId, protocolVersion: negotiated, result: msg.result, response };
}
