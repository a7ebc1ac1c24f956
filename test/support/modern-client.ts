/**
 * A client pinned to MCP 2026-07-28, written with the official v2 TypeScript SDK
 * (`@modelcontextprotocol/client`), as tests of that revision use it.
 */
import { Client, StreamableHTTPClientTransport, type ClientCapabilities } from '@modelcontextprotocol/client';

export const MODERN = '2026-07-28';

export interface ModernClientOptions {
  /** Request headers on every request (e.g. credentials). */
  readonly headers?: Record<string, string>;
  /** Client capabilities it declares in each request's `_meta`. */
  readonly capabilities?: ClientCapabilities;
  readonly name?: string;
}

/** A connected client that speaks 2026-07-28 only (no session, no handshake). */
export async function modernClient(url: string, opts: ModernClientOptions = {}): Promise<Client> {
  const client = new Client({ name: opts.name ?? 'modern-test', version: '1.0.0' }, { capabilities: opts.capabilities ?? {}, versionNegotiation: { mode: { pin: MODERN } } });
  await client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: opts.headers ?? {} } }));
  return client;
}

/** The text of a tool result's content blocks, joined. */
export function textOf(result: object): string {
  return (((result as { content?: unknown }).content ?? []) as { type: string; text?: string }[]).map((c) => c.text ?? '').join('');
}
