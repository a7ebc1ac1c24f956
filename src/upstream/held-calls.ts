import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { RuntimeServer } from '../config/runtime.js';
import { GatewayError } from '../errors/gateway-error.js';
import { idKey, isObject, parseJsonObject, stringifyJson, type JsonObject, type JsonRpcId } from '../mcp/message.js';
import { forgotSession } from '../mcp/protocol.js';
import { isEventStream, SseEventReader, type SseEvent } from '../mcp/sse.js';
import { RelayUnanswered, type ReplicaRelay } from '../state/relay.js';
import type { UpstreamSession } from '../sessions/store.js';
import { UpstreamSessionGone, UpstreamUnreachable, type UpstreamClient } from './client.js';

/**
 * Calls the gateway makes itself, and holds open, for 2026-07-28 clients whose request goes to a
 * session-based server that asks the client something before it answers (sampling, elicitation,
 * roots). That revision has no server→client requests: the client gets an `input_required`
 * result carrying what the server asked and a `requestState`, and retries its request with the
 * answers. Meanwhile the server's call stays open here, its question unanswered; the retry's
 * answers go to the server as the responses it waits for, and the call goes on until it either
 * asks again or answers. The `requestState` names the held call and is good for one retry by the
 * same caller for the same request; a call nobody retries is cancelled upstream after
 * `gateway.input_required_timeout`.
 */

/** The server requests a client of the sessionless revision answers through `inputResponses`. */
const INPUT_METHODS: ReadonlyMap<string, string> = new Map([
  ['elicitation/create', 'elicitation'],
  ['sampling/createMessage', 'sampling'],
  ['roots/list', 'roots'],
]);

/** Every `requestState` the gateway mints starts so; anything else is a server's own. */
const TOKEN_PREFIX = 'mcpgw-held.';

/** Largest upstream event a held call reads (a larger one is skipped, as on other streams). */
const MAX_EVENT_BYTES = 16 * 1024 * 1024;

/** Whose call it is and what it asked: a retry must match all of it. */
export interface HeldIdentity {
  /** The caller (identity, or address when anonymous). */
  readonly owner: string;
  readonly server: string;
  readonly method: string;
  /** What the request names upstream (tool or prompt name, resource URI). */
  readonly name: string;
}

/** How a leg of a held call ended. */
export type Leg =
  /** The server answered: the JSON-RPC response as it sent it, the id it answers, in which session. */
  | { readonly kind: 'answer'; readonly data: string; readonly upstreamId: JsonRpcId; readonly upstream: UpstreamSession }
  /** The server asks: what the client is to answer, under the keys it answers with. */
  | { readonly kind: 'input'; readonly requestState: string; readonly inputRequests: JsonObject };

/** One server request waiting for the client's answer. */
interface Asked {
  readonly upstreamId: JsonRpcId;
  readonly method: string;
  readonly params: JsonObject | undefined;
}

/** What a retry that reached another replica asks the one holding the call. */
interface RelayedRetry {
  readonly requestState: string;
  readonly who: HeldIdentity;
  readonly responses: JsonObject | undefined;
  readonly timeoutMs: number;
}

const RELAY_KIND = 'held.resume';

/** How much longer than the call's own timeout a relayed retry may take (the relay's round trips). */
const RELAY_MARGIN_MS = 2_000;

function unknownState(): GatewayError {
  return new GatewayError('GW_ERR_PARAMS_INVALID', 'Invalid params: requestState is unknown or has expired; send the request again without it');
}

/** Whether a `requestState` is one the gateway minted (the rest belong to servers). */
export function isHeldState(value: unknown): value is string {
  return typeof value === 'string' && value.startsWith(TOKEN_PREFIX);
}

/** One call held open upstream. */
class HeldCall {
  /** Questions the client has not answered yet, by the key it answers with. */
  readonly asked = new Map<string, Asked>();
  private readonly events: SseEvent[] = [];
  private ended = false;
  private wake: (() => void) | null = null;
  private keys = 0;
  /** Cancels it when nobody retries in time. */
  expiry: NodeJS.Timeout | null = null;
  /** Its current `requestState` (each pause mints a new one). */
  token: string | null = null;

