import type { Logger } from 'pino';
import { authFailureOf, isAuthenticated, sessionBoundTo, type Identity } from '../auth/identity.js';
import { auditRecord, authFailureRecord, type AuditRecord, type AuditTarget } from '../policy/audit.js';
import type { AccessDecision } from '../policy/access.js';
import type { Tenant } from '../tenancy/tenants.js';
import type { CatalogKind, RuntimeServer } from '../config/runtime.js';
import { AGGREGATED_PATH } from '../config/runtime.js';
import { KIND_INFO } from '../aggregation/catalog.js';
import { rewriteUpstreamMessage, type RewriteEffects } from '../aggregation/rewrite.js';
import { GatewayError, toGatewayError } from '../errors/gateway-error.js';
import { isObject, parseMessage, type JsonObject, type JsonRpcId, type JsonRpcMessage } from '../jsonrpc/message.js';
import { JsonBodyRewriter, SseRewriter } from '../jsonrpc/sse.js';
import {
  BACKEND_HEADER,
  CLIENT_CREDENTIAL_HEADERS,
  PROTOCOL_VERSION_HEADER,
  SESSION_HEADER,
} from '../routing/headers.js';
import type { OperationStatus } from '../observability/operations.js';
import { childTraceparent, traceFrom, type TraceContext } from '../observability/trace.js';
import type { GatewaySession, UpstreamSession } from '../sessions/store.js';
import { StateUnavailableError } from '../state/errors.js';
import { UpstreamRpcError, UpstreamSessionGone, type UpstreamReply } from '../upstream/client.js';
import type { GatewayContext } from './context.js';
import { CONTINUE, type ContinueDecision, type Decision, type HeaderSet, type RespondDecision } from './decision.js';
import { GATEWAY_INFO, isSupportedVersion, negotiateVersion } from './protocol.js';
import { respondAccepted, respondError, respondResult } from './respond.js';

/** Header map as Envoy sent it (lower-case names, pseudo-headers included). */
export type Headers = ReadonlyMap<string, string>;

/** Headers a client must never set for us, plus credentials that must never reach an upstream. */
const STRIPPED_REQUEST_HEADERS: readonly string[] = [BACKEND_HEADER, ...CLIENT_CREDENTIAL_HEADERS, 'x-forwarded-client-cert'];

/**
 * A body we may rewrite must not carry a length: if the whole body reached Envoy before our header
 * reply, Envoy hands it over buffered and rejects a changed body whose length no longer matches.
 */
const LENGTH_HEADER: readonly string[] = ['content-length'];

/** Largest upstream message (SSE event or JSON body) held for rewriting; larger ones stream untouched. */
const MAX_REWRITE_BYTES = 1024 * 1024;

const LIST_KINDS: Readonly<Record<string, CatalogKind>> = {
  'tools/list': 'tools',
  'prompts/list': 'prompts',
  'resources/list': 'resources',
  'resources/templates/list': 'resourceTemplates',
};

/** Request methods routed to the server that owns the named entity. */
const ROUTED_METHODS: ReadonlySet<string> = new Set([
  'tools/call',
  'prompts/get',
  'resources/read',
  'resources/subscribe',
  'resources/unsubscribe',
  'completion/complete',
]);

/** Responses whose results carry resource URIs that must be namespaced. */
const REWRITTEN_RESULTS: ReadonlySet<string> = new Set(['tools/call', 'resources/read', 'prompts/get']);

interface Target {
  readonly server: RuntimeServer;
  readonly upstream: UpstreamSession;
  /** The body sent upstream (kept for the one retry after an upstream forgets its session). */
  readonly body: string;
}

/**
 * The MCP logic for one HTTP request, driven phase by phase by the ext_proc stream.
 * Pass-through by default: anything not configured costs nothing.
 */
export class McpStream {
  private endpoint: 'aggregated' | 'passthrough' | null = null;
  private passthroughServer: RuntimeServer | null = null;
  private headers: Headers = new Map();
  private session: GatewaySession | null = null;
  private msg: JsonRpcMessage | null = null;
  private target: Target | null = null;
  private inflightKey: string | null = null;
  private rewriter: SseRewriter | JsonBodyRewriter | null = null;
  private readonly log: Logger;

  // What the operation record needs when the request ends.
  private startedAt = 0;
  private trace: TraceContext | null = null;
  private opServer: string | null = null;
  private opTool: string | null = null;
  private requestBytes: number | null = null;
  private responseStatus: OperationStatus = 'success';
  private responseError: string | number | null = null;
  private httpStatus: number | null = null;
  private finished = false;
  /** `RateLimit-*` headers of an allowed request, for its response. */
  private limitHeaders: HeaderSet[] | null = null;
  private limitApplied = false;
  private identity: Identity | null = null;
  private tenant: Tenant | null = null;
  /** Passthrough list responses filtered by access policy: the result key to filter. */
  private listFilter: CatalogKind | null = null;

  constructor(
    private readonly ctx: GatewayContext,
    /** Envoy's own span context for this request, when Envoy traces. */
    private readonly envoyTraceparent?: string,
  ) {
    this.log = ctx.log;
  }

  /** JSON-RPC id of the current request, for error bodies. */
  private get requestId(): JsonRpcId | null {
    return this.msg !== null && this.msg.kind !== 'notification' ? this.msg.id : null;
  }

  async onRequestHeaders(headers: Headers, endOfStream: boolean): Promise<Decision> {
    this.startedAt = performance.now();
    this.headers = headers;
    this.trace = traceFrom(headers.get('traceparent') ?? this.envoyTraceparent, headers.get('tracestate'));
    return this.settle(() => this.requestHeaders(headers, endOfStream));
  }

  async onRequestBody(body: Buffer): Promise<Decision> {
    this.requestBytes = body.length;
    return this.settle(() => this.requestBody(body));
  }

