import { setTimeout as sleep } from 'node:timers/promises';
import { invalidateAnswers } from '../cache/answers.js';
import type { RuntimeServer } from '../config/runtime.js';
import { isObject, parseJsonObject, stringifyJson, type JsonObject } from '../mcp/message.js';
import { isModernVersion, MODERN_PROTOCOL_VERSIONS, SUBSCRIPTION_ID_META } from '../mcp/modern.js';
import { forgotSession } from '../mcp/protocol.js';
import { isEventStream, SseEventReader, sseEventText, type SseEvent } from '../mcp/sse.js';
import type { LocalStream, StreamSink } from '../request/decision.js';
import { serverVisible } from '../request/guard.js';
import type { RequestContext } from '../request/context.js';
import type { Caller } from '../request/state.js';
import type { GatewaySession, SessionStore, UpstreamSession } from '../sessions/store.js';
import type { UpstreamClient } from '../upstream/client.js';
import type { UpstreamSessions } from '../upstream/sessions.js';
import type { Catalog } from './catalog.js';
import { fanInEventId, postEventId, type ResumePoint } from './event-ids.js';
import type { Namespace } from './naming.js';
import { rewriteUpstreamMessage, type RewriteEffects } from './rewrite.js';
import type { SessionLists } from './session-lists.js';

/**
 * What the streams need of the aggregated endpoint's context (AggregatedContext has all of it;
 * named apart so that the context can hold the streams without the two depending on each other).
 */
export type StreamContext = RequestContext & {
  readonly catalog: Catalog;
  readonly sessionLists: SessionLists;
  readonly naming: Namespace;
  readonly sessions: SessionStore;
  readonly upstream: UpstreamClient;
  readonly upstreamSessions: UpstreamSessions;
};

/**
 * How often an open stream sends a comment (so neither Envoy's idle timeout nor a client's ends
 * a quiet stream) and looks at its session in the store: ended elsewhere (another replica's
 * DELETE, idle expiry) ends the stream; an upstream session another replica created joins it.
 */
const TICK_MS = 15_000;
/** Waits between attempts to (re)open an upstream's stream: from the first to the most. */
const RETRY_FIRST_MS = 250;
const RETRY_MAX_MS = 5_000;
/** An upstream stream that lasted this long was healthy: its next re-open starts the waits afresh. */
const HEALTHY_MS = 5_000;
/** Largest single event taken from an upstream stream; larger ones are dropped (and logged). */
const MAX_EVENT_BYTES = 4 * 1024 * 1024;
/** Largest error body read from an upstream that refused a stream. */
const MAX_REFUSAL_BYTES = 4096;

/** A stream that hears list changes without a client session (subscriptions/listen). */
export interface ListChangeListener {
  announce(server: string, method: string): void;
  end(): void;
}

/** What the streams of one client session need besides the aggregated context. */
interface StreamOwner {
  readonly sessionId: string;
  readonly caller: Caller;
}

/**
 * The server→client streams on `/mcp` that this replica serves, by client session. A client has
 * at most one standalone (fan-in) stream here: a newer GET replaces the older one, which is what
 * a reconnecting client needs when its old connection has not been noticed dead yet. Resumed
 * POST streams are separate and may be several.
 */
export class ServerStreams {
  private readonly bySession = new Map<string, Set<Closable>>();
  /** Sessionless streams by their caller (see sessionOwner), oldest first. */
  private readonly listeners = new Map<string, Set<ListChangeListener>>();

  /** Open streams (all kinds) on this replica. */
  get size(): number {
    let n = 0;
    for (const set of this.listeners.values()) n += set.size;
    for (const set of this.bySession.values()) n += set.size;
    return n;
  }

  /** The standalone stream of a client session: every upstream session's stream fanned in. */
  fanIn(ctx: StreamContext, owner: StreamOwner, session: GatewaySession, positions: ReadonlyMap<string, string>): LocalStream {
    for (const s of this.bySession.get(owner.sessionId) ?? []) if (s instanceof FanIn) s.end();
    return this.track(owner.sessionId, new FanIn(ctx, owner, session, new Map(positions), (s) => this.untrack(owner.sessionId, s)));
  }

  /** The rest of a POST's SSE answer that its server closed early, resumed with GET. */
  resumePost(ctx: StreamContext, owner: StreamOwner, session: GatewaySession, point: Extract<ResumePoint, { kind: 'post' }>): LocalStream {
    return this.track(owner.sessionId, new PostResume(ctx, owner, session, point, (s) => this.untrack(owner.sessionId, s)));
  }

