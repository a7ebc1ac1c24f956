import { createHash } from 'node:crypto';
import { unwatchFile, watchFile } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { Logger } from 'pino';
import { Catalog } from './aggregated/catalog.js';
import type { AggregatedContext } from './aggregated/context.js';
import { Namespace } from './aggregated/naming.js';
import { ToolCallTransforms } from './filters/transform.js';
import { PiiFilters } from './filters/pii.js';
import { ArgumentValidation } from './filters/validate.js';
import { Authenticator } from './auth/identity.js';
import { resolveUpstreamCredentials, type UpstreamCredentials } from './auth/upstream-credentials.js';
import { AccessControl } from './policy/access.js';
import { TenantDirectory } from './policy/tenants.js';
import { compileConfig, viewRuntime, type RuntimeConfig } from './config/runtime.js';
import { durationMs } from './lib/duration.js';
import { splitHostPort, withPort } from './lib/host-port.js';
import { viewConfig, type Config } from './config/schema.js';
import { parseConfigText, readConfigText } from './config/load.js';
import { startExtProcServer } from './extproc/server.js';
import { renderEnvoyBootstrap } from './envoy/bootstrap.js';
import { XdsServer } from './envoy/xds.js';
import { HealthState } from './extproc/health.js';
import { PROCESSOR_DRAIN_MS, PROCESSOR_SHUTDOWN_GRACE_MS } from './envoy/contract.js';
import { createLogger } from './observability/logger.js';
import { Metrics } from './observability/metrics.js';
import { OperationObserver } from './observability/operations.js';
import type { GatewayContext } from './exchange.js';
import { MemorySessionStore } from './sessions/store.js';
import { Limiter } from './ratelimit/limiter.js';
import { redisTimeoutMs } from './state/schema.js';
import { MemoryLimiterStore, RedisLimiterStore, type LimiterStore } from './ratelimit/store.js';
import { RedisSessionStore } from './sessions/redis-store.js';
import { createRedisClient, describeRedisTarget, redisConnectionOptions, waitForRedis, type RedisClient } from './state/redis.js';
import { AnswerCache } from './cache/answers.js';
import { pinStore } from './filters/pin-store.js';
import { ToolPinning } from './filters/pins.js';
import { MemoryAnswerStore, RedisAnswerStore, type AnswerStore } from './cache/store.js';
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

/** Makes the processor's own upstream client; tests of the request stages put an in-memory one here. */
export type UpstreamFactory = (internalBaseUrl: string, timeoutMs: number, credentialsFor: (server: string) => readonly { key: string; value: string }[]) => UpstreamClient;

/**
 * What outlives one loaded config: the state clients and in-flight work depend on (sessions and
 * their streams, held calls, limit buckets, cached answers, the Redis connections). A reloaded
 * config gets these from the config before it; the keys they were built from take effect at
 * the next start (see RESTART_KEYS).
 */
export interface SharedState {
  readonly metrics: Metrics;
  readonly sessions: SessionStore;
  readonly streams: ServerStreams;
  readonly held: HeldCalls;
  readonly bridge: BridgeSessions;
  readonly inflight: Map<string, string>;
  readonly upstream: UpstreamClient;
  readonly redis: RedisClient | null;
  readonly relay: ReplicaRelay | null;
  /** The limit buckets, once any limit is configured. */
  limiterStore: LimiterStore | null;
  /** The cached answers, once an answer cache is configured. */
  answerStore: AnswerStore | null;
  /** What the config in force says, for what outlives it (session expiry, upstream credentials). */
  live: { rc: RuntimeConfig; credentials: UpstreamCredentials; upstreamSessions: UpstreamSessions | null };
  close(): void;
}

