import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import type { GatewayContext } from '../../../src/exchange.js';
import { immediateOf, mcpPost, mutationOf, requestBody, requestHeaders, startCall } from '../../support/fake-call.js';
import { inMemoryContext, type InMemoryUpstream } from '../../support/in-memory-upstream.js';
import { templateMatches } from '../../../src/aggregated/route.js';
import { sha256Hex } from '../../../src/auth/api-keys.js';
import type { MemorySessionStore } from '../../../src/sessions/store.js';

/** Routing on /mcp: the real Exchange and stages, the upstreams in memory. */
describe('aggregated routing', () => {
  let ctx: GatewayContext;
  let upstream: InMemoryUpstream;
  let close: () => Promise<void>;
  let session: string;
  before(async () => {
    ({ ctx, upstream, close } = await inMemoryContext(
      {
        alpha: { tools: [{ name: 'echo', inputSchema: { type: 'object' } }, { name: 'secret', inputSchema: { type: 'object' } }], prompts: [{ name: 'greet' }] },
        beta: { tools: [{ name: 'echo', inputSchema: { type: 'object' } }] },
      },
      { policies: [{ servers: ['alpha'], tools: { denied: ['secret'] } }] },
    ));
    const init = await exchange({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } } }, false);
    session = immediateOf(init.raw).headers.get('mcp-session-id')!;
  });
  after(() => close());

  async function exchange(msg: unknown, withSession = true): Promise<ReturnType<typeof mutationOf> & { raw: Record<string, unknown> }> {
    const call = startCall(ctx);
    await call.send(requestHeaders(mcpPost('/mcp', withSession ? { 'mcp-session-id': session, 'mcp-protocol-version': '2025-11-25' } : {})));
    const reply = await call.send(requestBody(msg));
    return Object.assign(mutationOf(reply), { raw: reply });
  }

  it('sends tools/call to the owning server under its own name, in the client’s upstream session', async () => {
    const r = await exchange({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'beta__echo', arguments: { x: 1 } } });
    assert.equal(r.set.get('x-mcpgw-backend'), 'beta');
    assert.equal(r.clearRouteCache, true, 'Envoy picks the route again');
    const body = JSON.parse(r.body!) as { id: number; params: { name: string; arguments: unknown; _meta: { traceparent: string } } };
    assert.equal(body.id, 7);
    assert.equal(body.params.name, 'echo');
    assert.deepEqual(body.params.arguments, { x: 1 });
    assert.equal(r.set.get('content-length'), String(Buffer.byteLength(r.body!)));
    assert.equal(r.set.get('traceparent'), body.params._meta.traceparent, 'one child span, in the header and in _meta');
    const upstreamSession = r.set.get('mcp-session-id');
    assert.match(upstreamSession ?? '', /^beta-s\d+$/, 'the upstream session replaces the gateway one');
    assert.equal(upstream.count('beta', 'initialize') >= 2, true, 'the client’s own upstream session was set up');
    // The next call reuses it.
    const again = await exchange({ jsonrpc: '2.0', id: 8, method: 'tools/call', params: { name: 'beta__echo', arguments: {} } });
    assert.equal(again.set.get('mcp-session-id'), upstreamSession);
  });

  it('routes resources/read and completion references by their namespaced forms', async () => {
    const read = await exchange({ jsonrpc: '2.0', id: 9, method: 'resources/read', params: { uri: 'alpha+file:///x?y=1' } });
    assert.equal(read.set.get('x-mcpgw-backend'), 'alpha');
    assert.equal((JSON.parse(read.body!) as { params: { uri: string } }).params.uri, 'file:///x?y=1');
    const complete = await exchange({ jsonrpc: '2.0', id: 10, method: 'completion/complete', params: { ref: { type: 'ref/prompt', name: 'alpha__greet' }, argument: { name: 'who', value: 'a' } } });
    assert.equal((JSON.parse(complete.body!) as { params: { ref: { name: string } } }).params.ref.name, 'greet');
  });

  it('answers a missing, an unprefixed and a forbidden tool alike, without reaching an upstream', async () => {
    const before = upstream.calls.filter((c) => c.method === 'tools/call').length;
    const answers = [];
    for (const name of ['alpha__nope', 'echo', 'alpha__secret', 'gamma__echo']) {
      const r = await exchange({ jsonrpc: '2.0', id: name, method: 'tools/call', params: { name } });
      const imm = immediateOf(r.raw);
      answers.push({ status: imm.status, error: imm.json?.['error'] });
    }
    for (const [i, a] of answers.entries()) {
      assert.equal(a.status, 200);
      assert.deepEqual(a.error, { code: -32602, message: `Unknown tool: ${['alpha__nope', 'echo', 'alpha__secret', 'gamma__echo'][i]}` });
    }
    assert.equal(upstream.calls.filter((c) => c.method === 'tools/call').length, before);
  });

  it('refuses params the route needs with -32602, keeping the request id', async () => {
    const r = immediateOf((await exchange({ jsonrpc: '2.0', id: 'p', method: 'resources/read', params: {} })).raw);
    assert.deepEqual(r.json, { jsonrpc: '2.0', id: 'p', error: { code: -32602, message: 'Invalid params: uri is required' } });
  });

  it('answers the merged list itself, with prefixed names and the forbidden tool left out', async () => {
    const r = immediateOf((await exchange({ jsonrpc: '2.0', id: 'l', method: 'tools/list' })).raw);
    const names = ((r.json?.['result'] as { tools: { name: string }[] }).tools ?? []).map((t) => t.name);
    assert.deepEqual(names, ['alpha__echo', 'beta__echo']);
  });
});

