/**
 * Tasks (MCP 2025-11-25) on /mcp, through a real Envoy, with an SDK server that runs a tool as a
 * task and the SDK client's task API: the capability is the servers' union, a task-augmented call
 * runs end to end, task ids are the gateway's and bound to the identity that created them, and
 * status notifications reach the client.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CallToolResultSchema, CreateTaskResultSchema, type CallToolResult, type ServerNotification } from '@modelcontextprotocol/sdk/types.js';
import { sha256Hex } from '../../src/auth/api-keys.js';
import { connectClient, rawRequest, type ConnectedClient } from '../support/mcp-client.js';
import { waitUntil } from '../support/proc.js';
import { useStack } from '../support/stack.js';

const KEYS = { alice: 'k-alice-0123456789abcdef', bob: 'k-bob-0123456789abcdef' };
const AS = { alice: { 'x-api-key': KEYS.alice }, bob: { 'x-api-key': KEYS.bob } };

/** The task a task-augmented call created, and what the stream that followed it said. */
async function runAsTask(c: ConnectedClient, name: string, args: Record<string, unknown>): Promise<{ taskId: string; statuses: string[]; result: CallToolResult }> {
  let taskId: string | null = null;
  const statuses: string[] = [];
  for await (const m of c.client.experimental.tasks.callToolStream({ name, arguments: args }, CallToolResultSchema, { task: { ttl: 60_000 } })) {
    if (m.type === 'taskCreated') taskId = m.task.taskId;
    else if (m.type === 'taskStatus') statuses.push(m.task.status);
    else if (m.type === 'result') return { taskId: taskId!, statuses, result: m.result as CallToolResult };
    else if (m.type === 'error') throw m.error;
  }
  throw new Error('task stream ended without a result');
}

function statusNotes(c: ConnectedClient): ServerNotification[] {
  return c.notifications.filter((n) => n.method === 'notifications/tasks/status');
}

