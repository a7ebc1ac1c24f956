import type { RequestContext } from '../request/context.js';
import type { SessionStore } from '../sessions/store.js';
import type { UpstreamClient } from '../upstream/client.js';
import type { HeldCalls } from '../upstream/held-calls.js';
import type { UpstreamSessions } from '../upstream/sessions.js';
import type { BridgeSessions } from './bridge.js';
import type { Catalog } from './catalog.js';
import type { Namespace } from './naming.js';
import type { SessionLists } from './session-lists.js';
import type { ServerStreams } from './server-stream.js';

/** What the aggregated endpoint needs beyond the shared request stages; built once per config. */
export interface AggregatedContext extends RequestContext {
  readonly sessions: SessionStore;
  readonly catalog: Catalog;
  /** The sessions 2026-07-28 clients' requests use with session-based servers. */
  readonly bridge: BridgeSessions;
  /** Lists servers keep for one session only. */
  readonly sessionLists: SessionLists;
  readonly naming: Namespace;
  readonly upstream: UpstreamClient;
  readonly upstreamSessions: UpstreamSessions;
  /** In-flight client requests: `<session>\n<id>` → server (so a cancellation finds its upstream). */
  readonly inflight: Map<string, string>;
  /** Calls this replica holds open for 2026-07-28 clients a server asked something. */
  readonly held: HeldCalls;
  /** The server→client streams this replica serves. */
  readonly streams: ServerStreams;
  /**
   * What the session ids of this endpoint start with (`<scope>.`): a virtual server's, so that its
   * sessions are unknown on every other endpoint and theirs on it; null on `/mcp`.
   */
  readonly sessionScope: string | null;
}