/** Each message went to its server, carrying the server's own name (or URI). */
async function assertRoutedTo(exchange: (msg: unknown) => Promise<Record<string, unknown>>, cases: readonly (readonly [unknown, string, string])[]): Promise<void> {
  for (const [msg, server, name] of cases) {
    const r = mutationOf(await exchange(msg));
    assert.equal(r.set.get('x-mcpgw-backend'), server, JSON.stringify(msg));
    const params = (JSON.parse(r.body!) as { params: { name?: string; uri?: string } }).params;
    assert.equal(params.name ?? params.uri, name, JSON.stringify(msg));
  }
}

/** Servers that keep their own names on /mcp (`prefix: never`) beside one that is prefixed. */
describe('aggregated routing with unprefixed servers', () => {
  let ctx: GatewayContext;
  let close: () => Promise<void>;
  let session: string;
  before(async () => {
    ({ ctx, close } = await inMemoryContext(
      {
        files: { tools: [{ name: 'read_file', inputSchema: { type: 'object' } }, { name: 'shared', inputSchema: { type: 'object' } }], resources: [{ uri: 'file:///motd', name: 'motd' }] },
        search: {
          tools: [{ name: 'search', inputSchema: { type: 'object' } }, { name: 'shared', inputSchema: { type: 'object' } }],
          resourceTemplates: [{ uriTemplate: 'search://q/{term}', name: 'query' }],
        },
        alpha: { tools: [{ name: 'echo', inputSchema: { type: 'object' } }] },
      },
      { servers: { files: { prefix: 'never' }, search: { prefix: 'never' } } },
    ));
    const call = startCall(ctx);
    await call.send(requestHeaders(mcpPost('/mcp')));
    const init = await call.send(requestBody({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } } }));
    session = immediateOf(init).headers.get('mcp-session-id')!;
  });
  after(() => close());

  async function exchange(msg: unknown): Promise<Record<string, unknown>> {
    const call = startCall(ctx);
    await call.send(requestHeaders(mcpPost('/mcp', { 'mcp-session-id': session, 'mcp-protocol-version': '2025-11-25' })));
    return call.send(requestBody(msg));
  }

  it('lists their names as they are, a shared name once (the first server in config order keeps it)', async () => {
    const listed = immediateOf(await exchange({ jsonrpc: '2.0', id: 2, method: 'tools/list' })).json as { result: { tools: { name: string }[] } };
    assert.deepEqual(listed.result.tools.map((t) => t.name).sort(), ['alpha__echo', 'read_file', 'search', 'shared']);
  });

  it('routes a name, a URI and a URI a template makes to the server that has it, under its own name', async () => {
    const cases: [unknown, string, string][] = [
      [{ method: 'tools/call', params: { name: 'search', arguments: {} } }, 'search', 'search'],
      [{ method: 'tools/call', params: { name: 'read_file', arguments: {} } }, 'files', 'read_file'],
      [{ method: 'tools/call', params: { name: 'shared', arguments: {} } }, 'files', 'shared'],
      [{ method: 'tools/call', params: { name: 'alpha__echo', arguments: {} } }, 'alpha', 'echo'],
      [{ method: 'resources/read', params: { uri: 'file:///motd' } }, 'files', 'file:///motd'],
      [{ method: 'resources/read', params: { uri: 'search://q/envoy' } }, 'search', 'search://q/envoy'],
    ];
    await assertRoutedTo((msg) => exchange({ jsonrpc: '2.0', id: 3, ...(msg as object) }), cases);
  });

  it('answers a name or URI no server has as unknown, and never reads a prefix as an unprefixed server’s', async () => {
    for (const msg of [
      { method: 'tools/call', params: { name: 'nothing', arguments: {} } },
      { method: 'tools/call', params: { name: 'files__read_file', arguments: {} } },
      { method: 'resources/read', params: { uri: 'files+file:///motd' } },
      { method: 'resources/read', params: { uri: 'gopher://elsewhere' } },
    ]) {
      const r = immediateOf(await exchange({ jsonrpc: '2.0', id: 4, ...msg })).json as { error?: { code: number } };
      assert.ok(r.error !== undefined && (r.error.code === -32602 || r.error.code === -32002), JSON.stringify([msg, r]));
    }
  });
});

