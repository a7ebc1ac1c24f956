import type { RuntimeServer } from '../config/runtime.js';
import { GatewayError } from '../errors/gateway-error.js';
import { isObject, parseJsonObject, stringifyJson, type JsonObject, type JsonRpcId } from '../mcp/message.js';
import { ANONYMOUS_CLIENT_INFO, isModernVersion, MAX_RESOURCE_SUBSCRIPTIONS, META, SUBSCRIPTION_ID_META, type Envelope } from '../mcp/modern.js';
import { GATEWAY_INFO, LATEST_PROTOCOL_VERSION } from '../mcp/protocol.js';
import { sseEventText } from '../mcp/sse.js';
import { EVENT_STREAM_HEADERS, type LocalStream, type StreamDecision, type StreamSink } from '../request/decision.js';
import { serverVisible } from '../request/guard.js';
import type { Caller, RequestState } from '../request/state.js';
import { openSession, type Handshake, type OpenedSession } from '../upstream/control.js';
import { serversOffer } from './answers.js';
import { callerOwner } from './bridge.js';
import type { AggregatedContext } from './context.js';
import { LIST_CHANGED } from './rewrite.js';
import { resolveUri } from './route.js';
import { pause, readUpstreamStream } from './server-stream.js';
import { offersSubscriptions } from './subscriptions.js';

/**
 * `subscriptions/listen` on /mcp (MCP 2026-07-28): a long-lived POST the processor answers itself
 * with an event stream. The first event acknowledges the part of the requested filter the gateway
 * honours; list changes then come from the gateway's own watch on every server (catalog-watch.ts),
 * for the servers the caller may see; resource updates come from an upstream session this stream
 * opens with each server whose resources it subscribes to, ended with the stream. Every
 * notification carries the subscription id (the listen request's id). Nothing is shared: a
 * listen stream lives on the replica that serves it, and a client that loses it listens again.
 */

/** The filter's list flags and the list each is about. */
const LIST_FLAGS = [
  ['toolsListChanged', 'tools'],
  ['promptsListChanged', 'prompts'],
  ['resourcesListChanged', 'resources'],
] as const;
const FLAG_OF: ReadonlyMap<string, string> = new Map(LIST_FLAGS.map(([flag, kind]) => [kind, flag]));

/** A comment this often keeps a quiet stream open through Envoy's and the client's idle timeouts. */
const KEEPALIVE_MS = 15_000;
/** Waits between attempts to re-open an upstream's stream: from the first to the most. */
const RETRY_FIRST_MS = 250;
const RETRY_MAX_MS = 5_000;

/** What a client asked to hear, as checked against the revision's schema. */
interface RequestedFilter {
  readonly lists: ReadonlySet<string>;
  readonly uris: readonly string[];
}

function readFilter(params: JsonObject): RequestedFilter {
  const f = params['notifications'];
  const invalid = (what: string): GatewayError => new GatewayError('GW_ERR_PARAMS_INVALID', `Invalid params: ${what}`);
  if (!isObject(f)) throw invalid('notifications is required');
  const lists = new Set<string>();
  for (const [flag] of LIST_FLAGS) {
    const v = f[flag];
    if (v !== undefined && typeof v !== 'boolean') throw invalid(`notifications.${flag} must be a boolean`);
    if (v === true) lists.add(flag);
  }
  const uris = f['resourceSubscriptions'];
  if (uris !== undefined && (!Array.isArray(uris) || !uris.every((u) => typeof u === 'string'))) throw invalid('notifications.resourceSubscriptions must be an array of URIs');
  if (Array.isArray(uris) && uris.length > MAX_RESOURCE_SUBSCRIPTIONS) throw invalid(`notifications.resourceSubscriptions has more than ${MAX_RESOURCE_SUBSCRIPTIONS} URIs`);
  return { lists, uris: [...new Set((uris ?? []) as string[])] };
}

/** Whether the gateway offers change notifications for a list (some visible server announces them). */
function offersChanges(caps: JsonObject, kind: string): boolean {
  const c = caps[kind];
  return isObject(c) && c['listChanged'] === true;
}

/** One server's resource subscriptions of a listen stream, in an upstream session of their own. */
interface ResourceWatch {
  readonly server: RuntimeServer;
  /** How its upstream session is opened (again, when the server forgets it). */
  readonly handshake: Handshake;
  /** The server's own URIs, each with the namespaced URI the client subscribed to. */
  readonly uris: Map<string, string>;
  session: OpenedSession;
}

/**
 * Opens a listen stream: checks the filter, subscribes to the resources the caller may read and
 * whose server takes the subscription, and answers with the stream.
 */
