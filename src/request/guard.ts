import { isAuthenticated, sessionBoundTo, type AuthFailure, type Identity } from '../auth/identity.js';
import type { RuntimeView } from '../config/runtime.js';
import { GatewayError } from '../errors/gateway-error.js';
import { isObject, parseJson, stringifyJson } from '../mcp/message.js';
import { KIND_INFO, type CatalogKind } from '../mcp/protocol.js';
import type { AccessDecision } from '../policy/access.js';
import { auditRecord, authFailureRecord, type AuditRecord, type AuditTarget } from '../policy/audit.js';
import { identityRefusal } from '../policy/tenants.js';
import type { RequestContext } from './context.js';
import { rpcMethod, type Caller, type RequestState } from './state.js';

/**
 * Every access decision on the request path: tenant resolution, server access, per-name policy,
 * list filtering, session ownership, and the audit line and metric each decision leaves. The
 * rules themselves live in `policy/`; this module applies them to one request.
 */

type Decided = { readonly allowed: boolean; readonly reason: string; readonly detail?: string | null };

/** The tenant as labels and logs name it (null when tenants are not configured). */
export function tenantLabel(ctx: RequestContext, state: RequestState): string | null {
  return ctx.guard.tenants.enabled ? (state.caller?.tenant.name ?? null) : null;
}

function writeAudit(ctx: RequestContext, record: AuditRecord): void {
  ctx.log.info(record, 'access decision');
  ctx.recent?.audit(record);
}

function audit(ctx: RequestContext, state: RequestState, identity: Identity | null, decision: Decided, server: string | null, target?: AuditTarget): void {
  if (!ctx.guard.auditing) return;
  const record = auditRecord({
    identity,
    tenant: tenantLabel(ctx, state),
    server,
    rpcMethod: rpcMethod(state),
    ...(target === undefined ? {} : { target }),
    decision,
    traceId: state.trace.traceId,
  });
  // An allowed request is audited on its operation line: one line per request, not two. A
  // refusal has its own line, and the operation then claims no allow.
  if (decision.allowed && ctx.guard.foldsAllowed) {
    if (!state.refused) state.allowed = record;
    return;
  }
  if (!decision.allowed) {
    state.refused = true;
    state.allowed = null;
  }
  writeAudit(ctx, record);
}

function deny(ctx: RequestContext, state: RequestState, identity: Identity | null, reason: string, server: string | null, target?: AuditTarget): void {
  audit(ctx, state, identity, { allowed: false, reason }, server, target);
  ctx.metrics.authFailureInc(reason);
}

/** A failed authentication: metered and audited (there is no identity to name). */
export function auditAuthFailure(ctx: RequestContext, state: RequestState, failure: AuthFailure, server: string | null): void {
  ctx.metrics.authFailureInc(failure.reason);
  writeAudit(ctx, authFailureRecord(failure, state.trace.traceId, server));
}

/**
 * The caller's one tenant. A caller with none (or an unknown one) is refused: 401 when
 * authenticating could help, 403 otherwise.
 */
export function resolveTenant(ctx: RequestContext, state: RequestState, identity: Identity): Caller {
  const resolved = ctx.guard.tenants.resolve(identity);
  if (resolved.ok) return { identity, tenant: resolved.tenant };
  deny(ctx, state, identity, resolved.reason, null);
  throw resolved.status === 401
    ? ctx.guard.auth.challenge(undefined, {}, state.headers)
    : new GatewayError('GW_ERR_AUTH_FORBIDDEN', 'Forbidden: this client belongs to no configured tenant');
}

/**
 * Server-level access (tenant membership, auth_required, allowed_clients). On the aggregated
 * endpoint a refusal looks like a missing entity (`hidden`); on passthrough it is 401/403/404.
 */
export function checkServerAccess(ctx: RequestContext, state: RequestState, caller: Caller, server: string, hidden: (() => GatewayError) | null): void {
  const access = ctx.guard.tenants.serverAccess(caller.identity, caller.tenant, server);
  if (access.allowed) return;
  deny(ctx, state, caller.identity, access.reason, server);
  if (hidden !== null) throw hidden();
  if (access.status === 401) throw ctx.guard.auth.challenge(undefined, {}, state.headers);
  if (access.status === 403) throw new GatewayError('GW_ERR_AUTH_FORBIDDEN', `Forbidden: no access to server ${server}`);
  throw new GatewayError('GW_ERR_HTTP_NOT_FOUND', 'Not Found');
}

/**
 * A virtual server's own access rules: its tenants (another tenant's caller finds nothing there:
 * 404), `auth_required` (401 with the challenge) and `allowed_clients` (by id or group; 401 for
 * anonymous callers, 403 for others). Audited and metered as every refusal is.
 */
export function checkViewAccess(ctx: RequestContext, state: RequestState, caller: Caller, view: RuntimeView): void {
  const who = caller.identity;
  const refusal =
    view.tenants !== null && !view.tenants.has(caller.tenant.name)
      ? { reason: 'view_not_in_tenant', status: 404 }
      : identityRefusal(who, view.authRequired, view.allowedClients);
  if (refusal === null) return;
  const { reason, status } = refusal;
  deny(ctx, state, who, reason, null);
  if (status === 401) throw ctx.guard.auth.challenge(undefined, {}, state.headers);
  if (status === 403) throw new GatewayError('GW_ERR_AUTH_FORBIDDEN', `Forbidden: no access to ${view.path}`);
  throw new GatewayError('GW_ERR_HTTP_NOT_FOUND', 'Not Found');
}

/** Whether the caller may see and use a server on /mcp (lists leave out the ones it may not). */
export function serverVisible(ctx: RequestContext, caller: Caller, server: string): boolean {
  // A virtual server's context knows only its own servers.
  return ctx.rc.servers.has(server) && ctx.guard.tenants.serverAccess(caller.identity, caller.tenant, server).allowed;
}