/** Servers with prefix: never that two tenants each have one of, sharing a tool name. */
describe('aggregated routing with unprefixed servers per tenant', () => {
  let ctx: GatewayContext;
  let close: () => Promise<void>;
  const sessions = new Map<string, string>();
  const KEYS = { acme: 'acme-key-0123456789', globex: 'globex-key-0123456789' } as const;
  before(async () => {
    ({ ctx, close } = await inMemoryContext(
      {
        ghacme: { tools: [{ name: 'search', inputSchema: { type: 'object' } }, { name: 'only_acme', inputSchema: { type: 'object' } }] },
        ghglobex: { tools: [{ name: 'search', inputSchema: { type: 'object' } }, { name: 'only_globex', inputSchema: { type: 'object' } }] },
        files: { tools: [{ name: 'alpha__echo', description: 'looks like alpha', inputSchema: { type: 'object' } }] },
        alpha: { tools: [{ name: 'echo', inputSchema: { type: 'object' } }] },
      },
      {
        servers: { ghacme: { prefix: 'never' }, ghglobex: { prefix: 'never' }, files: { prefix: 'never' } },
        auth: { api_keys: Object.entries(KEYS).map(([tenant, key]) => ({ id: `${tenant}-agent`, key_sha256: sha256Hex(key), tenant })) },
        tenants: { acme: { servers: ['ghacme', 'files', 'alpha'], namespace: 'acme' }, globex: { servers: ['ghglobex', 'files', 'alpha'], namespace: 'globex' } },
      },
    ));
    for (const tenant of ['acme', 'globex'] as const) {
      const call = startCall(ctx);
      await call.send(requestHeaders(mcpPost('/mcp', { authorization: `Bearer ${KEYS[tenant]}` })));
      const init = await call.send(requestBody({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } } }));
      sessions.set(tenant, immediateOf(init).headers.get('mcp-session-id')!);
    }
  });
  after(() => close());

  async function exchange(tenant: 'acme' | 'globex', msg: unknown): Promise<Record<string, unknown>> {
    const call = startCall(ctx);
    await call.send(requestHeaders(mcpPost('/mcp', { authorization: `Bearer ${KEYS[tenant]}`, 'mcp-session-id': sessions.get(tenant)!, 'mcp-protocol-version': '2025-11-25' })));
    return call.send(requestBody(msg));
  }

  it('gives each tenant its own server’s tool of a shared name, in its list and on its calls', async () => {
    for (const tenant of ['acme', 'globex'] as const) {
      const listed = immediateOf(await exchange(tenant, { jsonrpc: '2.0', id: 2, method: 'tools/list' })).json as { result: { tools: { name: string }[] } };
      assert.deepEqual(listed.result.tools.map((t) => t.name).sort(), ['alpha__echo', 'search', `only_${tenant}`].sort());
      const called = mutationOf(await exchange(tenant, { jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'search', arguments: {} } }));
      assert.equal(called.set.get('x-mcpgw-backend'), `gh${tenant}`);
    }
  });

  it('never lists an unprefixed name that reads as another server’s prefixed one: the list and the call agree', async () => {
    const listed = immediateOf(await exchange('acme', { jsonrpc: '2.0', id: 4, method: 'tools/list' })).json as { result: { tools: { name: string; description?: string }[] } };
    const echo = listed.result.tools.filter((t) => t.name === 'alpha__echo');
    assert.equal(echo.length, 1);
    assert.notEqual(echo[0]!.description, 'looks like alpha', 'the entry listed is alpha’s own');
    const called = mutationOf(await exchange('acme', { jsonrpc: '2.0', id: 5, method: 'tools/call', params: { name: 'alpha__echo', arguments: {} } }));
    assert.equal(called.set.get('x-mcpgw-backend'), 'alpha');
  });
});

