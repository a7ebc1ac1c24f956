/**
 * Virtual servers: `/v/<name>/mcp` is /mcp over a curated subset (servers, tools, names), with
 * access rules and sessions of its own. Through a real Envoy, with the official SDK client.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { ResourceUpdatedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { sha256Hex } from '../../src/auth/api-keys.js';
import { connectClient, rawInitialize, rawRequest } from '../support/mcp-client.js';
import { modernClient } from '../support/modern-client.js';
import { waitUntil } from '../support/proc.js';
import { useStack } from '../support/stack.js';

const OPS_KEY = 'virtual-ops-key-0123456789';
const GUEST_KEY = 'virtual-guest-key-0123456789';
const ops = { 'x-api-key': OPS_KEY };
const guest = { 'x-api-key': GUEST_KEY };

/** An initialize that may be refused: the raw response. */
function initialize(url: string, headers: Record<string, string>): ReturnType<typeof rawRequest> {
  return rawRequest(url, { headers, body: { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } } } });
}

function textOf(result: object): string {
  return (((result as { content?: unknown }).content ?? []) as { text?: string }[]).map((c) => c.text ?? '').join('');
}

describe('virtual servers: a curated endpoint per audience', () => {
  const stack = useStack({
    servers: { alpha: {}, beta: {} },
    extraConfig: {
      auth: {
        api_keys: [
          { id: 'ops-bot', key_sha256: sha256Hex(OPS_KEY), groups: ['staff'] },
          { id: 'guest-bot', key_sha256: sha256Hex(GUEST_KEY) },
        ],
        allow_anonymous: true,
      },
      virtual_servers: {
        // alpha's echo and whoami only, under its own names, echo renamed; staff only.
        support: { servers: ['alpha'], tools: ['echo', 'whoami'], prefix: 'never', tool_overrides: { alpha: { echo: { name: 'say' } } }, allowed_clients: ['staff'] },
        // Everything of beta, for anyone.
        open: { servers: ['be*'], prefix: 'never' },
      },
    },
  });
  const url = (view: string): string => `${stack().baseUrl}/v/${view}/mcp`;

  before(() =>
    waitUntil(
      async () => {
        const c = await connectClient(url('support'), { headers: ops });
        try {
          return (await c.client.listTools()).tools.length > 0;
        } finally {
          await c.close({ terminate: true });
        }
      },
      { timeoutMs: 10_000, intervalMs: 100, what: 'the support endpoint to list tools' },
    ),
  );

  it('shows only what it selects, named its way, and calls it on its server under the server’s own name', async () => {
    const c = await connectClient(url('support'), { headers: ops });
    try {
      assert.deepEqual((await c.client.listTools()).tools.map((t) => t.name).sort(), ['say', 'whoami']);
      assert.equal(textOf(await c.client.callTool({ name: 'say', arguments: { text: 'hi' } })), 'alpha: hi');
      assert.equal(textOf(await c.client.callTool({ name: 'whoami', arguments: {} })), 'alpha');
      // Not selected, renamed away, another server's, a prefix this endpoint does not use: unknown.
      for (const name of ['add', 'echo', 'alpha__echo', 'beta__echo']) {
        await assert.rejects(c.client.callTool({ name, arguments: { text: 'x', a: 1, b: 2 } }), /Unknown tool/, name);
      }
      // /mcp itself is unchanged: every tool, prefixed.
      const main = await connectClient(stack().mcpUrl, { headers: ops });
      try {
        const names = (await main.client.listTools()).tools.map((t) => t.name);
        assert.ok(names.includes('alpha__echo') && names.includes('beta__add') && !names.includes('say'), names.join());
      } finally {
        await main.close({ terminate: true });
      }
    } finally {
      await c.close({ terminate: true });
    }
  });

  it('applies its own access rules: a client outside allowed_clients gets 403, an anonymous one 401 with the challenge, both audited', async () => {
    const refused = await initialize(url('support'), guest);
    assert.equal(refused.status, 403, refused.text);
    assert.match(refused.text, /Forbidden: no access to \/v\/support\/mcp/);
    const anon = await initialize(url('support'), {});
    assert.equal(anon.status, 401);
    assert.match(anon.headers.get('www-authenticate') ?? '', /^Bearer/);
    const audit = stack()
      .processorLogLines()
      .filter((l) => l['event'] === 'mcpgw_access' && l['reason'] === 'client_not_allowed');
    assert.ok(audit.some((l) => l['client_id'] === 'guest-bot'), JSON.stringify(audit));
    // The same guest is welcome where the rules let it in.
    const open = await connectClient(url('open'), { headers: guest });
    try {
      assert.equal(textOf(await open.client.callTool({ name: 'add', arguments: { a: 2, b: 3 } })), '5');
    } finally {
      await open.close({ terminate: true });
    }
  });

  it('keeps its sessions to itself: a session of one endpoint is unknown on every other', async () => {
    const viewSession = (await rawInitialize(url('open'), { headers: ops })).sessionId!;
    const mainSession = (await rawInitialize(stack().mcpUrl, { headers: ops })).sessionId!;
    const list = (where: string, sid: string) => rawRequest(where, { headers: { ...ops, 'mcp-session-id': sid }, body: { jsonrpc: '2.0', id: 1, method: 'tools/list' } });
    assert.equal((await list(url('open'), viewSession)).status, 200);
    assert.equal((await list(stack().mcpUrl, mainSession)).status, 200);
    for (const [where, sid] of [
      [stack().mcpUrl, viewSession],
      [url('support'), viewSession],
      [url('open'), mainSession],
    ] as const) {
      const r = await list(where, sid);
      assert.equal(r.status, 404, `${where} ${sid}: ${r.text}`);
    }
  });

  it('serves the server→client stream like /mcp: a subscribed resource’s updates arrive, under its own URI', async () => {
    const c = await connectClient(url('support'), { headers: ops });
    const heard: string[] = [];
    c.client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => void heard.push(n.params.uri));
    try {
      await c.client.subscribeResource({ uri: 'demo://replicated' });
      await waitUntil(
        async () => {
          await stack().demo['alpha']!.notifyResourceUpdated('demo://replicated');
          return heard.includes('demo://replicated');
        },
        { timeoutMs: 10_000, intervalMs: 200, what: 'the update on the GET stream' },
      );
    } finally {
      await c.close({ terminate: true });
    }
  });

  it('counts its calls in the same metrics as /mcp, under the server’s own tool name', async () => {
    const text = await (await fetch(`${stack().adminUrl}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith('mcp_gateway_requests_total{') && l.includes('server="alpha"') && l.includes('tool="echo"'));
    assert.ok(line !== undefined && Number(line.split(' ').pop()) >= 1, text.split('\n').filter((l) => l.startsWith('mcp_gateway_requests_total')).join('\n'));
  });

  it('speaks 2026-07-28 too: discover, a call, and a listen stream on its own routes', async () => {
    const modern = await modernClient(url('open'), { headers: guest });
    try {
      const found = await modern.discover();
      assert.ok(found !== undefined);
      assert.equal(textOf(await modern.callTool({ name: 'add', arguments: { a: 4, b: 5 } })), '9');
      const sub = await modern.listen({ toolsListChanged: true });
      assert.equal(sub.honoredFilter.toolsListChanged, true);
      await sub.close();
    } finally {
      await modern.close();
    }
  });

  it('answers a virtual server that does not exist with 404', async () => {
    const r = await initialize(url('nope'), ops);
    assert.equal(r.status, 404);
  });
});
