import { invalidateAnswers } from '../cache/answers.js';
import type { RuntimeServer } from '../config/runtime.js';
import { isObject, parseJsonObject, type JsonObject } from '../mcp/message.js';
import { isModernVersion } from '../mcp/modern.js';
import type { ControlSessions, OpenedSession } from '../upstream/control.js';
import { NO_CAPABILITIES } from '../upstream/profiles.js';
import type { AggregatedContext } from './context.js';
import { LIST_CHANGED } from './rewrite.js';
import { pause, readUpstreamStream } from './server-stream.js';

/** Most resources one gateway session with a server subscribes to for the answer cache. */
const MAX_WATCHED_RESOURCES = 10_000;

/** Waits between attempts to (re)open a server's stream: from the first to the most. */
const RETRY_FIRST_MS = 500;
const RETRY_MAX_MS = 10_000;
/** A stream that lasted this long was healthy: its next re-open starts the waits afresh. */
const HEALTHY_MS = 5_000;

/**
 * Listens on the GET stream of the gateway's own session with each server that announces list
 * changes, so that a `notifications/*\/list_changed` drops that server's catalog entry at once
 * (not at the cache's TTL) and reaches the open client streams that would not hear it otherwise
 * (ServerStreams.listChanged). One stream per server and replica, whatever the number of clients.
 */
export class CatalogWatch {
  private readonly abort = new AbortController();
  /** The resources each gateway session with a server is subscribed to (for cached reads). */
  private readonly subscribed = new WeakMap<OpenedSession, Set<string>>();

  constructor(
    private readonly ctx: AggregatedContext,
    private readonly control: ControlSessions,
  ) {}

  start(): void {
    for (const server of this.ctx.rc.serverList) void this.follow(server);
    this.ctx.answers.onResourceKept = (server, uri) => this.watchResource(server, uri);
  }

  /**
   * A read of this resource is cached: the gateway's own session with the server subscribes to
   * it (once per session), so its `notifications/resources/updated` reaches the stream followed
   * here and drops the cached reads. Servers without resource subscriptions, and those of the
   * sessionless revision, are not asked: their cached reads live out their ttl.
   */
  private watchResource(name: string, uri: string): void {
    const server = this.ctx.rc.servers.get(name);
    const session = server === undefined ? null : this.control.current(server);
    if (server === undefined || session === null || isModernVersion(session.protocolVersion)) return;
    if (!subscribes(session.capabilities)) return;
    let uris = this.subscribed.get(session);
    if (uris === undefined) this.subscribed.set(session, (uris = new Set()));
    if (uris.has(uri) || uris.size >= MAX_WATCHED_RESOURCES) return;
    uris.add(uri);
    this.ctx.upstream.call(server, 'resources/subscribe', { uri }, { sessionId: session.sessionId, protocolVersion: session.protocolVersion }).catch((err: unknown) => {
      uris.delete(uri);
      this.ctx.log.debug({ server: name, err }, 'resource subscription for the answer cache refused');
    });
  }

  close(): void {
    this.abort.abort();
  }

  private async follow(server: RuntimeServer): Promise<void> {
    const signal = this.abort.signal;
    let wait = RETRY_FIRST_MS;
    while (!signal.aborted) {
      // Follows the session the catalog and health checks keep open; never opens one itself
      // (a failure here would take the server out of the catalog for its pause).
      const session = this.control.current(server);
      if (session !== null) {
        if (!announcesChanges(session.capabilities) && !(this.ctx.answers.caches(server.name, 'resources/read') && subscribes(session.capabilities))) return;
        const opened = performance.now();
        const outcome = await readUpstreamStream(
          this.ctx,
          server,
          session,
          null,
          signal,
          (e) => {
            if (e.data !== '') this.heard(server, e.data);
          },
          // Until now nothing listened: a change made since this session was opened (or since
          // the last stream broke) went unheard. Treat every announced list as changed once.
          () => {
            for (const [method, kind] of LIST_CHANGED) {
              if (announces(session.capabilities, kind)) this.changed(server, method, kind, 'resync');
            }
            // Resources read and cached meanwhile may have changed unheard too.
            if (!announces(session.capabilities, 'resources')) invalidateAnswers(this.ctx, server.name, { listChanged: 'resources' }, 'resync');
          },
          // A sessionless server's stream carries what its subscriptions/listen asks for.
          isModernVersion(session.protocolVersion) ? changesFilter(session.capabilities) : undefined,
        );
        if (outcome === 'refused') return;
        if (outcome === 'forgot') this.control.forget(server, session);
        // Changes made while no stream was open went unheard: the next list fetches afresh.
        this.ctx.catalog.invalidate(server.name);
        if (outcome === 'ended' && performance.now() - opened >= HEALTHY_MS) wait = RETRY_FIRST_MS;
      }
      if (!(await pause(session === null ? RETRY_FIRST_MS : wait, signal))) return;
      if (session !== null) wait = Math.min(wait * 2, RETRY_MAX_MS);
    }
  }

  private heard(server: RuntimeServer, data: string): void {
    const msg = parseJsonObject(data);
    if (msg === null || typeof msg['method'] !== 'string') return;
    const kind = LIST_CHANGED.get(msg['method']);
    if (kind !== undefined) this.changed(server, msg['method'], kind);
    const params = msg['params'];
    if (msg['method'] === 'notifications/resources/updated' && isObject(params) && typeof params['uri'] === 'string') {
      invalidateAnswers(this.ctx, server.name, { resourceUpdated: params['uri'] });
    }
  }

  /** Drops the server's catalog entry of `kind` and tells the clients that would not hear it otherwise. */
  private changed(server: RuntimeServer, method: string, kind: 'tools' | 'prompts' | 'resources', reason?: 'resync'): void {
    this.ctx.catalog.invalidate(server.name, kind);
    if (kind === 'resources') this.ctx.catalog.invalidate(server.name, 'resourceTemplates');
    invalidateAnswers(this.ctx, server.name, { listChanged: kind }, reason);
    // Pinned tools are judged as they are fetched: fetched now, not when a client next lists them
    // (a client of the passthrough endpoint never makes the catalog fetch).
    if (kind === 'tools' && this.ctx.guard.pins !== null) void this.ctx.catalog.serverItems(server, 'tools', NO_CAPABILITIES);
    this.ctx.streams.listChanged(server.name, method);
  }
}

/** Whether a server's capabilities say it announces changes to its `kind` list. */
function announces(caps: JsonObject, kind: string): boolean {
  const c = caps[kind];
  return isObject(c) && c['listChanged'] === true;
}

/** Whether a server's capabilities offer resource subscriptions. */
function subscribes(caps: JsonObject): boolean {
  const c = caps['resources'];
  return isObject(c) && c['subscribe'] === true;
}

/** The subscriptions/listen filter for every list change a server announces. */
function changesFilter(caps: JsonObject): JsonObject {
  const filter: JsonObject = {};
  for (const kind of ['tools', 'prompts', 'resources'] as const) if (announces(caps, kind)) filter[`${kind}ListChanged`] = true;
  return filter;
}

/** Whether a server's capabilities say it announces changes to any of its lists. */
function announcesChanges(caps: JsonObject): boolean {
  return ['tools', 'prompts', 'resources'].some((k) => announces(caps, k));
}
