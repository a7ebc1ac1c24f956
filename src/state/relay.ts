import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { GatewayError, toGatewayError } from '../errors/gateway-error.js';
import { ERROR_TABLE, type GatewayErrorCode } from '../errors/codes.js';
import type { RedisClient } from './redis.js';

/**
 * Questions one processor replica asks another over Redis pub/sub, for what only the replica
 * that holds it can do (a call it holds open upstream). Each replica listens on its own channel;
 * a question names the asker's, where the answer goes. No answer within the asker's deadline, or
 * no replica listening under that name, is an error the asker turns into the client's. News for
 * every replica (nothing answers it) goes on one channel all of them listen on.
 */

/** What a replica does with the questions of one kind. */
export type RelayHandler = (payload: unknown) => Promise<unknown>;

interface Question {
  readonly q: string;
  readonly kind: string;
  readonly from: string;
  readonly payload: unknown;
}

interface News {
  readonly t: string;
  readonly from: string;
  readonly payload: unknown;
}

interface Reply {
  readonly r: string;
  readonly ok: boolean;
  readonly value?: unknown;
  readonly error?: { readonly code: string; readonly message: string };
}

/** No replica of that name listens (it ended), or it did not answer in time. */
export class RelayUnanswered extends Error {
  constructor(
    readonly replica: string,
    reason: 'is not listening' | 'did not answer in time',
  ) {
    super(`replica ${replica} ${reason}`);
    this.listening = reason !== 'is not listening';
    this.name = 'RelayUnanswered';
  }

  /** False when no replica of that name was there to ask. */
  readonly listening: boolean;
}

export class ReplicaRelay {
  /** This replica's name among the others (random per process). */
  readonly replica = randomBytes(9).toString('base64url');
  private readonly handlers = new Map<string, RelayHandler>();
  private readonly waiting = new Map<string, { resolve: (r: Reply) => void; timer: NodeJS.Timeout }>();
  private next = 0;
  /** Subscribed to this replica's channel: answers can reach it. */
  private listening = false;

  constructor(
    private readonly publisher: RedisClient,
    /** A connection of its own: a subscribed one can do nothing else. */
    private readonly subscriber: RedisClient,
    private readonly keyPrefix: string,
    private readonly log: Logger,
  ) {
    subscriber.on('message', (_channel: string, text: string) => this.received(text));
    // Listens once connected, and again after every reconnection.
    const listen = (): void => {
      subscriber.subscribe(this.channel(this.replica), this.newsChannel()).then(
        () => (this.listening = true),
        (err: unknown) => log.warn({ err }, 'relay: not listening for other replicas'),
      );
    };
    subscriber.on('ready', listen);
    subscriber.on('close', () => (this.listening = false));
    if (subscriber.status === 'ready') listen();
  }

  /** Answers questions of `kind` from other replicas with `handler`. */
  handle(kind: string, handler: RelayHandler): void {
    this.handlers.set(kind, handler);
  }

  /**
   * Asks `replica` a question of `kind`; resolves with its handler's value, rejects with the
   * GatewayError it threw, or RelayUnanswered.
   */
  async ask(replica: string, kind: string, payload: unknown, timeoutMs: number): Promise<unknown> {
    // Without a subscription the answer could never arrive.
    if (!this.listening) throw new RelayUnanswered(replica, 'did not answer in time');
    const q = `${this.replica}.${++this.next}`;
    const reply = new Promise<Reply>((resolve) => {
      const timer = setTimeout(() => {
        this.waiting.delete(q);
        resolve({ r: q, ok: false });
      }, timeoutMs);
      this.waiting.set(q, { resolve, timer });
    });
    const question: Question = { q, kind, from: this.replica, payload };
    const listeners = await this.publisher.publish(this.channel(replica), JSON.stringify(question)).catch(() => 0);
    if (listeners === 0) {
      const w = this.waiting.get(q);
      if (w !== undefined) clearTimeout(w.timer);
      this.waiting.delete(q);
      throw new RelayUnanswered(replica, 'is not listening');
    }
    const r = await reply;
    if (r.ok) return r.value;
    if (r.error === undefined) throw new RelayUnanswered(replica, 'did not answer in time');
    const code = (r.error.code in ERROR_TABLE ? r.error.code : 'GW_ERR_INTERNAL') as GatewayErrorCode;
    throw new GatewayError(code, r.error.message);
  }

  /** Tells every other replica something of `kind`: their handlers run, nothing answers (best effort). */
  tell(kind: string, payload: unknown): void {
    const news: News = { t: kind, from: this.replica, payload };
    this.publisher.publish(this.newsChannel(), JSON.stringify(news)).catch((err: unknown) => {
      this.log.debug({ err, kind }, 'relay: news for the other replicas could not be sent');
    });
  }

  close(): void {
    for (const { timer } of this.waiting.values()) clearTimeout(timer);
    this.waiting.clear();
    this.subscriber.disconnect();
  }

  private channel(replica: string): string {
    return `${this.keyPrefix}relay:${replica}`;
  }

  private newsChannel(): string {
    return `${this.keyPrefix}relay-news`;
  }

  private received(text: string): void {
    let msg: Question | Reply | News;
    try {
      msg = JSON.parse(text) as Question | Reply | News;
    } catch {
      return;
    }
    if ('r' in msg) this.settle(msg);
    else if ('q' in msg) void this.answer(msg);
    else if ('t' in msg && msg.from !== this.replica) void this.hear(msg);
  }

  private async hear(news: News): Promise<void> {
    try {
      await this.handlers.get(news.t)?.(news.payload);
    } catch (err) {
      this.log.warn({ err, kind: news.t }, 'relay: news from another replica failed');
    }
  }

  private settle(r: Reply): void {
    const w = this.waiting.get(r.r);
    if (w === undefined) return;
    this.waiting.delete(r.r);
    clearTimeout(w.timer);
    w.resolve(r);
  }

  private async answer(q: Question): Promise<void> {
    const handler = this.handlers.get(q.kind);
    let reply: Reply;
    try {
      if (handler === undefined) throw new GatewayError('GW_ERR_INTERNAL', `no handler for ${q.kind}`);
      reply = { r: q.q, ok: true, value: await handler(q.payload) };
    } catch (err) {
      const e = toGatewayError(err);
      if (e.code === 'GW_ERR_INTERNAL') this.log.error({ err }, 'relay: a question from another replica failed');
      reply = { r: q.q, ok: false, error: { code: e.code, message: e.message } };
    }
    await this.publisher.publish(this.channel(q.from), JSON.stringify(reply)).catch((err: unknown) => {
      this.log.warn({ err }, 'relay: the answer to another replica could not be sent');
    });
  }
}
