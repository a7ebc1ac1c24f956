import type { JsonObject } from '../mcp/message.js';
import { KIND_INFO, type CatalogKind } from '../mcp/protocol.js';
import { CLAIM, type Claim, type Namespace } from './naming.js';

/**
 * One kind of list across servers as `/mcp` shows it: each entry under the name the naming rules
 * give it (naming.ts), with the collisions between servers settled. Pure: the catalog runs it on
 * what it fetched, `mcp-gateway validate --catalogs` on what it read from the servers.
 */

/** One entry of an aggregated list: its server, the name the upstream knows, and the renamed entry. */
export interface MergedEntry {
  readonly server: string;
  readonly upstreamName: string;
  readonly item: JsonObject;
  /** How strongly it claims its unprefixed name (null: shown prefixed). */
  readonly claim?: Claim | null;
}

/** A server's claim on an unprefixed name: of several, the strongest a caller may use is the one it gets. */
export interface Claimant {
  readonly server: string;
  readonly upstreamName: string;
}

/** One name several servers claim: who gets it (for callers that may use it) and who does not. */
export interface Collision {
  readonly name: string;
  /** In the order callers get them: the first one a caller may use wins. */
  readonly claimants: readonly string[];
  /** `on-collision` servers whose entry keeps its prefix because of it. */
  readonly prefixed: readonly string[];
}

/** An entry no name can show, and why. */
export interface LeftOut {
  readonly server: string;
  readonly name: unknown;
  readonly why: 'invalid_name' | 'reads_as_prefixed';
}

/** The merged list of one kind. */
export interface Merge {
  readonly items: readonly MergedEntry[];
  /** Unprefixed names and the servers claiming each, strongest claim first (ties: config order). */
  readonly claims: ReadonlyMap<string, readonly Claimant[]>;
  readonly collisions: readonly Collision[];
  /** The names of `collisions`. */
  readonly collided: ReadonlySet<string>;
  readonly leftOut: readonly LeftOut[];
}

/**
 * Merges the servers' entries of one kind (`perServer` in config order; null: a server left out).
 * A name that would break the tool-name rules, or an unprefixed one that reads as another
 * server's prefixed name (calls of it go to that server), is left out. Of the unprefixed names
 * several servers claim, an `on-collision` entry goes back to its prefixed form; the others keep
 * the name, strongest claim first (a rename, then a route, then `prefix: never`; ties in config
 * order), and each caller gets the first it may use.
 */
export function mergeEntries(kind: CatalogKind, perServer: readonly ({ readonly server: string; readonly items: readonly JsonObject[] } | null)[], naming: Namespace): Merge {
  const idField = KIND_INFO[kind].idField;
  const items: (MergedEntry | null)[] = [];
  const leftOut: LeftOut[] = [];
  const byName = new Map<string, number[]>();
  for (const entry of perServer) {
    if (entry === null) continue;
    const server = entry.server;
    for (const item of entry.items) {
      const upstreamName = item[idField];
      // Not among what this endpoint shows (a virtual server's selection): not a name at all here.
      if (typeof upstreamName === 'string' && !naming.selected(kind, server, upstreamName)) continue;
      const exposed = typeof upstreamName === 'string' ? naming.expose(kind, server, upstreamName) : null;
      if (exposed === null) {
        leftOut.push({ server, name: upstreamName, why: 'invalid_name' });
        continue;
      }
      if (exposed.claim !== null && readsAsPrefixed(naming, kind, exposed.id)) {
        leftOut.push({ server, name: exposed.id, why: 'reads_as_prefixed' });
        continue;
      }
      if (exposed.claim !== null) {
        const at = byName.get(exposed.id);
        if (at === undefined) byName.set(exposed.id, [items.length]);
        else at.push(items.length);
      }
      items.push({ server, upstreamName: upstreamName as string, item: shownEntry(kind, server, item, exposed.id, naming), claim: exposed.claim });
    }
  }
  const collisions: Collision[] = [];
  const collided = new Set<string>();
  const claims = new Map<string, Claimant[]>();
  for (const [id, at] of byName) {
    if (at.length === 1) {
      const e = items[at[0]!]!;
      claims.set(id, [{ server: e.server, upstreamName: e.upstreamName }]);
      continue;
    }
    collided.add(id);
    const prefixed: string[] = [];
    const kept: MergedEntry[] = [];
    for (const i of at) {
      const e = items[i]!;
      if (e.claim !== CLAIM.onCollision) {
        kept.push(e);
        continue;
      }
      prefixed.push(e.server);
      const full = naming.prefixed(kind, e.server, e.upstreamName);
      items[i] = full === null ? null : { ...e, item: shownEntry(kind, e.server, e.item, full, naming, e.upstreamName), claim: null };
    }
    // Stable: equal claims stay in config order.
    kept.sort((a, b) => (b.claim ?? 0) - (a.claim ?? 0));
    if (kept.length > 0) claims.set(id, kept.map((e) => ({ server: e.server, upstreamName: e.upstreamName })));
    collisions.push({ name: id, claimants: kept.map((e) => e.server), prefixed });
  }
  return { items: items.filter((e): e is MergedEntry => e !== null), claims, collisions, collided, leftOut };
}

/** Whether an unprefixed name or URI has the form of another server's prefixed one. */
function readsAsPrefixed(naming: Namespace, kind: CatalogKind, id: string): boolean {
  return kind === 'tools' || kind === 'prompts' ? naming.parseName(id) !== null : naming.parseUri(id) !== null;
}

/** An upstream's list entry in its aggregated form (null: its name would break the tool-name rules). */
export function renameEntry(kind: CatalogKind, server: string, item: JsonObject, ns: Namespace): JsonObject | null {
  const id = item[KIND_INFO[kind].idField];
  if (typeof id !== 'string' || !ns.selected(kind, server, id)) return null;
  const exposed = ns.expose(kind, server, id);
  if (exposed === null) return null;
  // An on-collision name another server claims too keeps its prefix here as in the merged list.
  const shown = exposed.claim === CLAIM.onCollision && ns.collided[kind].has(exposed.id) ? ns.prefixed(kind, server, id) : exposed.id;
  return shown === null ? null : shownEntry(kind, server, item, shown, ns);
}

/** An entry as `/mcp` shows it: its name or URI `shown`, and a tool's configured description and title. */
function shownEntry(kind: CatalogKind, server: string, item: JsonObject, shown: string, ns: Namespace, upstreamName?: string): JsonObject {
  const idField = KIND_INFO[kind].idField;
  const out: JsonObject = { ...item, [idField]: shown };
  if (kind === 'tools') {
    const o = ns.toolOverride(server, upstreamName ?? String(item[idField]));
    if (o?.description !== undefined) out['description'] = o.description;
    if (o?.title !== undefined) out['title'] = o.title;
  }
  return out;
}
