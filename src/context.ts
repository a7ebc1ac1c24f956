import type { Logger } from 'pino';
import { Catalog } from './aggregated/catalog.js';
import type { AggregatedContext } from './aggregated/context.js';
import { Namespace } from './aggregated/naming.js';
import { BridgeSessions } from './aggregated/bridge.js';
import { ServerStreams } from './aggregated/server-stream.js';
import { SessionLists } from './aggregated/session-lists.js';
import { Authenticator } from './auth/identity.js';
import { resolveUpstreamCredentials, type UpstreamCredentials } from './auth/upstream-credentials.js';
import { AnswerCache } from './cache/answers.js';
import { MemoryAnswerStore, RedisAnswerStore, type AnswerStore } from './cache/store.js';
import { compileConfig, viewRuntime, type RuntimeConfig } from './config/runtime.js';
import { viewConfig, type Config } from './config/schema.js';
import type { GatewayContext } from './exchange.js';
import { pinStore } from './filters/pin-store.js';
import { PiiFilters } from './filters/pii.js';
import { ToolPinning } from './filters/pins.js';
import { ToolCallTransforms } from './filters/transform.js';
import { ArgumentValidation } from './filters/validate.js';
import { Metrics } from './observability/metrics.js';
import { RecentActivity } from './observability/recent.js';
import { OperationObserver } from './observability/operations.js';
import { AccessControl } from './policy/access.js';
import { TenantDirectory } from './policy/tenants.js';
import { Limiter } from './ratelimit/limiter.js';
import { MemoryLimiterStore, RedisLimiterStore, type LimiterStore } from './ratelimit/store.js';
import { RedisSessionStore } from './sessions/redis-store.js';
import { MemorySessionStore, type GatewaySession, type SessionStore } from './sessions/store.js';
import { createRedisClient, describeRedisTarget, redisConnectionOptions, waitForRedis, type RedisClient } from './state/redis.js';
import { ReplicaRelay } from './state/relay.js';
import { redisTimeoutMs } from './state/schema.js';
import { UpstreamClient } from './upstream/client.js';
import { ControlSessions } from './upstream/control.js';
import { HeldCalls } from './upstream/held-calls.js';
import { UpstreamSessions } from './upstream/sessions.js';

/**
 * The request path's context for one loaded config, over the state that outlives configs
 * (sessions, streams, held calls, limit buckets, cached answers, Redis).
 */

/** Relay news: a client session changed on one replica (its streams elsewhere look at it again). */
const SESSION_CHANGED = 'session-changed';

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
  /** What the admin console shows of the recent past, once the console is on. */
  recent: RecentActivity | null;
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
    recent: null,
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
  // The console's memory of the recent past outlives configs; nothing is recorded while it is off.
  if (config.admin.console) shared.recent ??= new RecentActivity(config.admin.audit_buffer);
  const recent = config.admin.console ? shared.recent : null;
  const limiter = Limiter.compile(
    config,
    limitsConfigured ? shared.limiterStore : null,
    recent === null ? null : (key, limit, d) => recent.bucketSpent(key, limit, d.remaining, d.limit, d.resetMs),
  );
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
    recent,
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

