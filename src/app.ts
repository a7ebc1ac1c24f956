import { createServer, type Server } from 'node:http';
import type { Logger } from 'pino';
import { Catalog } from './aggregated/catalog.js';
import type { AggregatedContext } from './aggregated/context.js';
import { Namespace } from './aggregated/naming.js';
import { ToolCallTransforms } from './filters/transform.js';
import { PiiFilters } from './filters/pii.js';
import { ArgumentValidation } from './filters/validate.js';
import { Authenticator } from './auth/identity.js';
import { resolveUpstreamCredentials } from './auth/upstream-credentials.js';
import { AccessControl } from './policy/access.js';
import { TenantDirectory } from './policy/tenants.js';
import { compileConfig, viewRuntime } from './config/runtime.js';
import { durationMs } from './lib/duration.js';
import { splitHostPort, withPort } from './lib/host-port.js';
import { viewConfig, type Config } from './config/schema.js';
import { startExtProcServer } from './extproc/server.js';
import { HealthState } from './extproc/health.js';
import { PROCESSOR_DRAIN_MS, PROCESSOR_SHUTDOWN_GRACE_MS } from './envoy/contract.js';
import { createLogger } from './observability/logger.js';
import { Metrics } from './observability/metrics.js';
import { OperationObserver } from './observability/operations.js';
import type { GatewayContext } from './exchange.js';
import { MemorySessionStore } from './sessions/store.js';
import { Limiter } from './ratelimit/limiter.js';
import { redisTimeoutMs } from './state/schema.js';
import { MemoryLimiterStore, RedisLimiterStore } from './ratelimit/store.js';
import { RedisSessionStore } from './sessions/redis-store.js';
import { createRedisClient, describeRedisTarget, redisConnectionOptions, waitForRedis, type RedisClient } from './state/redis.js';
import { AnswerCache } from './cache/answers.js';
import { pinStore } from './filters/pin-store.js';
import { ToolPinning } from './filters/pins.js';
import { MemoryAnswerStore, RedisAnswerStore } from './cache/store.js';
import type { GatewaySession, SessionStore } from './sessions/store.js';
import { UpstreamClient } from './upstream/client.js';
import { ControlSessions } from './upstream/control.js';
import { HealthMonitor } from './upstream/health.js';
import { UpstreamSessions } from './upstream/sessions.js';
import { ServerStreams } from './aggregated/server-stream.js';
import { CatalogWatch } from './aggregated/catalog-watch.js';
import { SessionLists } from './aggregated/session-lists.js';
import { BridgeSessions } from './aggregated/bridge.js';
import { HeldCalls } from './upstream/held-calls.js';
import { ReplicaRelay } from './state/relay.js';

/** Options for one processor replica. */
/** Relay news: a client session changed on one replica (its streams elsewhere look at it again). */
const SESSION_CHANGED = 'session-changed';

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
}