  /** The client session ended here (DELETE): its streams end cleanly. */
  sessionEnded(sessionId: string): void {
    for (const s of [...(this.bySession.get(sessionId) ?? [])]) s.end();
  }

  /** The client session got a new upstream session: its standalone stream takes that one in. */
  upstreamAdded(sessionId: string): void {
    this.recheck(sessionId);
  }

  /** Tells the other replicas (set when they share sessions) that a session's subscriptions changed. */
  tellOthers: ((sessionId: string) => void) | null = null;

  /**
   * The client session's resource subscriptions to sessionless servers changed here: its
   * standalone stream, on this replica or another, listens for the new set.
   */
  subscriptionsChanged(sessionId: string): void {
    this.recheck(sessionId);
    this.tellOthers?.(sessionId);
  }

  /** The client session changed on another replica: its standalone stream here looks at it again. */
  recheck(sessionId: string): void {
    for (const s of this.bySession.get(sessionId) ?? []) if (s instanceof FanIn) s.recheck();
  }

  /**
   * A server announced a changed list on the gateway's own session with it: every standalone
   * stream whose client may see the server and does not hear it on an upstream session of its
   * own gets the notification.
   */
  listChanged(server: string, method: string): void {
    for (const set of this.bySession.values()) for (const s of set) if (s instanceof FanIn) s.announce(server, method);
    for (const set of this.listeners.values()) for (const l of set) l.announce(server, method);
  }

  /**
   * A sessionless stream of `owner` hears list changes until the returned function is called.
   * An owner keeps at most `max` such streams here: a new one ends its oldest (as a new session
   * ends its least recently used one).
   */
  addListener(owner: string, l: ListChangeListener, max: number): () => void {
    let set = this.listeners.get(owner);
    if (set === undefined) this.listeners.set(owner, (set = new Set()));
    while (set.size >= Math.max(1, max)) {
      const oldest = set.values().next().value!;
      set.delete(oldest);
      oldest.end();
    }
    set.add(l);
    const mine = set;
    return () => {
      mine.delete(l);
      if (mine.size === 0 && this.listeners.get(owner) === mine) this.listeners.delete(owner);
    };
  }

  /** Ends every stream (the replica shuts down; clients resume elsewhere). */
  closeAll(): void {
    for (const set of [...this.bySession.values()]) for (const s of [...set]) s.end();
    for (const set of [...this.listeners.values()]) for (const l of [...set]) l.end();
  }

  private track<T extends Closable>(sessionId: string, s: T): T {
    let set = this.bySession.get(sessionId);
    if (set === undefined) this.bySession.set(sessionId, (set = new Set()));
    set.add(s);
    return s;
  }

  private untrack(sessionId: string, s: Closable): void {
    const set = this.bySession.get(sessionId);
    if (set === undefined) return;
    set.delete(s);
    if (set.size === 0) this.bySession.delete(sessionId);
  }
}

/** A stream the registry can end. */
abstract class Closable implements LocalStream {
  protected sink: StreamSink | null = null;
  protected closed = false;
  protected readonly abort = new AbortController();

  constructor(
    protected readonly ctx: StreamContext,
    protected readonly owner: StreamOwner,
    private readonly onClose: (s: Closable) => void,
  ) {}

  start(sink: StreamSink): void {
    if (this.closed) {
      sink.end();
      return;
    }
    this.sink = sink;
    this.run();
  }

  /** Ends the client's stream cleanly (the ext_proc layer then calls close). */
  end(): void {
    if (this.sink !== null && !this.closed) this.sink.end();
    else this.close();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort();
    this.stopped();
    this.onClose(this);
  }

  protected abstract run(): void;
  protected stopped(): void {}

  /** Sends one chunk; a client too far behind loses the stream (it resumes with Last-Event-ID). */
  protected send(text: string): void {
    if (this.closed || this.sink === null) return;
    if (!this.sink.write(text)) {
      this.ctx.log.info({ event: 'server_stream_overrun' }, 'client reads its server→client stream too slowly; ending it for the client to resume');
      this.end();
    }
  }

  /** Waits, unless the stream closes first; false when it closed. */
  protected pause(ms: number): Promise<boolean> {
    return pause(ms, this.abort.signal);
  }

  /** Reads one upstream session's GET stream until it ends (see readUpstreamStream). */
  protected pump(server: RuntimeServer, up: UpstreamSession, lastEventId: string | null, onEvent: (e: SseEvent) => void): Promise<StreamOutcome> {
    return readUpstreamStream(this.ctx, server, up, lastEventId, this.abort.signal, onEvent);
  }