  constructor(
    readonly who: HeldIdentity,
    readonly server: RuntimeServer,
    readonly upstream: UpstreamSession,
    readonly upstreamId: JsonRpcId,
    readonly abort: AbortController,
  ) {}

  /** Reads the server's answer as it comes (an event stream, or one JSON body). */
  read(res: Response, log: Logger): void {
    const json = !isEventStream(res.headers.get('content-type') ?? '');
    const reader = new SseEventReader(MAX_EVENT_BYTES, () => log.warn({ server: this.server.name }, 'held call: upstream event too large; dropped'));
    void (async () => {
      const chunks: Buffer[] = [];
      try {
        for await (const chunk of res.body ?? []) {
          if (json) chunks.push(Buffer.from(chunk as Uint8Array));
          else this.push(reader.push(chunk as Uint8Array));
        }
        if (json) this.push([{ id: null, event: null, data: Buffer.concat(chunks).toString('utf8') }]);
      } catch {
        // aborted, or the server broke off: the call ends with what came
      }
      this.ended = true;
      this.wake?.();
    })();
  }

  private push(events: readonly SseEvent[]): void {
    if (events.length === 0) return;
    this.events.push(...events);
    this.wake?.();
  }

  /** Events read but not taken yet. */
  get buffered(): number {
    return this.events.length;
  }

  /** The next event; null once the answer ended; 'timeout' at the deadline. */
  async next(deadline: number): Promise<SseEvent | null | 'timeout'> {
    for (;;) {
      const e = this.events.shift();
      if (e !== undefined) return e;
      if (this.ended) return null;
      const left = deadline - Date.now();
      if (left <= 0) return 'timeout';
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = null;
    }
  }

  /** Files a server request under a new key. */
  ask(kind: string, asked: Asked): void {
    this.asked.set(`${kind}-${++this.keys}`, asked);
  }
}

/** The held calls of this replica. */
export class HeldCalls {
  private readonly byToken = new Map<string, HeldCall>();
  /** This replica's part of every `requestState` it mints: a retry elsewhere finds it by that. */
  private readonly replica: string;

  constructor(
    private readonly upstream: UpstreamClient,
    private readonly log: Logger,
    /** `gateway.input_required_timeout`. */
    private readonly waitMs: number,
    /** Held calls one caller may have waiting on this replica; a new one cancels its oldest. */
    private readonly perOwner: number,
    /** With shared state: how a retry that reaches another replica gets to the call held here. */
    private readonly relay: ReplicaRelay | null = null,
  ) {
    this.replica = relay?.replica ?? randomBytes(9).toString('base64url');
    relay?.handle(RELAY_KIND, async (payload) => {
      const p = payload as RelayedRetry;
      return this.resumeHere(p.requestState, p.who, p.responses, p.timeoutMs);
    });
  }

  /** How many calls wait for a retry. */
  get size(): number {
    return this.byToken.size;
  }

  /**
   * Sends `body` (a request with id `upstreamId`) in the upstream session and waits up to
   * `timeoutMs` for the server to answer or to ask the client something. Throws
   * UpstreamSessionGone when the server no longer knows the session.
   */
  async start(who: HeldIdentity, server: RuntimeServer, upstream: UpstreamSession, body: string, upstreamId: JsonRpcId, timeoutMs: number): Promise<Leg> {
    const abort = new AbortController();
    const res = await this.upstream.postStream(server, body, { sessionId: upstream.sessionId, protocolVersion: upstream.protocolVersion, signal: abort.signal, connectMs: timeoutMs });
    if (res.status !== 200) {
      const text = await res.text().catch(() => '');
      if (upstream.sessionId !== null && forgotSession(res.status, text)) throw new UpstreamSessionGone(server.name);
      const msg = parseJsonObject(text);
      // A JSON-RPC error in an HTTP error is still the server's answer.
      if (msg !== null && idKey(msg['id']) === idKey(upstreamId) && isObject(msg['error'])) return { kind: 'answer', data: text, upstreamId, upstream };
      throw new GatewayError('GW_ERR_UPSTREAM_UNAVAILABLE', `Upstream server unavailable: ${server.name} answered HTTP ${res.status}`);
    }
    const call = new HeldCall(who, server, upstream, upstreamId, abort);
    call.read(res, this.log);
    return this.advance(call, timeoutMs);
  }

