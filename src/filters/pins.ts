import { createHash } from 'node:crypto';
import { watchFile, unwatchFile } from 'node:fs';
import { readFile, rename, writeFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { canonicalJson } from '../cache/answers.js';
import { GlobSet } from '../lib/glob.js';
import { isObject, type JsonObject } from '../mcp/message.js';
import type { RedisClient } from '../state/redis.js';
import type { FiltersConfig } from './schema.js';

/**
 * Tool pinning: the gateway fingerprints each tool definition the first time it sees it (trust on
 * first use) and compares every later catalog fetch with that pin. A definition that changed
 * ("rug pull": a tool that was approved and now says or takes something else) is logged and
 * metered; under `action: enforce` the tool is withheld from lists and calls, on every endpoint,
 * until an operator approves its new fingerprint (`mcp-gateway pins approve`). Descriptions that
 * name another server's tools (cross-server shadowing) are flagged.
 */

/** The parts of a tool definition a fingerprint covers. */
export const PINNED_PARTS = ['description', 'title', 'inputSchema', 'outputSchema', 'annotations'] as const;
type Part = (typeof PINNED_PARTS)[number];

export interface Fingerprint {
  /** Over the name and every part. */
  readonly hash: string;
  /** Per part, so a change can say what changed. */
  readonly parts: Readonly<Record<Part, string>>;
}

/** One tool's pin, as stored. */
export interface PinRecord {
  readonly fingerprint: string;
  readonly parts: Readonly<Record<string, string>>;
  /** When it was pinned or approved (ISO 8601). */
  readonly pinned_at: string;
  /** A definition seen since that differs from the pin, waiting for approval. */
  readonly pending?: {
    readonly fingerprint: string;
    readonly parts: Readonly<Record<string, string>>;
    readonly seen_at: string;
    /** The parts that differ from the pin. */
    readonly changed: readonly string[];
  };
}

function hashOf(text: string): string {
  return `sha256:${createHash('sha256').update(text).digest('hex')}`;
}

/** A tool definition's fingerprint, independent of key order in its JSON. */
export function fingerprintTool(tool: JsonObject): Fingerprint {
  const parts = {} as Record<Part, string>;
  for (const p of PINNED_PARTS) parts[p] = hashOf(canonicalJson(tool[p] ?? null)).slice(0, 23);
  return { hash: hashOf(canonicalJson({ name: tool['name'] ?? null, ...Object.fromEntries(PINNED_PARTS.map((p) => [p, tool[p] ?? null])) })), parts };
}

/** The key of a tool's pin: `<server>/<tool>` (server names never hold a slash). */
export function pinKey(server: string, tool: string): string {
  return `${server}/${tool}`;
}

export function splitPinKey(key: string): { server: string; tool: string } {
  const at = key.indexOf('/');
  return { server: key.slice(0, at), tool: key.slice(at + 1) };
}

// ----------------------------------------------------------------------------------- stores

/** Where pins are kept. Every replica (and the CLI) reads and writes the same store. */
export interface PinStore {
  /** Every pin, by key. */
  load(): Promise<Map<string, PinRecord>>;
  /** Pins a tool seen for the first time, unless another writer pinned it first; what is pinned now. */
  pinFirst(key: string, rec: PinRecord): Promise<PinRecord>;
  /** Writes one pin as given. */
  put(key: string, rec: PinRecord): Promise<void>;
  /** Calls `changed` when the store may have been changed by another writer; returns the stop. */
  watch(changed: () => void): () => void;
}

interface PinFile {
  readonly version: 1;
  readonly tools: Record<string, PinRecord>;
}

/** Pins in a JSON file (written whole, through a temporary file and a rename). */
export class FilePinStore implements PinStore {
  private writing: Promise<void> = Promise.resolve();

  constructor(readonly path: string) {}

  async load(): Promise<Map<string, PinRecord>> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
      throw err;
    }
    const doc = JSON.parse(text) as unknown;
    if (!isObject(doc) || doc['version'] !== 1 || !isObject(doc['tools'])) throw new Error(`${this.path}: not a pins file (version 1)`);
    return new Map(Object.entries(doc['tools'] as Record<string, PinRecord>));
  }

  async pinFirst(key: string, rec: PinRecord): Promise<PinRecord> {
    let held: PinRecord = rec;
    await this.change((all) => {
      const had = all.get(key);
      if (had !== undefined) held = had;
      else all.set(key, rec);
    });
    return held;
  }

  put(key: string, rec: PinRecord): Promise<void> {
    return this.change((all) => void all.set(key, rec));
  }

  watch(changed: () => void): () => void {
    const listener = (): void => changed();
    watchFile(this.path, { interval: 500, persistent: false }, listener);
    return () => unwatchFile(this.path, listener);
  }

  /** Read, change and write the file, one change at a time. */
  private change(apply: (all: Map<string, PinRecord>) => void): Promise<void> {
    const next = this.writing.then(async () => {
      const all = await this.load();
      apply(all);
      const doc: PinFile = { version: 1, tools: Object.fromEntries([...all.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) };
      const tmp = `${this.path}.${process.pid}.tmp`;
      await writeFile(tmp, `${JSON.stringify(doc, null, 2)}\n`, { mode: 0o644 });
      await rename(tmp, this.path);
    });
    this.writing = next.catch(() => {});
    return next;
  }
}

