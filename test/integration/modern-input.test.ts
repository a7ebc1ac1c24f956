/**
 * A 2026-07-28 client and a session-based server that asks its client things in the middle of a
 * call (elicitation, sampling, roots): the gateway holds the call, hands the client the
 * questions as an `input_required` result, and carries the answers of its retry back to the
 * server. With the official v2 SDK client (which answers and retries by itself) and raw requests
 * for what a client must not be able to do. Through a real Envoy.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { sha256Hex } from '../../src/auth/api-keys.js';
import { MODERN, modernClient, textOf } from '../support/modern-client.js';
import { waitUntil } from '../support/proc.js';
import { useStack } from '../support/stack.js';

const ASKS_ALL = { elicitation: { form: {} }, sampling: {}, roots: {} };

function envelope(capabilities: object = ASKS_ALL): Record<string, unknown> {
  return {
    'io.modelcontextprotocol/protocolVersion': MODERN,
    'io.modelcontextprotocol/clientCapabilities': capabilities,
    'io.modelcontextprotocol/clientInfo': { name: 'raw', version: '1' },
  };
}

interface Answer {
  status: number;
  json: any;
}

/** One raw 2026-07-28 tools/call. */
async function callTool(url: string, id: number, name: string, args: object, extra: Record<string, unknown> = {}, headers: Record<string, string> = {}): Promise<Answer> {
  const res = await fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      'mcp-protocol-version': MODERN,
      'mcp-method': 'tools/call',
      'mcp-name': name,
      ...headers,
    },
    body: JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: args, _meta: envelope(), ...extra } }),
  });
  return { status: res.status, json: JSON.parse(await res.text()) };
}

/** The one question of an input_required result: its key and request. */
function onlyQuestion(r: Answer): { key: string; request: { method: string; params: any } } {
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.equal(r.json.result?.resultType, 'input_required', JSON.stringify(r.json));
  const entries = Object.entries(r.json.result.inputRequests as Record<string, { method: string; params: any }>);
  assert.equal(entries.length, 1, JSON.stringify(r.json));
  return { key: entries[0]![0], request: entries[0]![1] };
}

describe('a session-based server asks a 2026-07-28 client things mid-call', () => {
  const stack = useStack({ demoServers: ['alpha'] });

  it('the SDK client answers elicitation, sampling and roots through input_required rounds, and the call completes', async () => {
    const client = await modernClient(stack().mcpUrl, { capabilities: ASKS_ALL });
    const asked: string[] = [];
    client.setRequestHandler('elicitation/create', async (request) => {
      const question = String((request.params as { message?: unknown }).message);
      asked.push(question);
      return { action: 'accept', content: { answer: question === 'Who are you?' ? 'Ada' : 'teal' } };
    });
    client.setRequestHandler('sampling/createMessage', async (request) => {
      const prompt = (request.params as { messages: { content: { text?: string } }[] }).messages[0]!.content.text ?? '';
      asked.push(prompt);
      return { role: 'assistant', model: 'test', content: { type: 'text', text: `fine ${prompt.length}` } };
    });
    client.setRequestHandler('roots/list', async () => {
      asked.push('roots');
      return { roots: [{ uri: 'file:///work', name: 'work' }] };
    });
    try {
      assert.equal(textOf(await client.callTool({ name: 'alpha__elicit', arguments: { question: 'Ready?' } })), 'alpha elicited: teal');
      assert.equal(textOf(await client.callTool({ name: 'alpha__sample', arguments: { prompt: 'say hi' } })), `alpha sampled: fine ${'say hi'.length}`);
      // Two questions one after the other (the second names the first answer), then two at once.
      assert.equal(textOf(await client.callTool({ name: 'alpha__interview', arguments: {} })), `alpha: Ada likes teal (fine ${'Rate teal'.length}); roots file:///work`);
      assert.deepEqual(asked.slice(0, 4), ['Ready?', 'say hi', 'Who are you?', 'Favourite colour, Ada?']);
      assert.deepEqual(asked.slice(4).sort(), ['Rate teal', 'roots']);
      // Nothing is left waiting once the calls completed.
      assert.equal(stack().demo['alpha']!.cancellations(), 0);
    } finally {
      await client.close();
    }
  });

  it('asks the questions the server sent at once in one round, and again what a retry left unanswered', async () => {
    const first = await callTool(stack().mcpUrl, 1, 'alpha__interview', {});
    const who = onlyQuestion(first);
    assert.equal(who.request.method, 'elicitation/create');
    assert.equal(who.request.params.message, 'Who are you?');
    // A retry that answers nothing is asked the same question again, under a new state.
    const again = await callTool(stack().mcpUrl, 2, 'alpha__interview', {}, { inputResponses: {}, requestState: first.json.result.requestState });
    assert.deepEqual(onlyQuestion(again).request, who.request);
    assert.notEqual(again.json.result.requestState, first.json.result.requestState);
    const answer = (key: string, text: string) => ({ [key]: { action: 'accept', content: { answer: text } } });
    const second = await callTool(stack().mcpUrl, 3, 'alpha__interview', {}, { inputResponses: answer(onlyQuestion(again).key, 'Bo'), requestState: again.json.result.requestState });
    const colour = onlyQuestion(second);
    assert.equal(colour.request.params.message, 'Favourite colour, Bo?');
    const third = await callTool(stack().mcpUrl, 4, 'alpha__interview', {}, { inputResponses: answer(colour.key, 'red'), requestState: second.json.result.requestState });
    assert.equal(third.json.result?.resultType, 'input_required', JSON.stringify(third.json));
    const both = third.json.result.inputRequests as Record<string, { method: string }>;
    assert.deepEqual(Object.values(both).map((q) => q.method).sort(), ['roots/list', 'sampling/createMessage']);
    const replies: Record<string, unknown> = {};
    for (const [key, q] of Object.entries(both)) {
      replies[key] = q.method === 'roots/list' ? { roots: [{ uri: 'file:///r' }] } : { role: 'assistant', model: 'm', content: { type: 'text', text: 'ok' } };
    }
    const done = await callTool(stack().mcpUrl, 5, 'alpha__interview', {}, { inputResponses: replies, requestState: third.json.result.requestState });
    assert.equal(done.status, 200);
    assert.equal(done.json.id, 5, 'the retry’s own id');
    assert.equal(done.json.result.resultType, 'complete');
    assert.equal(textOf(done.json.result), 'alpha: Bo likes red (ok); roots file:///r');
  });

  it('refuses a requestState it never issued, or one already used, with -32602; the server never sees it', async () => {
    const calls = () => stack().demo['alpha']!.requests().filter((r) => r.method === 'tools/call').length;
    const before = calls();
    const forged = await callTool(stack().mcpUrl, 10, 'alpha__elicit', { question: 'Q' }, { inputResponses: {}, requestState: 'made-up' });
    assert.deepEqual([forged.status, forged.json.error?.code], [200, -32602], JSON.stringify(forged.json));
    const look = await callTool(stack().mcpUrl, 11, 'alpha__elicit', { question: 'Q' }, { requestState: 'mcpgw-held.AAAA' });
    assert.deepEqual([look.status, look.json.error?.code], [200, -32602], JSON.stringify(look.json));
    assert.equal(calls(), before);

    const asked = await callTool(stack().mcpUrl, 12, 'alpha__elicit', { question: 'Once?' });
    const q = onlyQuestion(asked);
    const state = asked.json.result.requestState;
    const reply = { [q.key]: { action: 'decline' } };
    const done = await callTool(stack().mcpUrl, 13, 'alpha__elicit', { question: 'Once?' }, { inputResponses: reply, requestState: state });
    assert.equal(textOf(done.json.result), 'alpha elicited: decline');
    const replayed = await callTool(stack().mcpUrl, 14, 'alpha__elicit', { question: 'Once?' }, { inputResponses: reply, requestState: state });
    assert.deepEqual([replayed.status, replayed.json.error?.code], [200, -32602], JSON.stringify(replayed.json));
  });
});

