/**
 * The transformation filters on tool calls, through a real Envoy: the seed's `_context` and
 * argument defaults, on `/mcp` and on passthrough, each decision on the operation line and in
 * `mcp_gateway_filter_decisions_total`.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { sha256Hex } from '../../src/auth/api-keys.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { connectClient } from '../support/mcp-client.js';
import { waitUntil } from '../support/proc.js';
import { useStack } from '../support/stack.js';

const KEY = 'filters-test-key-0123456789';
const auth = { 'x-api-key': KEY };

function argsOf(result: object): Record<string, any> {
  const text = (((result as { content?: unknown }).content ?? []) as { text?: string }[]).map((c) => c.text ?? '').join('');
  return JSON.parse(text) as Record<string, any>;
}

describe('filters: context injection and argument defaults on tool calls', () => {
  const stack = useStack({
    // alpha: the global filters; beta: its own context in place of the global one, the global defaults.
    servers: { alpha: {}, beta: { filters: { context: { include: ['client_id', 'tenant', 'groups', 'request_id'], overwrite: true } } } },
    extraConfig: {
      auth: { api_keys: [{ id: 'ci-bot', key_sha256: sha256Hex(KEY), tenant: 'acme', groups: ['staff'] }] },
      tenants: { acme: { servers: ['*'], namespace: 'acme' } },
      filters: {
        context: { tools: ['arguments'] },
        defaults: [{ tools: ['argu*'], arguments: { limit: 10, requester: '{{client_id}} via {{server}}' } }],
      },
    },
  });
  before(() =>
    waitUntil(
      async () => {
        const c = await connectClient(stack().mcpUrl, { headers: auth });
        try {
          return (await c.client.listTools()).tools.some((t) => t.name === 'beta__arguments');
        } finally {
          await c.close({ terminate: true });
        }
      },
      { timeoutMs: 10_000, intervalMs: 100, what: 'the catalogs' },
    ),
  );

  it('adds the seed’s _context and the defaults on /mcp, keeping what the client sent', async () => {
    const c = await connectClient(stack().mcpUrl, { headers: auth });
    try {
      const before = Date.now();
      const got = argsOf(await c.client.callTool({ name: 'alpha__arguments', arguments: { text: 'hi', limit: 5 } }));
      assert.equal(got['text'], 'hi');
      assert.equal(got['limit'], 5, 'the client’s own value stands');
      assert.equal(got['requester'], 'ci-bot via alpha');
      const ctx = got['_context'] as Record<string, unknown>;
      assert.deepEqual(Object.keys(ctx).sort(), ['client_id', 'timestamp', 'trace_id']);
      assert.equal(ctx['client_id'], 'ci-bot');
      assert.match(String(ctx['trace_id']), /^[0-9a-f]{32}$/);
      assert.ok(Number(ctx['timestamp']) >= before && Number(ctx['timestamp']) <= Date.now());
      // Another tool of alpha: no filter matches it, its arguments go as they are.
      assert.equal((await c.client.callTool({ name: 'alpha__echo', arguments: { text: 'as is' } })).isError ?? false, false);
    } finally {
      await c.close({ terminate: true });
    }
  });

  it('applies a server’s own context on passthrough too, replacing a forged one when told to', async () => {
    const c = await connectClient(stack().serverUrl('beta'), { headers: auth });
    try {
      const got = argsOf(await c.client.callTool({ name: 'arguments', arguments: { _context: { client_id: 'forged' } } }));
      assert.equal(got['requester'], 'ci-bot via beta', 'the global defaults still apply to beta');
      const ctx = got['_context'] as Record<string, unknown>;
      assert.equal(ctx['client_id'], 'ci-bot');
      assert.equal(ctx['tenant'], 'acme');
      assert.deepEqual(ctx['groups'], ['staff']);
      assert.match(String(ctx['request_id']), /^[0-9a-f]{16}$/);
    } finally {
      await c.close({ terminate: true });
    }
  });

  it('meters every decision and writes it on the operation line', async () => {
    const text = await (await fetch(`${stack().adminUrl}/metrics`)).text();
    const value = (filter: string, server: string, action: string): number =>
      Number(
        text
          .split('\n')
          .find((l) => l.startsWith('mcp_gateway_filter_decisions_total{') && l.includes(`filter="${filter}"`) && l.includes(`server="${server}"`) && l.includes(`action="${action}"`))
          ?.split(' ')
          .pop() ?? 0,
      );
    assert.ok(value('context', 'alpha', 'added') >= 1);
    assert.ok(value('defaults', 'alpha', 'kept') >= 1);
    assert.ok(value('defaults', 'alpha', 'added') >= 1);
    assert.ok(value('context', 'beta', 'replaced') >= 1);
    const lines = stack()
      .processorLogLines()
      .filter((l) => l['msg'] === 'mcp operation' && l['tool'] === 'arguments');
    assert.ok(lines.some((l) => JSON.stringify(l['filters']) === JSON.stringify(['defaults:kept', 'defaults:added', 'context:added'])), JSON.stringify(lines.map((l) => l['filters'])));
    assert.ok(lines.some((l) => JSON.stringify(l['filters']) === JSON.stringify(['defaults:added', 'defaults:added', 'context:replaced'])));
  });
});

describe('filters: argument validation against the tool’s inputSchema', () => {
  const stack = useStack({
    servers: { alpha: {} },
    // add is checked; the context the gateway adds to it is its own, not the client's to get right.
    extraConfig: { filters: { validate: { tools: ['add'] }, context: { tools: ['add'] } } },
  });

  it('refuses bad arguments with -32602 naming the failing path, before the server sees them', async () => {
    const c = await connectClient(stack().mcpUrl);
    try {
      await waitUntil(async () => (await c.client.listTools()).tools.some((t) => t.name === 'alpha__add'), { timeoutMs: 10_000, intervalMs: 100, what: 'the catalog' });
      const ok = await c.client.callTool({ name: 'alpha__add', arguments: { a: 1, b: 2 } });
      assert.equal(((ok.content as { text: string }[])[0]!).text, '3');
      for (const [args, path] of [
        [{ a: 'one', b: 2 }, '/a'],
        [{ a: 1 }, '/b'],
      ] as const) {
        const err: unknown = await c.client.callTool({ name: 'alpha__add', arguments: args }).then(
          () => null,
          (e: unknown) => e,
        );
        assert.ok(err instanceof McpError, String(err));
        assert.equal(err.code, -32602);
        assert.match(err.message, new RegExp(`Invalid params: arguments${path} must`));
        assert.deepEqual((err.data as { path: string }).path, path);
      }
      // Not a checked tool: echo's arguments go as sent (the server answers for itself).
      const echo = await c.client.callTool({ name: 'alpha__echo', arguments: { text: 'fine' } });
      assert.equal(((echo.content as { text: string }[])[0]!).text, 'alpha: fine');
    } finally {
      await c.close({ terminate: true });
    }
    const lines = stack()
      .processorLogLines()
      .filter((l) => l['msg'] === 'mcp operation' && l['tool'] === 'add');
    assert.deepEqual(
      lines.map((l) => JSON.stringify(l['filters'])).sort(),
      [JSON.stringify(['context:added', 'validate:passed']), ...Array(2).fill(JSON.stringify(['context:added', 'validate:refused']))].sort(),
    );
  });
});

describe('filters: PII and secrets in tool calls', () => {
  const stack = useStack({
    servers: {
      // alpha redacts (arguments and results); delta redacts results only; beta refuses; gamma only records.
      alpha: { filters: { pii: { custom: [{ name: 'employee_id', pattern: 'EMP-\\d{6}' }] } } },
      delta: { filters: { pii: { arguments: false } } },
      beta: { filters: { pii: { action: 'block', detect: ['email', 'secret'] } } },
      gamma: { filters: { pii: { action: 'log' } } },
    },
  });
  const text = (r: object): string => ((r as { content: { text: string }[] }).content[0]!).text;

  it('redacts what the client sends and what the server answers, with typed placeholders', async () => {
    const c = await connectClient(stack().mcpUrl);
    try {
      await waitUntil(async () => (await c.client.listTools()).tools.some((t) => t.name === 'gamma__echo'), { timeoutMs: 10_000, intervalMs: 100, what: 'the catalog' });
      // The server sees the redacted argument, and echoes it back.
      assert.equal(text(await c.client.callTool({ name: 'alpha__echo', arguments: { text: 'mail jane@example.com, card 4111 1111 1111 1111' } })), 'alpha: mail [REDACTED:email], card [REDACTED:card]');
      const args = JSON.parse(text(await c.client.callTool({ name: 'alpha__arguments', arguments: { text: 'AKIAIOSFODNN7EXAMPLE' } }))) as { text: string };
      assert.equal(args.text, '[REDACTED:secret]');
      // An operator's own rule, by its name.
      assert.equal(text(await c.client.callTool({ name: 'alpha__echo', arguments: { text: 'ask EMP-123456' } })), 'alpha: ask [REDACTED:employee_id]');
      // What the server answers is scanned on its own: delta gets the address, its answer does not.
      assert.equal(text(await c.client.callTool({ name: 'delta__echo', arguments: { text: 'jane@example.com' } })), 'delta: [REDACTED:email]');
    } finally {
      await c.close({ terminate: true });
    }
  });

  it('scans results on passthrough as on /mcp', async () => {
    const c = await connectClient(stack().serverUrl('delta'));
    try {
      assert.equal(text(await c.client.callTool({ name: 'echo', arguments: { text: 'write to jane@example.com' } })), 'delta: write to [REDACTED:email]');
    } finally {
      await c.close({ terminate: true });
    }
    const b = await connectClient(stack().serverUrl('beta'));
    try {
      // beta blocks: its arguments are refused before the server sees them, on passthrough too.
      await assert.rejects(b.client.callTool({ name: 'echo', arguments: { text: 'jane@example.com' } }), /hold email data/);
    } finally {
      await b.close({ terminate: true });
    }
  });

  it('refuses a call whose arguments hold what the rules block, naming the rule and never the value', async () => {
    const c = await connectClient(stack().mcpUrl);
    try {
      const err: unknown = await c.client.callTool({ name: 'beta__echo', arguments: { text: 'key ghp_' + 'a'.repeat(36) } }).then(
        () => null,
        (e: unknown) => e,
      );
      assert.ok(err instanceof McpError, String(err));
      assert.equal(err.code, -32602);
      assert.match(err.message, /hold secret data, which the gateway does not pass on \(filter pii\)/);
      assert.ok(!err.message.includes('ghp_'), 'the value is never echoed');
      // A phone number is not among beta's rules: it passes.
      assert.equal(text(await c.client.callTool({ name: 'beta__echo', arguments: { text: 'call +44 20 7946 0958' } })), 'beta: call +44 20 7946 0958');
      // log: passes untouched, but is recorded.
      assert.equal(text(await c.client.callTool({ name: 'gamma__echo', arguments: { text: 'jane@example.com' } })), 'gamma: jane@example.com');
    } finally {
      await c.close({ terminate: true });
    }
    const recorded = stack()
      .processorLogLines()
      .filter((l) => l['msg'] === 'mcp operation' && Array.isArray(l['filters']))
      .map((l) => `${String(l['server'])} ${JSON.stringify(l['filters'])}`);
    // alpha: its arguments redacted, the echoed placeholders no finding; gamma: the argument and the echo.
    const expectations = ['beta ["pii:blocked:secret"]', 'gamma ["pii:logged:email","pii:logged:email"]', 'alpha ["pii:redacted:email+card"]', 'alpha ["pii:redacted:secret"]', 'alpha ["pii:redacted:employee_id"]', 'delta ["pii:redacted:email"]'];
    for (const expected of expectations) {
      assert.ok(recorded.includes(expected), `${expected} in ${recorded.join(' | ')}`);
    }
  });
});
