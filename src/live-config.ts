import { createHash, randomBytes } from 'node:crypto';
import { unwatchFile, watchFile } from 'node:fs';
import { readFile, realpath, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { CatalogWatch } from './aggregated/catalog-watch.js';
import { parseConfigText, readConfigText } from './config/load.js';
import type { RuntimeConfig } from './config/runtime.js';
import type { Config } from './config/schema.js';
import { createContext, type LoadedContext } from './context.js';
import { renderEnvoyBootstrap } from './envoy/bootstrap.js';
import type { XdsServer } from './envoy/xds.js';
import type { GatewayContext } from './exchange.js';
import { durationMs } from './lib/duration.js';
import type { Metrics } from './observability/metrics.js';
import { HealthMonitor } from './upstream/health.js';

/**
 * The config in force, and how a new one takes its place: read, validated and compiled whole,
 * then swapped in for the next request while requests under way finish on the one they started
 * with. Envoys that take their configuration from the processor (xds.ts) get what either config
 * needs before the swap, and lose what only the old one needed once its requests are done.
 */

/** What a config reload did. */
export type ReloadOutcome =
  | {
      readonly result: 'applied';
      readonly hash: string;
      readonly added: readonly string[];
      readonly removed: readonly string[];
      readonly restartKeys: readonly string[];
      /** Envoy's bootstrap made from the new config differs from the old one's (Envoy not fed over xDS). */
      readonly envoyStale: boolean;
      /** Applied from the console but its file could not be replaced (the error code): the file's config returns at the next reload. */
      readonly fileError?: string;
    }
  | { readonly result: 'unchanged'; readonly hash: string; readonly fileError?: string }
  | { readonly result: 'refused'; readonly error: string };

/** Why a config could not take the place of the one in force (nothing changed). */
export class ConfigReplaceError extends Error {
  override readonly name = 'ConfigReplaceError';
}

function errorCode(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? (err instanceof Error ? err.message : String(err));
}

/** What a candidate config would change (the console's validate-before-apply). */
export interface ConfigChanges {
  readonly serversAdded: readonly string[];
  readonly serversRemoved: readonly string[];
  readonly serversChanged: readonly string[];
  readonly sectionsChanged: readonly string[];
  readonly restartKeys: readonly string[];
}

/** One config in force: its context, the health checks and catalog watch over it, and which config it is. */
interface InForce {
  readonly loaded: LoadedContext;
  readonly health: HealthMonitor;
  readonly watch: CatalogWatch;
  readonly hash: string;
  readonly loadedAt: number;
}

export interface LiveConfigOptions {
  readonly config: Config;
  readonly configDir?: string;
  /** The config file: reloaded when it changes (unless `watch` is false) and on `reload()`. */
  readonly configFile?: string;
  readonly watch?: boolean;
  /** The hash of the config as read (of its file's text); default: of its parsed form. */
  readonly configHash?: string;
}

export class LiveConfig {
  private now: InForce;
  private reloading: Promise<ReloadOutcome>;
  private stopFileWatch: () => void = () => {};
  private warm: NodeJS.Timeout | null = null;
  private serving = false;
  /** Configs replaced whose requests may still run (until their grace ends). */
  private readonly replaced = new Set<Config>();

  private constructor(
    first: LoadedContext,
    hash: string,
    private readonly opts: LiveConfigOptions,
    private readonly log: Logger,
    private readonly metrics: Metrics,
    private readonly xds: XdsServer,
  ) {
    this.now = this.begin(first, hash);
    this.reloading = Promise.resolve({ result: 'unchanged', hash });
  }

  /** Loads the first config. */
  static async open(opts: LiveConfigOptions, log: Logger, metrics: Metrics, xds: XdsServer): Promise<LiveConfig> {
    const first = await createContext(opts.config, log, metrics, opts.configDir);
    return new LiveConfig(first, opts.configHash ?? configHash(JSON.stringify(opts.config)), opts, log, metrics, xds);
  }

  /** The request path's context under the config in force. */
  get context(): GatewayContext {
    return this.now.loaded.context;
  }

  get health(): HealthMonitor {
    return this.now.health;
  }

  /** Which config is in force, and since when (for /readyz). */
  get describe(): string {
    return `config ${this.now.hash} loaded ${new Date(this.now.loadedAt).toISOString()}`;
  }

  get hash(): string {
    return this.now.hash;
  }

  /** When the config in force was loaded (ms since the epoch). */
  get loadedAt(): number {
    return this.now.loadedAt;
  }

  /** The config file followed, if any. */
  get configFile(): string | undefined {
    return this.opts.configFile;
  }

  /** What swapping in `next` would change: servers, top-level sections, and keys that wait for a restart. */
  preview(next: Config): ConfigChanges {
    const before = this.now.loaded.context.rc.source;
    const servers = (c: Config): string[] => Object.keys(c.servers);
    const keys = [...new Set([...Object.keys(before), ...Object.keys(next)])] as (keyof Config)[];
    return {
      serversAdded: servers(next).filter((s) => !(s in before.servers)),
      serversRemoved: servers(before).filter((s) => !(s in next.servers)),
      serversChanged: servers(next).filter((s) => s in before.servers && JSON.stringify(before.servers[s]) !== JSON.stringify(next.servers[s])),
      sectionsChanged: keys.filter((k) => JSON.stringify(before[k]) !== JSON.stringify(next[k])),
      restartKeys: restartKeysBetween(before, next),
    };
  }

  /**
   * Swaps in `config` (what `text` parses to) in place of the config `base` names, as a reload
   * does, and puts `text` in place of the config file only when the swap took. The text is first
   * written beside the file (a file that cannot be written refuses before anything changes), then
   * renamed over it (a reader never sees half of it), so a refused config never reaches the file.
   * Runs in turn with reloads. Rejects with a {@link ConfigReplaceError} when the config in force is
   * not `base` any more, when the file holds changes not in force, or when the file cannot be
   * written; an outcome with `fileError` says the config is in force but the file could not be
   * replaced. `scrub` cleans what a refusal logs. Without a config file, only swaps.
   */
  replace(text: string, config: Config, base: string, scrub: (message: string) => string = (m) => m): Promise<ReloadOutcome> {
    const hash = configHash(text);
    const run = async (): Promise<ReloadOutcome> => {
      if (this.now.hash !== base) {
        throw new ConfigReplaceError(`the config in force is ${this.now.hash}, not ${base}: it changed since this one was checked`);
      }
      if (this.opts.configFile === undefined) return this.apply(config, hash, scrub);
      // A symlinked file (a ConfigMap's) is replaced where it really is, the link kept.
      const file = await realpath(this.opts.configFile).catch(() => this.opts.configFile!);
      const onDisk = await readFile(file, 'utf8').catch(() => null);
      if (onDisk !== null && configHash(onDisk) !== this.now.hash) {
        throw new ConfigReplaceError(`the config file holds changes that are not in force (${configHash(onDisk)}): see why they were refused, or reload, first`);
      }
      const temp = join(dirname(file), `.${basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
      const mode = (await stat(file).catch(() => null))?.mode ?? 0o600;
      try {
        try {
          await writeFile(temp, text, { mode: mode & 0o777, flag: 'wx' });
        } catch (err) {
          throw new ConfigReplaceError(`the config file cannot be written here (${errorCode(err)}): change it where it comes from (e.g. its ConfigMap)`);
        }
        const outcome = await this.apply(config, hash, scrub);
        if (outcome.result === 'refused') return outcome;
        try {
          await rename(temp, file);
        } catch (err) {
          this.log.warn({ event: 'config_file_not_replaced', file, error: errorCode(err), config: outcome.hash }, 'the config is in force but its file could not be replaced: the file\'s config returns at the next reload or start');
          return { ...outcome, fileError: errorCode(err) };
        }
        return outcome;
      } finally {
        await unlink(temp).catch(() => {});
      }
    };
    const done = this.reloading.then(run);
    // The next reload runs whatever this one did; its caller gets the error.
    this.reloading = done.catch(() => ({ result: 'unchanged', hash: this.now.hash }));
    return done;
  }

  /** The processor serves: warm the catalogs once Envoy can carry our calls, then start the checks; follow the config file. */
  start(): void {
    this.serving = true;
    const first = this.now;
    this.warm = setTimeout(() => this.watchServers(first, null), 200);
    this.warm.unref();
    if (this.opts.configFile !== undefined && this.opts.watch !== false) this.stopFileWatch = watchConfigFile(this.opts.configFile, () => void this.reload());
  }

  /**
   * Loads the config again (the given one, or the config file) and swaps it in whole when it is
   * valid; a bad one is refused and the config in force stays. Reloads run one at a time.
   */
  reload(given?: Config): Promise<ReloadOutcome> {
    // A reload that fails for any reason is a refusal: the next one still runs, and nobody is left
    // with a rejected promise (the file watch and SIGHUP do not wait for theirs).
    this.reloading = this.reloading.then(() => this.reloadOnce(given)).catch((err: unknown) => this.refused(err));
    return this.reloading;
  }

  /** Pushes Envoy's configuration in the reload order (never beside a reload's own push). */
  private pushEnvoy(): Promise<void> {
    const push = this.reloading.then(() => this.xds.setConfig(this.envoyConfig()));
    this.reloading = push.then(
      () => ({ result: 'unchanged', hash: this.now.hash }) as const,
      (err: unknown) => {
        this.log.warn({ err: String(err) }, "xds: Envoy's configuration not pushed");
        return { result: 'unchanged', hash: this.now.hash } as const;
      },
    );
    return push;
  }

  /** What Envoy must have now: the config in force, and the servers of configs whose requests may still run. */
  private envoyConfig(): Config {
    return [...this.replaced].reduce((c, other) => withServersOf(c, other), this.now.loaded.context.rc.source);
  }

  /** Stops following the config and the servers, and ends what this replica holds. */
  async close(): Promise<void> {
    this.stopFileWatch();
    this.stopWatching();
    await this.now.loaded.close();
  }

  /** Stops what follows the servers (health checks, catalog watch) before the processor stops. */
  stopWatching(): void {
    this.serving = false;
    if (this.warm !== null) clearTimeout(this.warm);
    this.now.health.stop();
    this.now.watch.close();
  }

  private begin(loaded: LoadedContext, hash: string): InForce {
    const { context, control } = loaded;
    const hc = context.rc.source.health;
    const health = new HealthMonitor(
      context.rc,
      control,
      context.metrics,
      this.log,
      {
        intervalMs: durationMs(hc.interval),
        timeoutMs: durationMs(hc.timeout),
        unhealthyThreshold: hc.unhealthy_threshold,
        degradedLatencyMs: durationMs(hc.degraded_latency),
      },
      (unhealthy) => context.catalog.setExcluded(unhealthy),
      context.recent === null ? null : (h) => context.recent?.healthChecked(h.server, h.status, h.latency_ms, h.last_error),
    );
    const loadedAt = Date.now();
    this.metrics.configLoaded(hash, loadedAt);
    return { loaded, health, watch: new CatalogWatch(context, control), hash, loadedAt };
  }

  /** Health checks and the catalog watch of a config, once its catalogs are warm (or `warmMs` passed). */
  private watchServers(f: InForce, warmMs: number | null): void {
    const warmed = f.loaded.context.catalog.warmUp();
    void (warmMs === null ? warmed : Promise.race([warmed, new Promise((r) => setTimeout(r, warmMs).unref())])).finally(() => {
      if (!this.serving || this.now !== f) return;
      f.health.start();
      f.watch.start();
    });
  }

  private async reloadOnce(given?: Config): Promise<ReloadOutcome> {
    if (given !== undefined) return this.apply(given, configHash(JSON.stringify(given)));
    if (this.opts.configFile === undefined) return { result: 'unchanged', hash: this.now.hash };
    let text: string;
    let next: Config;
    try {
      text = await readConfigText(this.opts.configFile);
      next = parseConfigText(text);
    } catch (err) {
      return this.refused(err);
    }
    return this.apply(next, configHash(text));
  }

  private async apply(next: Config, hash: string, scrub?: (message: string) => string): Promise<ReloadOutcome> {
    if (hash === this.now.hash) return { result: 'unchanged', hash };
    const before = this.now;
    let loaded: LoadedContext;
    try {
      loaded = await createContext(next, this.log, this.metrics, this.opts.configDir, undefined, before.loaded.shared);
    } catch (err) {
      return this.refused(err, scrub);
    }
    try {
      return await this.swap(before, loaded, next, hash);
    } catch (err) {
      // Not swapped in: what the new config opened ends with it.
      if (this.now.loaded === before.loaded) await loaded.retire().catch(() => {});
      return this.refused(err, scrub);
    }
  }

  private async swap(before: InForce, loaded: LoadedContext, next: Config, hash: string): Promise<ReloadOutcome> {
    const oldRc = before.loaded.context.rc;
    const newRc = loaded.context.rc;
    const added = newRc.serverList.filter((s) => !oldRc.servers.has(s.name)).map((s) => s.name);
    const removed = oldRc.serverList.filter((s) => !newRc.servers.has(s.name));
    const restartKeys = restartKeysBetween(oldRc.source, next);
    // An Envoy that runs from a bootstrap made of the config (not from the processor's xDS) must be
    // given a new one when it would differ.
    const envoyStale = this.xds.connected === 0 && renderEnvoyBootstrap(oldRc.source) !== renderEnvoyBootstrap(next);
    // Envoys that take their configuration from the processor first get what either config routes
    // to (a new server's cluster and routes are there before anything is sent to it), and what
    // configs replaced before still need.
    await this.xds.setConfig([oldRc.source, ...this.replaced].reduce((c, other) => withServersOf(c, other), next));
    this.replaced.add(oldRc.source);
    this.now = this.begin(loaded, hash);
    before.health.stop();
    before.watch.close();
    this.watchServers(this.now, 2_000);
    this.retire(before, oldRc, removed);
    this.metrics.configReloadInc('applied');
    this.log.info(
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
  }

  /**
   * A replaced config's end, once the requests that started on it are done: the upstream
   * sessions of servers no longer configured (the client sessions stay), what it owns, and in
   * Envoy what only it needed.
   */
  private retire(before: InForce, oldRc: RuntimeConfig, removed: readonly RuntimeConfig['serverList'][number][]): void {
    const grace = Math.min(oldRc.upstreamTimeoutMs + 5_000, 120_000);
    new Promise<void>((resolve) => setTimeout(resolve, grace).unref())
      .then(async () => {
        // A server configured again meanwhile keeps its sessions.
        const stillGone = removed.filter((s) => !this.now.loaded.context.rc.servers.has(s.name));
        if (stillGone.length > 0) {
          const gone = { ...oldRc, servers: new Map(stillGone.map((s) => [s.name, s])) } as RuntimeConfig;
          await Promise.all([...before.loaded.shared.sessions.localSessions()].map((s) => before.loaded.context.upstreamSessions.terminateAll(gone, s)));
        }
        await before.loaded.retire();
        this.replaced.delete(oldRc.source);
        await this.pushEnvoy();
      })
      .catch((err: unknown) => this.log.warn({ err: String(err) }, 'a replaced config did not end cleanly'));
  }

  private refused(err: unknown, scrub: (message: string) => string = (m) => m): ReloadOutcome {
    const error = scrub(err instanceof Error ? err.message : String(err));
    this.metrics.configReloadInc('refused');
    this.log.error({ event: 'config_reload_failed', error, config: this.now.hash }, 'config reload refused; the config in force stays');
    return { result: 'refused', error };
  }
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
  { key: 'admin.audit_buffer', of: (c) => c.admin.audit_buffer },
];

/** The keys fixed for the process's life that differ between two configs. */
function restartKeysBetween(before: Config, next: Config): string[] {
  return RESTART_KEYS.filter((k) => JSON.stringify(k.of(before)) !== JSON.stringify(k.of(next))).map((k) => k.key);
}

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