describe('a held call belongs to its caller and its request, and does not wait forever', () => {
  const KEYS = { a: 'k-input-agent-a-0123456789abcdef', b: 'k-input-agent-b-0123456789abcdef' };
  const stack = useStack({
    demoServers: ['alpha'],
    gateway: { input_required_timeout: '1s' },
    extraConfig: {
      auth: {
        api_keys: [
          { id: 'agent-a', key_sha256: sha256Hex(KEYS.a) },
          { id: 'agent-b', key_sha256: sha256Hex(KEYS.b) },
        ],
      },
    },
  });
  const as = (who: 'a' | 'b') => ({ 'x-api-key': KEYS[who] });

  it('another caller, or the same caller for another request, cannot use a requestState; its owner then can', async () => {
    const asked = await callTool(stack().mcpUrl, 1, 'alpha__elicit', { question: 'Mine?' }, {}, as('a'));
    const q = onlyQuestion(asked);
    const retry = { inputResponses: { [q.key]: { action: 'accept', content: { answer: 'stolen' } } }, requestState: asked.json.result.requestState };
    const theft = await callTool(stack().mcpUrl, 2, 'alpha__elicit', { question: 'Mine?' }, retry, as('b'));
    assert.deepEqual([theft.status, theft.json.error?.code], [200, -32602], JSON.stringify(theft.json));
    const elsewhere = await callTool(stack().mcpUrl, 3, 'alpha__sample', { prompt: 'x' }, retry, as('a'));
    assert.deepEqual([elsewhere.status, elsewhere.json.error?.code], [200, -32602], JSON.stringify(elsewhere.json));
    // Refusals change nothing: the owner's retry still completes, with its own answer.
    retry.inputResponses[q.key]!.content.answer = 'mine';
    const done = await callTool(stack().mcpUrl, 4, 'alpha__elicit', { question: 'Mine?' }, retry, as('a'));
    assert.equal(textOf(done.json.result), 'alpha elicited: mine');
  });

  it('cancels a call upstream when nobody retries within input_required_timeout; a late retry is refused', async () => {
    const alpha = stack().demo['alpha']!;
    const cancelled = alpha.cancellations();
    const asked = await callTool(stack().mcpUrl, 5, 'alpha__elicit', { question: 'Anyone?' }, {}, as('a'));
    const q = onlyQuestion(asked);
    await waitUntil(() => alpha.cancellations() > cancelled, { timeoutMs: 10_000, what: 'the server to hear the call cancelled' });
    const late = await callTool(stack().mcpUrl, 6, 'alpha__elicit', { question: 'Anyone?' }, { inputResponses: { [q.key]: { action: 'cancel' } }, requestState: asked.json.result.requestState }, as('a'));
    assert.deepEqual([late.status, late.json.error?.code], [200, -32602], JSON.stringify(late.json));
  });
});
