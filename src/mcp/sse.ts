import { StringDecoder } from 'node:string_decoder';

/**
 * Decides what happens to one SSE event's `data` payload: return a replacement string, or null to
 * pass the event through byte for byte.
 */
export type SseDataRewriter = (data: string) => string | null | typeof DROP_EVENT;

/** What an {@link SseDataRewriter} returns for an event the client must not get at all. */
export const DROP_EVENT: unique symbol = Symbol('drop SSE event');

/**
 * Incremental `text/event-stream` rewriter with bounded memory.
 *
 * Envoy hands us chunks that split or merge events arbitrarily. Complete events are handed to the
 * rewriter one at a time; the incomplete tail is carried to the next chunk. An event that grows
 * past `maxEventBytes` is not held. By default what has arrived is emitted untouched and the rest
 * of that event streams through as it comes, so a 10 MB result never sits whole in the
 * processor. With `refuse`, where an unchecked event must never reach the client, the event is
 * dropped as it arrives and replaced by one event whose data `refuse()` gives.
 */
export class SseRewriter {
  private readonly decoder = new StringDecoder('utf8');
  private pending = '';
  private scanPos = 0;
  private dataLines: string[] = [];
  private oversized = false;
  /** The start of the current line was already released (oversized events only). */
  private midLine = false;

  /** The current event's `id` field (only tracked when ids are rewritten). */
  private eventId: string | null = null;

  constructor(
    private readonly rewrite: SseDataRewriter,
    private readonly maxEventBytes: number,
    private readonly refuse: (() => string) | null = null,
    /** Replaces every event's `id` (null: ids pass as they are). */
    private readonly rewriteId: ((id: string) => string) | null = null,
  ) {}

  /** Feeds one chunk; returns the text to emit in its place. */
  push(chunk: Buffer, end: boolean): string {
    this.pending += this.decoder.write(chunk);
    if (end) this.pending += this.decoder.end();
    let out = '';
    for (;;) {
      const nl = this.nextLineEnd(end);
      if (nl === null) break;
      const [idx, len] = nl;
      const line = this.pending.slice(this.scanPos, idx);
      this.scanPos = idx + len;
      const continued = this.midLine;
      this.midLine = false;
      if (line === '' && !continued) {
        out += this.finishEvent();
      } else if (!this.oversized && line.startsWith('data')) {
        if (line === 'data') this.dataLines.push('');
        else if (line[4] === ':') this.dataLines.push(line[5] === ' ' ? line.slice(6) : line.slice(5));
      } else if (this.rewriteId !== null && !this.oversized && (line === 'id' || line.startsWith('id:'))) {
        this.eventId = line === 'id' ? '' : line[3] === ' ' ? line.slice(4) : line.slice(3);
      }
    }
    if (!this.oversized && this.pending.length > this.maxEventBytes) {
      this.oversized = true;
      this.dataLines = [];
    }
    if (this.oversized || end) {
      // Release everything held (a lone trailing CR waits: it may be half of a CRLF).
      let upTo = this.pending.length;
      if (!end && this.pending.charCodeAt(upTo - 1) === 13) upTo--;
      if (upTo > this.scanPos) this.midLine = true;
      if (!this.oversized || this.refuse === null) out += this.pending.slice(0, upTo);
      this.pending = this.pending.slice(upTo);
      this.scanPos = 0;
    }
    if (end && this.oversized && this.refuse !== null) {
      // The stream ended inside the refused event.
      this.oversized = false;
      out += refusal(this.refuse());
    }
    return out;
  }

  private nextLineEnd(end: boolean): [number, number] | null {
    const p = this.pending;
    for (let i = this.scanPos; i < p.length; i++) {
      const c = p.charCodeAt(i);
      if (c === 10) return [i, 1];
      if (c === 13) {
        if (i + 1 < p.length) return [i, p.charCodeAt(i + 1) === 10 ? 2 : 1];
        return end ? [i, 1] : null; // a lone CR at the chunk edge may be half of CRLF
      }
    }
    return null;
  }

