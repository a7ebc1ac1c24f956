/**
 * Lists on /mcp are what each client would see directly: tools a server registers only for
 * clients with sampling, elicitation or roots; resources and tools a server creates in one
 * session. Through a real Envoy, with an SDK server whose lists differ per client, the reference
 * server-everything, and SDK clients.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { startEverythingServer, type EverythingServer } from '../support/everything.js';
import { connectClient, type ConnectClientOptions, type ConnectedClient } from '../support/mcp-client.js';
import { waitUntil } from '../support/proc.js';
import { useStack, type DemoServerHandle } from '../support/stack.js';

const SAMPLER: ConnectClientOptions = { onSampling: () => ({ role: 'assistant', content: { type: 'text', text: 'ok' }, model: 'test' }) };
const ASKER: ConnectClientOptions = { onElicitation: () => ({ action: 'decline' }), roots: [] };

async function toolNames(c: ConnectedClient): Promise<string[]> {
  return (await c.client.listTools()).tools.map((t) => t.name).sort();
}

/** alpha's part of an aggregated list, in alpha's own names. */
function alphaPart(names: readonly string[]): string[] {
  return names.filter((n) => n.startsWith('alpha__')).map((n) => n.slice('alpha__'.length));
}

/** How many `tools/list` requests alpha has answered. */
function toolLists(alpha: DemoServerHandle): number {
  return alpha.requests().filter((r) => r.rpcMethod === 'tools/list').length;
}

describe('lists that differ per client', () => {
  const stack = useStack({ servers: { alpha: { demoOptions: { perClientLists: true } }, beta: {} } });

  it('shows each client the tools the server offers to a client with its capabilities, and lets it call them', async () => {
    const alpha = stack().demo['alpha']!;
    for (const opts of [{}, SAMPLER, ASKER]) {
      const direct = await connectClient(alpha.url, opts);
      const via = await connectClient(stack().mcpUrl, opts);
      try {
        const expected = await toolNames(direct);
        assert.deepEqual(alphaPart(await toolNames(via)), expected, `capabilities ${JSON.stringify(Object.keys(opts))}`);
        for (const gated of ['needs_sampling', 'needs_elicitation', 'needs_roots']) {
          const call = via.client.callTool({ name: `alpha__${gated}`, arguments: {} });
          if (expected.includes(gated)) assert.match(JSON.stringify(await call), new RegExp(`alpha: ${gated.slice(6)} ok`));
          else await assert.rejects(call, /Unknown tool/);
        }
      } finally {
        await direct.close({ terminate: true });
        await via.close({ terminate: true });
      }
    }
  });

  it('costs one catalog per capability set, not a list call per client', async () => {
    const alpha = stack().demo['alpha']!;
    // Warm both catalogs, then count.
    for (const opts of [{}, SAMPLER]) {
      const c = await connectClient(stack().mcpUrl, opts);
      await c.client.listTools();
      await c.close({ terminate: true });
    }
    const before = toolLists(alpha);
    const clients = await Promise.all([{}, SAMPLER, {}, SAMPLER, SAMPLER].map((o) => connectClient(stack().mcpUrl, o)));
    try {
      const lists = await Promise.all(clients.map((c) => toolNames(c)));
      assert.ok(lists[1]!.includes('alpha__needs_sampling') && !lists[0]!.includes('alpha__needs_sampling'));
      assert.equal(toolLists(alpha), before, 'five clients of two capability sets listed from the cached catalogs');
    } finally {
      await Promise.all(clients.map((c) => c.close({ terminate: true })));
    }
  });

  it('shows a session the resources the server made for it, and no other session', async () => {
    const owner = await connectClient(stack().mcpUrl);
    const other = await connectClient(stack().mcpUrl);
    try {
      await other.client.callTool({ name: 'alpha__echo', arguments: { text: 'other uses alpha too' } });
      const result = await owner.client.callTool({ name: 'alpha__remember', arguments: { key: 'k1', text: 'hello' } });
      assert.match(JSON.stringify(result), /"uri":"alpha\+demo:\/\/session\/k1"/);
      const uris = async (c: ConnectedClient): Promise<string[]> => (await c.client.listResources()).resources.map((r) => r.uri);
      assert.ok((await uris(owner)).includes('alpha+demo://session/k1'), 'the owner lists it');
      assert.ok((await uris(owner)).includes('alpha+demo://shared/readme'), 'beside what every session sees');
      assert.ok((await uris(owner)).some((u) => u.startsWith('beta+')), 'and beside the other servers’ resources');
      const read = await owner.client.readResource({ uri: 'alpha+demo://session/k1' });
      assert.equal((read.contents[0] as { text?: string }).text, 'hello');
      assert.ok(!(await uris(other)).includes('alpha+demo://session/k1'), 'another session does not');

      // A second one in the same session shows at once, whatever the catalog's TTL.
      await owner.client.callTool({ name: 'alpha__remember', arguments: { key: 'k2', text: 'again' } });
      assert.ok((await uris(owner)).includes('alpha+demo://session/k2'));
    } finally {
      await owner.close({ terminate: true });
      await other.close({ terminate: true });
    }
  });

  it('lets a session call a tool the server added in it at once, and lists it there only', async () => {
    const owner = await connectClient(stack().mcpUrl);
    const other = await connectClient(stack().mcpUrl);
    try {
      await other.client.callTool({ name: 'alpha__echo', arguments: { text: 'x' } });
      assert.match(JSON.stringify(await owner.client.callTool({ name: 'alpha__grow', arguments: { name: 'sprout' } })), /grown sprout/);
      const called = await owner.client.callTool({ name: 'alpha__sprout', arguments: {} });
      assert.match(JSON.stringify(called), /alpha: sprout in this session/);
      assert.ok((await toolNames(owner)).includes('alpha__sprout'));
      assert.ok(!(await toolNames(other)).includes('alpha__sprout'));
      await assert.rejects(other.client.callTool({ name: 'alpha__sprout', arguments: {} }), /Unknown tool/);
      // The session's own list holds what the catalog holds too.
      const mine = await toolNames(owner);
      for (const t of await toolNames(other)) assert.ok(mine.includes(t), t);
    } finally {
      await owner.close({ terminate: true });
      await other.close({ terminate: true });
    }
  });
});

