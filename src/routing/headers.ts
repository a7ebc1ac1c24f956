/** Prefix shared by every header the gateway owns. */
export const HEADER_PREFIX = 'x-mcpgw-';

/** Set by the processor to pick an upstream; Envoy's routes match on it. Never trusted from clients. */
export const BACKEND_HEADER = `${HEADER_PREFIX}backend`;

/** MCP transport headers. */
export const SESSION_HEADER = 'mcp-session-id';
export const PROTOCOL_VERSION_HEADER = 'mcp-protocol-version';

/** Client credentials that must never reach an upstream (no token passthrough). */
export const CLIENT_CREDENTIAL_HEADERS = ['authorization', 'x-api-key'] as const;
