/**
 * Free TCP port allocation for tests.
 *
 * A port is found by binding port 0 on the host, reading the port the kernel picked and closing
 * the socket again. Between closing and the real user binding it another process could take the
 * port; that race is small on a test machine and the alternative (passing bound sockets around)
 * is not possible for Envoy or child processes.
 *
 * Ports handed out by this module are remembered for the life of the process, so two calls never
 * return the same port even if the kernel would offer it again after the first one was closed.
 */
import { connect, createServer, type Server } from 'node:net';

const DEFAULT_HOST = '127.0.0.1';
const MAX_ATTEMPTS = 50;

/** Every port this process has handed out so far. */
const handedOut = new Set<number>();

function listenOnZero(host: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    // exclusive: do not share the handle with cluster workers; we want a real, private bind.
    server.listen({ host, port: 0, exclusive: true }, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

function portOf(server: Server): number {
  const addr = server.address();
  if (addr === null || typeof addr === 'string') {
    throw new Error(`unexpected server address ${String(addr)}`);
  }
  return addr.port;
}

/**
 * Allocates `count` distinct free ports on `host` (default 127.0.0.1).
 *
 * All sockets are held open until every port is known, so the kernel cannot hand the same port
 * out twice within one call; ports handed out by earlier calls in this process are skipped too.
 */
export async function freePorts(count: number, host: string = DEFAULT_HOST): Promise<number[]> {
  if (!Number.isInteger(count) || count < 0) throw new RangeError(`freePorts: bad count ${count}`);
  const held: Server[] = [];
  const ports: number[] = [];
  try {
    let attempts = 0;
    while (ports.length < count) {
      if (++attempts > count + MAX_ATTEMPTS) {
        throw new Error(`freePorts: could not find ${count} unused ports on ${host}`);
      }
      const server = await listenOnZero(host);
      held.push(server);
      const port = portOf(server);
      if (handedOut.has(port) || ports.includes(port)) continue;
      ports.push(port);
    }
  } finally {
    await Promise.all(held.map(closeServer));
  }
  for (const p of ports) handedOut.add(p);
  return ports;
}

/** Allocates one free port on `host` (default 127.0.0.1). */
export async function freePort(host: string = DEFAULT_HOST): Promise<number> {
  const [port] = await freePorts(1, host);
  if (port === undefined) throw new Error('freePort: no port allocated');
  return port;
}

/**
 * Allocates one free port per key and returns them by key, e.g.
 * `const p = await freePortMap(['listen', 'admin'])` → `{ listen: 40123, admin: 40124 }`.
 */
export async function freePortMap<K extends string>(keys: readonly K[], host: string = DEFAULT_HOST): Promise<Record<K, number>> {
  const ports = await freePorts(keys.length, host);
  const out = {} as Record<K, number>;
  keys.forEach((k, i) => {
    out[k] = ports[i] as number;
  });
  return out;
}

/** True if something accepts connections on host:port right now. */
export async function isPortOpen(port: number, host: string = DEFAULT_HOST, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (open: boolean): void => {
      socket.destroy();
      resolve(open);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}