/** Builds the shared request-path context for a config. */
export async function createContext(
  config: Config,
  log: Logger,
  metrics: Metrics = new Metrics(),
  configDir: string = process.cwd(),
  /** The processor's own upstream calls; tests of the request stages put an in-memory one here. */
  makeUpstream: (internalBaseUrl: string, timeoutMs: number, credentialsFor: (server: string) => readonly { key: string; value: string }[]) => UpstreamClient = (
    ...args
  ) => new UpstreamClient(...args),
): Promise<{ context: GatewayContext; control: ControlSessions; close(): Promise<void> }> {
  const rc = compileConfig(config);
  const credentials = await resolveUpstreamCredentials(config.servers, { baseDir: configDir });
  const auth = await Authenticator.create(config.auth, {
    endpointPaths: ['/mcp', ...rc.passthroughPaths.keys(), ...rc.viewPaths.keys()],
    onJwksEvent: (e) => log.info({ jwks: e }, 'jwks'),
  });
  void auth.warm().catch((err: unknown) => log.warn({ err: String(err) }, 'JWKS warm-up failed; keys are fetched on first use'));
  const access = new AccessControl({
    servers: rc.servers.keys(),
    tenants: config.tenants,
    policies: config.policies,
    blockedTools: config.blocked_tools,
  });
  const auditing =
    config.auth !== undefined ||
    config.tenants !== undefined ||
    config.policies !== undefined ||
    config.blocked_tools !== undefined ||
    Object.values(config.servers).some((s) => s.auth_required || s.allowed_clients !== undefined);
  const upstream = makeUpstream(rc.internalBaseUrl, rc.upstreamTimeoutMs, (s) => credentials.headersFor(s));
  const upstreamSessionsRef: { current: UpstreamSessions | null } = { current: null };
  const streams = new ServerStreams();
  const onExpire = (s: GatewaySession): void => {
    streams.sessionEnded(s.id);
    void upstreamSessionsRef.current?.terminateAll(rc, s);
  };
  // A session ended to make room for a newer one of the same client: ended like an expired one.
  const onEvict = (s: GatewaySession): void => {
    log.info(
      { event: 'session_evicted', identity: s.identity, upstream_sessions: s.upstream.size, max_sessions_per_client: rc.maxSessionsPerClient },
      'session ended: its client opened more than gateway.max_sessions_per_client',
    );
    streams.sessionEnded(s.id);
    void upstreamSessionsRef.current?.terminateAll(rc, s);
  };
  const limits = { maxSessions: rc.maxSessions, maxSessionsPerClient: rc.maxSessionsPerClient, onExpire, onEvict };

  let sessions: SessionStore;
  let limiter: Limiter;
  let disconnect = (): void => {};
  let relay: ReplicaRelay | null = null;
  let redisClient: RedisClient | null = null;
  const limitsConfigured =
    config.gateway.rate_limit !== 'off' ||
    config.rate_limits !== undefined ||
    Object.values(config.servers).some((s) => s.rate_limit !== undefined) ||
    Object.values(config.tenants ?? {}).some((t) => t.quotas?.requests_per_day !== undefined);
  if (config.redis !== undefined) {
    // Shared state: any replica serves any session, and limits hold across replicas.
    const connection = redisConnectionOptions(config.redis, redisTimeoutMs(config.redis));
    const target = describeRedisTarget(connection.target);
    const client = createRedisClient(connection);
    redisClient = client;
    if (!(await waitForRedis(client, 2000))) log.warn({ redis: target }, 'redis is not answering yet; starting degraded');
    sessions = new RedisSessionStore(client, { keyPrefix: config.redis.key_prefix, idleMs: rc.sessionIdleMs, ...limits, log, target });
    limiter = Limiter.compile(
      config,
      limitsConfigured
        ? new RedisLimiterStore(client, { keyPrefix: config.redis.key_prefix, onError: config.redis.limits_on_error, log, target })
        : null,
    );
    relay = new ReplicaRelay(client, createRedisClient({ ...connection, connectionName: 'mcp-gateway-relay' }), config.redis.key_prefix, log);
    const r = relay;
    // A client's stream may be on another replica than its subscribe: tell them all.
    r.handle(SESSION_CHANGED, async (id) => {
      if (typeof id === 'string') streams.recheck(id);
    });
    streams.tellOthers = (id) => r.tell(SESSION_CHANGED, id);
    disconnect = () => {
      r.close();
      client.disconnect();
    };
  } else {
    sessions = new MemorySessionStore({ idleMs: rc.sessionIdleMs, ...limits });
    limiter = Limiter.compile(config, limitsConfigured ? new MemoryLimiterStore() : null);
  }
  const shared = redisClient;
  // Answers are kept where the config says; in Redis by default when there is one.
  const answers = AnswerCache.compile(config, (c) =>
    shared !== null && c.store !== 'memory' ? new RedisAnswerStore(shared, config.redis!.key_prefix, log) : new MemoryAnswerStore(c.max_entries, c.max_bytes),
  );
  const pins = ToolPinning.compile(
    config.filters,
    config.servers,
    config.gateway.tool_separator,
    () => pinStore(config, configDir, shared),
    log,
    { drift: (server, action) => metrics.toolDriftInc(server, action), flagged: (server, flag, n) => metrics.toolsFlaggedSet(server, flag, n) },
  );
  await pins?.start();
  const guard = {
    auth,
    access,
    credentials,
    tenants: new TenantDirectory(config.tenants, rc.serverList, access),
    filtersNames: (config.policies?.length ?? 0) > 0 || (config.blocked_tools?.length ?? 0) > 0 || pins?.enforces === true,
    pins,
    auditing,
    foldsAllowed: auditing && config.logging.operations,
  };
  const upstreamSessions = new UpstreamSessions(upstream, sessions, log);
  upstreamSessionsRef.current = upstreamSessions;
  upstreamSessions.onCreated = (id) => streams.upstreamAdded(id);
  const control = new ControlSessions(rc, upstream, log);
  const naming = Namespace.fromConfig(config);
  const catalog = new Catalog(rc, control, naming, log, Date.now, (kind, collisions) => metrics.nameCollisionsSet(kind, collisions.length));
  if (pins !== null) catalog.screenTools((server, tools, everyClient) => pins.screen(server, tools, everyClient));
  const held = new HeldCalls(upstream, log, rc.inputRequiredMs, rc.maxSessionsPerClient, relay);
  const views = new Map<string, AggregatedContext>();
  const context: GatewayContext = {
    views,
    sessionScope: null,
    rc,
    sessions,
    catalog,
    sessionLists: new SessionLists({ rc, catalog, sessions, upstream, log }),
    bridge: new BridgeSessions(sessions, rc.maxClientMetadataBytes),
    held,
    naming,
    upstream,
    upstreamSessions,
    inflight: new Map(),
    streams,
    log,
    metrics,
    observer: new OperationObserver(metrics, log, config.logging.operations),
    logArguments: config.logging.arguments,
    knownTool: (server, tool) => catalog.knows(server, 'tools', tool),
    reportUnreachable: (server) => catalog.reportUnavailable(server),
    transforms: ToolCallTransforms.compile(config.filters, config.servers),
    validation: ArgumentValidation.compile(config.filters, config.servers),
    pii: PiiFilters.compile(config.filters, config.servers),
    toolSchema: (server, tool, which) => catalog.toolSchema(server, tool, which),
    answers,
    limiter,
    guard,
  };
  // Each virtual server: /mcp's context over its own servers, named its way, with sessions of its own.
  for (const view of rc.viewPaths.values()) {
    const viewRc = viewRuntime(rc, view);
    const viewNaming = Namespace.fromConfig(viewConfig(config, view.name), config.virtual_servers![view.name]!);
    views.set(view.path, { ...context, rc: viewRc, naming: viewNaming, catalog: catalog.view(viewRc, viewNaming), sessionScope: `v-${view.name}` });
  }
  return {
    context,
    control,
    /**
     * Ends what this replica holds: the upstream sessions of client sessions that live only in
     * its memory, and its own sessions with each upstream; then the stores. Bounded by the
     * upstream timeout.
     */
    async close(): Promise<void> {
      streams.closeAll();
      held.closeAll();
      await Promise.all([...sessions.localSessions()].map((s) => upstreamSessions.terminateAll(rc, s)));
      await control.close();
      sessions.close();
      limiter.close();
      pins?.close();
      disconnect();
    },
  };
}

