import type { Logger } from 'pino';
import type { RuntimeConfig } from '../config/runtime.js';
import type { Metrics } from '../observability/metrics.js';
import type { ControlSessions } from './control.js';

/** The seed's ServerHealth, as served on `/health/servers`. */
export interface ServerHealth {
  server: string;
  status: 'healthy' | 'degraded' | 'unhealthy';
  latency_ms: number;
  last_check: string | null;
  consecutive_failures: number;
  last_error?: string;
}

/** How the monitor judges servers. */
export interface HealthOptions {
  readonly intervalMs: number;
  readonly timeoutMs: number;
  /** Consecutive failed checks after which a server is unhealthy (and left out of lists). */
  readonly unhealthyThreshold: number;
  /** A successful check slower than this marks the server degraded. */
  readonly degradedLatencyMs: number;
}

/**
 * Pings every upstream (MCP `ping` over the gateway's own session) on an interval, keeps the
 * seed's ServerHealth per server, drives the `mcp_server_up` / `mcp_server_latency_seconds`
 * gauges, and reports after each round which servers are unhealthy (aggregated lists leave them
 * out until they recover).
 */
export class HealthMonitor {
  private readonly state = new Map<string, ServerHealth>();
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private checkedOnce = false;

  constructor(
    private readonly rc: RuntimeConfig,
    private readonly control: ControlSessions,
    private readonly metrics: Metrics,
    private readonly log: Logger,
    private readonly opts: HealthOptions,
    /** Told after every round which servers are unhealthy. */
    private readonly onUnhealthy: (servers: ReadonlySet<string>) => void = () => {},
    /** Told every check's outcome (the console's history). */
    private readonly onChecked: ((health: ServerHealth) => void) | null = null,
  ) {
    for (const s of rc.serverList) {
      // Until the first check, a server counts as degraded: neither vouched for nor excluded.
      this.state.set(s.name, { server: s.name, status: 'degraded', latency_ms: -1, last_check: null, consecutive_failures: 0 });
    }
  }

  /** Starts checking: one round now, then every interval. */
  start(): void {
    if (this.timer !== null) return;
    void this.checkAll();
    this.timer = setInterval(() => void this.checkAll(), this.opts.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** Health of every server, in config order. */
  snapshot(): ServerHealth[] {
    return this.rc.serverList.map((s) => ({ ...this.state.get(s.name)! }));
  }

  /** Whether the processor can usefully serve: before the first round, or while any server is not unhealthy. */
  ready(): boolean {
    return !this.checkedOnce || [...this.state.values()].some((h) => h.status !== 'unhealthy');
  }

  /** Runs one round of checks (also used by tests to avoid waiting for the timer). */
  checkAll(): Promise<void> {
    if (this.running !== null) return this.running;
    this.running = Promise.all(this.rc.serverList.map((s) => this.check(s.name)))
      .then(() => {
        this.checkedOnce = true;
        const unhealthy = new Set([...this.state.values()].filter((h) => h.status === 'unhealthy').map((h) => h.server));
        this.onUnhealthy(unhealthy);
      })
      .finally(() => {
        this.running = null;
      });
    return this.running;
  }

  private async check(name: string): Promise<void> {
    const server = this.rc.servers.get(name)!;
    const prev = this.state.get(name)!;
    const now = new Date().toISOString();
    let next: ServerHealth;
    try {
      const ms = await this.control.ping(server, this.opts.timeoutMs);
      const latency = Math.round(ms * 1000) / 1000;
      next = {
        server: name,
        status: ms > this.opts.degradedLatencyMs ? 'degraded' : 'healthy',
        latency_ms: latency,
        last_check: now,
        consecutive_failures: 0,
      };
      this.metrics.serverHealth(name, true, ms / 1000);
    } catch (err) {
      const failures = prev.consecutive_failures + 1;
      next = {
        server: name,
        status: failures >= this.opts.unhealthyThreshold ? 'unhealthy' : 'degraded',
        latency_ms: -1,
        last_check: now,
        consecutive_failures: failures,
        last_error: err instanceof Error ? err.message : String(err),
      };
      this.metrics.serverHealth(name, false, null);
    }
    if (next.status !== prev.status) {
      const level = next.status === 'unhealthy' ? 'warn' : 'info';
      this.log[level]({ server: name, from: prev.status, to: next.status, consecutive_failures: next.consecutive_failures, err: next.last_error }, 'upstream health changed');
    }
    this.state.set(name, next);
    this.onChecked?.(next);
  }
}
