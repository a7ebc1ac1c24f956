import { sessionBoundTo } from '../auth/identity.js';
import type { RuntimeServer } from '../config/runtime.js';
import { GatewayError } from '../errors/gateway-error.js';
import { isObject, type JsonObject, type JsonRpcId } from '../mcp/message.js';
import { respondResult, type RespondDecision } from '../request/decision.js';
import { serverVisible } from '../request/guard.js';
import type { RequestState } from '../request/state.js';
import type { GatewaySession } from '../sessions/store.js';
import type { AggregatedContext } from './context.js';

/**
 * Tasks (MCP 2025-11-25) on the aggregated endpoint. A task lives on the server that created it,
 * in the client's upstream session there; the client sees its id as `<server>+<taskId>`, bound
 * to the identity the task was created for (response.ts binds it before the client sees it,
 * route.ts checks it on tasks/get, tasks/result and tasks/cancel). This module answers
 * tasks/list, which spans servers.
 */

/** Whether a server's capabilities say it lists tasks. */
function listsTasks(caps: JsonObject | null): boolean {
  const tasks = caps?.['tasks'];
  return isObject(tasks) && isObject(tasks['list']);
}

/**
 * tasks/list: the tasks of this client's upstream sessions on every visible server that lists
 * them, with the gateway's ids, only those bound to the caller (a server without sessions may
 * list everyone's). The gateway's cursor carries each server's own cursor for its next page.
 */
export async function listTasks(ctx: AggregatedContext, state: RequestState, session: GatewaySession, id: JsonRpcId, params: JsonObject): Promise<RespondDecision> {
  const caller = state.caller!;
  const visible = ctx.rc.serverList.filter((s) => serverVisible(ctx, caller, s.name));
  const caps = await Promise.all(visible.map((s) => ctx.catalog.capabilities(s)));
  const listing = visible.filter((_, i) => listsTasks(caps[i]!));
  if (listing.length === 0) throw new GatewayError('GW_ERR_METHOD_UNKNOWN', 'Method not found: tasks/list');
  const resume = decodeCursor(params['cursor'], listing);
  // A first page asks every listing server the client has a session with (no session: no tasks
  // there); a later one only the servers that had more.
  const ask = resume === null ? listing.filter((s) => session.upstream.has(s.name)) : listing.filter((s) => resume.has(s.name));
  const pages = await Promise.all(ask.map((s) => upstreamPage(ctx, session, s, resume?.get(s.name))));
  const tasks: JsonObject[] = [];
  const next = new Map<string, string>();
  for (const page of pages) {
    if (page === null) continue;
    const owners = await Promise.all(page.tasks.map((t) => ctx.sessions.boundOwner('task', page.server, t['taskId'] as string)));
    page.tasks.forEach((t, i) => {
      const owner = owners[i];
      if (owner !== undefined && sessionBoundTo(owner, caller.identity)) tasks.push({ ...t, taskId: ctx.naming.qualifyTaskId(page.server, t['taskId'] as string) });
    });
    if (page.nextCursor !== null) next.set(page.server, page.nextCursor);
  }
  const result: JsonObject = { tasks };
  if (next.size > 0) result['nextCursor'] = Buffer.from(JSON.stringify({ k: 'tasks', c: Object.fromEntries(next) })).toString('base64url');
  return respondResult(id, result);
}

interface Page {
  readonly server: string;
  /** Tasks with a string `taskId`, as the server sent them. */
  readonly tasks: JsonObject[];
  readonly nextCursor: string | null;
}

/** One server's page of tasks; null when it could not be listed (it is left out, as lists do). */
async function upstreamPage(ctx: AggregatedContext, session: GatewaySession, server: RuntimeServer, cursor: string | undefined): Promise<Page | null> {
  const up = session.upstream.get(server.name);
  if (up === undefined) return null;
  try {
    const { result } = await ctx.upstream.call(server, 'tasks/list', cursor === undefined ? undefined : { cursor }, {
      sessionId: up.sessionId,
      protocolVersion: up.protocolVersion,
    });
    const list = Array.isArray(result['tasks']) ? result['tasks'] : [];
    return {
      server: server.name,
      tasks: list.filter((t): t is JsonObject => isObject(t) && typeof t['taskId'] === 'string'),
      nextCursor: typeof result['nextCursor'] === 'string' ? result['nextCursor'] : null,
    };
  } catch (err) {
    ctx.log.debug({ server: server.name, err }, 'tasks/list not answered; left out');
    return null;
  }
}

/** The servers' own cursors a gateway cursor carries; null for the first page. */
function decodeCursor(cursor: unknown, listing: readonly RuntimeServer[]): Map<string, string> | null {
  if (cursor === undefined) return null;
  const invalid = (): GatewayError => new GatewayError('GW_ERR_PARAMS_INVALID', 'Invalid params: unknown cursor');
  if (typeof cursor !== 'string') throw invalid();
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw invalid();
  }
  if (!isObject(v) || v['k'] !== 'tasks' || !isObject(v['c'])) throw invalid();
  const names = new Set(listing.map((s) => s.name));
  const out = new Map<string, string>();
  for (const [server, c] of Object.entries(v['c'])) {
    if (!names.has(server) || typeof c !== 'string') throw invalid();
    out.set(server, c);
  }
  return out;
}
