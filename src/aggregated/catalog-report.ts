import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ListPromptsResultSchema, ListResourcesResultSchema, ListResourceTemplatesResultSchema, ListToolsResultSchema } from '@modelcontextprotocol/sdk/types.js';
import { resolveUpstreamCredentials } from '../auth/upstream-credentials.js';
import type { Config } from '../config/schema.js';
import { isObject, type JsonObject } from '../mcp/message.js';
import { CATALOG_KINDS, KIND_INFO, readAllPages, type CatalogKind } from '../mcp/protocol.js';
import { mergeEntries } from './merge.js';
import { Namespace } from './naming.js';

/**
 * `mcp-gateway validate --catalogs`: reads every server's lists straight from its URL (with its
 * configured credentials, not through Envoy) and reports what `/mcp` would show before the
 * gateway is deployed: the names by the naming rules, the collisions and how they are settled,
 * what is left out, and the servers that could not be read. Policies are not applied (they vary
 * by caller); every server is taken as visible.
 */

/** The SDK's result schema of each list. */
const RESULT_SCHEMAS = {
  tools: ListToolsResultSchema,
  prompts: ListPromptsResultSchema,
  resources: ListResourcesResultSchema,
  resourceTemplates: ListResourceTemplatesResultSchema,
} as const;

/** Most pages read of one list. */
const MAX_PAGES = 100;

export interface CatalogReport {
  readonly text: string;
  /** Collisions found (settled by the rules; not errors). */
  readonly collisions: number;
  /** Servers whose catalog could not be read. */
  readonly unreadable: number;
}

export async function catalogReport(config: Config, opts: { baseDir: string; timeoutMs: number }): Promise<CatalogReport> {
  const naming = Namespace.fromConfig(config);
  const credentials = await resolveUpstreamCredentials(config.servers, { baseDir: opts.baseDir });
  const names = Object.keys(config.servers);
  const failures: string[] = new Array<string>(names.length).fill('');
  const read = await Promise.all(
    names.map(async (name) => {
      const headers: Record<string, string> = {};
      for (const h of credentials.headersFor(name)) headers[h.key] = h.value;
      try {
        return await readCatalogs(config.servers[name]!.url, headers, opts.timeoutMs);
      } catch (err) {
        const cause = (err as { cause?: { code?: unknown } }).cause?.code;
        failures[names.indexOf(name)] = `server ${name}: catalog not read: ${(err as Error).message}${typeof cause === 'string' ? ` (${cause})` : ''}`;
        return null;
      }
    }),
  );
  const lines = failures.filter((f) => f !== '');
  let collisions = 0;
  for (const kind of CATALOG_KINDS) {
    const m = mergeEntries(kind, read.map((r, i) => (r === null ? null : { server: names[i]!, items: r[kind] })), naming);
    const idField = KIND_INFO[kind].idField;
    lines.push(`${kind}: ${m.items.map((e) => String(e.item[idField])).join(', ') || '(none)'}`);
    for (const c of m.collisions) {
      collisions++;
      const kept = c.claimants.length === 0 ? 'no server keeps it unprefixed' : `callers get ${c.claimants.join(', then ')} (the first they may use)`;
      const prefixed = c.prefixed.length === 0 ? '' : `; prefixed instead: ${c.prefixed.join(', ')}`;
      lines.push(`  collision: ${kind} "${c.name}": ${kept}${prefixed}`);
    }
    for (const l of m.leftOut) {
      lines.push(`  left out: ${l.server}'s ${String(l.name)} (${l.why === 'invalid_name' ? 'breaks the tool-name rules' : "reads as another server's prefixed name"})`);
    }
  }
  const unreadable = read.filter((r) => r === null).length;
  return { text: `${lines.join('\n')}\n`, collisions, unreadable };
}

/** A server's four lists, read with the official SDK client over Streamable HTTP. */
async function readCatalogs(url: string, headers: Record<string, string>, timeoutMs: number): Promise<Record<CatalogKind, JsonObject[]>> {
  const client = new Client({ name: 'mcp-gateway-validate', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
  const signal = AbortSignal.timeout(timeoutMs);
  await client.connect(transport, { signal, timeout: timeoutMs });
  try {
    const caps = client.getServerCapabilities() ?? {};
    const out = { tools: [], prompts: [], resources: [], resourceTemplates: [] } as Record<CatalogKind, JsonObject[]>;
    for (const kind of CATALOG_KINDS) {
      const info = KIND_INFO[kind];
      if (!isObject((caps as JsonObject)[info.capability])) continue;
      const schema = RESULT_SCHEMAS[kind];
      const items = await readAllPages(kind, MAX_PAGES, async (params) => (await client.request({ method: info.method, ...(params === undefined ? {} : { params }) }, schema, { signal, timeout: timeoutMs })) as JsonObject);
      out[kind] = items ?? [];
    }
    return out;
  } finally {
    await client.close().catch(() => undefined);
  }
}