  /** One upstream message in its aggregated form (null: not JSON-RPC, dropped). */
  protected rename(session: GatewaySession, server: string, data: string, requestMethod: string | null): string | null {
    const msg = parseJsonObject(data);
    if (msg === null) return null;
    const effects: RewriteEffects = {};
    const changed = rewriteUpstreamMessage(msg, server, requestMethod, this.ctx.naming, effects);
    if (effects.listChanged !== undefined) this.ctx.sessionLists.listChanged(session, server, effects.listChanged);
    if (effects.listChanged !== undefined || effects.resourceUpdated !== undefined) invalidateAnswers(this.ctx, server, effects);
    if (!changed) return data;
    try {
      return stringifyJson(msg);
    } catch {
      return data;
    }
  }
}

/**
 * A client session's standalone stream: each of its upstream sessions' GET streams, opened
 * through Envoy's internal listener, fanned into one. Event ids are the gateway's (event-ids.ts),
 * so a resumed stream resumes every upstream where this client left it. An upstream whose stream
 * breaks is re-opened where it broke off; one that forgot the session (it restarted) gets a new
 * upstream session first. Servers without a GET stream are simply not part of it.
 */
class FanIn extends Closable {
  /** Upstreams being read (or found to have no stream), by server name. */
  private readonly members = new Set<string>();
  /** Members whose server offers no GET stream. */
  private readonly refused = new Set<string>();
  /**
   * Sessionless servers whose resources the client subscribed to: the listen stream held for it at
   * each, with the URIs it asks for (subscriptionKey).
   */
  private readonly listens = new Map<string, { readonly key: string; readonly stop: AbortController }>();
  private timer: NodeJS.Timeout | null = null;
  private checking = false;

  constructor(
    ctx: StreamContext,
    owner: StreamOwner,
    private session: GatewaySession,
    /** The last event id seen from each upstream on this stream (or the client's resume point). */
    private readonly positions: Map<string, string>,
    onClose: (s: Closable) => void,
  ) {
    super(ctx, owner, onClose);
  }

  protected run(): void {
    this.join(this.session);
    this.timer = setInterval(() => {
      this.send(': keepalive\n\n');
      this.recheck();
    }, TICK_MS);
    this.timer.unref();
  }

  protected override stopped(): void {
    if (this.timer !== null) clearInterval(this.timer);
  }

  /** Looks at the session in the store: gone ends the stream; new upstream sessions join it. */
  recheck(): void {
    if (this.checking || this.closed) return;
    this.checking = true;
    void this.fresh()
      .then((s) => {
        if (s !== null) this.join(s);
      })
      .finally(() => {
        this.checking = false;
      });
  }

  /** The session as the store has it now; null (and the stream ended) when it is gone. */
  private async fresh(): Promise<GatewaySession | null> {
    let s: GatewaySession | null;
    try {
      s = await this.ctx.sessions.get(this.owner.sessionId);
    } catch (err) {
      // The store is unreachable: keep streaming what is open, and look again later.
      this.ctx.log.debug({ err }, 'session store unavailable for an open stream');
      return this.session;
    }
    if (s === null) {
      this.end();
      return null;
    }
    this.session = s;
    return s;
  }

  private join(session: GatewaySession): void {
    if (this.closed) return;
    for (const [name, up] of session.upstream) {
      // A server running stateless has no session to stream: it only answers requests.
      if (this.members.has(name) || up.sessionId === null) continue;
      const server = this.ctx.rc.servers.get(name);
      if (server === undefined || !serverVisible(this.ctx, this.owner.caller, name)) continue;
      this.members.add(name);
      void this.follow(server);
    }
    this.listenFor(session);
  }

  /**
   * Holds one subscriptions/listen per sessionless server the client subscribed to resources of,
   * asking for exactly those URIs: a changed set re-opens it, an emptied one ends it.
   */
  private listenFor(session: GatewaySession): void {
    for (const [name, open] of this.listens) {
      const uris = session.subscriptions.get(name);
      if (uris !== undefined && subscriptionKey(uris) === open.key) continue;
      open.stop.abort();
      this.listens.delete(name);
    }
    for (const [name, uris] of session.subscriptions) {
      const server = this.ctx.rc.servers.get(name);
      if (this.listens.has(name) || server === undefined || !serverVisible(this.ctx, this.owner.caller, name)) continue;
      const stop = new AbortController();
      this.listens.set(name, { key: subscriptionKey(uris), stop });
      void this.listen(server, [...uris], AbortSignal.any([this.abort.signal, stop.signal]));
    }
  }

