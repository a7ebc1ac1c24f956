import { isObject } from '../mcp/message.js';

/**
 * SSE event ids on the aggregated endpoint. Every upstream numbers its own events, and a client
 * of `/mcp` sees one stream, so the gateway's ids carry the upstreams' ids in a form it can take
 * apart again when a client resumes with `Last-Event-ID`:
 *
 * - `g.<base64url JSON>` on the server→client GET stream: the last event id seen from each
 *   upstream on that stream so far (`{"<server>": "<upstream id>", …}`), so resuming picks up
 *   every upstream where this client left it, not only the one that sent the last event;
 * - `p.<base64url JSON>` on the SSE answer to a POST: the one server answering, its event id and
 *   the request method (`{"s", "e", "m"}`), so a client whose POST stream was closed (SSE polling)
 *   resumes that stream with `GET` and gets the rest of it renamed as the POST's would have been.
 *
 * - `q.<ask id>.<n>` on the questions the gateway put to a client for a server of the sessionless
 *   revision (asks.ts): resuming with it waits for the answers and carries the call on.
 *
 * The ids are opaque to clients and hold nothing they could not see when talking to the servers
 * directly; a forged id can only name servers the caller may use, in the caller's own sessions.
 */

/** Where a client resumes: the fan-in from these upstream positions, or the rest of one POST stream. */
export type ResumePoint =
  | { readonly kind: 'fan-in'; readonly positions: ReadonlyMap<string, string> }
  | { readonly kind: 'post'; readonly server: string; readonly upstreamId: string; readonly requestMethod: string | null }
  | { readonly kind: 'ask'; readonly ask: string };

/** Largest `Last-Event-ID` the gateway takes apart. */
const MAX_ID_LENGTH = 16 * 1024;

/** The id of a fan-in event: every upstream's last position on this stream. */
export function fanInEventId(positions: ReadonlyMap<string, string>): string {
  return `g.${Buffer.from(JSON.stringify(Object.fromEntries(positions))).toString('base64url')}`;
}

/** The id of an event of a POST's SSE answer. */
export function postEventId(server: string, upstreamId: string, requestMethod: string | null): string {
  const v: Record<string, string> = { s: server, e: upstreamId };
  if (requestMethod !== null) v['m'] = requestMethod;
  return `p.${Buffer.from(JSON.stringify(v)).toString('base64url')}`;
}

/** The id of the `n`th question of ask `ask`. */
export function askEventId(ask: string, n: number): string {
  return `q.${ask}.${n}`;
}

/** Takes a `Last-Event-ID` apart; null for anything the gateway did not issue (a fresh stream then). */
export function parseEventId(id: string, isServer: (name: string) => boolean): ResumePoint | null {
  if (id.length > MAX_ID_LENGTH || id[1] !== '.') return null;
  if (id[0] === 'q') {
    const m = /^q\.([A-Za-z0-9_-]{1,64})\.\d{1,6}$/.exec(id);
    return m === null ? null : { kind: 'ask', ask: m[1]! };
  }
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(id.slice(2), 'base64url').toString('utf8'));
  } catch {
    return null;
  }
  if (!isObject(v)) return null;
  if (id[0] === 'g') {
    const positions = new Map<string, string>();
    for (const [server, upstreamId] of Object.entries(v)) {
      if (typeof upstreamId === 'string' && isServer(server)) positions.set(server, upstreamId);
    }
    return { kind: 'fan-in', positions };
  }
  if (id[0] === 'p') {
    const { s, e, m } = v;
    if (typeof s !== 'string' || typeof e !== 'string' || !isServer(s)) return null;
    return { kind: 'post', server: s, upstreamId: e, requestMethod: typeof m === 'string' ? m : null };
  }
  return null;
}
