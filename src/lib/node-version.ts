/** The oldest Node major the processor runs on. */
export const MIN_NODE_MAJOR = 22;

/**
 * Why this Node cannot run the processor, or null. Below Node 22 the HTTP/2 stream-reset limit
 * cannot be raised, and Envoy's per-request stream resets then fail a share of requests under load.
 */
export function unsupportedNode(version: string): string | null {
  const major = Number(version.split('.')[0]);
  if (Number.isInteger(major) && major >= MIN_NODE_MAJOR) return null;
  return `Node ${version} is not supported: the processor needs Node ${MIN_NODE_MAJOR} or newer (older releases cannot raise HTTP/2's stream-reset limit, and requests fail under load)`;
}
