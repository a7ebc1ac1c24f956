import { GatewayError } from '../errors/gateway-error.js';
import { scanValue, type PiiAction } from '../filters/pii.js';
import { isObject, type JsonObject } from '../mcp/message.js';
import type { RequestContext } from './context.js';
import { upstreamTraceparent } from './mutations.js';
import type { RequestState } from './state.js';

/**
 * The filter stages on a `tools/call` going to a server: context injection and argument defaults
 * (filters/transform.ts), then argument validation (filters/validate.ts) of what the server
 * would get. Each decision is metered and written on the operation line. Without filters
 * configured for the server the params go untouched and nothing is looked up.
 */
export async function prepareToolCall(ctx: RequestContext, state: RequestState, server: string, tool: string, given: JsonObject): Promise<JsonObject> {
  // The client's own arguments are scanned, before the gateway adds anything of its own.
  const params = scanArguments(ctx, state, server, tool, given);
  const transformed = transform(ctx, state, server, tool, params);
  if (ctx.validation.checks(server, tool)) {
    const args = isObject(transformed.params['arguments']) ? transformed.params['arguments'] : {};
    // The context the gateway added is its own, not the client's to get right.
    const checked = transformed.contextField === null ? args : withoutKey(args, transformed.contextField);
    const failure = ctx.validation.check(await ctx.toolSchema(server, tool), checked);
    decided(ctx, state, server, 'validate', failure === null ? 'passed' : 'refused');
    if (failure !== null) {
      throw new GatewayError('GW_ERR_PARAMS_INVALID', `Invalid params: arguments${failure.path === '/' ? '' : failure.path} ${failure.message}`, {
        data: { path: failure.path, reason: failure.message },
      });
    }
  }
  return transformed.params;
}

function transform(ctx: RequestContext, state: RequestState, server: string, tool: string, params: JsonObject): { params: JsonObject; contextField: string | null } {
  const t = ctx.transforms;
  if (!t.enabled) return { params, contextField: null };
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
  if (done === null) return { params, contextField: null };
  for (const d of done.decisions) decided(ctx, state, server, d.filter, d.action);
  return { params: { ...params, arguments: done.arguments }, contextField: done.contextField };
}

/**
 * The filter stages on a tool call's answer (the message, changed in place): its structuredContent
 * checked against the tool's outputSchema, then the PII filter. A result that fails either is
 * withheld for an error naming the path or the rule, never the value. Whether the message changed.
 */
export function filterToolResult(ctx: RequestContext, state: RequestState, server: string, tool: string, msg: JsonObject, outputSchema: () => unknown): boolean {
  const result = msg['result'];
  if (!isObject(result)) return false;
  if (ctx.validation.checksResults(server, tool) && 'structuredContent' in result) {
    const failure = ctx.validation.check(outputSchema(), result['structuredContent']);
    decided(ctx, state, server, 'validate', failure === null ? 'result_passed' : 'result_refused');
    if (failure !== null) {
      const where = `structuredContent${failure.path === '/' ? '' : failure.path}`;
      return withhold(msg, `Result withheld: ${where} ${failure.message} (the tool's outputSchema)`, { filter: 'validate', path: failure.path });
    }
  }
  const pii = ctx.pii.for(server, tool, 'results');
  if (pii === null) return false;
  const scan = scanValue(result, pii.rules, pii.action === 'redact', pii.custom);
  if (scan.found.length === 0) return false;
  piiDecided(ctx, state, server, pii.action, scan.found);
  if (pii.action === 'log') return false;
  if (pii.action === 'block') {
    return withhold(msg, `Result withheld: it holds ${scan.found.join(', ')} data, which the gateway does not pass on (filter pii)`, { filter: 'pii', rules: scan.found });
  }
  msg['result'] = scan.value;
  return true;
}

/** Replaces a message's result with a JSON-RPC error (the gateway's own code for a server's answer it will not pass on). */
function withhold(msg: JsonObject, message: string, data: JsonObject): true {
  delete msg['result'];
  msg['error'] = { code: -32000, message, data };
  return true;
}

/** The PII filter on a call's arguments: redacted, refused (naming the rule, never the value) or recorded. */
function scanArguments(ctx: RequestContext, state: RequestState, server: string, tool: string, params: JsonObject): JsonObject {
  const pii = ctx.pii.for(server, tool, 'arguments');
  if (pii === null) return params;
  const scan = scanValue(params['arguments'], pii.rules, pii.action === 'redact', pii.custom);
  if (scan.found.length === 0) return params;
  piiDecided(ctx, state, server, pii.action, scan.found);
  if (pii.action === 'block') {
    throw new GatewayError('GW_ERR_PARAMS_INVALID', `Invalid params: the arguments hold ${scan.found.join(', ')} data, which the gateway does not pass on (filter pii)`, {
      data: { filter: 'pii', rules: scan.found },
    });
  }
  return pii.action === 'redact' ? { ...params, arguments: scan.value } : params;
}

/** A PII finding: metered per action, and on the operation line with its rules. */
function piiDecided(ctx: RequestContext, state: RequestState, server: string, action: PiiAction, rules: readonly string[]): void {
  const done = action === 'redact' ? 'redacted' : action === 'block' ? 'blocked' : 'logged';
  ctx.metrics.filterDecisionInc('pii', server, done);
  (state.filters ??= []).push(`pii:${done}:${rules.join('+')}`);
}

/** One filter decision: metered, and kept for the operation line. */
function decided(ctx: RequestContext, state: RequestState, server: string, filter: string, action: string): void {
  ctx.metrics.filterDecisionInc(filter, server, action);
  (state.filters ??= []).push(`${filter}:${action}`);
}

function withoutKey(o: JsonObject, key: string): JsonObject {
  const { [key]: _dropped, ...rest } = o;
  return rest;
}