describe('a change announced to every session', () => {
  // A short catalog TTL, so a session that kept a list of its own would read it again.
  const stack = useStack({ servers: { alpha: { demoOptions: { perClientLists: true } } }, extraConfig: { cache: { 'tools/list': { ttl: 1 } } } });

  it('costs each session that heard it one list call, then the shared catalog serves it again', async () => {
    const alpha = stack().demo['alpha']!;
    const c = await connectClient(stack().mcpUrl);
    try {
      await c.client.callTool({ name: 'alpha__echo', arguments: { text: 'x' } });
      const call = alpha.requests().filter((r) => r.rpcMethod === 'tools/call').at(-1)!;
      const mine = call.headers['mcp-session-id'];
      const readInMySession = (): number => alpha.requests().filter((r) => r.rpcMethod === 'tools/list' && r.headers['mcp-session-id'] === mine).length;
      // A change for every session is announced in this one too.
      alpha.addTool('everyone');
      await waitUntil(() => c.notifications.some((n) => n.method === 'notifications/tools/list_changed'), {
        timeoutMs: 15_000,
        intervalMs: 50,
        what: 'the change reaches the client',
      });
      assert.ok((await toolNames(c)).includes('alpha__everyone'));
      assert.equal(readInMySession(), 1, 'the session’s list was read once, to compare');
      await new Promise((r) => setTimeout(r, 1_300));
      for (let i = 0; i < 3; i++) assert.ok((await toolNames(c)).includes('alpha__everyone'));
      assert.equal(readInMySession(), 1, 'past the TTL the catalog, read in the gateway’s own session, serves it');
    } finally {
      await c.close({ terminate: true });
    }
  });
});

describe('server-everything’s per-client tools and per-session resources', () => {
  let everything: EverythingServer | null = null;
  const stack = useStack(async () => {
    everything = await startEverythingServer();
    return { servers: { everything: { url: everything.url } } };
  });
  after(() => everything?.close());

  it('lists for each client what it lists directly, and a session’s gzipped file for that session only', async () => {
    const upstream = everything!.url;
    const part = (names: readonly string[]): string[] => names.filter((n) => n.startsWith('everything__')).map((n) => n.slice('everything__'.length));
    for (const opts of [{}, SAMPLER, ASKER]) {
      const direct = await connectClient(upstream, opts);
      const via = await connectClient(stack().mcpUrl, opts);
      try {
        assert.deepEqual(part(await toolNames(via)), await toolNames(direct), `capabilities ${JSON.stringify(Object.keys(opts))}`);
      } finally {
        await direct.close({ terminate: true });
        await via.close({ terminate: true });
      }
    }
    const owner = await connectClient(stack().mcpUrl);
    const other = await connectClient(stack().mcpUrl);
    try {
      const data = `data:text/plain;base64,${Buffer.from('hello from a test').toString('base64')}`;
      const result = await owner.client.callTool({ name: 'everything__gzip-file-as-resource', arguments: { name: 'hello.txt.gz', data, outputType: 'resourceLink' } });
      const uri = (result.content as { type: string; uri?: string }[]).find((c) => c.type === 'resource_link')?.uri ?? '';
      assert.ok(uri.startsWith('everything+'), JSON.stringify(result));
      const uris = async (c: ConnectedClient): Promise<string[]> => (await c.client.listResources()).resources.map((r) => r.uri);
      assert.ok((await uris(owner)).includes(uri), 'the session that made it lists it');
      const read = await owner.client.readResource({ uri });
      assert.equal(read.contents[0]?.uri, uri);
      assert.ok(!(await uris(other)).includes(uri), 'no other session does');
    } finally {
      await owner.close({ terminate: true });
      await other.close({ terminate: true });
    }
  });
});