  async onResponseHeaders(headers: Headers): Promise<Decision> {
    this.httpStatus = Number(headers.get(':status') ?? '0');
    return this.settle(() => this.responseHeaders(headers));
  }

  /** Runs a phase; a local answer (or a failure rendered as one) ends the operation. */
  private async settle(phase: () => Promise<Decision>): Promise<Decision> {
    let d: Decision;
    try {
      d = await phase();
    } catch (err) {
      d = this.fail(err);
    }
    if (d.kind === 'respond') {
      if (this.limitHeaders !== null && d.errorCode === undefined) d = { ...d, headers: [...d.headers, ...this.limitHeaders] };
      this.httpStatus = d.status;
      if (d.errorCode !== undefined) {
        this.responseStatus = 'error';
        this.responseError = d.errorCode;
      }
      this.finish();
    }
    return d;
  }

  /** Rewrites one response chunk; failures here pass the chunk through (the response has started). */
  onResponseBody(chunk: Buffer, endOfStream: boolean): Decision {
    const rw = this.rewriter;
    if (rw === null) return CONTINUE;
    let out: Buffer;
    try {
      out = rw instanceof SseRewriter ? Buffer.from(rw.push(chunk, endOfStream)) : rw.push(chunk, endOfStream);
    } catch (err) {
      this.log.error({ err }, 'response rewrite failed; passing the rest through');
      this.rewriter = null;
      return CONTINUE;
    }
    if (endOfStream) this.finish();
    return out.equals(chunk) ? CONTINUE : { kind: 'continue', body: out };
  }

  /** The gRPC stream ended; an operation still open was cut short (client gone, reset). */
  done(): void {
    if (!this.finished) {
      this.responseStatus = 'cancelled';
      this.finish();
    }
  }