  private finishEvent(): string {
    const raw = this.pending.slice(0, this.scanPos);
    this.pending = this.pending.slice(this.scanPos);
    this.scanPos = 0;
    const data = this.dataLines;
    this.dataLines = [];
    const id = this.eventId;
    this.eventId = null;
    if (this.oversized) {
      this.oversized = false;
      return this.refuse === null ? raw : refusal(this.refuse());
    }
    // Same verdict however the bytes were chunked: an event over the bound is never rewritten.
    if (raw.length > this.maxEventBytes) return this.refuse === null ? raw : refusal(this.refuse());
    const newId = id === null || id === '' || this.rewriteId === null ? null : this.rewriteId(id);
    if (data.length === 0) return newId === null ? raw : rebuildEvent(raw, null, newId);
    const replacement = this.rewrite(data.join('\n'));
    if (replacement === DROP_EVENT) return '';
    if (replacement === null && newId === null) return raw;
    return rebuildEvent(raw, replacement, newId);
  }
}

/** A whole event carrying `data` (which may span lines). */
function refusal(data: string): string {
  return `${data
    .split('\n')
    .map((d) => `data: ${d}`)
    .join('\n')}\n\n`;
}

/**
 * Replaces the data lines (unless `data` is null) and the id (unless `id` is null) of one raw
 * event, keeping `event:`, `retry:` and comments.
 */
function rebuildEvent(raw: string, data: string | null, id: string | null = null): string {
  const lines = raw.split(/\r\n|\r|\n/);
  const kept: string[] = [];
  let placed = false;
  for (const line of lines) {
    if (line === '') continue;
    if (id !== null && (line === 'id' || line.startsWith('id:'))) {
      kept.push(`id: ${id}`);
      continue;
    }
    if (data !== null && (line === 'data' || line.startsWith('data:'))) {
      if (!placed) {
        for (const d of data.split('\n')) kept.push(`data: ${d}`);
        placed = true;
      }
      continue;
    }
    kept.push(line);
  }
  return kept.join('\n') + '\n\n';
}

/** Parses a complete SSE body into the data payloads of its events. */
export function sseDataPayloads(text: string): string[] {
  const out: string[] = [];
  const rw = new SseRewriter((d) => {
    out.push(d);
    return null;
  }, Number.MAX_SAFE_INTEGER);
  rw.push(Buffer.from(text), true);
  return out;
}

/**
 * Whole-body JSON rewriter with the same memory bound: bodies up to `maxBytes` are collected and
 * rewritten at the end; a larger body is released as it arrives, untouched, or with `refuse`
 * dropped as it arrives and replaced at the end by the body `refuse()` gives.
 */
export class JsonBodyRewriter {
  private chunks: Buffer[] = [];
  private size = 0;
  private passthrough = false;
  private refused = false;

  constructor(
    private readonly rewrite: SseDataRewriter,
    private readonly maxBytes: number,
    private readonly refuse: (() => string) | null = null,
  ) {}

  /** Feeds one chunk; returns the bytes to emit in its place. */
  push(chunk: Buffer, end: boolean): Buffer {
    if (this.passthrough) return chunk;
    if (this.refused) return end ? Buffer.from(this.refuse!()) : EMPTY;
    this.chunks.push(chunk);
    this.size += chunk.length;
    if (this.size > this.maxBytes) {
      const held = this.chunks;
      this.chunks = [];
      if (this.refuse !== null) {
        this.refused = true;
        return end ? Buffer.from(this.refuse()) : EMPTY;
      }
      this.passthrough = true;
      return Buffer.concat(held);
    }
    if (!end) return EMPTY;
    const body = Buffer.concat(this.chunks);
    this.chunks = [];
    const replaced = this.rewrite(body.toString('utf8'));
    // A JSON body is the one answer: never dropped.
    return replaced === null || replaced === DROP_EVENT ? body : Buffer.from(replaced);
  }
}

const EMPTY = Buffer.alloc(0);

/** Rewrites a response body chunk by chunk; returns the bytes to send in place of each chunk. */
export interface ChunkRewriter {
  push(chunk: Buffer, end: boolean): Buffer;
}