export async function openListen(ctx: AggregatedContext, state: RequestState, envelope: Envelope, id: JsonRpcId, params: JsonObject): Promise<StreamDecision> {
  // Only the listen route holds the request for a streamed answer (an Envoy whose routes are not
  // the gateway's own has none): elsewhere the method is not offered.
  if (!state.canStream) throw new GatewayError('GW_ERR_METHOD_NOT_FOUND', 'Method not found: subscriptions/listen is not routed to the gateway on this listener');
  const filter = readFilter(params);
  const caller = state.caller!;
  const { capabilities } = await serversOffer(ctx, caller);
  const honored: JsonObject = {};
  for (const [flag, kind] of LIST_FLAGS) if (filter.lists.has(flag) && offersChanges(capabilities, kind)) honored[flag] = true;
  const watches = filter.uris.length === 0 ? [] : await subscribeAll(ctx, state, caller, envelope, filter.uris);
  const subscribed = watches.flatMap((w) => [...w.uris.values()]);
  if (subscribed.length > 0) honored['resourceSubscriptions'] = filter.uris.filter((u) => subscribed.includes(u));
  return {
    kind: 'stream',
    status: 200,
    headers: EVENT_STREAM_HEADERS,
    body: new ListenStream(ctx, caller, callerOwner(state, caller), id, honored, watches),
  };
}

/** Subscribes, per server, in a new upstream session; what a server refuses is not honoured. */
async function subscribeAll(ctx: AggregatedContext, state: RequestState, caller: Caller, envelope: Envelope, uris: readonly string[]): Promise<ResourceWatch[]> {
  const byServer = new Map<RuntimeServer, Map<string, string>>();
  for (const uri of uris) {
    let owned: { server: RuntimeServer; uri: string };
    try {
      owned = await resolveUri(ctx, state, caller, uri);
    } catch {
      continue; // unknown or forbidden: simply not honoured, like a resource nobody has
    }
    let m = byServer.get(owned.server);
    if (m === undefined) byServer.set(owned.server, (m = new Map()));
    m.set(owned.uri, uri);
  }
  const handshake: Handshake = { protocolVersion: LATEST_PROTOCOL_VERSION, capabilities: {}, clientInfo: envelope.clientInfo ?? ANONYMOUS_CLIENT_INFO, logLevel: null };
  const opened = await Promise.all(
    [...byServer].map(async ([server, wanted]): Promise<ResourceWatch | null> => {
      let session: OpenedSession;
      try {
        session = await openSession(ctx.upstream, server, handshake, ctx.log);
      } catch (err) {
        ctx.log.debug({ server: server.name, err }, 'listen: no session for resource subscriptions');
        return null;
      }
      const watch: ResourceWatch = { server, handshake, uris: new Map(), session };
      await subscribe(ctx, watch, wanted);
      if (watch.uris.size === 0) {
        endSession(ctx, watch);
        return null;
      }
      return watch;
    }),
  );
  return opened.filter((w): w is ResourceWatch => w !== null);
}

/**
 * Sends `resources/subscribe` for each URI in the watch's session; keeps the ones accepted. A
 * server of the sessionless revision has no such method: its own listen stream asks for the URIs
 * (follow), and all are kept when it offers subscriptions.
 */
async function subscribe(ctx: AggregatedContext, watch: ResourceWatch, wanted: ReadonlyMap<string, string>): Promise<void> {
  if (isModernVersion(watch.session.protocolVersion)) {
    if (offersSubscriptions(watch.session.capabilities)) for (const [own, namespaced] of wanted) watch.uris.set(own, namespaced);
    return;
  }
  const opts = { sessionId: watch.session.sessionId, protocolVersion: watch.session.protocolVersion };
  await Promise.all(
    [...wanted].map(async ([own, namespaced]) => {
      try {
        await ctx.upstream.call(watch.server, 'resources/subscribe', { uri: own }, opts);
        watch.uris.set(own, namespaced);
      } catch (err) {
        ctx.log.debug({ server: watch.server.name, err }, 'listen: resource subscription refused');
      }
    }),
  );
}

function endSession(ctx: AggregatedContext, watch: ResourceWatch): void {
  const { sessionId, protocolVersion } = watch.session;
  if (sessionId !== null) void ctx.upstream.terminate(watch.server, sessionId, protocolVersion).catch(() => undefined);
}

/** One open listen stream. */
class ListenStream implements LocalStream {
  private sink: StreamSink | null = null;
  private closed = false;
  private readonly abort = new AbortController();
  private timer: NodeJS.Timeout | null = null;
  private removeListener: (() => void) | null = null;