/** Opens what outlives a config, for the first config loaded. */
export async function openShared(config: Config, log: Logger, metrics: Metrics, configDir: string, makeUpstream: UpstreamFactory): Promise<SharedState> {
  const rc = compileConfig(config);
  const credentials = await resolveUpstreamCredentials(config.servers, { baseDir: configDir });
  const live: SharedState['live'] = { rc, credentials, upstreamSessions: null };
  const upstream = makeUpstream(rc.internalBaseUrl, rc.upstreamTimeoutMs, (s) => shared.live.credentials.headersFor(s));
  const streams = new ServerStreams();
  // The config in force when a session ends (shared.live follows every reload).
  const ended = (s: GatewaySession): void => {
    streams.sessionEnded(s.id);
    void shared.live.upstreamSessions?.terminateAll(shared.live.rc, s);
  };
  // A session ended to make room for a newer one of the same client: ended like an expired one.
  const onEvict = (s: GatewaySession): void => {
    log.info(
      { event: 'session_evicted', identity: s.identity, upstream_sessions: s.upstream.size, max_sessions_per_client: shared.live.rc.maxSessionsPerClient },
      'session ended: its client opened more than gateway.max_sessions_per_client',
    );
    ended(s);
  };
  const limits = { maxSessions: rc.maxSessions, maxSessionsPerClient: rc.maxSessionsPerClient, onExpire: ended, onEvict };
  let sessions: SessionStore;
  let redis: RedisClient | null = null;
  let relay: ReplicaRelay | null = null;
  if (config.redis !== undefined) {
    // Shared state: any replica serves any session, and limits hold across replicas.
    const connection = redisConnectionOptions(config.redis, redisTimeoutMs(config.redis));
    const target = describeRedisTarget(connection.target);
    redis = createRedisClient(connection);
    if (!(await waitForRedis(redis, 2000))) log.warn({ redis: target }, 'redis is not answering yet; starting degraded');
    sessions = new RedisSessionStore(redis, { keyPrefix: config.redis.key_prefix, idleMs: rc.sessionIdleMs, ...limits, log, target });
    relay = new ReplicaRelay(redis, createRedisClient({ ...connection, connectionName: 'mcp-gateway-relay' }), config.redis.key_prefix, log);
    const r = relay;
    // A client's stream may be on another replica than its subscribe: tell them all.
    r.handle(SESSION_CHANGED, async (id) => {
      if (typeof id === 'string') streams.recheck(id);
    });
    streams.tellOthers = (id) => r.tell(SESSION_CHANGED, id);
  } else {
    sessions = new MemorySessionStore({ idleMs: rc.sessionIdleMs, ...limits });
  }
  const client = redis;
  const shared: SharedState = {
    metrics,
    sessions,
    streams,
    held: new HeldCalls(upstream, log, rc.inputRequiredMs, rc.maxSessionsPerClient, relay),
    bridge: new BridgeSessions(sessions, rc.maxClientMetadataBytes),
    inflight: new Map(),
    upstream,
    redis,
    relay,
    limiterStore: null,
    answerStore: null,
    live,
    close() {
      sessions.close();
      shared.limiterStore?.close();
      relay?.close();
      client?.disconnect();
    },
  };
  return shared;
}

/** A loaded config's context, and what it owns besides what it shares with the configs before and after it. */
export interface LoadedContext {
  readonly context: GatewayContext;
  readonly control: ControlSessions;
  readonly shared: SharedState;
  /** Ends what this config owns (its sessions with each server, its pin watch); the shared state stays. */
  retire(): Promise<void>;
  /** Ends everything: what this config owns, every session this replica holds, the stores. Bounded by the upstream timeout. */
  close(): Promise<void>;
}

