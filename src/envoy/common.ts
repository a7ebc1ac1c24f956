/** Small value shapes every part of the generated Envoy config uses. */
import { splitHostPort } from '../lib/host-port.js';

export function socketAddress(hostPort: string): { socket_address: { address: string; port_value: number } } {
  const { host, port } = splitHostPort(hostPort);
  return { socket_address: { address: host, port_value: port } };
}

export function seconds(ms: number): string {
  return `${ms / 1000}s`;
}
