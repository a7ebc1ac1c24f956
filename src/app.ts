import { createServer, type Server } from 'node:http';
import type { Logger } from 'pino';
import { Catalog } from './aggregation/catalog.js';
import { compileConfig } from './config/runtime.js';
import type { Config } from './config/schema.js';
import { startExtProcServer } from './extproc/server.js';
import { createLogger } from './observability/logger.js';
import { UpstreamSessions, type GatewayContext } from './pipeline/context.js';
import { MemorySessionStore } from './sessions/store.js';
import { UpstreamClient } from './upstream/client.js';

/** Options for one processor replica. */
export interface RunOptions {
  readonly config: Config;
  /** ext_proc gRPC address; defaults to the first of `gateway.processor`. */
  readonly grpc?: string;
  /** Admin HTTP address; defaults to `gateway.admin`. */
  readonly admin?: string;
  readonly logLevel?: string;
  readonly logger?: Logger;
}

/** A running processor replica. */
export interface RunningGateway {
  readonly grpcAddress: string;
  readonly adminAddress: string;
  readonly context: GatewayContext;
  close(): Promise<void>;
}

/** Builds the shared request-path context for a config. */
export function createContext(config: Config, log: Logger): GatewayContext {
  const rc = compileConfig(config);
  const upstream = new UpstreamClient(rc.internalBaseUrl, rc.upstreamTimeoutMs);
  const upstreamSessionsRef: { current: UpstreamSessions | null } = { current: null };
  const sessions = new MemorySessionStore(rc.sessionIdleMs, (s) => {
    void upstreamSessionsRef.current?.terminateAll(rc, s);
  });
  const upstreamSessions = new UpstreamSessions(upstream, sessions, log);
  upstreamSessionsRef.current = upstreamSessions;
  return {
    rc,
    sessions,
    catalog: new Catalog(rc, upstream, log),
    upstream,
    upstreamSessions,
    inflight: new Map(),
    log,
  };
}

/** Starts one processor replica: the ext_proc gRPC server and the admin HTTP server. */
export async function run(opts: RunOptions): Promise<RunningGateway> {
  const log = opts.logger ?? createLogger(opts.logLevel);
  const context = createContext(opts.config, log);
  const processors = opts.config.gateway.processor;
  const grpcWanted = opts.grpc ?? (Array.isArray(processors) ? processors[0]! : processors);
  const { server: grpcServer, address: grpcAddress } = await startExtProcServer(grpcWanted, () => context, log);

  let ready = false;
  const admin = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      res.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' }).end(ready ? 'ready\n' : 'starting\n');
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  });
  const adminWanted = opts.admin ?? opts.config.gateway.admin;
  const adminAddress = await listen(admin, adminWanted);
  ready = true;
  log.info({ grpc: grpcAddress, admin: adminAddress, servers: context.rc.serverList.map((s) => s.name) }, 'processor started');
  // Warm the catalogs once Envoy can carry our calls; failures just mean a cold first list.
  const warm = setTimeout(() => void context.catalog.warm(), 200);
  warm.unref();

  return {
    grpcAddress,
    adminAddress,
    context,
    async close(): Promise<void> {
      ready = false;
      clearTimeout(warm);
      context.sessions.close();
      await new Promise<void>((resolve) => admin.close(() => resolve()));
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          grpcServer.forceShutdown();
          resolve();
        }, 2000);
        grpcServer.tryShutdown(() => {
          clearTimeout(t);
          resolve();
        });
      });
    },
  };
}

function listen(server: Server, hostPort: string): Promise<string> {
  const colon = hostPort.lastIndexOf(':');
  const host = hostPort.slice(0, colon).replace(/^\[|\]$/g, '');
  const port = Number(hostPort.slice(colon + 1));
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      const a = server.address();
      const actual = typeof a === 'object' && a !== null ? a.port : port;
      resolve(`${hostPort.slice(0, colon)}:${actual}`);
    });
  });
}
