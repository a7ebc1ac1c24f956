import type { JsonObject } from '../mcp/message.js';
import type { RequestContext } from './context.js';
import { upstreamTraceparent } from './mutations.js';
import type { RequestState } from './state.js';

/**
 * The transformation stage on a `tools/call` going to a server: context injection and argument
 * defaults (filters/transform.ts). Each decision is metered and written on the operation line.
 * Without filters configured for the server it returns the params untouched.
 */
export function transformToolCall(ctx: RequestContext, state: RequestState, server: string, tool: string, params: JsonObject): JsonObject {
  const t = ctx.transforms;
  if (!t.enabled) return params;
  const caller = state.caller!;
  const done = t.apply(params['arguments'], {
    server,
    tool,
    clientId: caller.identity.clientId,
    tenant: caller.tenant.implicit ? null : caller.tenant.name,
    groups: caller.identity.groups,
    traceId: state.trace.traceId,
    requestId: () => upstreamTraceparent(state).split('-')[2] ?? '',
    now: Date.now(),
  });
  if (done === null) return params;
  for (const d of done.decisions) {
    ctx.metrics.filterDecisionInc(d.filter, server, d.action);
    (state.filters ??= []).push(`${d.filter}:${d.action}`);
  }
  return { ...params, arguments: done.arguments };
}

