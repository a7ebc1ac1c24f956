import { z } from 'zod';

const HOST_PORT = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$/;

/** `host:port`, IPv6 hosts in brackets. */
export const HostPortSchema = z
  .string()
  .regex(HOST_PORT, 'expected host:port, e.g. 127.0.0.1:8080 or [::1]:8080')
  .refine((v) => {
    const port = Number(v.slice(v.lastIndexOf(':') + 1));
    return port > 0 && port < 65536;
  }, 'port must be between 1 and 65535');
export type HostPort = z.infer<typeof HostPortSchema>;

/** A `host:port` split in two; IPv6 hosts lose their brackets. */
export interface HostAndPort {
  readonly host: string;
  readonly port: number;
}

/** Splits `host:port` (or `[v6]:port`); the one place that knows the syntax. */
export function splitHostPort(hostPort: string): HostAndPort {
  const colon = hostPort.lastIndexOf(':');
  return { host: hostPort.slice(0, colon).replace(/^\[|\]$/g, ''), port: Number(hostPort.slice(colon + 1)) };
}

/** The host part of an HTTP authority (`Host` header), keeping IPv6 brackets; no port. */
export function authorityHost(authority: string): string {
  if (authority.startsWith('[')) {
    const end = authority.indexOf(']');
    return end < 0 ? authority : authority.slice(0, end + 1);
  }
  const colon = authority.lastIndexOf(':');
  return colon < 0 ? authority : authority.slice(0, colon);
}

/** Whether a `host:port` names a loopback host. */
export function isLoopbackHostPort(hostPort: string): boolean {
  const { host } = splitHostPort(hostPort);
  return host === 'localhost' || host.startsWith('127.') || host === '::1';
}

/** The same `host:port` with another port (after binding port 0, say). */
export function withPort(hostPort: string, port: number): string {
  return `${hostPort.slice(0, hostPort.lastIndexOf(':'))}:${port}`;
}
