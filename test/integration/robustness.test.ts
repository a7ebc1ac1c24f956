import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { rawInitialize, rawRequest } from '../support/mcp-client.js';
import { useStack } from '../support/stack.js';
import { prng } from '../support/prng.js';


const METHODS = [
  'initialize', 'ping', 'tools/list', 'tools/call', 'prompts/get', 'resources/read', 'resources/subscribe',
  'completion/complete', 'logging/setLevel', 'notifications/cancelled', 'notifications/initialized', 'nope', '',
];
const WEIRD: unknown[] = [
  null, true, 0, -1, 1.5, 1e308, '', 'alpha__echo', 'alpha+demo://shared/readme', 'gamma__x', 'alpha__',
  '__echo', 'ALPHA__echo', 'alpha\u200b__echo', 'alpha%5F%5Fecho', 'alpha+', '+x', 'mcpgw:alpha:n1', 'mcpgw:alpha:sx',
  [], {}, [1, 2], { name: 'alpha__echo' }, 'x'.repeat(5000), '\u0000', '\ud800',
];

describe('robustness: hostile and random input', () => {
  const stack = useStack({ demoServers: ['alpha'] });

  it('answers 400 seeded random messages with well-formed JSON-RPC, and keeps serving', async () => {
    const init = await rawInitialize(stack().mcpUrl);
    const sid = init.sessionId!;
    const seed = Number(process.env['ROBUSTNESS_SEED'] ?? 20261124);
    const rnd = prng(seed);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;

    for (let i = 0; i < 400; i++) {
      const msg: Record<string, unknown> = {};
      if (rnd() < 0.9) msg['jsonrpc'] = rnd() < 0.9 ? '2.0' : pick(WEIRD);
      if (rnd() < 0.8) msg['id'] = rnd() < 0.7 ? i : pick(WEIRD);
      if (rnd() < 0.9) msg['method'] = rnd() < 0.8 ? pick(METHODS) : pick(WEIRD);
      if (rnd() < 0.7) {
        const params: Record<string, unknown> = {};
        for (const k of ['name', 'uri', 'arguments', 'cursor', 'ref', 'level', 'requestId', 'protocolVersion', 'capabilities']) {
          if (rnd() < 0.3) params[k] = pick(WEIRD);
        }
        msg['params'] = rnd() < 0.9 ? params : pick(WEIRD);
      }
      if (rnd() < 0.05) msg['result'] = {};
      let body = JSON.stringify(msg);
      if (rnd() < 0.1) body = body.slice(0, Math.floor(rnd() * body.length)); // truncated JSON
      const headers: Record<string, string | null> = { 'mcp-session-id': rnd() < 0.9 ? sid : pick(['', 'x', sid + 'x']) };
      if (rnd() < 0.05) headers['mcp-protocol-version'] = pick(['2025-06-18', 'garbage', '']);
      if (rnd() < 0.03) headers['content-type'] = 'text/plain';
      const res = await rawRequest(stack().mcpUrl, { headers, body, timeoutMs: 15_000 });
      const where = `seed ${seed}, message ${i}: ${body.slice(0, 200)} → ${res.status} ${res.text.slice(0, 200)}`;
      assert.ok([200, 202, 400, 404, 406, 415, 503].includes(res.status), where);
      if (res.status === 202) {
        assert.equal(res.text, '', where);
        continue;
      }
      const reply = res.json as { jsonrpc?: string; result?: unknown; error?: { code?: unknown; message?: unknown } };
      assert.equal(reply?.jsonrpc, '2.0', where);
      assert.ok(reply.result !== undefined || (typeof reply.error?.code === 'number' && typeof reply.error.message === 'string'), where);
      if (res.status !== 200) assert.ok(reply.error !== undefined, where);
    }

    const health = await fetch(`${stack().adminUrl}/healthz`);
    assert.equal(health.status, 200);
    const ok = await rawRequest(stack().mcpUrl, {
      headers: { 'mcp-session-id': sid },
      body: { jsonrpc: '2.0', id: 'final', method: 'tools/call', params: { name: 'alpha__echo', arguments: { text: 'still here' } } },
    });
    assert.equal((ok.json as { result: { content: { text: string }[] } }).result.content[0]?.text, 'alpha: still here');
  });
});
