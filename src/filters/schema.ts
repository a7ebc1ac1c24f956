import { z } from 'zod';
import { LinearRegex } from '../lib/linear-regex.js';

/**
 * Configuration of the filters on tool calls (`filters:` globally, `servers.<name>.filters:` per
 * server; a server's own `context` or `defaults` replaces the global one). Off unless configured.
 */

/** What `_context` can carry about the call. */
export const CONTEXT_FIELDS = ['client_id', 'tenant', 'groups', 'trace_id', 'timestamp', 'request_id'] as const;
export type ContextField = (typeof CONTEXT_FIELDS)[number];

/** Placeholders a default argument's string may hold, as `{{name}}`. */
export const TEMPLATE_NAMES = ['client_id', 'tenant', 'trace_id', 'timestamp', 'request_id', 'server', 'tool'] as const;

const ToolGlobsSchema = z.array(z.string().min(1).max(256)).min(1);

const ContextSchema = z
  .strictObject({
    tools: ToolGlobsSchema.default(['*']).describe("The tools it is added to: globs on the server's own tool name"),
    field: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]{0,63}$/, 'an argument name: letters, digits and _, not starting with a digit')
      .default('_context')
      .describe('The argument that carries it'),
    include: z
      .array(z.enum(CONTEXT_FIELDS))
      .min(1)
      .default(['client_id', 'timestamp', 'trace_id'])
      .describe(
        'What it carries: client_id, tenant, groups, trace_id, timestamp (ms since the epoch), request_id (the span id of this call in _meta.traceparent)',
      ),
    overwrite: z
      .boolean()
      .default(false)
      .describe("Replace the argument when the client sent one of that name (otherwise the client's stands)"),
  })
  .describe('Adds the call context to tool call arguments, as the seed\'s transformation gateway does');

const DefaultsSchema = z
  .strictObject({
    tools: ToolGlobsSchema.default(['*']).describe("The tools they apply to: globs on the server's own tool name"),
    arguments: z
      .record(z.string().min(1).max(128), z.unknown())
      .refine((a) => Object.keys(a).length > 0, 'give at least one argument')
      .describe(`Argument values (JSON); strings may hold {{${TEMPLATE_NAMES.join('}}, {{')}}}`),
    overwrite: z.boolean().default(false).describe("Replace an argument the client sent (otherwise only missing ones are set)"),
  })
  .superRefine((d, ctx) => {
    for (const [name, value] of Object.entries(d.arguments)) {
      for (const m of JSON.stringify(value ?? null).matchAll(/\{\{([^}]*)\}\}/g)) {
        if (!(TEMPLATE_NAMES as readonly string[]).includes(m[1]!)) {
          ctx.addIssue({ code: 'custom', path: ['arguments', name], message: `unknown placeholder {{${m[1]}}}: use ${TEMPLATE_NAMES.map((n) => `{{${n}}}`).join(', ')}` });
        }
      }
    }
  });

const ValidateSchema = z
  .strictObject({
    tools: ToolGlobsSchema.default(['*']).describe("The tools whose arguments are checked: globs on the server's own tool name"),
    structured_content: z
      .boolean()
      .default(false)
      .describe("Also check those tools' structuredContent against their outputSchema; a result that fails is withheld for an error naming the path"),
  })
  .describe("Checks tool call arguments against the tool's inputSchema before the server sees them; a failure is -32602 naming the failing path");

const PiiSchema = z
  .strictObject({
    tools: ToolGlobsSchema.default(['*']).describe("The tools whose calls are scanned: globs on the server's own tool name"),
    detect: z
      .array(z.enum(['email', 'phone', 'card', 'ssn', 'iban', 'secret']))
      .min(1)
      .default(['email', 'phone', 'card', 'ssn', 'iban', 'secret'])
      .describe('What to look for: email addresses, phone numbers, payment cards (Luhn), US SSNs, IBANs (mod 97), API keys and tokens'),
    action: z
      .enum(['redact', 'block', 'log'])
      .default('redact')
      .describe('redact: replace each finding with [REDACTED:<rule>]; block: refuse the message with an error naming the rule; log: only record it'),
    custom: z
      .array(
        z
          .strictObject({
            name: z.string().regex(/^[a-z][a-z0-9_]{0,31}$/, 'a rule name: a-z, 0-9 and _, starting with a letter').describe('The rule name findings are reported and redacted as'),
            pattern: z.string().min(1).max(4096).describe('A regular expression (JavaScript syntax without backreferences, lookaround or lazy quantifiers), run in linear time'),
          })
          .superRefine((c, ctx) => {
            try {
              new LinearRegex(c.pattern);
            } catch (err) {
              ctx.addIssue({ code: 'custom', path: ['pattern'], message: (err as Error).message });
            }
          }),
      )
      .optional()
      .describe('Rules of your own beside the built-in ones, each a name and a pattern'),
    arguments: z.boolean().default(true).describe('Scan tools/call arguments'),
    results: z.boolean().default(true).describe('Scan tools/call results'),
  })
  .describe('PII and secret filtering on tool calls');

const PinningSchema = z
  .strictObject({
    tools: ToolGlobsSchema.default(['*']).describe("The tools that are pinned: globs on the server's own tool name"),
    action: z
      .enum(['warn', 'enforce'])
      .default('warn')
      .describe('warn: a changed definition is logged and metered; enforce: the tool is also withheld from lists and calls until its new fingerprint is approved'),
  })
  .describe('Fingerprints each tool definition when first seen and detects later changes at catalog refresh');

export const FiltersSchema = z
  .strictObject({
    context: ContextSchema.optional(),
    pinning: PinningSchema.optional(),
    pii: PiiSchema.optional(),
    validate: ValidateSchema.optional(),
    defaults: z.array(DefaultsSchema).min(1).optional().describe('Argument defaults, each for the tools its globs match; all that match apply, in order'),
  })
  .describe('Filters on tool calls: context injection, argument defaults, argument validation');
export type FiltersConfig = z.infer<typeof FiltersSchema>;

/** `pins:`: where tool pins are kept (the gateway's and `mcp-gateway pins`'s). */
export const PinsSchema = z
  .strictObject({
    store: z
      .enum(['file', 'redis'])
      .optional()
      .describe('file (the default without redis) or redis (the default with it: every replica shares the pins)'),
    file: z.string().min(1).default('pins.json').describe("The pins file of the file store, relative to the config file's directory"),
  })
  .describe('Where tool pins are kept');
export type PinsConfig = z.infer<typeof PinsSchema>;