/** Starts one processor replica: the ext_proc gRPC server and the admin HTTP server. */
export async function run(opts: RunOptions): Promise<RunningGateway> {
  const log = opts.logger ?? createLogger(opts.logLevel ?? opts.config.logging.level);
  const { context, control, close: closeContext } = await createContext(opts.config, log, undefined, opts.configDir);
  const hc = opts.config.health;
  const health = new HealthMonitor(
    context.rc,
    control,
    context.metrics,
    log,
    {
      intervalMs: durationMs(hc.interval),
      timeoutMs: durationMs(hc.timeout),
      unhealthyThreshold: hc.unhealthy_threshold,
      degradedLatencyMs: durationMs(hc.degraded_latency),
    },
    (unhealthy) => context.catalog.setExcluded(unhealthy),
  );
  const processors = opts.config.gateway.processor;
  const grpcWanted = opts.grpc ?? (Array.isArray(processors) ? processors[0]! : processors);
  const serving = new HealthState();
  const { server: grpcServer, address: grpcAddress } = await startExtProcServer(grpcWanted, () => context, log, serving);
  const drainMs = opts.drainMs ?? (Array.isArray(processors) && processors.length > 1 ? PROCESSOR_DRAIN_MS : 0);

  let ready = false;
  let draining = false;
  const admin = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      const why = draining ? 'draining' : !ready ? 'starting' : !health.ready() ? 'no upstream server is healthy' : null;
      res.writeHead(why === null ? 200 : 503, { 'content-type': 'text/plain' }).end(`${why ?? 'ready'}\n`);
    } else if (path === '/health/servers') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(health.snapshot()));
    } else if (path === '/metrics') {
      context.metrics.render().then(
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
  log.info({ grpc: grpcAddress, admin: adminAddress, servers: context.rc.serverList.map((s) => s.name) }, 'processor started');
  // Warm the catalogs once Envoy can carry our calls (failures just mean a cold first list),
  // then start the health checks.
  const watch = new CatalogWatch(context, control);
  const warm = setTimeout(() => {
    void context.catalog.warmUp().finally(() => {
      if (!ready) return;
      health.start();
      watch.start();
    });
  }, 200);
  warm.unref();

  return {
    grpcAddress,
    adminAddress,
    context,
    health,
    serving,
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
      clearTimeout(warm);
      health.stop();
      watch.close();
      // Open server→client streams end cleanly now (their clients resume on another replica)
      // rather than hold the shutdown until it is forced.
      context.streams.closeAll();
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
      await closeContext();
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