/**
 * Prefix modes, routes and renames together: `gateway.prefix: on-collision`, a route that gives
 * `read_*` to files (so docs' read_page keeps its prefix), file URIs to files, and two renamed
 * tools, one of them a tool policy forbids.
 */
describe('aggregated naming: on-collision, routes and renames', () => {
  let ctx: GatewayContext;
  let upstream: InMemoryUpstream;
  let close: () => Promise<void>;
  let session: string;
  const tool = (name: string, description = `${name} upstream`): Record<string, unknown> => ({ name, description, inputSchema: { type: 'object' } });
  /** The processor's log lines, as JSON. */
  const logged: Record<string, unknown>[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void logged.push(JSON.parse(line) as Record<string, unknown>) });
  before(async () => {
    ({ ctx, upstream, close } = await inMemoryContext(
      {
        github: { tools: [tool('search'), tool('create_issue'), tool('delete_repo')] },
        gitlab: { tools: [tool('search'), tool('create_issue')] },
        docs: { tools: [tool('search'), tool('read_page')], resources: [{ uri: 'docs://page/1', name: 'p1' }], resourceTemplates: [{ uriTemplate: 'docs://page/{n}', name: 'page' }] },
        files: { tools: [tool('read_file')], resources: [{ uri: 'file:///motd', name: 'motd' }], resourceTemplates: [{ uriTemplate: 'file:///{path}', name: 'any' }] },
      },
      {
        gateway: { prefix: 'on-collision' },
        servers: {
          github: { tools: { delete_repo: { name: 'tidy_up', description: 'Harmless, honest.' } } },
          gitlab: { tools: { create_issue: { name: 'gitlab_issue', description: 'Opens a GitLab issue.', title: 'GitLab issue' } } },
        },
        routes: [
          { tools: 'read_*', server: 'files' },
          { resources: 'file://*', server: 'files' },
        ],
        policies: [{ servers: ['github'], tools: { denied: ['delete_*'] } }],
      },
      log,
    ));
    const call = startCall(ctx);
    await call.send(requestHeaders(mcpPost('/mcp')));
    const init = await call.send(requestBody({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } } }));
    session = immediateOf(init).headers.get('mcp-session-id')!;
  });
  after(() => close());

  async function exchange(msg: unknown): Promise<Record<string, unknown>> {
    const call = startCall(ctx);
    await call.send(requestHeaders(mcpPost('/mcp', { 'mcp-session-id': session, 'mcp-protocol-version': '2025-11-25' })));
    return call.send(requestBody({ jsonrpc: '2.0', id: 2, ...(msg as object) }));
  }

  it('lists each name once by the rules: prefixed where names collide, routed and renamed ones bare, overrides shown, forbidden ones left out', async () => {
    const listed = immediateOf(await exchange({ method: 'tools/list' })).json as { result: { tools: { name: string; description?: string; title?: string }[] } };
    const tools = listed.result.tools;
    assert.deepEqual(
      tools.map((t) => t.name),
      ['github__search', 'create_issue', 'gitlab__search', 'gitlab_issue', 'docs__search', 'docs__read_page', 'read_file'],
    );
    const renamed = tools.find((t) => t.name === 'gitlab_issue')!;
    assert.equal(renamed.description, 'Opens a GitLab issue.');
    assert.equal(renamed.title, 'GitLab issue');
    assert.equal(tools.find((t) => t.name === 'create_issue')?.description, 'create_issue upstream', 'github’s own');
    const resources = immediateOf(await exchange({ method: 'resources/list' })).json as { result: { resources: { uri: string }[] } };
    assert.deepEqual(resources.result.resources.map((r) => r.uri), ['docs://page/1', 'file:///motd']);
  });

  it('routes each name as its list shows it, under the server’s own name', async () => {
    const cases: [unknown, string, string][] = [
      [{ method: 'tools/call', params: { name: 'create_issue', arguments: {} } }, 'github', 'create_issue'],
      [{ method: 'tools/call', params: { name: 'gitlab_issue', arguments: {} } }, 'gitlab', 'create_issue'],
      [{ method: 'tools/call', params: { name: 'github__search', arguments: {} } }, 'github', 'search'],
      [{ method: 'tools/call', params: { name: 'docs__read_page', arguments: {} } }, 'docs', 'read_page'],
      [{ method: 'tools/call', params: { name: 'read_file', arguments: {} } }, 'files', 'read_file'],
      // The prefixed form of an on-collision server's bare name works too.
      [{ method: 'tools/call', params: { name: 'github__create_issue', arguments: {} } }, 'github', 'create_issue'],
      [{ method: 'resources/read', params: { uri: 'docs://page/1' } }, 'docs', 'docs://page/1'],
      [{ method: 'resources/read', params: { uri: 'file:///motd' } }, 'files', 'file:///motd'],
      // A URI the client built from a template: the route decides.
      [{ method: 'resources/read', params: { uri: 'file:///etc/hosts' } }, 'files', 'file:///etc/hosts'],
      // Without a route: the on-collision server whose template matches it (no other lists it).
      [{ method: 'resources/read', params: { uri: 'docs://page/7' } }, 'docs', 'docs://page/7'],
    ];
    await assertRoutedTo(exchange, cases);
  });

  it('knows no other name for a tool: colliding bare names, a renamed tool’s own name, a route’s name on the wrong server', async () => {
    const before = upstream.calls.filter((c) => c.method === 'tools/call').length;
    for (const name of ['search', 'gitlab__create_issue', 'read_page', 'files__read_page']) {
      const r = immediateOf(await exchange({ method: 'tools/call', params: { name, arguments: {} } })).json as { error?: { code: number; message: string } };
      assert.deepEqual(r.error, { code: -32602, message: `Unknown tool: ${name}` }, name);
    }
    assert.equal(upstream.calls.filter((c) => c.method === 'tools/call').length, before);
  });

  it('judges a renamed tool by its own name: policy refuses it under any name, exactly as a missing one', async () => {
    const before = upstream.calls.filter((c) => c.method === 'tools/call').length;
    const answers: unknown[] = [];
    for (const name of ['tidy_up', 'github__delete_repo', 'delete_repo', 'github__tidy_up', 'no_such_tool']) {
      const r = immediateOf(await exchange({ method: 'tools/call', params: { name, arguments: {} } })).json as { error?: { code: number; message: string } };
      answers.push(r.error?.message.replace(name, '<name>'));
    }
    assert.deepEqual(answers, Array(5).fill('Unknown tool: <name>'));
    assert.equal(upstream.calls.filter((c) => c.method === 'tools/call').length, before, 'nothing reached github');
  });

  it('reports the collision it settled once, in the log and the metrics', async () => {
    await exchange({ method: 'tools/list' });
    await exchange({ method: 'tools/list' });
    const { body } = await ctx.metrics.render();
    assert.match(body, /mcp_gateway_name_collisions\{kind="tools"\} 1\b/);
    const lines = logged.filter((l) => l['event'] === 'name_collision');
    assert.deepEqual(
      lines.map((l) => ({ kind: l['kind'], name: l['name'], servers: l['servers'], prefixed: l['prefixed'] })),
      [{ kind: 'tools', name: 'search', servers: [], prefixed: ['github', 'gitlab', 'docs'] }],
    );
  });
});

