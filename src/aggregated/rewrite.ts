import { ExactId, isObject, type JsonObject } from '../mcp/message.js';
import type { Namespace } from './naming.js';

/** List-changed notifications and the catalog kind each one invalidates. */
export const LIST_CHANGED: ReadonlyMap<string, 'tools' | 'prompts' | 'resources'> = new Map([
  ['notifications/tools/list_changed', 'tools'],
  ['notifications/prompts/list_changed', 'prompts'],
  ['notifications/resources/list_changed', 'resources'],
] as const);

/** The `_meta` key that ties a message to the task it belongs to (MCP 2025-11-25). */
export const RELATED_TASK_META = 'io.modelcontextprotocol/related-task';

/** What one upstream message needs from the caller besides its own rewrite. */
export interface RewriteEffects {
  /** The upstream said a list changed: drop that catalog. */
  listChanged?: 'tools' | 'prompts' | 'resources';
  /** The upstream's own id of a task it created for a task-augmented call (to bind to the caller). */
  taskCreated?: string;
  /** The upstream's URIs of the resources a result links or embeds. */
  linked?: string[];
  /** The upstream said one of its resources changed (its own URI). */
  resourceUpdated?: string;
}

/**
 * Rewrites, in place, one message that an upstream sent on the aggregated endpoint so that the
 * client sees only aggregated names:
 * - server→client requests get an id that carries the server (answers find their way back);
 * - resource URIs in results and `notifications/resources/updated` are namespaced;
 * - task ids (created tasks, task states, status notifications, related-task `_meta`) are namespaced.
 * Returns whether anything changed, so unchanged messages are never re-serialised.
 */
export function rewriteUpstreamMessage(
  msg: JsonObject,
  server: string,
  requestMethod: string | null,
  ns: Namespace,
  effects: RewriteEffects,
): boolean {
  const method = msg['method'];
  if (typeof method === 'string') {
    const params = msg['params'];
    const inTask = isObject(params) && rewriteRelatedTask(params, server, ns);
    const id = msg['id'];
    if (typeof id === 'string' || typeof id === 'number' || id instanceof ExactId) {
      msg['id'] = ns.qualifyServerRequestId(server, id);
      return true;
    }
    const changed = LIST_CHANGED.get(method);
    if (changed !== undefined) effects.listChanged = changed;
    if (method === 'notifications/resources/updated' && isObject(params) && typeof params['uri'] === 'string') {
      effects.resourceUpdated = params['uri'];
      params['uri'] = ns.qualifyUri(server, params['uri']);
      return true;
    }
    if (method === 'notifications/tasks/status' && isObject(params)) return rewriteTaskId(params, server, ns) || inTask;
    return inTask;
  }
  const result = msg['result'];
  if (!isObject(result) || requestMethod === null) return false;
  const inTask = rewriteRelatedTask(result, server, ns);
  return rewriteResult(result, server, requestMethod, ns, effects) || inTask;
}

/** A result's own fields, by the request it answers. */
function rewriteResult(result: JsonObject, server: string, requestMethod: string, ns: Namespace, effects: RewriteEffects): boolean {
  switch (requestMethod) {
    case 'tools/call': {
      const task = result['task'];
      if (isObject(task) && typeof task['taskId'] === 'string') {
        // A task-augmented call: the upstream answered with the task it created.
        effects.taskCreated = task['taskId'];
        return rewriteTaskId(task, server, ns);
      }
      return rewriteContentList(result['content'], server, ns, effects);
    }
    case 'tasks/result':
      return rewriteContentList(result['content'], server, ns, effects);
    case 'tasks/get':
    case 'tasks/cancel':
      return rewriteTaskId(result, server, ns);
    case 'resources/read':
      return rewriteUris(result['contents'], server, ns);
    case 'prompts/get': {
      const messages = result['messages'];
      if (!Array.isArray(messages)) return false;
      let changed = false;
      for (const m of messages) if (isObject(m) && rewriteContent(m['content'], server, ns, effects)) changed = true;
      return changed;
    }
    default:
      return false;
  }
}

/** A task's own id (in a task state or status notification). */
function rewriteTaskId(task: JsonObject, server: string, ns: Namespace): boolean {
  const id = task['taskId'];
  if (typeof id !== 'string') return false;
  task['taskId'] = ns.qualifyTaskId(server, id);
  return true;
}

/** The task a message's `_meta` says it belongs to. */
function rewriteRelatedTask(holder: JsonObject, server: string, ns: Namespace): boolean {
  const meta = holder['_meta'];
  if (!isObject(meta)) return false;
  const related = meta[RELATED_TASK_META];
  return isObject(related) && rewriteTaskId(related, server, ns);
}

function rewriteContentList(content: unknown, server: string, ns: Namespace, effects: RewriteEffects): boolean {
  if (!Array.isArray(content)) return false;
  let changed = false;
  for (const c of content) if (rewriteContent(c, server, ns, effects)) changed = true;
  return changed;
}

function rewriteContent(c: unknown, server: string, ns: Namespace, effects: RewriteEffects): boolean {
  if (!isObject(c)) return false;
  const holder = c['type'] === 'resource_link' ? c : c['type'] === 'resource' && isObject(c['resource']) ? c['resource'] : null;
  const uri = holder?.['uri'];
  if (holder === null || typeof uri !== 'string') return false;
  (effects.linked ??= []).push(uri);
  holder['uri'] = ns.qualifyUri(server, uri);
  return true;
}

function rewriteUris(list: unknown, server: string, ns: Namespace): boolean {
  if (!Array.isArray(list)) return false;
  let changed = false;
  for (const r of list) {
    if (isObject(r) && typeof r['uri'] === 'string') {
      r['uri'] = ns.qualifyUri(server, r['uri']);
      changed = true;
    }
  }
  return changed;
}