/** Builds the request-path context for a config: on its own, or over the shared state of the config before it. */
export async function createContext(
  config: Config,
  log: Logger,
  metrics: Metrics = new Metrics(),
  configDir: string = process.cwd(),
  makeUpstream: UpstreamFactory = (...args) => new UpstreamClient(...args),
  carried?: SharedState,
): Promise<LoadedContext> {
  const shared = carried ?? (await openShared(config, log, metrics, configDir, makeUpstream));
  const rc = compileConfig(config);
  const credentials = carried === undefined ? shared.live.credentials : await resolveUpstreamCredentials(config.servers, { baseDir: configDir });
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
  const { sessions, streams, upstream, redis } = shared;
  const limitsConfigured =
    config.gateway.rate_limit !== 'off' ||
    config.rate_limits !== undefined ||
    Object.values(config.servers).some((s) => s.rate_limit !== undefined) ||
    Object.values(config.tenants ?? {}).some((t) => t.quotas?.requests_per_day !== undefined);
  if (limitsConfigured && shared.limiterStore === null) {
    shared.limiterStore =
      redis !== null && config.redis !== undefined
        ? new RedisLimiterStore(redis, { keyPrefix: config.redis.key_prefix, onError: config.redis.limits_on_error, log, target: describeRedisTarget(redisConnectionOptions(config.redis, 0).target) })
        : new MemoryLimiterStore();
  }
  const limiter = Limiter.compile(config, limitsConfigured ? shared.limiterStore : null);
  // Answers are kept where the config says; in Redis by default when there is one.
  const answers = AnswerCache.compile(config, (c) => {
    shared.answerStore ??= redis !== null && config.redis !== undefined && c.store !== 'memory' ? new RedisAnswerStore(redis, config.redis.key_prefix, log) : new MemoryAnswerStore(c.max_entries, c.max_bytes);
    return shared.answerStore;
  });
  const pins = ToolPinning.compile(
    config.filters,
    config.servers,
    config.gateway.tool_separator,
    () => pinStore(config, configDir, redis),
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
  upstreamSessions.onCreated = (id) => streams.upstreamAdded(id);
  const control = new ControlSessions(rc, upstream, log);
  const naming = Namespace.fromConfig(config);
  const catalog = new Catalog(rc, control, naming, log, Date.now, (kind, collisions) => metrics.nameCollisionsSet(kind, collisions.length));
  if (pins !== null) catalog.screenTools((server, tools, everyClient) => pins.screen(server, tools, everyClient));
  const views = new Map<string, AggregatedContext>();
  const context: GatewayContext = {
    views,
    sessionScope: null,
    rc,
    sessions,
    catalog,
    sessionLists: new SessionLists({ rc, catalog, sessions, upstream, log }),
    bridge: shared.bridge,
    held: shared.held,
    naming,
    upstream,
    upstreamSessions,
    inflight: shared.inflight,
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
  // From now on what outlives this config follows it.
  shared.live = { rc, credentials, upstreamSessions };
  const retire = async (): Promise<void> => {
    pins?.close();
    await control.close();
  };
  return {
    context,
    control,
    shared,
    retire,
    async close(): Promise<void> {
      streams.closeAll();
      shared.held.closeAll();
      await Promise.all([...sessions.localSessions()].map((s) => upstreamSessions.terminateAll(rc, s)));
      await retire();
      shared.close();
    },
  };
}

/** What a config reload did. */
export type ReloadOutcome =
  | {
      readonly result: 'applied';
      readonly hash: string;
      readonly added: readonly string[];
      readonly removed: readonly string[];
      readonly restartKeys: readonly string[];
      /** Envoy's bootstrap made from the new config differs from the old one's. */
      readonly envoyStale: boolean;
    }
  | { readonly result: 'unchanged'; readonly hash: string }
  | { readonly result: 'refused'; readonly error: string };

/** The config in force: its context, the health checks and catalog watch over it, and which config it is. */
interface InForce {
  readonly loaded: LoadedContext;
  readonly health: HealthMonitor;
  readonly watch: CatalogWatch;
  readonly hash: string;
  readonly loadedAt: number;
}

/** Starts one processor replica: the ext_proc gRPC server and the admin HTTP server. */
export async function run(opts: RunOptions): Promise<RunningGateway> {
  const log = opts.logger ?? createLogger(opts.logLevel ?? opts.config.logging.level);
  const metrics = new Metrics();
  let ready = false;
  let draining = false;
  const begin = (loaded: LoadedContext, hash: string): InForce => {
    const { context, control } = loaded;
    const hc = context.rc.source.health;
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
    const loadedAt = Date.now();
    metrics.configLoaded(hash, loadedAt);
    return { loaded, health, watch: new CatalogWatch(context, control), hash, loadedAt };
  };
  let now = begin(await createContext(opts.config, log, metrics, opts.configDir), opts.configHash ?? configHash(JSON.stringify(opts.config)));
  const processors = opts.config.gateway.processor;
  const grpcWanted = opts.grpc ?? (Array.isArray(processors) ? processors[0]! : processors);
  const serving = new HealthState();
  // Each request reads the config in force once, when it starts, and keeps it to its end.
  // Envoy's configuration, for an Envoy that takes it from the processor (envoy-config without --static).
  const xds = new XdsServer(opts.config, log, metrics);
  const { server: grpcServer, address: grpcAddress } = await startExtProcServer(grpcWanted, () => now.loaded.context, log, serving, [xds.service()]);
  const drainMs = opts.drainMs ?? (Array.isArray(processors) && processors.length > 1 ? PROCESSOR_DRAIN_MS : 0);

  const admin = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      const why = draining ? 'draining' : !ready ? 'starting' : !now.health.ready() ? 'no upstream server is healthy' : null;
      const config = `config ${now.hash} loaded ${new Date(now.loadedAt).toISOString()}`;
      res.writeHead(why === null ? 200 : 503, { 'content-type': 'text/plain' }).end(`${why ?? 'ready'}\n${config}\n`);
    } else if (path === '/health/servers') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(now.health.snapshot()));
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
  log.info({ grpc: grpcAddress, admin: adminAddress, servers: now.loaded.context.rc.serverList.map((s) => s.name), config: now.hash }, 'processor started');
  // Warm the catalogs once Envoy can carry our calls (failures just mean a cold first list),
  // then start the health checks.
  const startWatching = (f: InForce, warmMs: number | null): void => {
    const warmed = f.loaded.context.catalog.warmUp();
    void (warmMs === null ? warmed : Promise.race([warmed, new Promise((r) => setTimeout(r, warmMs).unref())])).finally(() => {
      if (!ready || now !== f) return;
      f.health.start();
      f.watch.start();
    });
  };
  const first = now;
  const warm = setTimeout(() => startWatching(first, null), 200);
  warm.unref();

  /** Configs replaced, until what they own is ended. */
  const retiring = new Set<Promise<void>>();
  let reloading: Promise<ReloadOutcome> = Promise.resolve({ result: 'unchanged', hash: now.hash });

  const apply = async (next: Config, hash: string): Promise<ReloadOutcome> => {
    if (hash === now.hash) return { result: 'unchanged', hash };
    const before = now;
    let loaded: LoadedContext;
    try {
      loaded = await createContext(next, log, metrics, opts.configDir, undefined, before.loaded.shared);
    } catch (err) {
      return refused(err);
    }
    const oldRc = before.loaded.context.rc;
    const newRc = loaded.context.rc;
    const added = newRc.serverList.filter((s) => !oldRc.servers.has(s.name)).map((s) => s.name);
    const removed = oldRc.serverList.filter((s) => !newRc.servers.has(s.name));
    const restartKeys = RESTART_KEYS.filter((k) => JSON.stringify(k.of(oldRc.source)) !== JSON.stringify(k.of(next))).map((k) => k.key);
    // An Envoy that runs from a bootstrap made of the config (not from the processor's xDS) must be
    // given a new one when it would differ.
    const envoyStale = xds.connected === 0 && renderEnvoyBootstrap(oldRc.source) !== renderEnvoyBootstrap(next);
    // Envoys that take their configuration from the processor first get what either config routes
    // to (a new server's cluster and routes are there before anything is sent to it); what only
    // the config before needed goes once its requests are done.
    await xds.setConfig(withServersOf(next, oldRc.source));
    now = begin(loaded, hash);
    xds.setConfig(next);
    before.health.stop();
    before.watch.close();
    startWatching(now, 2_000);
    // Requests that started on the config before finish on it: what it owns ends after the longest of them could.
    const grace = Math.min(oldRc.upstreamTimeoutMs + 5_000, 120_000);
    const retired = new Promise<void>((resolve) => setTimeout(resolve, grace).unref())
      .then(async () => {
        // The sessions of servers no longer configured end with them (the client sessions stay);
        // a server configured again meanwhile keeps them.
        const stillGone = removed.filter((s) => !now.loaded.context.rc.servers.has(s.name));
        if (stillGone.length > 0) {
          const gone = { ...oldRc, servers: new Map(stillGone.map((s) => [s.name, s])) } as RuntimeConfig;
          await Promise.all([...loaded.shared.sessions.localSessions()].map((s) => before.loaded.context.upstreamSessions.terminateAll(gone, s)));
        }
        await before.loaded.retire();
        await xds.setConfig(now.loaded.context.rc.source);
      })
      .catch((err: unknown) => log.warn({ err: String(err) }, 'a replaced config did not end cleanly'));
    retiring.add(retired);
    void retired.finally(() => retiring.delete(retired));
    metrics.configReloadInc('applied');
    log.info(
      {
        event: 'config_reloaded',
        config: hash,
        servers_added: added,
        servers_removed: removed.map((s) => s.name),
        ...(restartKeys.length > 0 ? { restart_keys: restartKeys } : {}),
        ...(envoyStale ? { envoy_stale: true } : {}),
      },
      [
        'config reloaded',
        ...(restartKeys.length > 0 ? ['some changed keys take effect only at the next start (restart_keys)'] : []),
        ...(envoyStale ? ["Envoy's bootstrap made from this config differs from the one it runs: regenerate it (mcp-gateway envoy-config) and restart Envoy"] : []),
      ].join('; '),
    );
    return { result: 'applied', hash, added, removed: removed.map((s) => s.name), restartKeys, envoyStale };
  };
  const refused = (err: unknown): ReloadOutcome => {
    const error = err instanceof Error ? err.message : String(err);
    metrics.configReloadInc('refused');
    log.error({ event: 'config_reload_failed', error, config: now.hash }, 'config reload refused; the config in force stays');
    return { result: 'refused', error };
  };
  const reloadOnce = async (given?: Config): Promise<ReloadOutcome> => {
    if (given !== undefined) return apply(given, configHash(JSON.stringify(given)));
    if (opts.configFile === undefined) return { result: 'unchanged', hash: now.hash };
    let text: string;
    let next: Config;
    try {
      text = await readConfigText(opts.configFile);
      next = parseConfigText(text);
    } catch (err) {
      return refused(err);
    }
    return apply(next, configHash(text));
  };
  const reload = (given?: Config): Promise<ReloadOutcome> => {
    // One reload at a time, in the order asked.
    reloading = reloading.then(() => reloadOnce(given));
    return reloading;
  };
  const stopWatching = opts.configFile !== undefined && opts.watchConfig !== false ? watchConfigFile(opts.configFile, () => void reload()) : () => {};

  return {
    grpcAddress,
    adminAddress,
    get context() {
      return now.loaded.context;
    },
    get health() {
      return now.health;
    },
    serving,
    reload,
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
      stopWatching();
      serving.set('NOT_SERVING');
      serving.endWatches();
      clearTimeout(warm);
      now.health.stop();
      now.watch.close();
      // Open server→client streams end cleanly now (their clients resume on another replica)
      // rather than hold the shutdown until it is forced.
      now.loaded.context.streams.closeAll();
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
      await now.loaded.close();
    },
  };
}

