import { createRequire } from 'node:module';

/** Protocol revisions the gateway speaks to clients, newest first. */
export const SUPPORTED_PROTOCOL_VERSIONS = ['2025-11-25', '2025-06-18', '2025-03-26', '2024-11-05'] as const;

/** What the gateway offers when a client asks for a revision it does not know. */
export const LATEST_PROTOCOL_VERSION = SUPPORTED_PROTOCOL_VERSIONS[0];

/** The revision assumed when a request carries no MCP-Protocol-Version header (spec: 2025-03-26). */
export const DEFAULT_PROTOCOL_VERSION = '2025-03-26';

const SUPPORTED: ReadonlySet<string> = new Set(SUPPORTED_PROTOCOL_VERSIONS);

/** True if the gateway speaks this revision. */
export function isSupportedVersion(v: string): boolean {
  return SUPPORTED.has(v);
}

/** Picks the revision to answer an initialize with. */
export function negotiateVersion(requested: unknown): string {
  return typeof requested === 'string' && SUPPORTED.has(requested) ? requested : LATEST_PROTOCOL_VERSION;
}

const pkg = createRequire(import.meta.url)('../../../package.json') as { name: string; version: string };

/** The gateway's serverInfo / clientInfo. */
export const GATEWAY_INFO = Object.freeze({ name: 'mcp-gateway', version: pkg.version });