  /**
   * A retry carrying `requestState`: the answers in `responses` go to the server, and the call
   * goes on as {@link start}'s does, on whichever replica holds the call (through the relay). A
   * state that is not this caller's for this very request, unknown or expired (or held by a
   * replica that has ended) is refused with -32602 and changes nothing.
   */
  async resume(requestState: string, who: HeldIdentity, responses: JsonObject | undefined, timeoutMs: number): Promise<Leg> {
    const holder = requestState.slice(TOKEN_PREFIX.length).split('.')[0] ?? '';
    if (holder === this.replica || this.relay === null) return this.resumeHere(requestState, who, responses, timeoutMs);
    const retry: RelayedRetry = { requestState, who, responses, timeoutMs };
    try {
      return (await this.relay.ask(holder, RELAY_KIND, retry, timeoutMs + RELAY_MARGIN_MS)) as Leg;
    } catch (err) {
      if (!(err instanceof RelayUnanswered)) throw err;
      // The replica that held it has ended (and its calls with it), or cannot be reached.
      if (!err.listening) throw unknownState();
      throw new GatewayError('GW_ERR_UPSTREAM_TIMEOUT', 'Upstream server timed out: the gateway replica holding the call did not answer in time', { cause: err });
    }
  }

  private async resumeHere(requestState: string, who: HeldIdentity, responses: JsonObject | undefined, timeoutMs: number): Promise<Leg> {
    const call = this.byToken.get(requestState);
    if (call === undefined) throw unknownState();
    const w = call.who;
    if (w.owner !== who.owner || w.server !== who.server || w.method !== who.method || w.name !== who.name) {
      throw new GatewayError('GW_ERR_PARAMS_INVALID', 'Invalid params: requestState belongs to another request');
    }
    // Good for one retry: a second one with the same state finds nothing.
    this.forget(call);
    try {
      await Promise.all(
        [...call.asked].map(async ([key, asked]) => {
          const answer = responses?.[key];
          if (!isObject(answer)) return; // unanswered: asked again below
          call.asked.delete(key);
          await this.reply(call, { jsonrpc: '2.0', id: asked.upstreamId, result: answer });
        }),
      );
    } catch (err) {
      this.cancel(call, 'the answer could not be delivered');
      throw new GatewayError('GW_ERR_UPSTREAM_UNAVAILABLE', `Upstream server unavailable: ${call.server.name} did not take the answer`, { cause: err });
    }
    if (call.asked.size > 0) return this.pause(call);
    return this.advance(call, timeoutMs);
  }

  /** Cancels every held call (the replica is shutting down). */
  closeAll(): void {
    for (const call of [...this.byToken.values()]) this.cancel(call, 'the gateway is shutting down');
  }