  /** Ends the operation once: frees its in-flight entry, records metrics and the log line. */
  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.inflightKey !== null) {
      this.ctx.inflight.delete(this.inflightKey);
      this.inflightKey = null;
    }
    const msg = this.msg;
    const method = msg === null ? null : msg.kind === 'response' ? 'response' : msg.method;
    const tool = this.opTool;
    let status = this.responseStatus;
    if (status === 'success' && this.httpStatus !== null && this.httpStatus >= 400) status = 'error';
    this.ctx.observer.record({
      method,
      server: this.opServer,
      tool,
      toolKnown: tool !== null && this.opServer !== null && this.ctx.catalog.knows(this.opServer, 'tools', tool),
      clientId: this.identity?.clientId ?? null,
      tenant: this.tenantLabel(),
      status,
      httpStatus: this.httpStatus,
      errorCode: this.responseError,
      traceId: this.trace?.traceId ?? '',
      durationMs: performance.now() - this.startedAt,
      requestBytes: this.requestBytes,
      endpoint: this.endpoint,
      ...(this.ctx.logArguments && msg?.kind === 'request' && method === 'tools/call' ? { arguments: msg.params?.['arguments'] } : {}),
    });
  }

  private fail(err: unknown): RespondDecision {
    const gw =
      err instanceof StateUnavailableError
        ? new GatewayError('GW_ERR_STATE_UNAVAILABLE', undefined, { headers: { 'retry-after': '1' }, cause: err })
        : toGatewayError(err);
    if (gw.code === 'GW_ERR_INTERNAL') this.log.error({ err }, 'internal error on the request path');
    return respondError(gw, this.requestId);
  }

  // ---------------------------------------------------------------- request headers

  private async requestHeaders(h: Headers, endOfStream: boolean): Promise<Decision> {
    const rc = this.ctx.rc;
    const rawPath = h.get(':path') ?? '/';
    const q = rawPath.indexOf('?');
    const path = q < 0 ? rawPath : rawPath.slice(0, q);

    if (rc.hostAllowed !== null && !rc.hostAllowed(h.get(':authority') ?? '')) {
      throw new GatewayError('GW_ERR_HTTP_BAD_HOST');
    }
    const origin = h.get('origin');
    if (origin !== undefined && !rc.originAllowed(origin)) throw new GatewayError('GW_ERR_HTTP_BAD_ORIGIN');

    const method = h.get(':method') ?? 'GET';
    const guard = this.ctx.guard;
    if (path === AGGREGATED_PATH) {
      this.endpoint = 'aggregated';
    } else {
      const server = rc.passthroughPaths.get(path);
      if (server === undefined) {
        // RFC 9728 protected-resource metadata is public: served before authentication.
        const meta = guard.auth.resource?.respond(path, method) ?? null;
        if (meta !== null) {
          const headers = Object.entries(meta.headers).map(([key, value]) => ({ key, value }));
          return { kind: 'respond', status: meta.status, headers, body: meta.body, details: 'mcpgw_resource_metadata' };
        }
        throw new GatewayError('GW_ERR_HTTP_NOT_FOUND', `Not Found: ${path}`);
      }
      this.endpoint = 'passthrough';
      this.passthroughServer = server;
    }
    await this.authenticate(h);
    if (this.passthroughServer !== null) {
      this.checkServerAccess(this.passthroughServer.name, null);
      await this.checkPassthroughSession(this.passthroughServer.name, h);
    }

    if (method === 'POST') {
      const len = Number(h.get('content-length') ?? '0');
      if (len > rc.maxBodyBytes) throw new GatewayError('GW_ERR_BODY_TOO_LARGE');
      if (endOfStream) throw new GatewayError('GW_ERR_PARSE', 'Parse error: empty body');
    }

    if (this.endpoint === 'passthrough') return { kind: 'continue', removeHeaders: STRIPPED_REQUEST_HEADERS };

    switch (method) {
      case 'POST':
        break;
      case 'DELETE':
        return this.deleteSession(h);
      case 'GET':
        // The server→client GET stream is not offered on the aggregated endpoint (yet): the spec
        // allows 405, and clients then rely on each POST's own SSE stream.
        throw new GatewayError('GW_ERR_HTTP_METHOD_NOT_ALLOWED', undefined, { headers: { allow: 'POST, DELETE' } });
      default:
        throw new GatewayError('GW_ERR_HTTP_METHOD_NOT_ALLOWED', undefined, { headers: { allow: 'POST, DELETE' } });
    }
    const accept = h.get('accept') ?? '';
    if (!accepts(accept, 'application/json') || !accepts(accept, 'text/event-stream')) {
      throw new GatewayError('GW_ERR_HTTP_NOT_ACCEPTABLE');
    }
    const ct = h.get('content-type') ?? '';
    if (!/^application\/json\s*(;|$)/i.test(ct)) throw new GatewayError('GW_ERR_HTTP_UNSUPPORTED_MEDIA_TYPE');
    const version = h.get(PROTOCOL_VERSION_HEADER);
    if (version !== undefined && !isSupportedVersion(version)) {
      throw new GatewayError('GW_ERR_PROTOCOL_VERSION_UNSUPPORTED', `Unsupported MCP-Protocol-Version: ${version}`);
    }
    return { kind: 'continue', removeHeaders: STRIPPED_REQUEST_HEADERS };
  }

  private async deleteSession(h: Headers): Promise<Decision> {
    const session = await this.requireSession(h);
    await this.ctx.sessions.delete(session.id);
    await this.ctx.upstreamSessions.terminateAll(this.ctx.rc, session);
    return { kind: 'respond', status: 200, headers: [], body: '', details: 'mcpgw_session_deleted' };
  }

  private async requireSession(h: Headers): Promise<GatewaySession> {
    const id = h.get(SESSION_HEADER);
    if (id === undefined || id === '') throw new GatewayError('GW_ERR_SESSION_MISSING');
    const session = await this.ctx.sessions.get(id);
    if (session === null) throw new GatewayError('GW_ERR_SESSION_UNKNOWN');
    if (!sessionBoundTo(session.identity, this.identity!)) {
      // Another principal's session: indistinguishable from one that does not exist.
      this.audit({ allowed: false, reason: 'session_not_owned' }, null);
      this.ctx.metrics.authFailureInc('session_not_owned');
      throw new GatewayError('GW_ERR_SESSION_UNKNOWN');
    }
    return session;
  }

  /**
   * Passthrough sessions are the upstream's own, but bound like gateway sessions (when auth is
   * configured): another identity's session, or one the gateway never saw created, is unknown.
   */
  private async checkPassthroughSession(server: string, h: Headers): Promise<void> {
    if (!this.ctx.guard.auth.enabled) return;
    const id = h.get(SESSION_HEADER);
    if (id === undefined || id === '') return;
    const owner = await this.ctx.sessions.passthroughOwner(server, id);
    if (owner === undefined) throw new GatewayError('GW_ERR_SESSION_UNKNOWN');
    if (!sessionBoundTo(owner, this.identity!)) {
      this.audit({ allowed: false, reason: 'session_not_owned' }, server);
      this.ctx.metrics.authFailureInc('session_not_owned');
      throw new GatewayError('GW_ERR_SESSION_UNKNOWN');
    }
  }

  /** A session an upstream just created on passthrough is bound to the caller that created it. */
  private async bindPassthroughSession(server: string, h: Headers): Promise<void> {
    if (!this.ctx.guard.auth.enabled) return;
    const id = h.get(SESSION_HEADER);
    if (id === undefined || id === '' || id === this.headers.get(SESSION_HEADER)) return;
    const identity = this.identity!;
    await this.ctx.sessions.bindPassthrough(server, id, isAuthenticated(identity) ? identity.subject : null);
  }

  /** Authenticates the caller and resolves its tenant (cheap when neither is configured). */
  private async authenticate(h: Headers): Promise<void> {
    const guard = this.ctx.guard;
    let identity: Identity;
    try {
      identity = await guard.auth.authenticate(h);
    } catch (err) {
      const failure = authFailureOf(err);
      if (failure !== null) {
        this.ctx.metrics.authFailureInc(failure.reason);
        this.writeAudit(authFailureRecord(failure, this.trace?.traceId ?? null, this.passthroughServer?.name ?? null));
      }
      throw err;
    }
    this.identity = identity;
    const resolved = guard.tenants.resolve(identity);
    if (!resolved.ok) {
      this.ctx.metrics.authFailureInc(resolved.reason);
      this.audit({ allowed: false, reason: resolved.reason }, null);
      throw resolved.status === 401
        ? guard.auth.challenge()
        : new GatewayError('GW_ERR_AUTH_FORBIDDEN', 'Forbidden: this client belongs to no configured tenant');
    }
    this.tenant = resolved.tenant;
  }

  /**
   * Server-level access (tenant membership, auth_required, allowed_clients). On the aggregated
   * endpoint a refusal looks like a missing entity (`hidden`); on passthrough it is 401/403/404.
   */
  private checkServerAccess(server: string, hidden: (() => GatewayError) | null): void {
    const access = this.ctx.guard.tenants.serverAccess(this.identity!, this.tenant!, server);
    if (access.allowed) return;
    this.audit({ allowed: false, reason: access.reason }, server);
    this.ctx.metrics.authFailureInc(access.reason);
    if (hidden !== null) throw hidden();
    if (access.status === 401) throw this.ctx.guard.auth.challenge();
    if (access.status === 403) throw new GatewayError('GW_ERR_AUTH_FORBIDDEN', `Forbidden: no access to server ${server}`);
    throw new GatewayError('GW_ERR_HTTP_NOT_FOUND', 'Not Found');
  }

  /** Whether the caller may see/use a server on /mcp (lists leave out the ones it may not). */
  private serverVisible(server: string): boolean {
    return this.ctx.guard.tenants.serverAccess(this.identity!, this.tenant!, server).allowed;
  }

  /** Per-name policy for one entity of one server, on the name the upstream will see. */
  private nameDecision(kind: CatalogKind, server: string, upstreamName: string): AccessDecision | null {
    const guard = this.ctx.guard;
    if (!guard.filtersNames) return null;
    const tenant = this.tenant!.name;
    switch (kind) {
      case 'tools':
        return guard.access.canUseTool(tenant, server, upstreamName);
      case 'prompts':
        return guard.access.canUsePrompt(tenant, server, upstreamName);
      case 'resources':
        return guard.access.canUseResource(tenant, server, upstreamName);
      case 'resourceTemplates':
        return guard.access.canListResourceTemplate(tenant, server, upstreamName);
    }
  }

  /** Checks a routed call against policy; a refusal is thrown as `hidden` (absent, not forbidden). */
  private checkNameAccess(kind: CatalogKind, server: string, upstreamName: string, hidden: () => GatewayError): void {
    const decision = this.nameDecision(kind, server, upstreamName);
    const target: AuditTarget =
      kind === 'tools' ? { kind: 'tool', name: upstreamName } : kind === 'prompts' ? { kind: 'prompt', name: upstreamName } : { kind: 'uri', name: upstreamName };
    if (decision !== null && !decision.allowed) {
      this.audit(decision, server, target);
      this.ctx.metrics.authFailureInc('policy_denied');
      throw hidden();
    }
    this.audit(decision ?? { allowed: true, reason: 'allowed' }, server, target);
  }

  private audit(decision: { allowed: boolean; reason: string; detail?: string | null }, server: string | null, target?: AuditTarget): void {
    if (!this.ctx.guard.auditing) return;
    const msg = this.msg;
    this.writeAudit(
      auditRecord({
        identity: this.identity,
        tenant: this.tenantLabel(),
        server,
        rpcMethod: msg === null ? null : msg.kind === 'response' ? 'response' : msg.method,
        ...(target === undefined ? {} : { target }),
        decision,
        traceId: this.trace?.traceId ?? null,
      }),
    );
  }

  private writeAudit(record: AuditRecord): void {
    this.log.info(record, 'access decision');
  }

  /** The tenant as labels and logs name it (null when tenants are not configured). */
  private tenantLabel(): string | null {
    return this.ctx.guard.tenants.enabled ? (this.tenant?.name ?? null) : null;
  }

  // ---------------------------------------------------------------- request body

  private async requestBody(body: Buffer): Promise<Decision> {
    if (body.length > this.ctx.rc.maxBodyBytes) throw new GatewayError('GW_ERR_BODY_TOO_LARGE');
    const msg = parseMessage(body);
    this.msg = msg;
    if (this.endpoint === 'passthrough') return this.passthrough(msg);

    if (msg.kind === 'request' && msg.method === 'initialize') {
      await this.limit(null, null, msg.method);
      return this.initialize(msg.id, msg.params);
    }
    const session = await this.requireSession(this.headers);
    this.session = session;

    switch (msg.kind) {
      case 'request':
        return this.request(session, msg.id, msg.method, msg.params ?? {}, msg.raw);
      case 'notification':
        return this.notification(session, msg.method, msg.params, msg.raw);
      case 'response':
        return this.clientResponse(session, msg.id, msg.raw);
    }
  }

  /**
   * Passthrough: names and sessions stay the upstream's; only the trace context is added
   * (header, and `_meta.traceparent` on requests).
   */
  private async passthrough(msg: JsonRpcMessage): Promise<Decision> {
    const server = this.passthroughServer!;
    this.opServer = server.name;
    const traceparent = childTraceparent(this.trace!);
    const setHeaders: HeaderSet[] = [{ key: 'traceparent', value: traceparent }, ...this.ctx.guard.credentials.headersFor(server.name)];
    if (msg.kind !== 'request') return { kind: 'continue', setHeaders, metadata: this.metadata() };
    if (msg.method === 'tools/call' && typeof msg.params?.['name'] === 'string') this.opTool = msg.params['name'];
    this.passthroughPolicy(server.name, msg.method, msg.params);
    await this.limit(server.name, this.opTool, msg.method);
    const body = JSON.stringify({ ...msg.raw, params: withTrace(msg.params, traceparent, this.trace!) });
    setHeaders.push({ key: 'content-length', value: String(Buffer.byteLength(body)) });
    return { kind: 'continue', setHeaders, body: Buffer.from(body), metadata: this.metadata() };
  }

  /**
   * Applies rate limits and quotas (nothing to do when none are configured). A refusal is a 429
   * naming the limit, with `Retry-After` and the `RateLimit-*` headers.
   */
  private async limit(server: string | null, tool: string | null, method: string): Promise<void> {
    const limiter = this.ctx.limiter;
    if (!limiter.enabled) return;
    this.limitApplied = true;
    const clientId = this.identity?.clientId ?? null;
    const tenant = this.tenantLabel();
    const outcome = await limiter.check({ server, tool, method, clientId, ip: this.clientIp(), userId: clientId, tenant });
    if (!outcome.allowed) {
      this.ctx.metrics.rateLimitedInc(server ?? 'none', tenant ?? 'none', outcome.limit);
      throw new GatewayError(outcome.code, outcome.message, {
        headers: outcome.headers,
        data: { limit: outcome.limit, retry_after_seconds: outcome.retryAfterSeconds },
      });
    }
    const entries = Object.entries(outcome.headers);
    this.limitHeaders = entries.length === 0 ? null : entries.map(([key, value]) => ({ key, value }));
  }

  /** The caller's address: Envoy appends the peer it saw to X-Forwarded-For (use_remote_address). */
  private clientIp(): string | null {
    const xff = this.headers.get('x-forwarded-for');
    if (xff === undefined) return null;
    const last = xff.lastIndexOf(',');
    return (last < 0 ? xff : xff.slice(last + 1)).trim() || null;
  }

  /**
   * Per-name policy on passthrough: names are the upstream's own, so checks run on them directly;
   * list responses are filtered on the way back.
   */
  private passthroughPolicy(server: string, method: string, params: JsonObject | undefined): void {
    if (!this.ctx.guard.filtersNames && !this.ctx.guard.auditing) return;
    const listKind = LIST_KINDS[method];
    if (listKind !== undefined) {
      if (this.ctx.guard.filtersNames) this.listFilter = listKind;
      return;
    }
    const name = params?.['name'];
    const uri = params?.['uri'];
    if ((method === 'tools/call' || method === 'prompts/get') && typeof name === 'string') {
      const tool = method === 'tools/call';
      const absent = (): GatewayError => new GatewayError(tool ? 'GW_ERR_TOOL_UNKNOWN' : 'GW_ERR_PROMPT_UNKNOWN', `${tool ? 'Unknown tool' : 'Unknown prompt'}: ${name}`);
      this.checkNameAccess(tool ? 'tools' : 'prompts', server, name, absent);
    } else if (method.startsWith('resources/') && typeof uri === 'string') {
      this.checkNameAccess('resources', server, uri, () => new GatewayError('GW_ERR_RESOURCE_UNKNOWN', `Resource not found: ${uri}`, { data: { uri } }));
    }
  }

  /** Drops the entries of a passthrough list result the caller may not use. */
  private filterListResult(server: string, kind: CatalogKind, data: string): string | null {
    let msg: unknown;
    try {
      msg = JSON.parse(data);
    } catch {
      return null;
    }
    if (!isObject(msg) || !isObject(msg['result'])) return null;
    const key = KIND_INFO[kind].key;
    const items = msg['result'][key];
    if (!Array.isArray(items)) return null;
    const field = kind === 'resources' ? 'uri' : kind === 'resourceTemplates' ? 'uriTemplate' : 'name';
    const kept = items.filter((it) => isObject(it) && typeof it[field] === 'string' && (this.nameDecision(kind, server, it[field])?.allowed ?? true));
    if (kept.length === items.length) return null;
    msg['result'][key] = kept;
    return JSON.stringify(msg);
  }

  /** Dynamic metadata for Envoy's access log (namespace mcp.gateway). */
  private metadata(): Record<string, string> {
    const msg = this.msg;
    const md: Record<string, string> = { trace_id: this.trace?.traceId ?? '' };
    if (msg !== null) md['method'] = msg.kind === 'response' ? 'response' : msg.method.slice(0, 100);
    if (this.opServer !== null) md['server'] = this.opServer;
    if (this.opTool !== null) md['tool'] = this.opTool.slice(0, 128);
    if (this.identity?.clientId) md['client'] = this.identity.clientId;
    const tenant = this.tenantLabel();
    if (tenant !== null) md['tenant'] = tenant;
    return md;
  }

  private async initialize(id: JsonRpcId, params: JsonObject | undefined): Promise<Decision> {
    const p = params ?? {};
    const protocolVersion = negotiateVersion(p['protocolVersion']);
    const visible = this.ctx.rc.serverList.filter((s) => this.serverVisible(s.name));
    const caps = await Promise.all(visible.map((s) => this.ctx.catalog.capabilities(s)));
    const identity = this.identity!;
    const session = await this.ctx.sessions.create({
      protocolVersion,
      clientCapabilities: isObject(p['capabilities']) ? p['capabilities'] : {},
      clientInfo: isObject(p['clientInfo']) ? p['clientInfo'] : { name: 'unknown', version: '0' },
      // Bound to who created it; anonymous sessions (no auth configured) bind to nobody.
      identity: isAuthenticated(identity) ? identity.subject : null,
    });
    return respondResult(
      id,
      { protocolVersion, capabilities: unionCapabilities(caps), serverInfo: GATEWAY_INFO },
      [{ key: SESSION_HEADER, value: session.id }],
      'mcpgw_initialize',
    );
  }

  private async request(
    session: GatewaySession,
    id: JsonRpcId,
    method: string,
    params: JsonObject,
    raw: JsonObject,
  ): Promise<Decision> {
    if (ROUTED_METHODS.has(method)) return this.routeRequest(session, id, method, params, raw);
    // Gateway-answered methods are limited too: a client looping on tools/list must not escape.
    await this.limit(null, null, method);
    const listKind = LIST_KINDS[method];
    if (listKind !== undefined) return this.list(id, listKind, params);
    switch (method) {
      case 'ping':
        return respondResult(id, {});
      case 'logging/setLevel':
        return this.setLogLevel(session, id, params);
      default:
        throw new GatewayError('GW_ERR_METHOD_UNKNOWN', `Method not found: ${method}`);
    }
  }

  private async list(id: JsonRpcId, kind: CatalogKind, params: JsonObject): Promise<Decision> {
    const merged = await this.ctx.catalog.list(kind);
    // Each caller sees only what it may use: filtered at answer time, never cached across callers.
    let items = merged.items;
    const hiddenServers = this.ctx.rc.serverList.filter((s) => !this.serverVisible(s.name));
    if (hiddenServers.length > 0 || this.ctx.guard.filtersNames) {
      const hidden = new Set(hiddenServers.map((s) => s.name));
      items = items.filter((e) => !hidden.has(e.server) && (this.nameDecision(kind, e.server, e.upstreamName)?.allowed ?? true));
    }
    const pageSize = this.ctx.rc.pageSize;
    const offset = decodeCursor(params['cursor'], kind);
    const page = items.slice(offset, offset + pageSize).map((e) => e.item);
    const result: JsonObject = { [KIND_INFO[kind].key]: page };
    if (offset + pageSize < items.length) result['nextCursor'] = encodeCursor(kind, offset + pageSize);
    return respondResult(id, result);
  }

  private async setLogLevel(session: GatewaySession, id: JsonRpcId, params: JsonObject): Promise<Decision> {
    const level = params['level'];
    if (typeof level !== 'string') throw new GatewayError('GW_ERR_PARAMS_INVALID', 'Invalid params: level is required');
    await this.ctx.sessions.setLogLevel(session, level);
    await Promise.all(
      [...session.upstream.entries()].map(async ([name, up]) => {
        const server = this.ctx.rc.servers.get(name);
        if (server === undefined) return;
        await this.ctx.upstream
          .call(server, 'logging/setLevel', { level }, { sessionId: up.sessionId, protocolVersion: up.protocolVersion })
          .catch((err: unknown) => this.log.debug({ server: name, err }, 'logging/setLevel not accepted'));
      }),
    );
    return respondResult(id, {});
  }

  /** Finds the owning server, rewrites the name/URI back to the upstream's own, and routes. */
  private async routeRequest(
    session: GatewaySession,
    id: JsonRpcId,
    method: string,
    params: JsonObject,
    raw: JsonObject,
  ): Promise<Decision> {
    try {
      return await this.resolveAndRoute(session, id, method, params, raw);
    } catch (err) {
      // Calls to names that do not resolve still spend budget: probing must not be free.
      if (!this.limitApplied) await this.limit(null, null, method);
      throw err;
    }
  }

  private async resolveAndRoute(
    session: GatewaySession,
    id: JsonRpcId,
    method: string,
    params: JsonObject,
    raw: JsonObject,
  ): Promise<Decision> {
    const ns = this.ctx.rc.namespace;
    let server: RuntimeServer | undefined;
    const newParams: JsonObject = { ...params };
    switch (method) {
      case 'tools/call':
      case 'prompts/get': {
        const name = params['name'];
        if (typeof name !== 'string') throw new GatewayError('GW_ERR_PARAMS_INVALID', 'Invalid params: name is required');
        const owned = ns.parseName(name);
        server = owned === null ? undefined : this.ctx.rc.servers.get(owned.server);
        const kind = method === 'tools/call' ? 'tools' : 'prompts';
        const unknown = kind === 'tools' ? 'GW_ERR_TOOL_UNKNOWN' : 'GW_ERR_PROMPT_UNKNOWN';
        const label = kind === 'tools' ? 'Unknown tool' : 'Unknown prompt';
        const absent = (): GatewayError => new GatewayError(unknown, `${label}: ${name}`);
        if (owned === null || server === undefined) throw absent();
        // Forbidden and blocked names get exactly the answer a missing one gets.
        this.checkServerAccess(server.name, absent);
        this.checkNameAccess(kind, server.name, owned.name, absent);
        if (!(await this.ctx.catalog.has(server, kind, owned.name))) throw absent();
        newParams['name'] = owned.name;
        if (kind === 'tools') this.opTool = owned.name;
        break;
      }
      case 'completion/complete': {
        const ref = params['ref'];
        if (!isObject(ref)) throw new GatewayError('GW_ERR_PARAMS_INVALID', 'Invalid params: ref is required');
        const byName = ref['type'] === 'ref/prompt';
        const key = byName ? 'name' : 'uri';
        const value = ref[key];
        const owned = typeof value === 'string' ? (byName ? ns.parseName(value) : ns.parseUri(value)) : null;
        server = owned === null ? undefined : this.ctx.rc.servers.get(owned.server);
        const absent = (): GatewayError => new GatewayError('GW_ERR_PARAMS_INVALID', `Invalid params: unknown reference ${String(value)}`);
        if (owned === null || server === undefined) throw absent();
        this.checkServerAccess(server.name, absent);
        this.checkNameAccess(byName ? 'prompts' : 'resourceTemplates', server.name, owned.name, absent);
        newParams['ref'] = { ...ref, [key]: owned.name };
        break;
      }
      default: {
        // resources/read, resources/subscribe, resources/unsubscribe
        const uri = params['uri'];
        if (typeof uri !== 'string') throw new GatewayError('GW_ERR_PARAMS_INVALID', 'Invalid params: uri is required');
        const owned = ns.parseUri(uri);
        server = owned === null ? undefined : this.ctx.rc.servers.get(owned.server);
        const absent = (): GatewayError => new GatewayError('GW_ERR_RESOURCE_UNKNOWN', `Resource not found: ${uri}`, { data: { uri } });
        if (owned === null || server === undefined) throw absent();
        this.checkServerAccess(server.name, absent);
        this.checkNameAccess('resources', server.name, owned.name, absent);
        newParams['uri'] = owned.name;
      }
    }
    await this.limit(server.name, this.opTool, method);
    this.inflightKey = `${session.id}\n${JSON.stringify(id)}`;
    this.ctx.inflight.set(this.inflightKey, server.name);
    const traceparent = childTraceparent(this.trace!);
    return this.forward(session, server, JSON.stringify({ ...raw, params: withTrace(newParams, traceparent, this.trace!) }), traceparent);
  }

  private async notification(
    session: GatewaySession,
    method: string,
    params: JsonObject | undefined,
    raw: JsonObject,
  ): Promise<Decision> {
    switch (method) {
      case 'notifications/cancelled': {
        const requestId = params?.['requestId'];
        const name = this.ctx.inflight.get(`${session.id}\n${JSON.stringify(requestId)}`);
        const server = name === undefined ? undefined : this.ctx.rc.servers.get(name);
        if (server === undefined) return respondAccepted();
        return this.forward(session, server, JSON.stringify(raw));
      }
      case 'notifications/roots/list_changed':
        void this.ctx.upstreamSessions.broadcast(this.ctx.rc, session, method, params);
        return respondAccepted();
      default:
        // notifications/initialized and anything else the gateway itself consumes.
        return respondAccepted();
    }
  }

  /** A client's answer to a server→client request: back to the upstream that asked, original id restored. */
  private async clientResponse(session: GatewaySession, id: JsonRpcId, raw: JsonObject): Promise<Decision> {
    const owner = this.ctx.rc.namespace.parseServerRequestId(id);
    const server = owner === null ? undefined : this.ctx.rc.servers.get(owner.server);
    if (owner === null || server === undefined || !this.serverVisible(server.name)) {
      this.log.warn({ id: String(id).slice(0, 100) }, 'client answered a request the gateway never sent; dropped');
      return respondAccepted();
    }
    return this.forward(session, server, JSON.stringify({ ...raw, id: owner.id }));
  }

  /** Points Envoy at the server's route with the upstream session and the rewritten body. */
  private async forward(
    session: GatewaySession,
    server: RuntimeServer,
    body: string,
    traceparent: string = childTraceparent(this.trace!),
  ): Promise<ContinueDecision> {
    this.opServer = server.name;
    const upstream = await this.upstreamSession(session, server);
    this.target = { server, upstream, body };
    const mutation = routeMutation(server, upstream, body);
    return {
      kind: 'continue',
      ...mutation,
      setHeaders: [...mutation.setHeaders!, { key: 'traceparent', value: traceparent }, ...this.ctx.guard.credentials.headersFor(server.name)],
      metadata: this.metadata(),
    };
  }

  private async upstreamSession(session: GatewaySession, server: RuntimeServer): Promise<UpstreamSession> {
    try {
      return await this.ctx.upstreamSessions.get(session, server);
    } catch (err) {
      throw upstreamFailure(server, err);
    }
  }

  // ---------------------------------------------------------------- response

  private async responseHeaders(h: Headers): Promise<Decision> {
    const status = Number(h.get(':status') ?? '0');
    const ct = h.get('content-type') ?? '';
    const mcpReply = ct.includes('application/json') || ct.includes('text/event-stream');
    const server = this.endpoint === 'passthrough' ? this.passthroughServer : (this.target?.server ?? null);
    if (server === null) {
      this.finish();
      return CONTINUE;
    }

    if (status >= 500 && !mcpReply) {
      // Envoy's own reply (no healthy host, connect failure, timeout): say which server, as JSON-RPC.
      if (status !== 504) this.ctx.catalog.reportUnavailable(server);
      const code = status === 504 ? 'GW_ERR_UPSTREAM_TIMEOUT' : 'GW_ERR_UPSTREAM_UNAVAILABLE';
      const what = status === 504 ? 'Upstream server timed out' : 'Upstream server unavailable';
      return respondError(new GatewayError(code, `${what}: ${server.name}`), this.requestId);
    }
    if (this.endpoint === 'passthrough') {
      await this.bindPassthroughSession(server.name, h);
      const filter = this.listFilter;
      if (filter !== null && (ct.includes('text/event-stream') || ct.includes('application/json'))) {
        const rewrite = (d: string): string | null => this.filterListResult(server.name, filter, d);
        this.rewriter = ct.includes('text/event-stream') ? new SseRewriter(rewrite, MAX_REWRITE_BYTES) : new JsonBodyRewriter(rewrite, MAX_REWRITE_BYTES);
        return { kind: 'continue', setHeaders: this.limitHeaders ?? [], removeHeaders: LENGTH_HEADER, responseBodyMode: 'STREAMED' };
      }
      this.finish();
      return this.limitHeaders === null ? CONTINUE : { kind: 'continue', setHeaders: this.limitHeaders };
    }

    const session = this.session;
    const target = this.target;
    if (session === null || target === null) {
      this.finish();
      return CONTINUE;
    }
    if (status === 404 && target.upstream.sessionId !== null) return this.retryWithNewSession(session, target);

    const setHeaders: HeaderSet[] = [{ key: SESSION_HEADER, value: session.id }];
    if (this.limitHeaders !== null) setHeaders.push(...this.limitHeaders);
    const requestMethod = this.msg?.kind === 'request' ? this.msg.method : null;
    if (ct.includes('text/event-stream')) {
      this.rewriter = new SseRewriter((d) => this.rewriteData(target.server, requestMethod, d), MAX_REWRITE_BYTES);
      return { kind: 'continue', setHeaders, removeHeaders: LENGTH_HEADER, responseBodyMode: 'STREAMED' };
    }
    if (ct.includes('application/json') && requestMethod !== null && REWRITTEN_RESULTS.has(requestMethod)) {
      this.rewriter = new JsonBodyRewriter((d) => this.rewriteData(target.server, requestMethod, d), MAX_REWRITE_BYTES);
      return { kind: 'continue', setHeaders, removeHeaders: LENGTH_HEADER, responseBodyMode: 'STREAMED' };
    }
    this.finish();
    return { kind: 'continue', setHeaders };
  }

  /** One upstream message as text → its aggregated form, or null when nothing changes. */
  private rewriteData(server: RuntimeServer, requestMethod: string | null, data: string): string | null {
    let msg: unknown;
    try {
      msg = JSON.parse(data);
    } catch {
      return null;
    }
    if (!isObject(msg)) return null;
    if (this.msg?.kind === 'request' && msg['id'] === this.msg.id && msg['method'] === undefined) this.observeResponse(msg);
    const effects: RewriteEffects = {};
    const changed = rewriteUpstreamMessage(msg, server.name, requestMethod, this.ctx.rc.namespace, effects);
    if (effects.listChanged !== undefined) {
      this.ctx.catalog.invalidate(server.name, effects.listChanged);
      if (effects.listChanged === 'resources') this.ctx.catalog.invalidate(server.name, 'resourceTemplates');
    }
    return changed ? JSON.stringify(msg) : null;
  }

  /** Notes whether the upstream's answer to our request was an error or a tool error. */
  private observeResponse(msg: JsonObject): void {
    const error = msg['error'];
    if (isObject(error)) {
      this.responseStatus = 'error';
      this.responseError = typeof error['code'] === 'number' ? error['code'] : null;
    } else if (isObject(msg['result']) && msg['result']['isError'] === true) {
      this.responseStatus = 'tool_error';
    }
  }

  /**
   * The upstream forgot our session (restart or expiry): set up a new one and replay the message
   * once, through the internal listener, answering the client with what comes back.
   */
  private async retryWithNewSession(session: GatewaySession, target: Target): Promise<Decision> {
    const server = target.server;
    this.log.info({ server: server.name }, 'upstream lost its session; re-initialising and retrying once');
    let reply: UpstreamReply;
    try {
      const fresh = await this.ctx.upstreamSessions.renew(session, server, target.upstream);
      reply = await this.ctx.upstream.post(server, target.body, {
        sessionId: fresh.sessionId,
        protocolVersion: fresh.protocolVersion,
      });
    } catch (err) {
      throw upstreamFailure(server, err);
    }
    const requestMethod = this.msg?.kind === 'request' ? this.msg.method : null;
    let body = reply.body;
    const isSse = reply.contentType.includes('text/event-stream');
    if (isSse || (reply.contentType.includes('application/json') && requestMethod !== null)) {
      const rewrite = (d: string): string | null => this.rewriteData(server, requestMethod, d);
      const buf = Buffer.from(body);
      body = isSse
        ? new SseRewriter(rewrite, MAX_REWRITE_BYTES).push(buf, true)
        : new JsonBodyRewriter(rewrite, MAX_REWRITE_BYTES).push(buf, true).toString('utf8');
    }
    const headers: HeaderSet[] = [{ key: SESSION_HEADER, value: session.id }];
    if (reply.contentType !== '') headers.push({ key: 'content-type', value: reply.contentType });
    return { kind: 'respond', status: reply.status, headers, body, details: 'mcpgw_upstream_session_renewed' };
  }
}