/** Whether a Content-Type is an SSE stream. */
export function isEventStream(contentType: string): boolean {
  return contentType.includes('text/event-stream');
}

/** Whether a Content-Type is a JSON body. */
export function isJson(contentType: string): boolean {
  return contentType.includes('application/json');
}

/**
 * The rewriter for one MCP response body: per SSE event for `text/event-stream`, the whole body
 * for `application/json`; null for anything else (passed through).
 */
export function messageRewriter(
  contentType: string,
  rewrite: SseDataRewriter,
  maxBytes: number,
  refuse: (() => string) | null = null,
  rewriteId: ((id: string) => string) | null = null,
): ChunkRewriter | null {
  if (isEventStream(contentType)) {
    const sse = new SseRewriter(rewrite, maxBytes, refuse, rewriteId);
    return { push: (chunk, end) => Buffer.from(sse.push(chunk, end)) };
  }
  if (isJson(contentType)) return new JsonBodyRewriter(rewrite, maxBytes, refuse);
  return null;
}

/** One complete SSE event as a reader sees it. */
export interface SseEvent {
  /** The `id` field, or null when the event has none. */
  readonly id: string | null;
  /** The data lines joined by `\n` ('' for an event without data, such as a priming event). */
  readonly data: string;
  /** The `event` field, or null (the default type, `message`). */
  readonly event: string | null;
}

/**
 * Incremental `text/event-stream` reader for the processor's own upstream streams: complete
 * events out, the incomplete tail carried to the next chunk. An event over `maxEventBytes` is
 * skipped whole (its data is never held) and reported to `onOversized`.
 */
export class SseEventReader {
  private readonly decoder = new StringDecoder('utf8');
  private pending = '';
  private id: string | null = null;
  private event: string | null = null;
  private data: string[] = [];
  private size = 0;
  private skipping = false;

  constructor(
    private readonly maxEventBytes: number,
    private readonly onOversized: () => void = () => undefined,
  ) {}

  /** Feeds one chunk; returns the events it completed, in order. */
  push(chunk: Uint8Array): SseEvent[] {
    this.pending += this.decoder.write(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    const out: SseEvent[] = [];
    let start = 0;
    for (;;) {
      let end = -1;
      let len = 1;
      for (let i = start; i < this.pending.length; i++) {
        const c = this.pending.charCodeAt(i);
        if (c === 10) {
          end = i;
          break;
        }
        if (c === 13) {
          if (i + 1 >= this.pending.length) break; // half of a CRLF, maybe
          end = i;
          len = this.pending.charCodeAt(i + 1) === 10 ? 2 : 1;
          break;
        }
      }
      if (end < 0) break;
      this.line(this.pending.slice(start, end), out);
      start = end + len;
    }
    this.pending = this.pending.slice(start);
    if (this.pending.length + this.size > this.maxEventBytes && !this.skipping) this.skip();
    if (this.skipping) this.pending = '';
    return out;
  }

  private line(line: string, out: SseEvent[]): void {
    if (line === '') {
      if (this.skipping) this.skipping = false;
      else if (this.data.length > 0 || this.id !== null) out.push({ id: this.id, data: this.data.join('\n'), event: this.event });
      this.id = null;
      this.event = null;
      this.data = [];
      this.size = 0;
      return;
    }
    if (this.skipping || line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(line[colon + 1] === ' ' ? colon + 2 : colon + 1);
    this.size += line.length + 1;
    if (this.size > this.maxEventBytes) {
      this.skip();
      return;
    }
    if (field === 'data') this.data.push(value);
    else if (field === 'id' && !value.includes('\0')) this.id = value;
    else if (field === 'event') this.event = value;
  }

  private skip(): void {
    this.skipping = true;
    this.data = [];
    this.size = 0;
    this.onOversized();
  }
}

/** One SSE event carrying `data` (which may span lines) under `id` when given. */
export function sseEventText(id: string | null, data: string): string {
  const lines = data.split('\n').map((d) => `data: ${d}`).join('\n');
  return id === null ? `${lines}\n\n` : `id: ${id}\n${lines}\n\n`;
}