/** Pins in one Redis hash (`<key_prefix>pins`, field = pin key, value = its JSON), shared by every replica. */
export class RedisPinStore implements PinStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly keyPrefix: string,
    private readonly pollMs = 2_000,
  ) {}

  private get key(): string {
    return `${this.keyPrefix}pins`;
  }

  async load(): Promise<Map<string, PinRecord>> {
    const raw = await this.redis.hgetall(this.key);
    return new Map(Object.entries(raw).map(([k, v]) => [k, JSON.parse(v) as PinRecord]));
  }

  async pinFirst(key: string, rec: PinRecord): Promise<PinRecord> {
    if ((await this.redis.hsetnx(this.key, key, JSON.stringify(rec))) === 1) return rec;
    const held = await this.redis.hget(this.key, key);
    return held === null ? rec : (JSON.parse(held) as PinRecord);
  }

  async put(key: string, rec: PinRecord): Promise<void> {
    await this.redis.hset(this.key, key, JSON.stringify(rec));
  }

  /** Another replica's or the CLI's change is read at the next poll. */
  watch(changed: () => void): () => void {
    const timer = setInterval(changed, this.pollMs);
    timer.unref();
    return () => clearInterval(timer);
  }
}

// ----------------------------------------------------------------------------------- pinning

/** What pinning tells the operator, besides its log lines. */
export interface PinningReports {
  /** A definition differs from its pin (`withheld` under enforce, else `warned`). */
  readonly drift: (server: string, action: 'warned' | 'withheld') => void;
  /** How many tools of a server carry a flag now (`pending_approval`, `shadowing`). */
  readonly flagged: (server: string, flag: 'pending_approval' | 'shadowing', n: number) => void;
}

interface ServerRule {
  readonly tools: GlobSet;
  readonly enforce: boolean;
}

/** Tool names long or marked enough that a description naming them is no accident. */
function distinctive(name: string): boolean {
  return name.length >= 4 && /[_\-.]|[a-z][A-Z]/.test(name);
}

export class ToolPinning {
  private records = new Map<string, PinRecord>();
  private readonly withheldKeys = new Set<string>();
  /** The tool names and descriptions of each server, as last fetched (for shadowing). */
  private readonly catalogs = new Map<string, ReadonlyMap<string, string>>();
  /** `<server>/<tool>` → the other servers' tools its description names. */
  private shadowing = new Map<string, readonly string[]>();
  private stopWatch: (() => void) | null = null;