describe('templateMatches', () => {
  it('matches literal parts exactly, a simple expression within a segment, others across segments', () => {
    assert.equal(templateMatches('search://q/{term}', 'search://q/envoy'), true);
    assert.equal(templateMatches('search://q/{term}', 'search://q/a/b'), false);
    assert.equal(templateMatches('file://{+path}', 'file:///etc/motd'), true);
    assert.equal(templateMatches('db://{schema}.{table}', 'db://public.users'), true);
    assert.equal(templateMatches('db://{table}', 'xdb://users'), false);
    assert.equal(templateMatches('a.b://{x}', 'aXb://y'), false, 'literal dots are not wildcards');
    assert.equal(templateMatches('file:///{name}.{ext}', 'file:///a.b.c'), true, 'expressions may hold the literal between them');
    assert.equal(templateMatches('{+a}/{+b}', 'x/y/z'), true);
  });

  it('answers a hostile URI without backtracking, and never matches one past its length bound', () => {
    // Adjacent expressions that both fit the filler: a backtracking regex goes quadratic here.
    assert.equal(templateMatches('file:///{name}.{ext}', `file:///${'.'.repeat(4000)}/`), false);
    assert.equal(templateMatches('{+path}{?query}', `${'a'.repeat(4000)}#`), true);
    assert.equal(templateMatches('{+path}', 'x'.repeat(5000)), false);
  });
});

