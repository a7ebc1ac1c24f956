import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, parseConfigText } from '../../../src/config/load.js';
import { compileConfig } from '../../../src/config/runtime.js';
import { durationMs } from '../../../src/lib/duration.js';

function errorOf(yaml: string, env: NodeJS.ProcessEnv = {}): string {
  try {
    parseConfigText(yaml, env);
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.message;
  }
  assert.fail('expected the config to be rejected');
}

const MINIMAL = 'servers:\n  alpha:\n    url: http://127.0.0.1:3001/mcp\n';

describe('config loading', () => {
  it('fills every default from a minimal file', () => {
    const c = parseConfigText(MINIMAL, {});
    assert.equal(c.gateway.listen, '127.0.0.1:8080');
    assert.equal(c.gateway.processor, '127.0.0.1:9001');
    assert.equal(c.gateway.admin, '127.0.0.1:9090');
    assert.equal(c.gateway.envoy_admin, '127.0.0.1:9901');
    assert.equal(c.gateway.tool_separator, '__');
    assert.equal(c.servers['alpha']?.auth_required, false);
    assert.equal(c.cache['tools/list'].ttl, 60);
    assert.equal(c.gateway.max_sessions, 10_000);
    assert.equal(c.gateway.max_sessions_per_client, 100);
    assert.equal(c.gateway.max_client_metadata_bytes, 16_384);
  });

  it('accepts the seed shapes for servers', () => {
    const c = parseConfigText(
      `servers:
  database:
    url: http://mcp-db:3000/mcp
    capabilities: [tools]
    auth_required: true
    rate_limit: 100/min
  filesystem:
    url: https://mcp-fs:3000/mcp
    capabilities: [tools, resources]
    allowed_clients: [internal]
    fallback: [https://mcp-fs-2:3000/mcp]
    strategy: failover
gateway:
  processor: [127.0.0.1:9001, 127.0.0.1:9002]
redis:
  url: redis://127.0.0.1:6379
`,
      {},
    );
    assert.deepEqual(c.servers['filesystem']?.allowed_clients, ['internal']);
    assert.deepEqual(c.gateway.processor, ['127.0.0.1:9001', '127.0.0.1:9002']);
  });

  it('takes the seed’s failover shape: primary beside url, paths defaulted, weighted endpoints', () => {
    const c = parseConfigText(
      `servers:
  database:
    primary: http://mcp-db-1:3000
    fallback:
      - http://mcp-db-2:3000
      - {url: http://mcp-db-3:3000, weight: 3}
    strategy: weighted
    weight: 2
  root:
    url: http://root:3000/
`,
      {},
    );
    const db = c.servers['database']!;
    // One shape downstream: url, with the MCP path a URL without one means.
    assert.equal(db.url, 'http://mcp-db-1:3000/mcp');
    assert.equal('primary' in db, false);
    assert.deepEqual(db.fallback, ['http://mcp-db-2:3000/mcp', { url: 'http://mcp-db-3:3000/mcp', weight: 3 }]);
    assert.equal(c.servers['root']?.url, 'http://root:3000/', 'an explicit / is the root, not a missing path');
    // What parsing gives back parses again to itself (tests and tools write configs back out).
    assert.deepEqual(parseConfigText(JSON.stringify(c), {}).servers, c.servers);
    const rc = compileConfig(c);
    assert.equal(rc.servers.get('database')?.path, '/mcp');
  });

  it('refuses half-given endpoints and weights outside strategy weighted, naming the field', () => {
    assert.match(errorOf('servers:\n  a:\n    capabilities: [tools]\n'), /exactly one of url and primary[^]*servers\.a\.url/);
    assert.match(errorOf('servers:\n  a:\n    url: http://x/mcp\n    primary: http://y/mcp\n'), /exactly one of url and primary[^]*servers\.a\.url/);
    assert.match(errorOf(`${MINIMAL}    weight: 2\n`), /weight needs strategy: weighted[^]*servers\.alpha\.weight/);
    assert.match(
      errorOf(`${MINIMAL}    fallback: [{url: http://127.0.0.1:3002/mcp, weight: 2}]\n`),
      /weight needs strategy: weighted[^]*servers\.alpha\.fallback\[0\]\.weight/,
    );
    assert.match(errorOf(`${MINIMAL}    strategy: weighted\n    weight: 0\n`), /servers\.alpha\.weight/);
    // A fallback without a path is at /mcp too: same path as a url at /mcp, not as one elsewhere.
    parseConfigText('servers:\n  a:\n    url: http://x:1/mcp\n    fallback: [http://y:1]\n', {});
    assert.match(errorOf('servers:\n  a:\n    url: http://x:1/other\n    fallback: [http://y:1]\n'), /same scheme and path[^]*servers\.a\.fallback\[0\]/);
  });

  it('refuses the name collisions the config alone shows, naming the field', () => {
    const two = 'servers:\n  a:\n    url: http://a/mcp\n  b:\n    url: http://b/mcp\n';
    assert.match(
      errorOf(`${two}    tools: {x: {name: same}}\n  c:\n    url: http://c/mcp\n    tools: {y: {name: same}}\n`),
      /"same" is already the new name of b's x[^]*servers\.c\.tools\.y\.name/,
    );
    assert.match(errorOf(`${two}    tools: {x: {name: a__x}}\n`), /reads as a's prefixed name[^]*servers\.b\.tools\.x\.name/);
    // A never server's prefix is not one: its own names may look like that.
    parseConfigText('servers:\n  a:\n    url: http://a/mcp\n    prefix: never\n  b:\n    url: http://b/mcp\n    tools: {x: {name: a__x}}\n', {});
    assert.match(errorOf(`${two}    tools: {x: {name: search_all}}\nroutes:\n  - {tools: "search_*", server: a}\n`), /matches the route search_\* to a[^]*servers\.b\.tools\.x\.name/);
    assert.match(errorOf(`${two}routes:\n  - {tools: "x*", server: nope}\n`), /"nope" is not a configured server[^]*routes\[0\]\.server/);
    assert.match(errorOf(`${two}routes:\n  - {tools: "x*", prompts: "y", server: a}\n`), /exactly one of tools, prompts and resources[^]*routes\[0\]/);
    assert.match(errorOf(`${two}    tools: {x: {}}\n`), /give name, description or title[^]*servers\.b\.tools\.x/);
    assert.match(errorOf(`${two}    tools: {x: {name: "has space"}}\n`), /servers\.b\.tools\.x\.name/);
    assert.match(errorOf(`${two}    prefix: sometimes\n`), /servers\.b\.prefix/);
    const ok = parseConfigText(`${two}    prefix: never\ngateway:\n  prefix: on-collision\nroutes:\n  - {resources: "file://*", server: a}\n`, {});
    assert.equal(ok.gateway.prefix, 'on-collision');
    assert.equal(ok.servers['a']?.prefix, undefined, 'a server without its own mode takes the gateway’s');
  });

  it('checks virtual servers against the servers, tenants and names they use, naming the field', () => {
    const two = 'servers:\n  a:\n    url: http://a/mcp\n  b:\n    url: http://b/mcp\n';
    assert.match(errorOf(`${two}virtual_servers:\n  v:\n    servers: [nope*]\n`), /matches no configured server[^]*virtual_servers\.v\.servers/);
    assert.match(errorOf(`${two}virtual_servers:\n  v:\n    servers: [a]\n    tool_overrides: {b: {x: {name: y}}}\n`), /not one of this virtual server's servers[^]*virtual_servers\.v\.tool_overrides\.b/);
    assert.match(errorOf(`${two}virtual_servers:\n  v:\n    servers: [a]\n    tenants: [acme]\n`), /"acme" is not a configured tenant[^]*virtual_servers\.v\.tenants\[0\]/);
    // Two tools under one name within the virtual server: its overrides clash with a server's own.
    assert.match(
      errorOf(`${two}    tools: {x: {name: same}}\nvirtual_servers:\n  v:\n    servers: ['*']\n    tool_overrides: {a: {y: {name: same}}}\n`),
      /"same" is already the new name[^]*virtual_servers\.v\.tool_overrides\.\w\.\w\.name/,
    );
    assert.match(errorOf(`${two}virtual_servers:\n  Bad:\n    servers: [a]\n`), /virtual_servers/);
    const ok = parseConfigText(`${two}virtual_servers:\n  v:\n    servers: ['*']\n    tools: [a/echo, 'b/*']\n`, {});
    assert.deepEqual([...compileConfig(ok).viewPaths.keys()], ['/v/v/mcp']);
    assert.deepEqual(compileConfig(ok).viewPaths.get('/v/v/mcp')?.servers, ['a', 'b']);
  });

  it('rejects unknown keys and names the path', () => {
    assert.match(errorOf(`${MINIMAL}    colour: blue\n`), /servers\.alpha/);
    assert.match(errorOf(`${MINIMAL}    colour: blue\n`), /colour/);
    assert.match(errorOf(`${MINIMAL}gateway:\n  lisen: 127.0.0.1:1\n`), /lisen/);
    assert.match(errorOf(`${MINIMAL}surprise: 1\n`), /surprise/);
  });

  it('rejects bad values and names the field', () => {
    assert.match(errorOf('servers:\n  alpha:\n    url: ftp://x/mcp\n'), /servers\.alpha\.url/);
    assert.match(errorOf(`${MINIMAL}    rate_limit: lots\n`), /servers\.alpha\.rate_limit/);
    assert.match(errorOf(`${MINIMAL}gateway:\n  listen: 127.0.0.1:99999\n`), /gateway\.listen/);
    assert.match(errorOf(`${MINIMAL}gateway:\n  tool_separator: "/"\n`), /gateway\.tool_separator/);
    assert.match(errorOf('servers:\n  Bad_Name:\n    url: http://x/mcp\n'), /Bad_Name|servers/);
    assert.match(errorOf('servers: {}\n'), /at least one server/);
    assert.match(errorOf('servers:\n  a:\n    url: http://x/mcp\n  a-b:\n    url: http://y/mcp\ngateway:\n  tool_separator: "-"\n'), /ambiguous/);
    assert.match(errorOf(`${MINIMAL}gateway:\n  max_sessions: 50\n`), /more than max_sessions[^]*at gateway\.max_sessions_per_client/);
    assert.match(errorOf(`${MINIMAL}gateway:\n  max_sessions: 0\n`), /gateway\.max_sessions/);
    assert.match(errorOf(`${MINIMAL}gateway:\n  max_client_metadata_bytes: 100\n`), /gateway\.max_client_metadata_bytes/);
    assert.match(errorOf('servers: [\n'), /not valid YAML/);
    assert.match(errorOf('servers:\n  a:\n    url: http://x/mcp\n  a:\n    url: http://y/mcp\n'), /not valid YAML/);
  });

  it('substitutes ${ENV} and names the field when a variable is missing', () => {
    const c = parseConfigText('servers:\n  alpha:\n    url: http://${HOST}:${PORT:-3001}/mcp\n', { HOST: 'db.internal' });
    assert.equal(c.servers['alpha']?.url, 'http://db.internal:3001/mcp');
    assert.match(errorOf('servers:\n  alpha:\n    url: http://${NOPE}/mcp\n'), /servers\.alpha\.url: environment variable NOPE is not set/);
  });

  it('compiles origin and host matchers', () => {
    const rc = compileConfig(parseConfigText(MINIMAL, {}));
    assert.equal(rc.originAllowed('http://localhost:6274'), true);
    assert.equal(rc.originAllowed('http://evil.example'), false);
    assert.equal(rc.originAllowed('http://localhost.evil.example'), false);
    assert.ok(rc.hostAllowed !== null);
    assert.equal(rc.hostAllowed('127.0.0.1:8080'), true);
    assert.equal(rc.hostAllowed('[::1]:8080'), true);
    assert.equal(rc.hostAllowed('evil.example:8080'), false);
    const open = compileConfig(parseConfigText(`${MINIMAL}gateway:\n  listen: 0.0.0.0:8080\n`, {}));
    assert.equal(open.hostAllowed, null);
    assert.equal(durationMs('250ms') + durationMs('2s') + durationMs('1m') + durationMs('1h'), 250 + 2000 + 60_000 + 3_600_000);
  });

  it('refuses several processor replicas without redis, naming the field and the reason', () => {
    assert.match(
      errorOf(`${MINIMAL}gateway:\n  processor: [127.0.0.1:9001, 127.0.0.1:9002]\n`),
      /several processor replicas need `redis`[\s\S]*at gateway\.processor/,
    );
    parseConfigText(`${MINIMAL}gateway:\n  processor: [127.0.0.1:9001, 127.0.0.1:9002]\nredis:\n  url: redis://127.0.0.1:6379\n`, {});
    parseConfigText(`${MINIMAL}gateway:\n  processor: [127.0.0.1:9001]\n`, {});
  });

  it('refuses values one check rejected without another check throwing over them', () => {
    // A bad url with a fallback: the fallback check must not trip over the URL the field refused.
    const badUrl = errorOf('servers:\n  alpha:\n    url: "not a url"\n    fallback: [{url: http://127.0.0.1:3002/mcp}]\n');
    assert.match(badUrl, /servers\.alpha\.url/);
    assert.match(errorOf(`${MINIMAL}redis:\n  url: redis://127.0.0.1:6379\n  timeout: soon\n`), /expected a duration[\s\S]*redis\.timeout/);
  });

  it('derives the ext_proc timeouts so the processor answers before Envoy gives up', () => {
    const rc = compileConfig(parseConfigText(`${MINIMAL}gateway:\n  upstream_timeout: 2s\n`, {}));
    const t = rc.extProc;
    assert.equal(t.messageMs, 7000);
    // The slowest message: cold catalog + new session (6 calls) or a new session + a replay with the server's 300 s.
    assert.equal(t.maxMessageMs, 6 * 2000 + 300_000 + 10_000);
    assert.ok(t.extendAfterMs < t.messageMs, 'more time is asked for before the ordinary timeout');
    assert.equal(t.extendAfterMs + t.extendToMs, t.maxMessageMs, 'never more than Envoy allows');
    assert.ok(t.deadlineMs < t.maxMessageMs, 'the processor gives up first');
  });
});