/**
 * Keys a running processor cannot change (its own listeners, and what its sessions, limits and
 * Redis connections were opened with): a reload that changes them applies everything else and
 * names them in its log line; they take effect at the next start.
 */
const RESTART_KEYS: ReadonlyArray<{ readonly key: string; readonly of: (c: Config) => unknown }> = [
  { key: 'redis', of: (c) => c.redis },
  { key: 'gateway.processor', of: (c) => c.gateway.processor },
  { key: 'gateway.admin', of: (c) => c.gateway.admin },
  { key: 'gateway.internal', of: (c) => c.gateway.internal },
  { key: 'gateway.upstream_timeout', of: (c) => c.gateway.upstream_timeout },
  { key: 'gateway.session_idle_timeout', of: (c) => c.gateway.session_idle_timeout },
  { key: 'gateway.max_sessions', of: (c) => c.gateway.max_sessions },
  { key: 'gateway.max_sessions_per_client', of: (c) => c.gateway.max_sessions_per_client },
  { key: 'gateway.max_client_metadata_bytes', of: (c) => c.gateway.max_client_metadata_bytes },
  { key: 'gateway.input_required_timeout', of: (c) => c.gateway.input_required_timeout },
  { key: 'cache.store', of: (c) => [c.cache.store, c.cache.max_entries, c.cache.max_bytes] },
  { key: 'logging.level', of: (c) => c.logging.level },
];

/** A config with the servers of another one it does not have (for Envoy's side of a swap). */
function withServersOf(config: Config, other: Config): Config {
  const missing = Object.entries(other.servers).filter(([name]) => !(name in config.servers));
  return missing.length === 0 ? config : { ...config, servers: { ...Object.fromEntries(missing), ...config.servers } };
}

/** The hash a loaded config is known by (`/readyz`, `mcp_gateway_config_info`). */
export function configHash(text: string): string {
  return `sha256:${createHash('sha256').update(text).digest('hex').slice(0, 16)}`;
}

/**
 * Calls `changed` when the config file may have changed: its stat is polled (a ConfigMap update
 * swaps a symlink, which only polling the path sees reliably). Returns the stop.
 */
function watchConfigFile(path: string, changed: () => void): () => void {
  const listener = (cur: { mtimeMs: number; ino: number; size: number }, prev: { mtimeMs: number; ino: number; size: number }): void => {
    if (cur.mtimeMs !== prev.mtimeMs || cur.ino !== prev.ino || cur.size !== prev.size) changed();
  };
  watchFile(path, { interval: 500, persistent: false }, listener);
  return () => unwatchFile(path, listener);
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