/** Request-side mutation that sends the (rewritten) body to one server's route. */
function routeMutation(server: RuntimeServer, upstream: UpstreamSession, body: string): Omit<ContinueDecision, 'kind'> {
  const setHeaders: HeaderSet[] = [
    { key: BACKEND_HEADER, value: server.name },
    { key: PROTOCOL_VERSION_HEADER, value: upstream.protocolVersion },
    { key: 'content-length', value: String(Buffer.byteLength(body)) },
  ];
  const removeHeaders = [...STRIPPED_REQUEST_HEADERS];
  if (upstream.sessionId !== null) setHeaders.push({ key: SESSION_HEADER, value: upstream.sessionId });
  else removeHeaders.push(SESSION_HEADER);
  return { setHeaders, removeHeaders: removeHeaders.filter((h) => h !== BACKEND_HEADER), body: Buffer.from(body), clearRouteCache: true };
}

function upstreamFailure(server: RuntimeServer, err: unknown): Error {
  if (err instanceof GatewayError || err instanceof StateUnavailableError) return err;
  if (err instanceof UpstreamRpcError) {
    return new GatewayError('GW_ERR_UPSTREAM_UNAVAILABLE', `Upstream server ${server.name} refused the session: ${err.message}`);
  }
  if (err instanceof UpstreamSessionGone) {
    return new GatewayError('GW_ERR_UPSTREAM_UNAVAILABLE', `Upstream server unavailable: ${server.name}`);
  }
  return new GatewayError('GW_ERR_UPSTREAM_UNAVAILABLE', `Upstream server unavailable: ${server.name}`, { cause: err });
}