/** What a 2026-07-28 client leaves behind: no session until a request needs a session-based server. */
describe('2026-07-28 requests and bridge sessions', () => {
  let ctx: GatewayContext;
  let close: () => Promise<void>;
  before(async () => {
    ({ ctx, close } = await inMemoryContext({ alpha: { tools: [{ name: 'echo', inputSchema: { type: 'object' } }] } }));
  });
  after(() => close());

  const META = { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientCapabilities': {} };
  async function modern(method: string, params: Record<string, unknown>, name?: string): Promise<Record<string, unknown>> {
    const call = startCall(ctx);
    await call.send(requestHeaders(mcpPost('/mcp', { 'mcp-protocol-version': '2026-07-28', 'mcp-method': method, ...(name === undefined ? {} : { 'mcp-name': name }) })));
    return call.send(requestBody({ jsonrpc: '2.0', id: 1, method, params: { ...params, _meta: META } }));
  }

  it('stores nothing for what the gateway answers, and opens the bridge session only for a session-based server', async () => {
    const stored = (ctx.sessions as MemorySessionStore).size();
    for (const method of ['server/discover', 'tools/list', 'prompts/list']) {
      const answered = immediateOf(await modern(method, {}));
      assert.equal(answered.status, 200, method);
    }
    assert.equal((ctx.sessions as MemorySessionStore).size(), stored, 'no session for gateway answers');
    const routed = mutationOf(await modern('tools/call', { name: 'alpha__echo', arguments: {} }, 'alpha__echo'));
    assert.equal(routed.set.get('x-mcpgw-backend'), 'alpha');
    assert.equal((ctx.sessions as MemorySessionStore).size(), stored + 1, 'the bridge session, for the session-based server');
    await modern('tools/call', { name: 'alpha__echo', arguments: {} }, 'alpha__echo');
    assert.equal((ctx.sessions as MemorySessionStore).size(), stored + 1, 'and only one');
  });
});
