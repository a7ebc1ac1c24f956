import { createServer, type Server } from 'node:http';
import type { Logger } from 'pino';
import { AdminConsole } from './admin/console.js';
import type { Config } from './config/schema.js';
import { PROCESSOR_DRAIN_MS, PROCESSOR_SHUTDOWN_GRACE_MS } from './envoy/contract.js';
import { XdsServer } from './envoy/xds.js';
import type { GatewayContext } from './exchange.js';
import { HealthState } from './extproc/health.js';
import { startExtProcServer } from './extproc/server.js';
import { splitHostPort, withPort } from './lib/host-port.js';
import { LiveConfig, type ReloadOutcome } from './live-config.js';
import { createLogger } from './observability/logger.js';
import { Metrics } from './observability/metrics.js';
import type { HealthMonitor } from './upstream/health.js';

/** Options for one processor replica. */
export interface RunOptions {
  readonly config: Config;
  /** ext_proc gRPC address; defaults to the first of `gateway.processor`. */
  readonly grpc?: string;
  /** Admin HTTP address; defaults to `gateway.admin`. */
  readonly admin?: string;
  readonly logLevel?: string;
  readonly logger?: Logger;
  /** Where `file:` paths in the config are relative to (the config file's directory). */
  readonly configDir?: string;
  /**
   * How long {@link RunningGateway.drain} keeps serving after turning NOT_SERVING. Default: the
   * drain window Envoy's health check needs when `gateway.processor` lists several replicas, else
   * 0 (with one replica Envoy has nowhere else to send a stream).
   */
  readonly drainMs?: number;
  /** The config file: reloaded when it changes (unless `watchConfig` is false) and on `reload()`. */
  readonly configFile?: string;
  readonly watchConfig?: boolean;
  /** The hash of the config as read (of its file's text); default: of its parsed form. */
  readonly configHash?: string;
}

/** A running processor replica. */
export interface RunningGateway {
  readonly grpcAddress: string;
  readonly adminAddress: string;
  readonly context: GatewayContext;
  readonly health: HealthMonitor;
  /** What the gRPC health service reports (SERVING once ready). */
  readonly serving: HealthState;
  /**
   * Starts a graceful stop: gRPC health says NOT_SERVING and `/readyz` 503 `draining`, while new
   * and open streams are still served for the drain window, so that Envoy's health check takes
   * this replica out before it stops listening. Resolves when the window has passed.
   */
  drain(): Promise<void>;
  /** Stops taking streams, lets open ones finish (bounded), then ends what this replica holds. */
  close(): Promise<void>;
  /**
   * Loads the config again (the given one, or the config file) and swaps it in whole when it is
   * valid; a bad one is refused and the config in force stays. Reloads run one at a time.
   */
  reload(config?: Config): Promise<ReloadOutcome>;
}

/** Starts one processor replica: the ext_proc gRPC server and the admin HTTP server. */
export async function run(opts: RunOptions): Promise<RunningGateway> {
  const log = opts.logger ?? createLogger(opts.logLevel ?? opts.config.logging.level);
  const metrics = new Metrics();
  let ready = false;
  let draining = false;
  // Envoy's configuration, for an Envoy that takes it from the processor (envoy-config without --static).
  const xds = new XdsServer(opts.config, log, metrics);
  const live = await LiveConfig.open(
    {
      config: opts.config,
      ...(opts.configDir === undefined ? {} : { configDir: opts.configDir }),
      ...(opts.configFile === undefined ? {} : { configFile: opts.configFile }),
      ...(opts.watchConfig === undefined ? {} : { watch: opts.watchConfig }),
      ...(opts.configHash === undefined ? {} : { configHash: opts.configHash }),
    },
    log,
    metrics,
    xds,
  );
  const processors = opts.config.gateway.processor;
  const grpcWanted = opts.grpc ?? (Array.isArray(processors) ? processors[0]! : processors);
  const serving = new HealthState();
  // Each request reads the config in force once, when it starts, and keeps it to its end.
  const { server: grpcServer, address: grpcAddress } = await startExtProcServer(grpcWanted, () => live.context, log, serving, [xds.service()]);
  const drainMs = opts.drainMs ?? (Array.isArray(processors) && processors.length > 1 ? PROCESSOR_DRAIN_MS : 0);

  // The operator console (off unless admin.console): its own credentials, on this port only.
  const adminConsole = new AdminConsole(live, log);
  const admin = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (adminConsole.handle(req, res)) return;
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      const why = draining ? 'draining' : !ready ? 'starting' : !live.health.ready() ? 'no upstream server is healthy' : null;
      res.writeHead(why === null ? 200 : 503, { 'content-type': 'text/plain' }).end(`${why ?? 'ready'}\n${live.describe}\n`);
    } else if (path === '/health/servers') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(live.health.snapshot()));
    } else if (path === '/metrics') {
      metrics.render().then(
        ({ contentType, body }) => res.writeHead(200, { 'content-type': contentType }).end(body),
        (err: unknown) => {
          log.error({ err }, 'metrics rendering failed');
          res.writeHead(500).end();
        },
      );
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  });
  const adminWanted = opts.admin ?? opts.config.gateway.admin;
  const adminAddress = await listen(admin, adminWanted);
  ready = true;
  serving.set('SERVING');
  log.info({ grpc: grpcAddress, admin: adminAddress, servers: live.context.rc.serverList.map((s) => s.name), config: live.hash }, 'processor started');
  live.start();

  return {
    grpcAddress,
    adminAddress,
    get context() {
      return live.context;
    },
    get health() {
      return live.health;
    },
    serving,
    reload: (config) => live.reload(config),
    async drain(): Promise<void> {
      if (draining) return;
      draining = true;
      serving.set('NOT_SERVING');
      log.info({ drain_ms: drainMs }, 'draining: reporting NOT_SERVING, still serving until the health check has taken this replica out');
      if (drainMs > 0) await new Promise((resolve) => setTimeout(resolve, drainMs));
    },
    async close(): Promise<void> {
      ready = false;
      draining = true;
      serving.set('NOT_SERVING');
      serving.endWatches();
      live.stopWatching();
      // Open server→client streams end cleanly now (their clients resume on another replica)
      // rather than hold the shutdown until it is forced.
      live.context.streams.closeAll();
      await new Promise<void>((resolve) => admin.close(() => resolve()));
      // In-flight requests finish first (briefly), then the upstream sessions are ended.
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          grpcServer.forceShutdown();
          resolve();
        }, PROCESSOR_SHUTDOWN_GRACE_MS);
        grpcServer.tryShutdown(() => {
          clearTimeout(t);
          resolve();
        });
      });
      await live.close();
    },
  };
}

function listen(server: Server, hostPort: string): Promise<string> {
  const { host, port } = splitHostPort(hostPort);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      const a = server.address();
      const actual = typeof a === 'object' && a !== null ? a.port : port;
      resolve(withPort(hostPort, actual));
    });
  });
}