  /** Reads one sessionless server's listen stream for resource updates until `signal` fires. */
  private async listen(server: RuntimeServer, uris: string[], signal: AbortSignal): Promise<void> {
    const held = this.session.upstream.get(server.name);
    const up = { sessionId: null, protocolVersion: held !== undefined && isModernVersion(held.protocolVersion) ? held.protocolVersion : MODERN_PROTOCOL_VERSIONS[0]! };
    let wait = RETRY_FIRST_MS;
    while (!signal.aborted) {
      const opened = performance.now();
      const outcome = await readUpstreamStream(this.ctx, server, up, null, signal, (e) => this.updated(server.name, e), undefined, { resourceSubscriptions: uris });
      if (signal.aborted || outcome === 'refused') return;
      if (outcome === 'ended' && performance.now() - opened >= HEALTHY_MS) wait = RETRY_FIRST_MS;
      if (!(await pause(wait, signal))) return;
      wait = Math.min(wait * 2, RETRY_MAX_MS);
    }
  }

  /**
   * A resource update on a sessionless server's listen stream, as this client's revision has it:
   * namespaced, without the listen request's subscription id (the client made no such request).
   */
  private updated(server: string, e: SseEvent): void {
    if (e.data === '') return;
    const msg = parseJsonObject(e.data);
    const params = msg?.['params'];
    if (msg === null || msg['method'] !== 'notifications/resources/updated' || !isObject(params) || typeof params['uri'] !== 'string') return;
    if (this.session.subscriptions.get(server)?.has(params['uri']) !== true) return;
    if (isObject(params['_meta'])) {
      const { [SUBSCRIPTION_ID_META]: _listen, ...meta } = params['_meta'];
      if (Object.keys(meta).length === 0) delete params['_meta'];
      else params['_meta'] = meta;
    }
    const effects: RewriteEffects = {};
    rewriteUpstreamMessage(msg, server, null, this.ctx.naming, effects);
    invalidateAnswers(this.ctx, server, effects);
    this.send(sseEventText(this.positions.size > 0 ? fanInEventId(this.positions) : null, stringifyJson(msg)));
  }

  /** Reads one upstream's stream for as long as the client's stream lasts. */
  private async follow(server: RuntimeServer): Promise<void> {
    let wait = RETRY_FIRST_MS;
    let renewals = 0;
    while (!this.closed) {
      const up = this.session.upstream.get(server.name);
      if (up === undefined) {
        // The upstream session was dropped; it joins again once one is created.
        this.members.delete(server.name);
        return;
      }
      const opened = performance.now();
      const outcome = await this.pump(server, up, this.positions.get(server.name) ?? null, (e) => this.deliver(server.name, e));
      if (this.closed) return;
      if (outcome === 'refused') {
        // Stays a member, never asked again on this stream.
        this.refused.add(server.name);
        return;
      }
      if (outcome === 'forgot') {
        // The server restarted or expired the session: the same client gets a new one.
        this.positions.delete(server.name);
        const s = await this.fresh();
        if (s === null) return;
        try {
          await this.ctx.upstreamSessions.renew(s, server, up);
          await this.fresh();
          if (renewals++ === 0) continue;
        } catch (err) {
          this.ctx.log.debug({ server: server.name, err }, 'upstream session could not be renewed for the stream');
        }
      } else if (outcome === 'ended' && performance.now() - opened >= HEALTHY_MS) {
        wait = RETRY_FIRST_MS;
        renewals = 0;
        // A stream that lived a while and ended: re-open at once, where it broke off.
        if ((await this.fresh()) === null) return;
        continue;
      }
      if (!(await this.pause(wait))) return;
      wait = Math.min(wait * 2, RETRY_MAX_MS);
      if ((await this.fresh()) === null) return;
    }
  }

  /** A list change the gateway heard on its own session with `server`. */
  announce(server: string, method: string): void {
    if (this.closed || (this.members.has(server) && !this.refused.has(server))) return;
    if (!serverVisible(this.ctx, this.owner.caller, server)) return;
    this.send(sseEventText(this.positions.size > 0 ? fanInEventId(this.positions) : null, stringifyJson({ jsonrpc: '2.0', method })));
  }

  private deliver(server: string, e: SseEvent): void {
    if (e.id !== null) this.positions.set(server, e.id);
    if (e.data === '' || (e.event !== null && e.event !== 'message')) return;
    const data = this.rename(this.session, server, e.data, null);
    if (data === null) return;
    this.send(sseEventText(this.positions.size > 0 ? fanInEventId(this.positions) : null, data));
  }
}