const PENDING_APPROVAL: AccessDecision = Object.freeze({ allowed: false, reason: 'pending_approval', detail: 'its definition changed since it was pinned' });

/** Per-name policy for one entity of one server, on the name the upstream knows it by (null: no rules). */
function nameDecision(ctx: RequestContext, caller: Caller, kind: CatalogKind, server: string, upstreamName: string): AccessDecision | null {
  const guard = ctx.guard;
  if (!guard.filtersNames) return null;
  const tenant = caller.tenant.name;
  switch (kind) {
    case 'tools':
      // A tool whose definition changed since it was pinned is nobody's until approved.
      if (guard.pins?.withheld(server, upstreamName) === true) return PENDING_APPROVAL;
      return guard.access.canUseTool(tenant, server, upstreamName);
    case 'prompts':
      return guard.access.canUsePrompt(tenant, server, upstreamName);
    case 'resources':
      return guard.access.canUseResource(tenant, server, upstreamName);
    case 'resourceTemplates':
      return guard.access.canListResourceTemplate(tenant, server, upstreamName);
  }
}

/**
 * Checks one named call (tool, prompt, resource, completion reference) against policy; a refusal
 * is thrown as `hidden`, so a forbidden name gets exactly the answer a missing one gets.
 */
export function checkNameAccess(
  ctx: RequestContext,
  state: RequestState,
  caller: Caller,
  kind: CatalogKind,
  server: string,
  upstreamName: string,
  hidden: () => GatewayError,
): void {
  const decision = nameDecision(ctx, caller, kind, server, upstreamName);
  const target: AuditTarget =
    kind === 'tools' ? { kind: 'tool', name: upstreamName } : kind === 'prompts' ? { kind: 'prompt', name: upstreamName } : { kind: 'uri', name: upstreamName };
  if (decision !== null && !decision.allowed) {
    audit(ctx, state, caller.identity, decision, server, target);
    ctx.metrics.authFailureInc('policy_denied');
    throw hidden();
  }
  audit(ctx, state, caller.identity, decision ?? { allowed: true, reason: 'allowed' }, server, target);
}

/**
 * Why a caller may not see one catalog entry (the server out of its reach, or the name's policy),
 * or null when it may: the console's view of a policy, by the rules the lists apply.
 */
export function entryRefusal(ctx: RequestContext, caller: Caller, kind: CatalogKind, server: string, upstreamName: string): string | null {
  const access = ctx.guard.tenants.serverAccess(caller.identity, caller.tenant, server);
  if (!access.allowed) return access.reason;
  const d = nameDecision(ctx, caller, kind, server, upstreamName);
  return d === null || d.allowed ? null : d.detail === undefined || d.detail === null ? d.reason : `${d.reason}: ${d.detail}`;
}

/** Which catalog entries a caller may see, or null when every entry is visible (nothing to filter). */
export type EntryFilter = (server: string, upstreamName: string) => boolean;

/** The list filter for an aggregated list: servers the caller cannot reach, and names policy hides. */
export function aggregatedListFilter(ctx: RequestContext, caller: Caller, kind: CatalogKind): EntryFilter | null {
  const hidden = new Set(ctx.rc.serverList.filter((s) => !serverVisible(ctx, caller, s.name)).map((s) => s.name));
  if (hidden.size === 0 && !ctx.guard.filtersNames) return null;
  return (server, name) => !hidden.has(server) && (nameDecision(ctx, caller, kind, server, name)?.allowed ?? true);
}

/** Whether a passthrough list response must be filtered for this caller. */
export function filtersLists(ctx: RequestContext): boolean {
  return ctx.guard.filtersNames;
}

/**
 * Drops the entries of one list result (a JSON-RPC message as text) the caller may not use;
 * null when nothing changes.
 */
export function filterListMessage(ctx: RequestContext, caller: Caller, server: string, kind: CatalogKind, data: string): string | null {
  let msg: unknown;
  try {
    msg = parseJson(data);
  } catch {
    return null;
  }
  if (!isObject(msg) || !isObject(msg['result'])) return null;
  const { key, idField } = KIND_INFO[kind];
  const items = msg['result'][key];
  if (!Array.isArray(items)) return null;
  const kept = items.filter((it) => isObject(it) && typeof it[idField] === 'string' && (nameDecision(ctx, caller, kind, server, it[idField])?.allowed ?? true));
  if (kept.length === items.length) return null;
  msg['result'][key] = kept;
  return stringifyJson(msg);
}

/**
 * A session is usable only by the identity that created it; another principal's session is
 * indistinguishable from one that does not exist.
 */
export function checkSessionOwner(ctx: RequestContext, state: RequestState, caller: Caller, boundSubject: string | null, server: string | null): void {
  checkBoundOwner(ctx, state, caller, boundSubject, server, 'session_not_owned', () => new GatewayError('GW_ERR_SESSION_UNKNOWN'));
}

/**
 * Anything bound to the identity that created it (a session, an upstream task) is usable only by
 * that identity: another principal gets `absent()`, as if it did not exist, and the denial is audited.
 */
export function checkBoundOwner(
  ctx: RequestContext,
  state: RequestState,
  caller: Caller,
  boundSubject: string | null,
  server: string | null,
  reason: string,
  absent: () => GatewayError,
): void {
  if (sessionBoundTo(boundSubject, caller.identity)) return;
  deny(ctx, state, caller.identity, reason, server);
  throw absent();
}

/** The subject a new session is bound to; anonymous sessions (no auth configured) bind to nobody. */
export function sessionSubject(caller: Caller): string | null {
  return isAuthenticated(caller.identity) ? caller.identity.subject : null;
}
