/** MCP Streamable HTTP transport headers. */
export const SESSION_HEADER = 'mcp-session-id';
export const PROTOCOL_VERSION_HEADER = 'mcp-protocol-version';
/** 2026-07-28: the request's method and the name it acts on, repeated from the body for routing. */
export const MCP_METHOD_HEADER = 'mcp-method';
export const MCP_NAME_HEADER = 'mcp-name';

/** The param a request's `Mcp-Name` header repeats, by method. */
const NAMED_PARAM: Readonly<Record<string, string>> = { 'tools/call': 'name', 'prompts/get': 'name', 'resources/read': 'uri' };

/**
 * Where a message's `Mcp-Method` / `Mcp-Name` headers (2026-07-28) disagree with its body, or null.
 * Only headers that are present are checked; a name outside printable ASCII is left to the server
 * (it travels encoded in the header).
 */
export function routingHeaderMismatch(headers: { get(name: string): string | undefined }, method: string, params: Record<string, unknown> | undefined): string | null {
  const claimed = headers.get(MCP_METHOD_HEADER);
  if (claimed !== undefined && claimed !== method) return `Mcp-Method header ${JSON.stringify(claimed.slice(0, 100))} does not match the body's method ${JSON.stringify(method.slice(0, 100))}`;
  const name = headers.get(MCP_NAME_HEADER);
  const param = NAMED_PARAM[method];
  const value = param === undefined ? undefined : params?.[param];
  if (name !== undefined && typeof value === 'string' && /^[\x20-\x7e]*$/.test(value) && name !== value) {
    return `Mcp-Name header ${JSON.stringify(name.slice(0, 200))} does not match the body's ${param}`;
  }
  return null;
}
