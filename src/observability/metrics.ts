import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { LABEL, METRIC } from './names.js';

/** Label values of one finished MCP operation (all already bounded by the caller). */
export interface OperationLabels {
  readonly method: string;
  readonly server: string;
  readonly tool: string;
  readonly tenant: string;
  readonly status: string;
}

/**
 * The processor's Prometheus metrics, in their own registry (so several processors can live in
 * one test process). Label values arrive bounded: see `names.ts` and the request path's label
 * functions; nothing here turns input into a label without that.
 */
export class Metrics {
  readonly registry = new Registry();
  private readonly requests: Counter;
  private readonly duration: Histogram;
  private readonly size: Histogram;
  private readonly serverUp: Gauge;
  private readonly serverLatency: Gauge;
  private readonly rateLimited: Counter;
  private readonly authFailures: Counter;
  private readonly collisions: Gauge;
  private readonly filterDecisions: Counter;
  private readonly cacheLookups: Counter;
  private readonly cacheInvalidations: Counter;
  private readonly toolDrift: Counter;
  private readonly toolsFlagged: Gauge;
  private readonly configInfo: Gauge;
  private readonly configLoadedAt: Gauge;
  private readonly configReloads: Counter;
  private readonly configReloadFailures: Counter;
  private readonly xdsStreams: Gauge;
  private readonly xdsRejected: Counter;

  constructor(opts: { processMetrics?: boolean } = {}) {
    const r = [this.registry];
    const op = [LABEL.method, LABEL.server, LABEL.tool, LABEL.tenant, LABEL.status];
    this.requests = new Counter({
      name: METRIC.requestsTotal,
      help: 'MCP messages handled, by method, server, tool, tenant and outcome',
      labelNames: op,
      registers: r,
    });
    this.duration = new Histogram({
      name: METRIC.requestDuration,
      help: 'Time from request headers to the end of the response as seen by the processor',
      labelNames: op,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: r,
    });
    this.size = new Histogram({
      name: METRIC.requestSize,
      help: 'Request body size in bytes',
      labelNames: [LABEL.method, LABEL.server],
      buckets: [128, 512, 2048, 8192, 32_768, 131_072, 524_288, 2_097_152, 8_388_608],
      registers: r,
    });
    this.serverUp = new Gauge({
      name: METRIC.serverUp,
      help: '1 if the upstream MCP server answered its last health check, else 0',
      labelNames: [LABEL.server],
      registers: r,
    });
    this.serverLatency = new Gauge({
      name: METRIC.serverLatency,
      help: 'Latency of the last successful health-check ping to the upstream, in seconds',
      labelNames: [LABEL.server],
      registers: r,
    });
    this.rateLimited = new Counter({
      name: METRIC.rateLimitedTotal,
      help: 'Requests refused by a rate limit or quota',
      labelNames: [LABEL.server, LABEL.tenant, LABEL.limit],
      registers: r,
    });
    this.authFailures = new Counter({
      name: METRIC.authFailuresTotal,
      help: 'Requests refused by authentication or authorisation',
      labelNames: [LABEL.reason],
      registers: r,
    });
    this.collisions = new Gauge({
      name: METRIC.nameCollisions,
      help: 'Unprefixed names on /mcp that more than one server claims now, by kind (tools, prompts, resources, resourceTemplates)',
      labelNames: [LABEL.kind],
      registers: r,
    });
    this.filterDecisions = new Counter({
      name: METRIC.filterDecisionsTotal,
      help: 'Decisions of the filters on requests (context, defaults), by server and what was done',
      labelNames: [LABEL.filter, LABEL.server, LABEL.action],
      registers: r,
    });
    this.cacheLookups = new Counter({
      name: METRIC.cacheLookupsTotal,
      help: 'Lookups in the answer cache (resources/read, prompts/get, cached tools/call) by server, method and result (hit, miss)',
      labelNames: [LABEL.server, LABEL.method, LABEL.result],
      registers: r,
    });
    this.cacheInvalidations = new Counter({
      name: METRIC.cacheInvalidationsTotal,
      help: "Cached answers dropped at a server's word, by server and reason (resource_updated, list_changed, resync: the gateway started to listen to the server again and may have missed changes)",
      labelNames: [LABEL.server, LABEL.reason],
      registers: r,
    });
    this.toolDrift = new Counter({
      name: METRIC.toolDriftTotal,
      help: 'Tool definitions seen to differ from their pin, by server and action (warned, withheld until approved)',
      labelNames: [LABEL.server, LABEL.action],
      registers: r,
    });
    this.toolsFlagged = new Gauge({
      name: METRIC.toolsFlagged,
      help: "Tools flagged now, by server and flag (pending_approval: changed since pinned; shadowing: its description names another server's tools)",
      labelNames: [LABEL.server, LABEL.flag],
      registers: r,
    });
    this.configInfo = new Gauge({ name: METRIC.configInfo, help: 'The config in force: 1 for its hash (sha256 of the config file)', labelNames: [LABEL.hash], registers: r });
    this.configLoadedAt = new Gauge({ name: METRIC.configLoadedTimestamp, help: 'When the config in force was loaded (Unix time, seconds)', registers: r });
    this.configReloads = new Counter({ name: METRIC.configReloadsTotal, help: 'Configs reloaded and swapped in while running', registers: r });
    this.configReloadFailures = new Counter({
      name: METRIC.configReloadFailuresTotal,
      help: 'Config reloads refused (invalid config, unreadable file or credentials); the config in force stayed',
      registers: r,
    });
    this.xdsStreams = new Gauge({ name: METRIC.xdsStreams, help: 'Envoys connected to this processor for their configuration (ADS streams)', registers: r });
    this.xdsRejected = new Counter({
      name: METRIC.xdsRejectedTotal,
      help: 'Configurations sent to Envoy over xDS that it refused (it keeps the one before), by resource type',
      labelNames: [LABEL.type],
      registers: r,
    });
    if (opts.processMetrics !== false) collectDefaultMetrics({ register: this.registry });
  }