  constructor(
    private readonly ctx: AggregatedContext,
    private readonly caller: Caller,
    /** Whose streams this one counts among (`gateway.max_sessions_per_client` of them per replica). */
    private readonly owner: string,
    private readonly id: JsonRpcId,
    private readonly honored: JsonObject,
    private readonly watches: readonly ResourceWatch[],
  ) {}

  start(sink: StreamSink): void {
    if (this.closed) {
      sink.end();
      return;
    }
    this.sink = sink;
    this.notify('notifications/subscriptions/acknowledged', { notifications: this.honored });
    if (this.closed) return; // the client could not even take the acknowledgement
    if (Object.keys(this.honored).length === 0) {
      // Nothing to hear: the subscription ends at once, gracefully.
      this.end();
      return;
    }
    this.removeListener = this.ctx.streams.addListener(this.owner, this, this.ctx.rc.maxSessionsPerClient);
    for (const w of this.watches) void this.follow(w);
    this.timer = setInterval(() => this.send(': keepalive\n\n'), KEEPALIVE_MS);
    this.timer.unref();
  }

  /** A list change the gateway heard from `server`. */
  announce(server: string, method: string): void {
    const kind = LIST_CHANGED.get(method);
    const flag = kind === undefined ? undefined : FLAG_OF.get(kind);
    if (flag === undefined || this.honored[flag] !== true || !serverVisible(this.ctx, this.caller, server)) return;
    this.notify(method, {});
  }

  /** Ends the subscription gracefully: its result, then the end of the stream. */
  end(): void {
    if (this.sink === null || this.closed) {
      this.close();
      return;
    }
    this.send(sseEventText(null, stringifyJson({ jsonrpc: '2.0', id: this.id, result: { resultType: 'complete', _meta: { [SUBSCRIPTION_ID_META]: this.id, [META.serverInfo]: GATEWAY_INFO } } })));
    this.sink.end();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort();
    if (this.timer !== null) clearInterval(this.timer);
    this.removeListener?.();
    for (const w of this.watches) endSession(this.ctx, w);
  }

  private notify(method: string, params: JsonObject): void {
    const meta = isObject(params['_meta']) ? params['_meta'] : {};
    const note = { jsonrpc: '2.0', method, params: { ...params, _meta: { ...meta, [SUBSCRIPTION_ID_META]: this.id } } };
    this.send(sseEventText(null, stringifyJson(note)));
  }

  /** Sends one chunk; a client too far behind loses the stream (it listens again). */
  private send(text: string): void {
    if (this.closed || this.sink === null) return;
    if (!this.sink.write(text)) {
      this.ctx.log.info({ event: 'listen_stream_overrun' }, 'client reads its listen stream too slowly; ending it');
      this.sink.end();
    }
  }

  /**
   * Reads the watch's upstream stream for resource updates as long as the listen stream lasts. A
   * server that forgot the session gets a new one, subscribed again.
   */
  private async follow(watch: ResourceWatch): Promise<void> {
    let wait = RETRY_FIRST_MS;
    while (!this.closed) {
      const modern = isModernVersion(watch.session.protocolVersion);
      const outcome = await readUpstreamStream(
        this.ctx,
        watch.server,
        watch.session,
        null,
        this.abort.signal,
        (e) => {
          if (e.data !== '') this.updated(watch, e.data);
        },
        undefined,
        modern ? { resourceSubscriptions: [...watch.uris.keys()] } : undefined,
      );
      if (this.closed || outcome === 'refused') return;
      if (outcome === 'forgot') {
        try {
          watch.session = await openSession(this.ctx.upstream, watch.server, watch.handshake, this.ctx.log);
          await subscribe(this.ctx, watch, new Map(watch.uris));
          if (this.closed) endSession(this.ctx, watch);
          continue;
        } catch (err) {
          this.ctx.log.debug({ server: watch.server.name, err }, 'listen: resource subscriptions could not be renewed');
        }
      }
      if (!(await pause(wait, this.abort.signal))) return;
      wait = Math.min(wait * 2, RETRY_MAX_MS);
    }
  }

  private updated(watch: ResourceWatch, data: string): void {
    const msg = parseJsonObject(data);
    const params = msg?.['params'];
    if (msg?.['method'] !== 'notifications/resources/updated' || !isObject(params) || typeof params['uri'] !== 'string') return;
    const namespaced = watch.uris.get(params['uri']);
    if (namespaced === undefined) return;
    this.notify('notifications/resources/updated', { ...params, uri: namespaced });
  }
}