/** Params with the W3C trace context added to `_meta` (the MCP convention for propagation). */
function withTrace(params: JsonObject | undefined, traceparent: string, trace: TraceContext): JsonObject {
  const p = params ?? {};
  const meta: JsonObject = { ...(isObject(p['_meta']) ? p['_meta'] : {}), traceparent };
  if (trace.tracestate !== null) meta['tracestate'] = trace.tracestate;
  return { ...p, _meta: meta };
}

/** Union of the upstreams' capabilities as the gateway offers them on /mcp. */
function unionCapabilities(caps: readonly (JsonObject | null)[]): JsonObject {
  const out: JsonObject = {};
  let subscribe = false;
  for (const c of caps) {
    if (c === null) continue;
    if (isObject(c['tools'])) out['tools'] = {};
    if (isObject(c['prompts'])) out['prompts'] = {};
    if (isObject(c['resources'])) {
      out['resources'] = {};
      if (c['resources']['subscribe'] === true) subscribe = true;
    }
    if (isObject(c['completions'])) out['completions'] = {};
    if (isObject(c['logging'])) out['logging'] = {};
  }
  if (subscribe && isObject(out['resources'])) out['resources'] = { subscribe: true };
  return out;
}

/** Whether an Accept header admits a media type (wildcards included). */
export function accepts(accept: string, type: string): boolean {
  const [major] = type.split('/');
  for (const part of accept.split(',')) {
    const media = part.split(';')[0]!.trim().toLowerCase();
    if (media === type || media === '*/*' || media === `${major}/*`) return true;
  }
  return false;
}

function encodeCursor(kind: CatalogKind, offset: number): string {
  return Buffer.from(JSON.stringify({ k: kind, o: offset })).toString('base64url');
}

function decodeCursor(cursor: unknown, kind: CatalogKind): number {
  if (cursor === undefined) return 0;
  if (typeof cursor === 'string') {
    try {
      const v: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
      if (isObject(v) && v['k'] === kind && Number.isInteger(v['o']) && (v['o'] as number) >= 0) return v['o'] as number;
    } catch {
      // fall through to the error below
    }
  }
  throw new GatewayError('GW_ERR_PARAMS_INVALID', 'Invalid params: unknown cursor');
}