describe('tasks on /mcp', () => {
  const stack = useStack({
    servers: { alpha: { demoOptions: { tasks: true } }, beta: {} },
    extraConfig: {
      auth: {
        api_keys: [
          { id: 'alice', key_sha256: sha256Hex(KEYS.alice) },
          { id: 'bob', key_sha256: sha256Hex(KEYS.bob) },
        ],
      },
    },
  });

  it('offers the union of the servers’ tasks capabilities', async () => {
    const direct = await connectClient(stack().demo['alpha']!.url);
    const viaGateway = await connectClient(stack().mcpUrl, { headers: AS.alice });
    try {
      const upstream = direct.client.getServerCapabilities()?.tasks;
      assert.ok(upstream !== undefined, 'the task server offers tasks');
      // beta offers none: the union is alpha's.
      assert.deepEqual(viaGateway.client.getServerCapabilities()?.tasks, upstream);
      const listed = await viaGateway.client.listTools();
      const tool = listed.tools.find((t) => t.name === 'alpha__slow_task');
      assert.equal(tool?.execution?.taskSupport, 'required', 'the tool’s task support passes through');
    } finally {
      await direct.close({ terminate: true });
      await viaGateway.close({ terminate: true });
    }
  });

  it('runs a task-augmented call end to end with the gateway’s task ids and status notifications', async () => {
    const c = await connectClient(stack().mcpUrl, { headers: AS.alice });
    try {
      const { taskId, result } = await runAsTask(c, 'alpha__slow_task', { ms: 200, text: 'hi' });
      assert.match(taskId, /^alpha\+./, 'the client sees the server-qualified id');
      const text = result.content.find((b) => b.type === 'text');
      assert.equal(text?.type === 'text' ? text.text : null, 'alpha: done hi');
      const link = result.content.find((b) => b.type === 'resource_link');
      assert.equal(link?.type === 'resource_link' ? link.uri : null, 'alpha+demo://shared/readme', 'URIs in a task result are namespaced');
      const read = await c.client.readResource({ uri: 'alpha+demo://shared/readme' });
      assert.equal(read.contents[0]?.uri, 'alpha+demo://shared/readme', 'and read back');

      const state = await c.client.experimental.tasks.getTask(taskId);
      assert.equal(state.taskId, taskId);
      assert.equal(state.status, 'completed');
      const listed = await c.client.experimental.tasks.listTasks();
      assert.ok(listed.tasks.some((t) => t.taskId === taskId), 'tasks/list names it with the gateway’s id');
      assert.ok(listed.tasks.every((t) => t.taskId.startsWith('alpha+')));

      // The SDK announces the completion on the server→client stream.
      await waitUntil(() => statusNotes(c).some((n) => (n.params as { taskId: string; status: string }).taskId === taskId), { timeoutMs: 10_000, intervalMs: 50, what: 'the completed task’s status notification' });
      const done = statusNotes(c).find((n) => (n.params as { taskId: string }).taskId === taskId);
      assert.equal((done?.params as { status: string }).status, 'completed');
    } finally {
      await c.close({ terminate: true });
    }
  });

  it('cancels a running task on the server that runs it', async () => {
    const c = await connectClient(stack().mcpUrl, { headers: AS.alice });
    try {
      const created = await c.client.request(
        { method: 'tools/call', params: { name: 'alpha__slow_task', arguments: { ms: 30_000, text: 'long' }, task: { ttl: 60_000 } } },
        CreateTaskResultSchema,
      );
      const taskId = created.task.taskId;
      assert.equal(created.task.status, 'working');
      const cancelled = await c.client.experimental.tasks.cancelTask(taskId);
      assert.equal(cancelled.taskId, taskId);
      assert.equal(cancelled.status, 'cancelled');
      assert.equal((await c.client.experimental.tasks.getTask(taskId)).status, 'cancelled');
    } finally {
      await c.close({ terminate: true });
    }
  });

  it('keeps a task to the identity that created it; other ids are unknown, never forwarded', async () => {
    const alice = await connectClient(stack().mcpUrl, { headers: AS.alice });
    const bob = await connectClient(stack().mcpUrl, { headers: AS.bob });
    try {
      const { taskId } = await runAsTask(alice, 'alpha__slow_task', { ms: 50, text: 'mine' });
      const before = stack().demo['alpha']!.requests().length;
      const ask = async (method: string, id: unknown): Promise<{ code?: number; message?: string }> => {
        const r = await rawRequest(stack().mcpUrl, {
          headers: { ...AS.bob, 'mcp-session-id': bob.sessionId! },
          body: { jsonrpc: '2.0', id: 7, method, params: id === undefined ? {} : { taskId: id } },
        });
        assert.equal(r.status, 200, r.text);
        return (r.json as { error?: { code: number; message: string } }).error ?? {};
      };
      for (const method of ['tasks/get', 'tasks/result', 'tasks/cancel']) {
        assert.deepEqual(await ask(method, taskId), { code: -32602, message: `Task not found: ${taskId}` }, `${method} of another identity’s task`);
      }
      for (const id of ['alpha+never-created', 'nosuch+x', 'no-prefix', '']) {
        assert.deepEqual(await ask('tasks/get', id), { code: -32602, message: `Task not found: ${id}` });
      }
      assert.deepEqual(await ask('tasks/get', undefined), { code: -32602, message: 'Invalid params: taskId is required' });
      assert.equal(stack().demo['alpha']!.requests().length, before, 'no refused task request reached the server');
      const bobs = await bob.client.experimental.tasks.listTasks();
      assert.ok(!bobs.tasks.some((t) => t.taskId === taskId), 'nor does it show in another identity’s list');
      assert.equal((await alice.client.experimental.tasks.getTask(taskId)).status, 'completed', 'its creator still reaches it');
    } finally {
      await alice.close({ terminate: true });
      await bob.close({ terminate: true });
    }
  });
});
