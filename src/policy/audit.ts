import type { AuthFailure, AuthMethod, Identity } from '../auth/identity.js';

/**
 * One structured audit line per allow/deny decision. Field names are snake_case because they are
 * what log pipelines index; nothing here can hold a secret (identities carry none, and credentials
 * are never passed in).
 */
export interface AuditRecord {
  readonly event: 'mcpgw_access';
  readonly decision: 'allow' | 'deny';
  readonly reason: string;
  readonly detail: string | null;
  readonly client_id: string | null;
  readonly tenant: string | null;
  readonly auth_method: AuthMethod | null;
  readonly server: string | null;
  readonly rpc_method: string | null;
  readonly tool?: string;
  readonly prompt?: string;
  readonly uri?: string;
  readonly trace_id: string | null;
}

/** What an audit line is about: the upstream name or URI the decision was taken on. */
export type AuditTarget =
  | { readonly kind: 'tool'; readonly name: string }
  | { readonly kind: 'prompt'; readonly name: string }
  | { readonly kind: 'uri'; readonly name: string };

/** Inputs of {@link auditRecord}. */
export interface AuditInput {
  /** null when authentication itself failed. */
  readonly identity: Identity | null;
  readonly tenant: string | null;
  readonly server?: string | null;
  readonly rpcMethod?: string | null;
  readonly target?: AuditTarget;
  readonly decision: { readonly allowed: boolean; readonly reason: string; readonly detail?: string | null };
  /** The request's trace id, as the request's trace context carries it. */
  readonly traceId: string | null;
}

const MAX_LOGGED = 256;

/**
 * Makes client-chosen text safe to read in a log: bounded, and control/format characters (bidi
 * overrides, zero-width joiners) spelled out as `\u{…}` so a spoofing attempt is visible as one.
 */
export function loggable(text: string): string {
  const clipped = text.length > MAX_LOGGED ? `${text.slice(0, MAX_LOGGED)}…` : text;
  return clipped.replace(/[\p{Cc}\p{Cf}]/gu, (c) => `\\u{${c.codePointAt(0)!.toString(16)}}`);
}

/** Builds the audit line for one decision. */
export function auditRecord(input: AuditInput): AuditRecord {
  const base = {
    event: 'mcpgw_access' as const,
    decision: input.decision.allowed ? ('allow' as const) : ('deny' as const),
    reason: input.decision.reason,
    detail: input.decision.detail === undefined || input.decision.detail === null ? null : loggable(input.decision.detail),
    client_id: input.identity?.clientId ?? null,
    tenant: input.tenant,
    auth_method: input.identity?.method ?? null,
    server: input.server ?? null,
    rpc_method: input.rpcMethod ?? null,
    trace_id: input.traceId,
  };
  const t = input.target;
  if (t === undefined) return base;
  return { ...base, [t.kind]: loggable(t.name) };
}

/** The audit line for a failed authentication (no identity to name). */
export function authFailureRecord(failure: AuthFailure, traceId: string | null, server: string | null = null): AuditRecord {
  return {
    event: 'mcpgw_access',
    decision: 'deny',
    reason: failure.reason,
    detail: null,
    client_id: null,
    tenant: null,
    auth_method: failure.method,
    server,
    rpc_method: null,
    trace_id: traceId,
  };
}