  /** Counts one finished operation. */
  operation(l: OperationLabels, seconds: number, requestBytes: number | null): void {
    const labels = { [LABEL.method]: l.method, [LABEL.server]: l.server, [LABEL.tool]: l.tool, [LABEL.tenant]: l.tenant, [LABEL.status]: l.status };
    this.requests.inc(labels);
    this.duration.observe(labels, seconds);
    if (requestBytes !== null) this.size.observe({ [LABEL.method]: l.method, [LABEL.server]: l.server }, requestBytes);
  }

  /** Health-check outcome for one server. */
  serverHealth(server: string, up: boolean, latencySeconds: number | null): void {
    this.serverUp.set({ [LABEL.server]: server }, up ? 1 : 0);
    if (latencySeconds !== null) this.serverLatency.set({ [LABEL.server]: server }, latencySeconds);
  }

  /** A request refused by a limit. */
  rateLimitedInc(server: string, tenant: string, limit: string): void {
    this.rateLimited.inc({ [LABEL.server]: server, [LABEL.tenant]: tenant, [LABEL.limit]: limit });
  }

  /** A request refused by authentication/authorisation (reason from a fixed set). */
  authFailureInc(reason: string): void {
    this.authFailures.inc({ [LABEL.reason]: reason });
  }

  /** How many unprefixed names of a kind several servers claim (the catalog settled them). */
  nameCollisionsSet(kind: string, n: number): void {
    this.collisions.set({ [LABEL.kind]: kind }, n);
  }

  /** One decision of a filter (filter and action from fixed sets, server a configured name). */
  filterDecisionInc(filter: string, server: string, action: string): void {
    this.filterDecisions.inc({ [LABEL.filter]: filter, [LABEL.server]: server, [LABEL.action]: action });
  }

  /** One answer-cache lookup (server a configured name, method one of the cached ones). */
  cacheLookupInc(server: string, method: string, result: 'hit' | 'miss'): void {
    this.cacheLookups.inc({ [LABEL.server]: server, [LABEL.method]: method, [LABEL.result]: result });
  }

  /** Cached answers dropped because a server said they changed. */
  cacheInvalidationInc(server: string, reason: string): void {
    this.cacheInvalidations.inc({ [LABEL.server]: server, [LABEL.reason]: reason });
  }

  /** A tool definition that differs from its pin. */
  toolDriftInc(server: string, action: 'warned' | 'withheld'): void {
    this.toolDrift.inc({ [LABEL.server]: server, [LABEL.action]: action });
  }

  /** How many of a server's tools carry a flag now. */
  toolsFlaggedSet(server: string, flag: string, n: number): void {
    this.toolsFlagged.set({ [LABEL.server]: server, [LABEL.flag]: flag }, n);
  }

  /** A config is in force from now on. */
  configLoaded(hash: string, loadedAtMs: number): void {
    this.configInfo.reset();
    this.configInfo.set({ [LABEL.hash]: hash }, 1);
    this.configLoadedAt.set(loadedAtMs / 1000);
  }

  /** A reload was applied, or refused. */
  configReloadInc(result: 'applied' | 'refused'): void {
    (result === 'applied' ? this.configReloads : this.configReloadFailures).inc();
  }

  /** How many Envoys take their configuration from this processor now. */
  xdsStreamsSet(n: number): void {
    this.xdsStreams.set(n);
  }

  /** Envoy refused a configuration sent (type: cluster, listener, route). */
  xdsRejectedInc(type: string): void {
    this.xdsRejected.inc({ [LABEL.type]: type });
  }

  /** The Prometheus text exposition. */
  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
