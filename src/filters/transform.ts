import { GlobSet } from '../lib/glob.js';
import { isObject, type JsonObject } from '../mcp/message.js';
import type { ContextField, FiltersConfig } from './schema.js';

/**
 * The transformation stage: what a tool call's arguments get on their way to the server (the
 * seed's transformation gateway). Compiled once per config; a server without filters costs one
 * map lookup per call.
 */

/** What a call's context is made of, read only for the fields configured. */
export interface CallFacts {
  readonly server: string;
  readonly tool: string;
  readonly clientId: string | null;
  readonly tenant: string | null;
  readonly groups: readonly string[];
  readonly traceId: string;
  /** The id of this gateway→server call (its span id). */
  readonly requestId: () => string;
  readonly now: number;
}

/** One decision of the stage, for the metrics and the operation line. */
export interface FilterDecision {
  readonly filter: 'context' | 'defaults';
  /** `added`: set where the client sent nothing; `replaced`: over the client's value; `kept`: the client's value stood. */
  readonly action: 'added' | 'replaced' | 'kept';
}

interface CompiledContext {
  readonly tools: GlobSet;
  readonly field: string;
  readonly include: readonly ContextField[];
  readonly overwrite: boolean;
}

interface CompiledDefaults {
  readonly tools: GlobSet;
  readonly arguments: readonly (readonly [string, unknown])[];
  readonly overwrite: boolean;
}

interface ServerFilters {
  readonly context: CompiledContext | null;
  readonly defaults: readonly CompiledDefaults[];
}

export class ToolCallTransforms {
  private constructor(private readonly byServer: ReadonlyMap<string, ServerFilters>) {}

  /** Whether any server has a filter (false: the stage does nothing at all). */
  get enabled(): boolean {
    return this.byServer.size > 0;
  }

  static compile(global: FiltersConfig | undefined, servers: Readonly<Record<string, { readonly filters?: FiltersConfig | undefined }>>): ToolCallTransforms {
    const byServer = new Map<string, ServerFilters>();
    for (const [name, s] of Object.entries(servers)) {
      const context = s.filters?.context ?? global?.context;
      const defaults = s.filters?.defaults ?? global?.defaults ?? [];
      if (context === undefined && defaults.length === 0) continue;
      byServer.set(name, {
        // Tool names are client-chosen: matched by the linear glob engine.
        context: context === undefined ? null : { tools: new GlobSet(context.tools), field: context.field, include: context.include, overwrite: context.overwrite },
        defaults: defaults.map((d) => ({ tools: new GlobSet(d.tools), arguments: Object.entries(d.arguments), overwrite: d.overwrite })),
      });
    }
    return new ToolCallTransforms(byServer);
  }

  /** Whether the gateway changes the arguments of this tool's calls (what it adds may name the caller). */
  changes(server: string, tool: string): boolean {
    const f = this.byServer.get(server);
    return f !== undefined && ((f.context !== null && f.context.tools.test(tool)) || f.defaults.some((d) => d.tools.test(tool)));
  }

  /**
   * The arguments a call to `facts.server`'s tool goes with, and what was decided; null when no
   * filter applies (the arguments go as the client sent them).
   */
  apply(args: unknown, facts: CallFacts): { readonly arguments: JsonObject; readonly decisions: readonly FilterDecision[]; readonly contextField: string | null } | null {
    const f = this.byServer.get(facts.server);
    if (f === undefined) return null;
    const out: JsonObject = isObject(args) ? { ...args } : {};
    const decisions: FilterDecision[] = [];
    const set = (filter: FilterDecision['filter'], name: string, value: unknown, overwrite: boolean): void => {
      if (!(name in out)) {
        out[name] = value;
        decisions.push({ filter, action: 'added' });
      } else if (overwrite) {
        out[name] = value;
        decisions.push({ filter, action: 'replaced' });
      } else decisions.push({ filter, action: 'kept' });
    };
    for (const d of f.defaults) {
      if (!d.tools.test(facts.tool)) continue;
      for (const [name, value] of d.arguments) set('defaults', name, fill(value, facts), d.overwrite);
    }
    const c = f.context;
    let contextField: string | null = null;
    if (c !== null && c.tools.test(facts.tool)) {
      set('context', c.field, contextOf(c.include, facts), c.overwrite);
      if (decisions.at(-1)!.action !== 'kept') contextField = c.field;
    }
    return decisions.length === 0 ? null : { arguments: out, decisions, contextField };
  }
}

function contextOf(include: readonly ContextField[], f: CallFacts): JsonObject {
  const out: JsonObject = {};
  for (const field of include) out[field] = factOf(field, f);
  return out;
}

/** One fact about the call, by the name `include` and the placeholders use (undefined: no such fact). */
function factOf(name: string, f: CallFacts): unknown {
  switch (name) {
    case 'client_id':
      return f.clientId;
    case 'tenant':
      return f.tenant;
    case 'groups':
      return [...f.groups];
    case 'trace_id':
      return f.traceId;
    case 'timestamp':
      return f.now;
    case 'request_id':
      return f.requestId();
    case 'server':
      return f.server;
    case 'tool':
      return f.tool;
    default:
      return undefined;
  }
}

/** A default's value with its `{{placeholders}}` filled in (strings only, at any depth). */
function fill(value: unknown, f: CallFacts): unknown {
  if (typeof value === 'string') return value.includes('{{') ? value.replace(/\{\{([a-z_]+)\}\}/g, (_, name: string) => placeholder(name, f)) : value;
  if (Array.isArray(value)) return value.map((v) => fill(v, f));
  if (isObject(value)) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fill(v, f)]));
  return value;
}

function placeholder(name: string, f: CallFacts): string {
  const v = factOf(name, f);
  return v === null || v === undefined ? '' : String(v);
}
