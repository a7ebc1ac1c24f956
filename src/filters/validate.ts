import { Ajv, type ValidateFunction } from 'ajv';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { GlobSet } from '../lib/glob.js';
import { isObject, type JsonObject } from '../mcp/message.js';
import type { FiltersConfig } from './schema.js';

/**
 * Argument validation: a `tools/call`'s arguments checked against the tool's `inputSchema` before
 * the server sees them (JSON Schema 2020-12, MCP's default, or draft-07 when the schema says so).
 * A schema is compiled once per catalog entry (a refreshed catalog brings new entries, compiled
 * again on first use). `pattern` is not evaluated: a server's regular expression run on client
 * input could be made to backtrack for seconds, so that check stays the server's; a schema with
 * `patternProperties` (whose meaning depends on its patterns) is not checked here at all.
 */

/** Why a call's arguments were refused: the failing place and what failed there. */
export interface ArgumentFailure {
  /** JSON pointer into the arguments, `/` for the whole. */
  readonly path: string;
  readonly message: string;
}

const DRAFT_07 = /^https?:\/\/json-schema\.org\/draft-07\/schema#?$/;

export class ArgumentValidation {
  /** Per server: the tools whose arguments are checked, and whether their structured results are. */
  private readonly byServer: ReadonlyMap<string, { readonly tools: GlobSet; readonly results: boolean }>;
  private readonly modern = new Ajv2020({ strict: false, allErrors: false, validateFormats: false });
  private readonly draft07 = new Ajv({ strict: false, allErrors: false, validateFormats: false });
  /** Compiled validators by schema object (null: not checkable here). */
  private readonly compiled = new WeakMap<JsonObject, ValidateFunction | null>();

  private constructor(byServer: ReadonlyMap<string, { readonly tools: GlobSet; readonly results: boolean }>) {
    this.byServer = byServer;
    this.modern.removeKeyword('pattern');
    this.draft07.removeKeyword('pattern');
  }

  static compile(global: FiltersConfig | undefined, servers: Readonly<Record<string, { readonly filters?: FiltersConfig | undefined }>>): ArgumentValidation {
    const byServer = new Map<string, { tools: GlobSet; results: boolean }>();
    for (const [name, s] of Object.entries(servers)) {
      const v = s.filters?.validate ?? global?.validate;
      if (v !== undefined) byServer.set(name, { tools: new GlobSet(v.tools), results: v.structured_content });
    }
    return new ArgumentValidation(byServer);
  }

  /** Whether a server's calls of this tool are checked. */
  checks(server: string, tool: string): boolean {
    return this.byServer.get(server)?.tools.test(tool) ?? false;
  }

  /** Whether a server's results of this tool have their structuredContent checked. */
  checksResults(server: string, tool: string): boolean {
    const v = this.byServer.get(server);
    return v !== undefined && v.results && v.tools.test(tool);
  }

  /** Checks arguments (or a structuredContent) against a tool's schema; null when they pass (or cannot be checked here). */
  check(schema: unknown, args: unknown): ArgumentFailure | null {
    if (!isObject(schema)) return null;
    const validate = this.validatorFor(schema);
    if (validate === null || validate(args)) return null;
    const e = validate.errors?.[0];
    if (e === undefined) return { path: '/', message: 'does not match the tool\'s inputSchema' };
    // required, dependencies, dependentRequired: the property that is missing is the place to name.
    const missing = typeof e.params['missingProperty'] === 'string' ? `/${e.params['missingProperty']}` : '';
    const extra = e.keyword === 'additionalProperties' && typeof e.params['additionalProperty'] === 'string' ? `/${e.params['additionalProperty']}` : '';
    return { path: `${e.instancePath}${missing}${extra}` || '/', message: e.message ?? 'is invalid' };
  }

  private validatorFor(schema: JsonObject): ValidateFunction | null {
    const known = this.compiled.get(schema);
    if (known !== undefined) return known;
    let v: ValidateFunction | null = null;
    if (!JSON.stringify(schema).includes('"patternProperties"')) {
      try {
        v = (typeof schema['$schema'] === 'string' && DRAFT_07.test(schema['$schema']) ? this.draft07 : this.modern).compile(schema);
      } catch {
        v = null; // a schema the validator cannot compile is the server's to apply
      }
    }
    this.compiled.set(schema, v);
    return v;
  }
}
