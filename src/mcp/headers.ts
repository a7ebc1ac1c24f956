/** MCP Streamable HTTP transport headers. */
export const SESSION_HEADER = 'mcp-session-id';
export const PROTOCOL_VERSION_HEADER = 'mcp-protocol-version';
/** 2026-07-28: the request's method and the name it acts on, repeated from the body for routing. */
export const MCP_METHOD_HEADER = 'mcp-method';
export const MCP_NAME_HEADER = 'mcp-name';

/** The param a request's `Mcp-Name` header repeats, by method. */
export const NAMED_PARAM: Readonly<Record<string, string>> = { 'tools/call': 'name', 'prompts/get': 'name', 'resources/read': 'uri' };

/**
 * Where a message's `Mcp-Method` / `Mcp-Name` headers (2026-07-28) disagree with its body, or null.
 * Only headers that are present are checked.
 */
export function routingHeaderMismatch(headers: { get(name: string): string | undefined }, method: string, params: Record<string, unknown> | undefined): string | null {
  const claimed = headers.get(MCP_METHOD_HEADER);
  if (claimed !== undefined && claimed !== method) return `Mcp-Method header ${JSON.stringify(claimed.slice(0, 100))} does not match the body's method ${JSON.stringify(method.slice(0, 100))}`;
  const name = headers.get(MCP_NAME_HEADER);
  const param = NAMED_PARAM[method];
  const value = param === undefined ? undefined : params?.[param];
  if (name !== undefined && typeof value === 'string' && decodeHeaderValue(name) !== value) {
    return `Mcp-Name header ${JSON.stringify(name.slice(0, 200))} does not match the body's ${param}`;
  }
  return null;
}

/**
 * A value as a header carries it: plain when it is printable ASCII without surrounding spaces,
 * else `=?base64?…?=` (the 2026-07-28 form for names a header cannot carry as they are).
 */
export function encodeHeaderValue(value: string): string {
  return /^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/.test(value) && !value.startsWith('=?') ? value : `=?base64?${Buffer.from(value, 'utf8').toString('base64')}?=`;
}

/** A header value as sent: plain, or `=?base64?<UTF-8 as base64>?=` for what plain text cannot carry. */
export function decodeHeaderValue(value: string): string {
  const m = /^=\?base64\?([A-Za-z0-9+/]*={0,2})\?=$/.exec(value);
  return m === null ? value : Buffer.from(m[1]!, 'base64').toString('utf8');
}