  private constructor(
    private readonly rules: ReadonlyMap<string, ServerRule>,
    private readonly separator: string,
    private readonly store: PinStore,
    private readonly log: Logger,
    private readonly reports: PinningReports,
  ) {}

  /** The pinning of the servers that have it configured; null when none has. */
  static compile(
    global: FiltersConfig | undefined,
    servers: Readonly<Record<string, { readonly filters?: FiltersConfig | undefined }>>,
    separator: string,
    store: () => PinStore,
    log: Logger,
    reports: PinningReports,
  ): ToolPinning | null {
    const rules = new Map<string, ServerRule>();
    for (const [name, s] of Object.entries(servers)) {
      const p = s.filters?.pinning ?? global?.pinning;
      if (p !== undefined) rules.set(name, { tools: new GlobSet(p.tools), enforce: p.action === 'enforce' });
    }
    return rules.size === 0 ? null : new ToolPinning(rules, separator, store(), log, reports);
  }

  /** Whether any server's changed tools are withheld (so names are checked per call). */
  get enforces(): boolean {
    return [...this.rules.values()].some((r) => r.enforce);
  }

  /** Reads the pins, and follows the store for approvals. */
  async start(): Promise<void> {
    try {
      await this.reload();
    } catch (err) {
      // A pins file that cannot be read stops the start (its pins would be lost); Redis may come back.
      if (!(this.store instanceof RedisPinStore)) throw err;
      this.log.warn({ err: String(err) }, 'tool pins not read yet: the pin store is unreachable');
    }
    this.stopWatch = this.store.watch(() => {
      this.reload().catch((err: unknown) => this.log.warn({ err: String(err) }, 'tool pins not read'));
    });
  }

  close(): void {
    this.stopWatch?.();
  }

  /** Whether a tool is withheld until its new definition is approved (no I/O). */
  withheld(server: string, tool: string): boolean {
    return this.withheldKeys.size > 0 && this.withheldKeys.has(pinKey(server, tool));
  }

  /**
   * A server's tools as just fetched: each compared with its pin (pinned when first seen), and
   * the descriptions checked for other servers' tool names. Never throws: a store that cannot be
   * reached leaves the tools as they were judged last (a withheld one stays withheld).
   */
  async screen(server: string, tools: readonly JsonObject[], everyClients = true): Promise<void> {
    const rule = this.rules.get(server);
    if (rule === undefined) return;
    // Shadowing is judged on the lists every client gets.
    if (everyClients) {
      this.catalogs.set(server, new Map(tools.filter((t) => typeof t['name'] === 'string').map((t) => [t['name'] as string, typeof t['description'] === 'string' ? t['description'] : ''])));
      this.noteShadowing();
    }
    const now = new Date().toISOString();
    let unsaved = 0;
    for (const tool of tools) {
      const name = tool['name'];
      if (typeof name !== 'string' || !rule.tools.test(name)) continue;
      const key = pinKey(server, name);
      const fp = fingerprintTool(tool);
      const first: PinRecord = { fingerprint: fp.hash, parts: fp.parts, pinned_at: now };
      let rec = this.records.get(key);
      if (rec === undefined) {
        // First sight: pinned here at once, then in the store (where another replica may have pinned it first).
        this.records.set(key, first);
        rec = await this.store.pinFirst(key, first).catch(() => {
          unsaved++;
          return first;
        });
      }
      const held: PinRecord = rec;
      let next: PinRecord = held;
      if (held.fingerprint === fp.hash) {
        // The pinned definition again (a change undone): nothing waits any more.
        if (held.pending !== undefined) next = { fingerprint: held.fingerprint, parts: held.parts, pinned_at: held.pinned_at };
      } else if (held.pending?.fingerprint !== fp.hash) {
        const changed = PINNED_PARTS.filter((p) => held.parts[p] !== fp.parts[p]);
        next = { ...held, pending: { fingerprint: fp.hash, parts: fp.parts, seen_at: now, changed } };
        this.reports.drift(server, rule.enforce ? 'withheld' : 'warned');
        this.log.warn(
          { event: 'tool_drift', server, tool: name, pinned: held.fingerprint, seen: fp.hash, changed, action: rule.enforce ? 'withheld' : 'warned' },
          rule.enforce
            ? 'a tool changed its definition since it was pinned: withheld until approved (mcp-gateway pins approve)'
            : 'a tool changed its definition since it was pinned',
        );
      }
      // Judged here first: a store that cannot be written never lets a changed tool through.
      this.records.set(key, next);
      if (next !== held) await this.store.put(key, next).catch(() => void unsaved++);
    }
    if (unsaved > 0) this.log.warn({ server, unsaved }, 'tool pins not saved: the pin store is unreachable; judged on what this replica has seen');
    this.judge();
  }