/**
 * The rest of one POST's SSE answer, which its server closed on purpose (SSE polling) and the
 * client resumes with GET: read from that server with its own event id, renamed as the POST's
 * answer would have been, ended when the server ends it.
 */
class PostResume extends Closable {
  constructor(
    ctx: StreamContext,
    owner: StreamOwner,
    private readonly session: GatewaySession,
    private readonly point: Extract<ResumePoint, { kind: 'post' }>,
    onClose: (s: Closable) => void,
  ) {
    super(ctx, owner, onClose);
  }

  protected run(): void {
    void this.relay().finally(() => this.end());
  }

  private async relay(): Promise<void> {
    const { server: name, upstreamId, requestMethod } = this.point;
    const server = this.ctx.rc.servers.get(name);
    const up = this.session.upstream.get(name);
    if (server === undefined || up === undefined) return;
    await this.pump(server, up, upstreamId, (e) => {
      const id = e.id === null ? null : postEventId(name, e.id, requestMethod);
      if (e.data === '') {
        if (id !== null) this.send(`id: ${id}\ndata: \n\n`);
        return;
      }
      const data = this.rename(this.session, name, e.data, requestMethod);
      if (data !== null) this.send(sseEventText(id, data));
    });
  }
}

/** How reading an upstream's stream ended. */
export type StreamOutcome = 'ended' | 'refused' | 'forgot' | 'failed';

/**
 * Opens one upstream session's GET stream (through Envoy's internal listener) and hands its
 * events to `onEvent` until it ends. Returns how it went: `ended` (the server or the network
 * closed it, or `signal` fired), `refused` (the server offers no GET stream), `forgot` (the
 * server no longer knows the session), `failed` (unreachable, or refused for another reason).
 */
export async function readUpstreamStream(
  ctx: Pick<StreamContext, 'upstream' | 'log'>,
  server: RuntimeServer,
  up: UpstreamSession,
  lastEventId: string | null,
  signal: AbortSignal,
  onEvent: (e: SseEvent) => void,
  onOpen?: () => void,
  /** For a server of a sessionless revision, whose stream is a subscriptions/listen: its filter. */
  listen?: JsonObject,
): Promise<StreamOutcome> {
  let res: Response;
  try {
    res = await ctx.upstream.openStream(server, { sessionId: up.sessionId, protocolVersion: up.protocolVersion, lastEventId, signal, ...(listen === undefined ? {} : { listen }) });
  } catch (err) {
    if (!signal.aborted) ctx.log.debug({ server: server.name, err }, 'upstream stream did not open');
    return 'failed';
  }
  // No GET stream (405), or no subscriptions/listen (404 in the sessionless revisions).
  if (res.status === 405 || (res.status === 404 && up.sessionId === null)) {
    await res.body?.cancel().catch(() => undefined);
    return 'refused';
  }
  if (res.status !== 200 || !isEventStream(res.headers.get('content-type') ?? '')) {
    const text = await readSome(res);
    if (up.sessionId !== null && forgotSession(res.status, text)) return 'forgot';
    ctx.log.debug({ server: server.name, status: res.status }, 'upstream refused its stream');
    return res.status === 200 ? 'refused' : 'failed';
  }
  const reader = new SseEventReader(MAX_EVENT_BYTES, () => ctx.log.warn({ server: server.name, max_bytes: MAX_EVENT_BYTES }, 'upstream stream event too large; dropped'));
  onOpen?.();
  try {
    for await (const chunk of res.body ?? []) {
      for (const e of reader.push(chunk as Uint8Array)) onEvent(e);
    }
  } catch (err) {
    if (!signal.aborted) ctx.log.debug({ server: server.name, err }, 'upstream stream broke off');
  }
  return 'ended';
}

/** The URIs a listen asks for, as one comparable value. */
function subscriptionKey(uris: ReadonlySet<string>): string {
  return JSON.stringify([...uris].sort());
}

/** Waits `ms`, unless `signal` fires first; false when it did. Never holds the process open. */
export async function pause(ms: number, signal: AbortSignal): Promise<boolean> {
  try {
    await sleep(ms, undefined, { signal, ref: false });
    return true;
  } catch {
    return false;
  }
}

/** The start of a refusal's body, enough to tell a forgotten session. */
async function readSome(res: Response): Promise<string> {
  try {
    const text = await res.text();
    return text.slice(0, MAX_REFUSAL_BYTES);
  } catch {
    return '';
  }
}