  /** Reads on until the server answers, or asks and has nothing more ready to send. */
  private async advance(call: HeldCall, timeoutMs: number): Promise<Leg> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const e = await call.next(deadline);
      if (e === 'timeout') {
        this.cancel(call, 'timed out');
        throw new GatewayError('GW_ERR_UPSTREAM_TIMEOUT', `Upstream server timed out: ${call.server.name}`);
      }
      if (e === null) {
        this.cancel(call, 'ended without an answer');
        throw new GatewayError('GW_ERR_UPSTREAM_UNAVAILABLE', `Upstream server unavailable: ${call.server.name} ended its answer without a response`);
      }
      const msg = parseJsonObject(e.data);
      if (msg === null) continue;
      const method = msg['method'];
      if (method === undefined) {
        if (idKey(msg['id']) === idKey(call.upstreamId) && ('result' in msg || 'error' in msg)) {
          call.abort.abort();
          return { kind: 'answer', data: e.data, upstreamId: call.upstreamId, upstream: call.upstream };
        }
        continue;
      }
      // Notifications (progress, log messages) have no way to this client's single JSON answer.
      if (msg['id'] === undefined || typeof method !== 'string') continue;
      const id = msg['id'] as JsonRpcId;
      const kind = INPUT_METHODS.get(method);
      if (kind === undefined) {
        await this.answerItself(call, id, method).catch(() => undefined);
        continue;
      }
      call.ask(kind, { upstreamId: id, method, params: isObject(msg['params']) ? msg['params'] : undefined });
      // Ask for everything the server sent at once, not one question per round trip.
      if (call.buffered === 0) return this.pause(call);
    }
  }

  /** Parks the call under a new `requestState` until the client retries. */
  private pause(call: HeldCall): Leg {
    const requestState = `${TOKEN_PREFIX}${this.replica}.${randomBytes(24).toString('base64url')}`;
    call.token = requestState;
    this.evictOldest(call.who.owner);
    this.byToken.set(requestState, call);
    call.expiry = setTimeout(() => this.cancel(call, 'the client did not retry in time'), this.waitMs);
    call.expiry.unref();
    const inputRequests: JsonObject = {};
    for (const [key, a] of call.asked) inputRequests[key] = a.params === undefined ? { method: a.method } : { method: a.method, params: a.params };
    return { kind: 'input', requestState, inputRequests };
  }

  /** Keeps a caller below its share: its oldest waiting call is cancelled for a new one. */
  private evictOldest(owner: string): void {
    let count = 0;
    let oldest: HeldCall | null = null;
    for (const c of this.byToken.values()) {
      if (c.who.owner !== owner) continue;
      count++;
      oldest ??= c;
    }
    if (oldest !== null && count >= this.perOwner) this.cancel(oldest, 'the caller holds too many paused calls');
  }

  private forget(call: HeldCall): void {
    if (call.token !== null) this.byToken.delete(call.token);
    call.token = null;
    if (call.expiry !== null) clearTimeout(call.expiry);
    call.expiry = null;
  }

  /** Ends the call upstream: the request is cancelled, its answer no longer read. */
  private cancel(call: HeldCall, reason: string): void {
    this.forget(call);
    if (call.abort.signal.aborted) return;
    call.abort.abort();
    this.log.debug({ server: call.server.name, reason }, 'held call cancelled');
    void this.upstream
      .notify(call.server, 'notifications/cancelled', { requestId: call.upstreamId, reason }, { sessionId: call.upstream.sessionId, protocolVersion: call.upstream.protocolVersion })
      .catch(() => undefined);
  }

  /** A server request a client of this revision cannot be asked: ping is answered, the rest refused. */
  private async answerItself(call: HeldCall, id: JsonRpcId, method: string): Promise<void> {
    await this.reply(call, method === 'ping' ? { jsonrpc: '2.0', id, result: {} } : { jsonrpc: '2.0', id, error: { code: -32601, message: `Method not found: ${method}` } });
  }

  /** Sends the client's (or the gateway's) answer to one server request. */
  private async reply(call: HeldCall, message: JsonObject): Promise<void> {
    const { sessionId, protocolVersion } = call.upstream;
    const r = await this.upstream.post(call.server, stringifyJson(message), { sessionId, protocolVersion, maxBytes: 64 * 1024 });
    if (r.status >= 400) {
      if (sessionId !== null && forgotSession(r.status, r.body)) throw new UpstreamSessionGone(call.server.name);
      throw new UpstreamUnreachable(call.server.name, false, new Error(`HTTP ${r.status} to an answer`));
    }
  }
}
