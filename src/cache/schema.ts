import { z } from 'zod';

/**
 * Configuration of the processor's caches (`cache:` globally, `servers.<name>.cache:` per
 * server): how long upstream catalogs are kept, and which answers of servers are kept and served
 * again. Answers are cached only where configured; a server's own entry for a method replaces
 * the global one.
 */

const TtlSchema = z.number().int().min(0).max(86_400);

const ListCacheSchema = z.strictObject({
  ttl: TtlSchema.describe('Seconds an upstream catalog is served before it is refetched'),
});

/** What a cached answer's key may hold besides the server and the resource, prompt or tool. */
export const VARY_KEYS = ['uri', 'arguments', 'tenant', 'identity'] as const;
export type VaryKey = (typeof VARY_KEYS)[number];

/**
 * `vary` of an answer cache: what must be the same for a cached answer to be served. Each caller's
 * own entries unless told otherwise (`identity` in the default); `required` (the URI of a read,
 * the arguments of a prompt or call) is always part of the key.
 */
function varySchema(required: 'uri' | 'arguments') {
  const allowed = required === 'uri' ? (['uri', 'tenant', 'identity'] as const) : (['arguments', 'tenant', 'identity'] as const);
  return z
    .array(z.enum(allowed))
    .min(1)
    .default([required, 'identity'])
    .refine((v) => v.includes(required), `must include ${required}: without it one ${required === 'uri' ? "resource's" : "call's"} answer would be served for another`)
    .describe(
      `What a cached answer is kept apart by: ${allowed.join(', ')}. identity (the default) keeps each caller's answers its own; leave it out to share an answer between callers of the same tenant (with tenant) or between all callers the policy lets reach it`,
    );
}

const ReadCacheSchema = z
  .strictObject({
    ttl: TtlSchema.describe('Seconds an answer is served from the cache (a shorter ttlMs or Cache-Control max-age from the server wins); 0 switches it off'),
    vary: varySchema('uri'),
  })
  .describe('resources/read answers');

const PromptCacheSchema = z
  .strictObject({
    ttl: TtlSchema.describe('Seconds an answer is served from the cache; 0 switches it off'),
    vary: varySchema('arguments'),
  })
  .describe('prompts/get answers');

const ToolCacheSchema = z
  .strictObject({
    tools: z
      .array(z.string().min(1).max(256))
      .min(1)
      .describe("The tools whose results are cached: globs on the server's own tool name. List only tools that read (idempotent ones): a cached call never reaches the server"),
    ttl: TtlSchema.describe('Seconds a result is served from the cache; 0 switches it off'),
    vary: varySchema('arguments'),
  })
  .describe('tools/call results of the tools listed');

/** The answer caches a server may set for itself (each replaces the global one). */
export const ServerCacheSchema = z
  .strictObject({
    'resources/read': ReadCacheSchema.optional(),
    'prompts/get': PromptCacheSchema.optional(),
    'tools/call': ToolCacheSchema.optional(),
  })
  .describe("This server's answer caches, each replacing the global one of its method");
export type ServerCacheConfig = z.infer<typeof ServerCacheSchema>;

export const CacheSchema = z
  .strictObject({
    'tools/list': ListCacheSchema.default({ ttl: 60 }),
    'prompts/list': ListCacheSchema.default({ ttl: 60 }),
    'resources/list': ListCacheSchema.default({ ttl: 60 }),
    'resources/templates/list': ListCacheSchema.default({ ttl: 60 }),
    'resources/read': ReadCacheSchema.optional(),
    'prompts/get': PromptCacheSchema.optional(),
    'tools/call': ToolCacheSchema.optional(),
    store: z
      .enum(['memory', 'redis'])
      .optional()
      .describe('Where cached answers are kept: redis (shared by every replica; the default when redis is configured) or memory (each replica its own)'),
    max_entries: z.number().int().min(1).max(10_000_000).default(10_000).describe('Most answers a memory store keeps; the least recently used go first'),
    max_bytes: z
      .number()
      .int()
      .min(64 * 1024)
      .max(16 * 1024 * 1024 * 1024)
      .default(64 * 1024 * 1024)
      .describe('Most bytes of answers a memory store keeps; the least recently used go first'),
    max_entry_bytes: z
      .number()
      .int()
      .min(1024)
      .max(16 * 1024 * 1024)
      .default(256 * 1024)
      .describe('Largest answer cached; larger ones are served by the server every time'),
  })
  .describe('How long upstream catalogs are kept, and which answers of servers are cached');
export type CacheConfig = z.infer<typeof CacheSchema>;

/** The answer-cache methods, as configured. */
export const ANSWER_METHODS = ['resources/read', 'prompts/get', 'tools/call'] as const;
export type AnswerMethod = (typeof ANSWER_METHODS)[number];
