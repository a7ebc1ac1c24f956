import type { RuntimeServer } from '../config/runtime.js';
import { isObject, parseJsonObject, type JsonObject } from '../mcp/message.js';
import { isModernVersion } from '../mcp/modern.js';
import type { ControlSessions } from '../upstream/control.js';
import type { AggregatedContext } from './context.js';
import { LIST_CHANGED } from './rewrite.js';
import { pause, readUpstreamStream } from './server-stream.js';

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

  constructor(
    private readonly ctx: AggregatedContext,
    private readonly control: ControlSessions,
  ) {}

  start(): void {
    for (const server of this.ctx.rc.serverList) void this.follow(server);
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
        if (!announcesChanges(session.capabilities)) return;
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
              if (announces(session.capabilities, kind)) this.changed(server, method, kind);
            }
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
  }

  /** Drops the server's catalog entry of `kind` and tells the clients that would not hear it otherwise. */
  private changed(server: RuntimeServer, method: string, kind: 'tools' | 'prompts' | 'resources'): void {
    this.ctx.catalog.invalidate(server.name, kind);
    if (kind === 'resources') this.ctx.catalog.invalidate(server.name, 'resourceTemplates');
    this.ctx.streams.listChanged(server.name, method);
  }
}

/** Whether a server's capabilities say it announces changes to its `kind` list. */
function announces(caps: JsonObject, kind: string): boolean {
  const c = caps[kind];
  return isObject(c) && c['listChanged'] === true;
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