  /** The pins and flags, for `pins list`. */
  snapshot(): { readonly pins: ReadonlyMap<string, PinRecord>; readonly shadowing: ReadonlyMap<string, readonly string[]> } {
    return { pins: this.records, shadowing: this.shadowing };
  }

  private async reload(): Promise<void> {
    const loaded = await this.store.load();
    // A change this replica saw while the load ran (or could not save) stays judged: only an
    // approval (a new pinned fingerprint) or an undone change clears what waits.
    for (const [key, mine] of this.records) {
      const stored = loaded.get(key);
      if (mine.pending !== undefined && (stored === undefined || (stored.pending === undefined && stored.fingerprint === mine.fingerprint))) loaded.set(key, mine);
    }
    this.records = loaded;
    this.judge();
  }

  /** Which tools are withheld now, and the gauges. */
  private judge(): void {
    this.withheldKeys.clear();
    const pending = new Map<string, number>();
    for (const [key, rec] of this.records) {
      if (rec.pending === undefined) continue;
      const { server } = splitPinKey(key);
      const rule = this.rules.get(server);
      if (rule === undefined) continue;
      pending.set(server, (pending.get(server) ?? 0) + 1);
      if (rule.enforce) this.withheldKeys.add(key);
    }
    for (const server of this.rules.keys()) this.reports.flagged(server, 'pending_approval', pending.get(server) ?? 0);
  }

  /** Descriptions that name another server's tools (as that server or as `/mcp` names them): flagged once per change. */
  private noteShadowing(): void {
    const next = new Map<string, readonly string[]>();
    const counts = new Map<string, number>();
    for (const [server, tools] of this.catalogs) {
      for (const [tool, description] of tools) {
        if (description === '') continue;
        const named: string[] = [];
        for (const [other, theirs] of this.catalogs) {
          if (other === server) continue;
          for (const t of theirs.keys()) {
            const prefixed = `${other}${this.separator}${t}`;
            if (mentions(description, prefixed) || (distinctive(t) && !tools.has(t) && mentions(description, t))) named.push(prefixed);
          }
        }
        if (named.length === 0) continue;
        const key = pinKey(server, tool);
        next.set(key, named);
        counts.set(server, (counts.get(server) ?? 0) + 1);
        if (JSON.stringify(this.shadowing.get(key)) !== JSON.stringify(named)) {
          this.log.warn({ event: 'tool_shadowing', server, tool, names: named }, "a tool's description names another server's tools: it may try to steer how they are used");
        }
      }
    }
    this.shadowing = next;
    for (const server of this.rules.keys()) this.reports.flagged(server, 'shadowing', counts.get(server) ?? 0);
  }
}

/** Whether `text` names `word` as a whole word (not inside a longer name). */
function mentions(text: string, word: string): boolean {
  let at = text.indexOf(word);
  while (at >= 0) {
    const before = at === 0 ? '' : text[at - 1]!;
    const after = text[at + word.length] ?? '';
    if (!/[A-Za-z0-9_]/.test(before) && !/[A-Za-z0-9_]/.test(after)) return true;
    at = text.indexOf(word, at + 1);
  }
  return false;
}
