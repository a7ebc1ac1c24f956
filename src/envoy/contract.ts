/**
 * Names that Envoy's generated configuration and the processor both rely on. Changing one here
 * changes both sides together.
 */

/** Prefix shared by every header the gateway owns. */
export const HEADER_PREFIX = 'x-mcpgw-';

/**
 * Set by the processor to pick an upstream; Envoy's routes match on it. Envoy removes any
 * client-sent copy before the processor sees the request, and the processor never trusts one.
 */
export const BACKEND_HEADER = `${HEADER_PREFIX}backend`;

/** Namespace of the dynamic metadata the processor writes (Envoy's access log reads it). */
export const METADATA_NAMESPACE = 'mcp.gateway';

