/**
 * Identity, tenants and access policy, end to end: real Envoy, the processor, real demo upstreams
 * and a real JWKS endpoint (keys generated here, rotated mid-suite).
 *
 * Every attack is asserted twice: it fails closed (the right status, a JSON-RPC error body, an
 * audit line, nothing reaching the upstream), and normal traffic right after it still works.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { base64url, exportJWK, exportPKCS8, exportSPKI, generateKeyPair, importPKCS8, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose';
import { sha256Hex } from '../../src/auth/api-keys.js';
import { connectClient, rawInitialize, rawRequest, type RawResponse } from '../support/mcp-client.js';
import { freePorts } from '../support/ports.js';
import { waitUntil } from '../support/proc.js';
import { useStack, type Stack } from '../support/stack.js';
import { parseMetrics } from '../support/metrics.js';

// ------------------------------------------------------------------------------------ helpers

type HeaderMap = Record<string, string>;
type LogLine = Record<string, unknown>;

/** Every secret this suite hands out; none may ever show up in a log. */
const SECRETS = new Set<string>();

function secretKey(label: string): string {
  const key = `mcpgw_${label}_${randomBytes(18).toString('base64url')}`;
  SECRETS.add(key);
  return key;
}

function newTraceId(): string {
  return randomBytes(16).toString('hex');
}

function traceparent(traceId: string): string {
  return `00-${traceId}-${randomBytes(8).toString('hex')}-01`;
}

let nextRpcId = 1;

interface Sent extends RawResponse {
  readonly traceId: string;
}

/** One JSON-RPC request with a fresh trace id (so its audit lines can be found). */
async function rpc(
  url: string,
  headers: Record<string, string | null>,
  method: string,
  params?: Record<string, unknown>,
  opts: { id?: number; traceId?: string } = {},
): Promise<Sent> {
  const traceId = opts.traceId ?? newTraceId();
  const res = await rawRequest(url, {
    headers: { ...headers, traceparent: traceparent(traceId) },
    body: { jsonrpc: '2.0', id: opts.id ?? nextRpcId++, method, ...(params === undefined ? {} : { params }) },
  });
  return Object.assign(res, { traceId });
}

/** A session opened with raw requests: the headers every later request of it carries. */
async function openSession(url: string, auth: HeaderMap): Promise<HeaderMap> {
  const init = await rawInitialize(url, { headers: auth });
  assert.ok(init.sessionId, `no session id from ${url}`);
  return { ...auth, 'mcp-session-id': init.sessionId, 'mcp-protocol-version': init.protocolVersion };
}

interface RpcError {
  code: number;
  message: string;
  data?: unknown;
}

function rpcError(res: RawResponse): RpcError {
  const msg = res.json as { jsonrpc?: string; error?: RpcError } | undefined;
  assert.equal(msg?.jsonrpc, '2.0', `not JSON-RPC: ${res.status} ${res.text}`);
  assert.ok(msg?.error !== undefined, `expected a JSON-RPC error, got ${res.status} ${res.text}`);
  assert.equal(typeof msg.error.code, 'number');
  assert.equal(typeof msg.error.message, 'string');
  return msg.error;
}

function toolText(res: RawResponse): string {
  const msg = res.json as { result?: { content?: { text?: string }[]; isError?: boolean }; error?: unknown } | undefined;
  assert.ok(msg?.result !== undefined, `expected a result, got ${res.status} ${res.text}`);
  assert.notEqual(msg.result.isError, true, `tool error: ${res.text}`);
  return (msg.result.content ?? []).map((c) => c.text ?? '').join('');
}

/** Names of a list result (`tools`, `prompts`: name; `resources`: uri). */
function listed(res: RawResponse, key: 'tools' | 'prompts' | 'resources' | 'resourceTemplates'): string[] {
  const msg = res.json as { result?: Record<string, { name?: string; uri?: string; uriTemplate?: string }[]> } | undefined;
  const items = msg?.result?.[key];
  assert.ok(Array.isArray(items), `expected result.${key}, got ${res.status} ${res.text}`);
  return items.map((i) => (key === 'resources' ? i.uri : key === 'resourceTemplates' ? i.uriTemplate : i.name) ?? '?').sort();
}

/**
 * What a client can observe of a refusal, with the name it asked for replaced: two answers that
 * normalise to the same string are indistinguishable.
 */
function observable(res: RawResponse, asked: string): string {
  const body = res.json as { id?: unknown } | undefined;
  const shape = {
    status: res.status,
    contentType: res.headers.get('content-type'),
    sessionHeader: res.headers.get('mcp-session-id'),
    body: body === undefined ? res.text : { ...body, id: 'ID' },
  };
  return JSON.stringify(shape).split(JSON.stringify(asked).slice(1, -1)).join('<NAME>');
}

/** A request's access decisions: refusals on audit lines of their own, an allowed request's on its operation line. */
function audits(stack: Stack, traceId: string): LogLine[] {
  return stack.processorLogLines().filter((l) => l['trace_id'] === traceId && (l['event'] === 'mcpgw_access' || 'decision' in l));
}

/** The one audit line of a request, checked against the expected fields. */
function assertAudit(stack: Stack, traceId: string, expected: Record<string, unknown>): LogLine {
  const lines = audits(stack, traceId);
  assert.ok(lines.length >= 1, `no audit line for trace ${traceId} (expected ${JSON.stringify(expected)})`);
  const line = lines.at(-1)!;
  for (const [k, v] of Object.entries(expected)) assert.deepEqual(line[k], v, `audit ${k}: ${JSON.stringify(line)}`);
  for (const k of ['event', 'decision', 'reason', 'client_id', 'tenant', 'server', 'trace_id']) assert.ok(k in line, `audit line lacks ${k}`);
  return line;
}

/** Prometheus text → `name{labels}` → value. */
async function scrape(stack: Stack): Promise<Map<string, number>> {
  const res = await fetch(`${stack.adminUrl}/metrics`);
  assert.equal(res.status, 200);
  return parseMetrics(await res.text());
}

async function authFailures(stack: Stack, reason: string): Promise<number> {
  return (await scrape(stack)).get(`mcp_gateway_auth_failures_total{reason="${reason}"}`) ?? 0;
}

/** The 401 every missing or bad credential gets: challenge header plus JSON-RPC error body. */
function assertChallenge(res: RawResponse, metadataUrl: string, error?: 'invalid_token' | 'invalid_request'): void {
  assert.equal(res.status, 401, res.text);
  const challenge = res.headers.get('www-authenticate') ?? '';
  assert.match(challenge, /^Bearer /);
  assert.ok(challenge.includes(`resource_metadata="${metadataUrl}"`), challenge);
  if (error === undefined) assert.ok(!challenge.includes('error='), challenge);
  else assert.ok(challenge.includes(`error="${error}"`), challenge);
  assert.match(res.headers.get('content-type') ?? '', /application\/json/);
  const err = rpcError(res);
  assert.equal(err.message, 'Unauthorized');
  assert.equal(res.headers.get('mcp-session-id'), null);
}

/**
 * Waits until a caller's tools/list shows every one of `servers`. Right after start-up the
 * processor may have found Envoy not yet listening and leaves the upstreams out of lists for a
 * moment; list assertions must not depend on that race.
 */
async function catalogsReady(url: string, auth: HeaderMap, servers: readonly string[]): Promise<void> {
  const s = await openSession(url, auth);
  let names: string[] = [];
  await waitUntil(
    async () => {
      names = listed(await rpc(url, s, 'tools/list'), 'tools');
      return servers.every((server) => names.some((n) => n.startsWith(`${server}__`)));
    },
    { timeoutMs: 10_000, intervalMs: 100, what: () => `tools of ${servers.join(', ')} to be listed (have ${names.join(', ')})` },
  );
}

// --------------------------------------------------------------------------------- JWKS server

interface SigningKey {
  readonly kid: string;
  readonly alg: 'RS256' | 'ES256';
  readonly privateKey: CryptoKey;
  readonly publicKey: CryptoKey;
  readonly jwk: JWK;
}

async function signingKey(alg: 'RS256' | 'ES256', kid: string): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { kid, alg, privateKey, publicKey, jwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

/** A JWKS endpoint on 127.0.0.1:0 whose key set can be swapped, counting its fetches. */
class JwksServer {
  keys: JWK[] = [];
  fetches = 0;
  url = '';
  private readonly server: Server = createServer((req, res) => {
    if (req.url !== '/jwks.json') {
      res.writeHead(404).end();
      return;
    }
    this.fetches += 1;
    res.writeHead(200, { 'content-type': 'application/jwk-set+json' }).end(JSON.stringify({ keys: this.keys }));
  });

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/jwks.json`;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** A POST over node:http with exactly these headers (fetch cannot be trusted to send 100 KiB ones). */
function rawHttp(url: string, headers: Record<string, string>, body: string): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: 'POST', headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) }, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => {
        const h = new Headers();
        for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') h.set(k, v);
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: h, text, ...(json === undefined ? {} : { json }), messages: [], sessionId: undefined });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

// ------------------------------------------------------------------------------------ the suite

const KEYS = {
  acme: secretKey('acme'),
  acmeOther: secretKey('acme_other'),
  globex: secretKey('globex'),
  loner: secretKey('loner'),
};
const UPSTREAM = {
  alphaAuthorization: `Bearer upstream-alpha-${randomBytes(12).toString('hex')}`,
  alphaToken: `literal-alpha-${randomBytes(12).toString('hex')}`,
  betaKey: `file-beta-${randomBytes(12).toString('hex')}`,
};
for (const v of Object.values(UPSTREAM)) SECRETS.add(v);
const ENV_NAME = 'MCPGW_AUTH_TEST_ALPHA_AUTHORIZATION';

const INIT = { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'attacker', version: '0' } };

describe('auth: keys, JWT, OAuth metadata, tenants, policies, sessions and upstream credentials through Envoy', () => {
  const jwks = new JwksServer();
  let rsa1: SigningKey;
  let es1: SigningKey;
  let listenPort = 0;
  let issuer = '';
  let resource = '';
  let metadataUrl = '';
  let tmp = '';

  const stack = useStack(async () => {
    [rsa1, es1] = await Promise.all([signingKey('RS256', 'rsa-1'), signingKey('ES256', 'es-1')]);
    jwks.keys = [rsa1.jwk, es1.jwk];
    await jwks.start();
    issuer = jwks.url.replace(/\/jwks\.json$/, '');
    [listenPort] = (await freePorts(1)) as [number];
    resource = `http://127.0.0.1:${listenPort}/mcp`;
    metadataUrl = `http://127.0.0.1:${listenPort}/.well-known/oauth-protected-resource/mcp`;
    tmp = mkdtempSync(join(tmpdir(), 'mcpgw-auth-'));
    writeFileSync(join(tmp, 'beta.secret'), `${UPSTREAM.betaKey}\n`, { mode: 0o600 });
    process.env[ENV_NAME] = UPSTREAM.alphaAuthorization;
    return {
      gateway: { listen: `127.0.0.1:${listenPort}` },
      logLevel: 'debug',
      servers: {
        alpha: { headers: { authorization: `\${${ENV_NAME}}`, 'x-upstream-token': UPSTREAM.alphaToken } },
        beta: { headers: { 'x-upstream-key': `file:${join(tmp, 'beta.secret')}` } },
        // A group, as the seed writes it: acme-agent is in it, acme-other is not.
        gamma: { auth_required: true, allowed_clients: ['agents'] },
      },
      extraConfig: {
        auth: {
          api_keys: [
            { id: 'acme-agent', key_sha256: sha256Hex(KEYS.acme), tenant: 'acme', groups: ['agents'] },
            { id: 'acme-other', key_sha256: sha256Hex(KEYS.acmeOther), tenant: 'acme' },
            { id: 'globex-agent', key_sha256: sha256Hex(KEYS.globex), tenant: 'globex' },
            { id: 'loner', key_sha256: sha256Hex(KEYS.loner) },
          ],
          jwt: [
            {
              issuer,
              jwks_uri: jwks.url,
              algorithms: ['RS256', 'ES256'],
              tenant_claim: 'tenant',
              jwks_refresh_cooldown: '1s',
            },
          ],
          oauth: { resource, authorization_servers: [issuer], scopes_supported: ['mcp'] },
        },
        tenants: {
          acme: { servers: ['alpha', 'beta', 'gamma'], namespace: 'acme' },
          globex: { servers: ['beta'], namespace: 'globex' },
        },
        policies: [
          // `*` allows everything; the denials (and blocked_tools) still win.
          { tenant: 'acme', servers: ['alpha'], tools: { allowed: ['*'], denied: ['add', 'delete_*'] }, prompts: { denied: ['with_resource'] } },
          {
            tenant: 'globex',
            servers: ['beta'],
            tools: { allowed: ['echo', 'whoami', 'headers'] },
            resources: { allowed: ['demo://shared/*'] },
          },
        ],
        blocked_tools: ['fail', 'beta/link'],
      },
    };
  });

  before(() => catalogsReady(stack().mcpUrl, { 'x-api-key': KEYS.acme }, ['alpha', 'beta', 'gamma']));

  after(async () => {
    delete process.env[ENV_NAME];
    await jwks.stop();
    if (tmp !== '') rmSync(tmp, { recursive: true, force: true });
  });

  const auth = {
    acme: { authorization: `Bearer ${KEYS.acme}` },
    acmeXKey: { 'x-api-key': KEYS.acme },
    acmeOther: { 'x-api-key': KEYS.acmeOther },
    globex: { authorization: `Bearer ${KEYS.globex}` },
    loner: { 'x-api-key': KEYS.loner },
  };

  async function jwt(
    claims: JWTPayload = {},
    opts: { key?: SigningKey; header?: Record<string, unknown>; expIn?: number; omit?: ('exp' | 'aud' | 'iss')[] } = {},
  ): Promise<string> {
    const key = opts.key ?? rsa1;
    const now = Math.floor(Date.now() / 1000);
    const omit = new Set(opts.omit ?? []);
    const payload: JWTPayload = {
      sub: 'user-1',
      tenant: 'acme',
      iat: now,
      ...(omit.has('iss') ? {} : { iss: issuer }),
      ...(omit.has('aud') ? {} : { aud: resource }),
      ...(omit.has('exp') ? {} : { exp: now + (opts.expIn ?? 300) }),
      ...claims,
    };
    const token = await new SignJWT(payload).setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT', ...opts.header }).sign(key.privateKey);
    SECRETS.add(token);
    return token;
  }

  const bearer = (token: string): HeaderMap => ({ authorization: `Bearer ${token}` });

  /** One normal call by a legitimate client: what every attack must leave working. */
  let legitSession: HeaderMap | null = null;
  async function legitCallWorks(): Promise<void> {
    legitSession ??= await openSession(stack().mcpUrl, auth.acme);
    const res = await rpc(stack().mcpUrl, legitSession, 'tools/call', { name: 'alpha__echo', arguments: { text: 'still here' } });
    assert.equal(res.status, 200, res.text);
    assert.equal(toolText(res), 'alpha: still here');
  }

  // ---------------------------------------------------------------------------- OAuth metadata

  it('serves RFC 9728 metadata (plain and path-suffixed); unauthenticated calls get 401 pointing at it', async () => {
    const base = `http://127.0.0.1:${listenPort}`;
    for (const path of [
      '/.well-known/oauth-protected-resource',
      '/.well-known/oauth-protected-resource/mcp',
      '/.well-known/oauth-protected-resource/servers/alpha/mcp',
    ]) {
      const res = await fetch(`${base}${path}`);
      assert.equal(res.status, 200, path);
      assert.match(res.headers.get('content-type') ?? '', /application\/json/);
      const doc = (await res.json()) as Record<string, unknown>;
      assert.deepEqual(doc, {
        resource,
        authorization_servers: [issuer],
        bearer_methods_supported: ['header'],
        scopes_supported: ['mcp'],
      });
    }
    const post = await rawRequest(`${base}/.well-known/oauth-protected-resource`, { body: {} });
    assert.equal(post.status, 405);

    // No credentials: 401 with the challenge naming the metadata URL, JSON-RPC body, audit line.
    const before = await authFailures(stack(), 'no_credentials');
    const res = await rpc(stack().mcpUrl, {}, 'initialize', INIT);
    assertChallenge(res, metadataUrl);
    assertAudit(stack(), res.traceId, { event: 'mcpgw_access', decision: 'deny', reason: 'no_credentials', client_id: null, tenant: null });
    for (const method of ['GET', 'DELETE']) {
      const r = await rawRequest(stack().mcpUrl, { method, headers: { 'mcp-session-id': 'x' } });
      assertChallenge(r, metadataUrl);
    }
    const pass = await rpc(stack().serverUrl('beta'), {}, 'initialize', INIT);
    assertChallenge(pass, metadataUrl);
    assertAudit(stack(), pass.traceId, { decision: 'deny', reason: 'no_credentials', server: 'beta' });
    assert.equal(await authFailures(stack(), 'no_credentials'), before + 4);

    // The challenge leads to the document a client needs.
    const followed = /resource_metadata="([^"]+)"/.exec(res.headers.get('www-authenticate') ?? '')?.[1];
    assert.equal(followed, metadataUrl);
    const doc = (await (await fetch(followed!)).json()) as { resource: string };
    assert.equal(doc.resource, resource);
    await legitCallWorks();
  });

  // ---------------------------------------------------------------------------------- API keys

  it('API keys work as Bearer and as X-API-Key; missing, wrong, doubled and malformed keys fail closed', async () => {
    for (const headers of [auth.acme, auth.acmeXKey]) {
      const c = await connectClient(stack().mcpUrl, { headers });
      try {
        const r = await c.client.callTool({ name: 'alpha__whoami', arguments: {} });
        assert.equal((r.content as { text: string }[])[0]?.text, 'alpha');
      } finally {
        await c.close({ terminate: true });
      }
    }

    const wrong = secretKey('wrong');
    const unknownBefore = await authFailures(stack(), 'unknown_api_key');
    for (const headers of [{ authorization: `Bearer ${wrong}` }, { 'x-api-key': wrong }, { authorization: `bearer ${KEYS.acme}x` }] as HeaderMap[]) {
      const res = await rpc(stack().mcpUrl, headers, 'initialize', INIT);
      assertChallenge(res, metadataUrl, 'invalid_token');
      assertAudit(stack(), res.traceId, { decision: 'deny', reason: 'unknown_api_key', client_id: null, auth_method: 'api_key' });
    }
    assert.equal(await authFailures(stack(), 'unknown_api_key'), unknownBefore + 3);

    // Both headers at once: refused (400), never "the better one wins".
    const both = await rpc(stack().mcpUrl, { ...auth.acme, 'x-api-key': wrong }, 'initialize', INIT);
    assert.equal(both.status, 400);
    assert.match(both.headers.get('www-authenticate') ?? '', /error="invalid_request"/);
    rpcError(both);
    assertAudit(stack(), both.traceId, { decision: 'deny', reason: 'ambiguous_credentials' });

    // Other schemes and malformed values.
    const basic = await rpc(stack().mcpUrl, { authorization: `Basic ${Buffer.from(`acme:${KEYS.acme}`).toString('base64')}` }, 'initialize', INIT);
    assertChallenge(basic, metadataUrl);
    const spaced = await rpc(stack().mcpUrl, { authorization: `Bearer ${KEYS.acme} extra` }, 'initialize', INIT);
    assert.equal(spaced.status, 400);
    rpcError(spaced);
    // A valid key with a forged tenant header changes nothing: the key names the tenant.
    const s = await openSession(stack().mcpUrl, { ...auth.globex, 'x-tenant': 'acme', 'x-mcpgw-tenant': 'acme' });
    assert.deepEqual(listed(await rpc(stack().mcpUrl, s, 'tools/list'), 'tools'), ['beta__echo', 'beta__headers', 'beta__whoami']);
    await legitCallWorks();
  });

  it('300 brute-forced API keys all get 401, each audited and counted, while a real client keeps working', async () => {
    const before = await authFailures(stack(), 'unknown_api_key');
    const guesses = Array.from({ length: 300 }, (_, i) => ({ i, key: randomBytes(24).toString('base64url') }));
    const traces: string[] = [];
    const started = performance.now();
    const legit = (async () => {
      // Normal traffic interleaved with the attack is served all along.
      for (let i = 0; i < 10; i++) await legitCallWorks();
    })();
    for (let batch = 0; batch < guesses.length; batch += 30) {
      const results = await Promise.all(
        guesses.slice(batch, batch + 30).map(({ i, key }) =>
          rpc(stack().mcpUrl, i % 2 === 0 ? { authorization: `Bearer ${key}` } : ({ 'x-api-key': key } as HeaderMap), 'initialize', INIT),
        ),
      );
      for (const res of results) {
        assert.equal(res.status, 401, res.text);
        assert.match(res.headers.get('www-authenticate') ?? '', /error="invalid_token"/);
        assert.equal(rpcError(res).message, 'Unauthorized');
        traces.push(res.traceId);
      }
    }
    await legit;
    const elapsed = performance.now() - started;
    assert.equal(await authFailures(stack(), 'unknown_api_key'), before + 300);
    const traceSet = new Set(traces);
    const denied = stack()
      .processorLogLines()
      .filter((l) => l['event'] === 'mcpgw_access' && traceSet.has(String(l['trace_id'])));
    assert.equal(denied.length, 300);
    assert.ok(denied.every((l) => l['decision'] === 'deny' && l['reason'] === 'unknown_api_key' && l['client_id'] === null));
    // Brute force buys nothing: every guessed key is still unknown, and the real key works at once.
    await legitCallWorks();
    assert.ok(elapsed < 20_000, `brute force took ${elapsed} ms`);
  });

  // --------------------------------------------------------------------------------------- JWT

  it('a JWT from the live JWKS authenticates; expired, wrong-audience, none, HS/RS confusion and tampered tokens do not', async () => {
    // Valid RS256 and ES256 tokens, tenant from the claim, client from sub.
    for (const key of [rsa1, es1]) {
      const token = await jwt({ sub: `user-${key.alg}` }, { key });
      const s = await openSession(stack().mcpUrl, bearer(token));
      const res = await rpc(stack().mcpUrl, s, 'tools/call', { name: 'alpha__echo', arguments: { text: 'jwt' } });
      assert.equal(toolText(res), 'alpha: jwt');
      assertAudit(stack(), res.traceId, { decision: 'allow', client_id: `user-${key.alg}`, tenant: 'acme', auth_method: 'jwt', server: 'alpha', tool: 'echo' });
    }

    const now = Math.floor(Date.now() / 1000);
    const good = await jwt();
    const [h, p] = good.split('.') as [string, string, string];
    const attacker = await signingKey('RS256', 'rsa-1'); // same kid as the real key, different key
    const payload = (claims: Record<string, unknown>): string =>
      base64url.encode(JSON.stringify({ sub: 'user-1', tenant: 'acme', iss: issuer, aud: resource, iat: now, exp: now + 300, ...claims }));
    const header = (hdr: Record<string, unknown>): string => base64url.encode(JSON.stringify(hdr));
    const hmac = async (secret: Uint8Array, kid = 'rsa-1'): Promise<string> =>
      new SignJWT({ sub: 'user-1', tenant: 'acme', iss: issuer, aud: resource, exp: now + 300 })
        .setProtectedHeader({ alg: 'HS256', kid })
        .sign(secret);
    const publicPem = await exportSPKI(rsa1.publicKey);
    const flipped = good.slice(0, -4) + (good.endsWith('AAAA') ? 'BBBB' : 'AAAA');

    const attacks: { what: string; token: string; reason: string; expired?: boolean }[] = [
      { what: 'expired', token: await jwt({}, { expIn: -3600 }), reason: 'expired', expired: true },
      { what: 'wrong audience', token: await jwt({ aud: 'https://other.example.com/mcp' }), reason: 'wrong_audience' },
      { what: 'audience of another resource on this host', token: await jwt({ aud: `http://127.0.0.1:${listenPort}/other` }), reason: 'wrong_audience' },
      { what: 'no audience', token: await jwt({}, { omit: ['aud'] }), reason: 'missing_claim' },
      { what: 'wrong issuer', token: await jwt({ iss: 'https://evil.example.com' }), reason: 'wrong_issuer' },
      { what: 'no exp', token: await jwt({}, { omit: ['exp'] }), reason: 'missing_claim' },
      { what: 'not yet valid', token: await jwt({ nbf: now + 3600 }), reason: 'not_yet_valid' },
      { what: 'alg none', token: `${header({ alg: 'none', typ: 'JWT' })}.${payload({})}.`, reason: 'alg_not_allowed' },
      { what: 'alg none, signature kept', token: `${header({ alg: 'none', kid: 'rsa-1' })}.${p}.${good.split('.')[2]}`, reason: 'alg_not_allowed' },
      { what: 'HS256 keyed with the RSA public key PEM', token: await hmac(new TextEncoder().encode(publicPem)), reason: 'alg_not_allowed' },
      { what: 'HS256 keyed with the JWK', token: await hmac(new TextEncoder().encode(JSON.stringify(rsa1.jwk))), reason: 'alg_not_allowed' },
      {
        what: 'algorithm outside the allow-list (PS256 with the real RSA key)',
        token: await new SignJWT({ sub: 'x', tenant: 'acme', iss: issuer, aud: resource, exp: now + 300 })
          .setProtectedHeader({ alg: 'PS256', kid: 'rsa-1' })
          .sign(await importPKCS8(await exportPKCS8(rsa1.privateKey), 'PS256')),
        reason: 'alg_not_allowed',
      },
      { what: 'tampered payload (tenant switched)', token: `${h}.${payload({ tenant: 'globex' })}.${good.split('.')[2]}`, reason: 'bad_signature' },
      { what: 'tampered signature', token: flipped, reason: 'bad_signature' },
      { what: 'header switched to RS384', token: `${header({ alg: 'RS384', kid: 'rsa-1' })}.${p}.${good.split('.')[2]}`, reason: 'alg_not_allowed' },
      { what: 'signed by a foreign key under the real kid', token: await jwt({}, { key: attacker }), reason: 'bad_signature' },
      {
        what: 'foreign key embedded in the header (jwk) without kid',
        token: await new SignJWT({ sub: 'x', tenant: 'acme', iss: issuer, aud: resource, exp: now + 300 })
          .setProtectedHeader({ alg: 'RS256', jwk: { kty: attacker.jwk.kty!, n: attacker.jwk.n!, e: attacker.jwk.e! } })
          .sign(attacker.privateKey),
        reason: 'bad_signature',
      },
      {
        what: 'jku pointing elsewhere',
        token: await jwt({}, { key: attacker, header: { kid: 'rsa-1', jku: 'http://127.0.0.1:1/jwks.json' } }),
        reason: 'bad_signature',
      },
      { what: 'two-part token', token: `${h}.${p}`, reason: 'unknown_api_key' },
    ];
    for (const a of attacks) {
      SECRETS.add(a.token);
      const res = await rpc(stack().mcpUrl, bearer(a.token), 'initialize', INIT);
      assert.equal(res.status, 401, `${a.what}: ${res.status} ${res.text}`);
      assertChallenge(res, metadataUrl, 'invalid_token');
      const described = /error_description="([^"]*)"/.exec(res.headers.get('www-authenticate') ?? '')?.[1];
      assert.equal(described, a.expired === true ? 'The access token expired' : 'The access token is invalid', a.what);
      assertAudit(stack(), res.traceId, { decision: 'deny', reason: a.reason, client_id: null, tenant: null });
      // The same token on passthrough fails the same way.
      const pass = await rpc(stack().serverUrl('alpha'), bearer(a.token), 'initialize', INIT);
      assert.equal(pass.status, 401, `${a.what} (passthrough)`);
    }
    const m = await scrape(stack());
    for (const reason of ['expired', 'wrong_audience', 'alg_not_allowed', 'bad_signature']) {
      assert.ok((m.get(`mcp_gateway_auth_failures_total{reason="${reason}"}`) ?? 0) >= 2, reason);
    }
    // The genuine token still works after all of that.
    const s = await openSession(stack().mcpUrl, bearer(good));
    assert.equal(toolText(await rpc(stack().mcpUrl, s, 'tools/call', { name: 'beta__echo', arguments: { text: 'ok' } })), 'beta: ok');
    await legitCallWorks();
  });

  it('JWKS: keys are cached, unknown kids refresh at most once per cooldown, rotation is picked up, retired keys stop working', async () => {
    await waitUntil(() => jwks.fetches >= 1, { timeoutMs: 5_000, what: 'the JWKS warm-up fetch' });
    // Cached: many verifications, no fetch.
    const fetchesBefore = jwks.fetches;
    for (let i = 0; i < 10; i++) {
      const res = await rpc(stack().mcpUrl, bearer(await jwt({ sub: `cached-${i}` })), 'initialize', INIT);
      assert.equal(res.status, 200, res.text);
    }
    assert.equal(jwks.fetches, fetchesBefore, 'valid tokens with a known kid never fetch the JWKS');

    // A flood of made-up kids: all refused, the issuer sees at most one fetch per cooldown (1 s).
    const stranger = await signingKey('RS256', 'nobody');
    const floodStart = performance.now();
    const flood = await Promise.all(
      Array.from({ length: 60 }, async (_, i) => {
        const token = await jwt({ sub: `flood-${i}` }, { key: { ...stranger, kid: `kid-${i}-${randomBytes(4).toString('hex')}` } });
        return rpc(stack().mcpUrl, bearer(token), 'initialize', INIT);
      }),
    );
    const floodMs = performance.now() - floodStart;
    for (const res of flood) assertChallenge(res, metadataUrl, 'invalid_token');
    const floodFetches = jwks.fetches - fetchesBefore;
    assert.ok(floodFetches <= 1 + Math.ceil(floodMs / 1000), `60 unknown kids in ${Math.round(floodMs)} ms caused ${floodFetches} JWKS fetches`);
    for (const res of flood) assertAudit(stack(), res.traceId, { decision: 'deny', reason: 'unknown_key' });
    await legitCallWorks();

    // Rotation: the issuer replaces rsa-1 by rsa-2. A rsa-1 token accepted before rotation…
    const oldToken = await jwt({ sub: 'pre-rotation' });
    assert.equal((await rpc(stack().mcpUrl, bearer(oldToken), 'initialize', INIT)).status, 200);
    const rsa2 = await signingKey('RS256', 'rsa-2');
    jwks.keys = [rsa2.jwk, es1.jwk];
    const newToken = await jwt({ sub: 'post-rotation' }, { key: rsa2 });
    // …the first rsa-2 token after the cooldown triggers the refresh that finds the new key.
    let last: Sent | undefined;
    await waitUntil(
      async () => {
        last = await rpc(stack().mcpUrl, bearer(newToken), 'initialize', INIT);
        return last.status === 200;
      },
      { timeoutMs: 5_000, intervalMs: 100, what: () => `a token signed by the rotated-in key to be accepted (last: ${last?.status} ${last?.text})` },
    );
    const s = await openSession(stack().mcpUrl, bearer(newToken));
    const call = await rpc(stack().mcpUrl, s, 'tools/call', { name: 'alpha__echo', arguments: { text: 'rotated' } });
    assert.equal(toolText(call), 'alpha: rotated');
    assertAudit(stack(), call.traceId, { decision: 'allow', client_id: 'post-rotation', auth_method: 'jwt' });
    // …and the retired key's tokens, even one verified (and cached) before, are refused now.
    for (const token of [oldToken, await jwt({ sub: 'retired' })]) {
      const res = await rpc(stack().mcpUrl, bearer(token), 'initialize', INIT);
      assertChallenge(res, metadataUrl, 'invalid_token');
      assertAudit(stack(), res.traceId, { decision: 'deny', reason: 'unknown_key' });
    }
    rsa1 = rsa2; // later tests sign with the live key
    await legitCallWorks();
  });

  // ----------------------------------------------------------------------------------- tenants

  it('every caller resolves to exactly one tenant: none → 403, unknown → 403, ambiguous claim → 401', async () => {
    const noTenant = await rpc(stack().mcpUrl, auth.loner, 'initialize', INIT);
    assert.equal(noTenant.status, 403, noTenant.text);
    rpcError(noTenant);
    assertAudit(stack(), noTenant.traceId, { decision: 'deny', reason: 'no_tenant', client_id: 'loner', tenant: null });
    const loner = await rpc(stack().serverUrl('beta'), auth.loner, 'initialize', INIT);
    assert.equal(loner.status, 403);

    const unknownTenant = await rpc(stack().mcpUrl, bearer(await jwt({ sub: 'drifter', tenant: 'initech' })), 'initialize', INIT);
    assert.equal(unknownTenant.status, 403, unknownTenant.text);
    rpcError(unknownTenant);
    assertAudit(stack(), unknownTenant.traceId, { decision: 'deny', reason: 'unknown_tenant', client_id: 'drifter' });

    const missingClaim = await rpc(stack().mcpUrl, bearer(await jwt({ sub: 'claimless', tenant: undefined })), 'initialize', INIT);
    assert.equal(missingClaim.status, 403, missingClaim.text);

    const ambiguous = await rpc(stack().mcpUrl, bearer(await jwt({ tenant: ['acme', 'globex'] })), 'initialize', INIT);
    assertChallenge(ambiguous, metadataUrl, 'invalid_token');
    assertAudit(stack(), ambiguous.traceId, { decision: 'deny', reason: 'ambiguous_tenant' });
    await legitCallWorks();
  });

  it('a tenant sees and reaches only its servers, on /mcp and on passthrough', async () => {
    const acme = await openSession(stack().mcpUrl, auth.acme);
    const globex = await openSession(stack().mcpUrl, auth.globex);

    const acmeTools = listed(await rpc(stack().mcpUrl, acme, 'tools/list'), 'tools');
    assert.ok(acmeTools.some((t) => t.startsWith('alpha__')) && acmeTools.some((t) => t.startsWith('beta__')) && acmeTools.some((t) => t.startsWith('gamma__')));
    assert.deepEqual(listed(await rpc(stack().mcpUrl, globex, 'tools/list'), 'tools'), ['beta__echo', 'beta__headers', 'beta__whoami']);
    assert.deepEqual(listed(await rpc(stack().mcpUrl, globex, 'resources/list'), 'resources'), ['beta+demo://shared/readme']);
    assert.deepEqual(listed(await rpc(stack().mcpUrl, globex, 'prompts/list'), 'prompts'), ['beta__greet', 'beta__with_resource']);
    for (const item of listed(await rpc(stack().mcpUrl, globex, 'resources/templates/list'), 'resourceTemplates')) {
      assert.ok(item.startsWith('beta+'), item);
    }

    // Calling across tenants answers exactly like calling something that does not exist.
    const cross = [
      { method: 'tools/call', forbidden: 'alpha__echo', missing: 'alpha__no_such_tool', key: 'name' },
      { method: 'tools/call', forbidden: 'gamma__whoami', missing: 'zeta__whoami', key: 'name' },
      { method: 'prompts/get', forbidden: 'alpha__greet', missing: 'alpha__no_such_prompt', key: 'name' },
      { method: 'resources/read', forbidden: 'alpha+demo://shared/readme', missing: 'zeta+demo://shared/readme', key: 'uri' },
      { method: 'resources/read', forbidden: 'alpha+demo://alpha/info', missing: 'beta+demo://no/such', key: 'uri' },
    ];
    for (const c of cross) {
      const args = c.method === 'tools/call' ? { arguments: { text: 'x' } } : c.method === 'prompts/get' ? { arguments: { who: 'x' } } : {};
      const forbidden = await rpc(stack().mcpUrl, globex, c.method, { [c.key]: c.forbidden, ...args }, { id: 77 });
      const missing = await rpc(stack().mcpUrl, globex, c.method, { [c.key]: c.missing, ...args }, { id: 77 });
      rpcError(forbidden);
      assert.equal(observable(forbidden, c.forbidden), observable(missing, c.missing), `${c.method} ${c.forbidden}`);
      const line = audits(stack(), forbidden.traceId).at(-1);
      assert.ok(line === undefined || line['decision'] === 'deny', `${c.forbidden} was not routed`);
    }
    const crossCall = await rpc(stack().mcpUrl, globex, 'tools/call', { name: 'alpha__echo', arguments: { text: 'x' } });
    assertAudit(stack(), crossCall.traceId, { decision: 'deny', reason: 'server_not_in_tenant', client_id: 'globex-agent', tenant: 'globex', server: 'alpha' });

    // Passthrough: another tenant's server is a 404 (tenants never learn of each other's servers).
    for (const server of ['alpha', 'gamma']) {
      const res = await rpc(stack().serverUrl(server), auth.globex, 'initialize', INIT);
      assert.equal(res.status, 404, res.text);
      rpcError(res);
      assert.equal(res.headers.get('mcp-session-id'), null);
      assertAudit(stack(), res.traceId, { decision: 'deny', reason: 'server_not_in_tenant', server, tenant: 'globex' });
    }
    const own = await openSession(stack().serverUrl('beta'), auth.globex);
    assert.equal(toolText(await rpc(stack().serverUrl('beta'), own, 'tools/call', { name: 'echo', arguments: { text: 'mine' } })), 'beta: mine');
    await legitCallWorks();
  });

  it('allowed_clients and auth_required: other clients of the tenant neither see nor reach the server (403 on passthrough)', async () => {
    const before = await authFailures(stack(), 'client_not_allowed');
    const other = await openSession(stack().mcpUrl, auth.acmeOther);
    const tools = listed(await rpc(stack().mcpUrl, other, 'tools/list'), 'tools');
    assert.ok(!tools.some((t) => t.startsWith('gamma__')), tools.join());
    assert.ok(tools.includes('alpha__echo'));
    const hidden = await rpc(stack().mcpUrl, other, 'tools/call', { name: 'gamma__echo', arguments: { text: 'x' } }, { id: 5 });
    const missing = await rpc(stack().mcpUrl, other, 'tools/call', { name: 'gamma__nope', arguments: { text: 'x' } }, { id: 5 });
    assert.equal(observable(hidden, 'gamma__echo'), observable(missing, 'gamma__nope'));
    assertAudit(stack(), hidden.traceId, { decision: 'deny', reason: 'client_not_allowed', client_id: 'acme-other', server: 'gamma' });

    const pass = await rpc(stack().serverUrl('gamma'), auth.acmeOther, 'initialize', INIT);
    assert.equal(pass.status, 403, pass.text);
    assert.equal(rpcError(pass).message, 'Forbidden: no access to server gamma');
    assertAudit(stack(), pass.traceId, { decision: 'deny', reason: 'client_not_allowed', client_id: 'acme-other', tenant: 'acme', server: 'gamma' });
    // The hidden call, the call to a tool gamma does not have (still gamma), and the passthrough.
    assert.equal(await authFailures(stack(), 'client_not_allowed'), before + 3);

    const allowed = await openSession(stack().serverUrl('gamma'), auth.acme);
    assert.equal(toolText(await rpc(stack().serverUrl('gamma'), allowed, 'tools/call', { name: 'whoami', arguments: {} })), 'gamma');
    const agg = await openSession(stack().mcpUrl, auth.acme);
    assert.equal(toolText(await rpc(stack().mcpUrl, agg, 'tools/call', { name: 'gamma__whoami', arguments: {} })), 'gamma');
  });

  // ---------------------------------------------------------------------------------- policies

  it('policies and blocked_tools: lists show only usable entries; forbidden names answer exactly like missing ones', async () => {
    const acme = await openSession(stack().mcpUrl, auth.acme);
    const tools = listed(await rpc(stack().mcpUrl, acme, 'tools/list'), 'tools');
    for (const gone of ['alpha__add', 'alpha__fail', 'beta__fail', 'gamma__fail', 'beta__link']) assert.ok(!tools.includes(gone), gone);
    for (const kept of ['alpha__echo', 'alpha__link', 'beta__add', 'gamma__add', 'alpha__headers']) assert.ok(tools.includes(kept), kept);
    const prompts = listed(await rpc(stack().mcpUrl, acme, 'prompts/list'), 'prompts');
    assert.ok(!prompts.includes('alpha__with_resource') && prompts.includes('beta__with_resource') && prompts.includes('alpha__greet'));

    const cases = [
      { method: 'tools/call', forbidden: 'alpha__add', missing: 'alpha__subtract', reason: 'denied_by_policy' },
      { method: 'tools/call', forbidden: 'alpha__fail', missing: 'alpha__fial', reason: 'blocked' },
      { method: 'tools/call', forbidden: 'beta__link', missing: 'beta__lnk', reason: 'blocked' },
      { method: 'tools/call', forbidden: 'alpha__delete_everything', missing: 'alpha__remove_everything', reason: 'denied_by_policy' },
      { method: 'prompts/get', forbidden: 'alpha__with_resource', missing: 'alpha__without_resource', reason: 'denied_by_policy' },
    ];
    for (const c of cases) {
      const forbidden = await rpc(stack().mcpUrl, acme, c.method, { name: c.forbidden, arguments: { a: 1, b: 2 } }, { id: 9 });
      const missing = await rpc(stack().mcpUrl, acme, c.method, { name: c.missing, arguments: { a: 1, b: 2 } }, { id: 9 });
      assert.equal(forbidden.status, 200);
      assert.equal(rpcError(forbidden).code, -32602);
      assert.equal(observable(forbidden, c.forbidden), observable(missing, c.missing), c.forbidden);
      assertAudit(stack(), forbidden.traceId, { decision: 'deny', reason: c.reason, client_id: 'acme-agent', tenant: 'acme' });
    }
    // The same tool on a server the policy does not cover works.
    assert.equal(toolText(await rpc(stack().mcpUrl, acme, 'tools/call', { name: 'beta__add', arguments: { a: 2, b: 3 } })), '5');

    // Allow lists are exact: globex may use beta's echo, whoami and headers, nothing else.
    const globex = await openSession(stack().mcpUrl, auth.globex);
    for (const name of ['beta__add', 'beta__Echo', 'beta__trace']) {
      const res = await rpc(stack().mcpUrl, globex, 'tools/call', { name, arguments: {} }, { id: 3 });
      const missing = await rpc(stack().mcpUrl, globex, 'tools/call', { name: 'beta__zzz', arguments: {} }, { id: 3 });
      assert.equal(observable(res, name), observable(missing, 'beta__zzz'), name);
      assertAudit(stack(), res.traceId, { decision: 'deny', reason: 'not_in_allow_list' });
    }
    assert.equal(toolText(await rpc(stack().mcpUrl, globex, 'tools/call', { name: 'beta__echo', arguments: { text: 'hi' } })), 'beta: hi');
    // Resource allow list.
    const readme = await rpc(stack().mcpUrl, globex, 'resources/read', { uri: 'beta+demo://shared/readme' });
    assert.match(readme.text, /readme of beta/);
    const info = await rpc(stack().mcpUrl, globex, 'resources/read', { uri: 'beta+demo://beta/info' }, { id: 4 });
    const nope = await rpc(stack().mcpUrl, globex, 'resources/read', { uri: 'beta+demo://beta/nope' }, { id: 4 });
    assert.equal(rpcError(info).code, -32002);
    assert.equal(observable(info, 'beta+demo://beta/info'), observable(nope, 'beta+demo://beta/nope'));
    assertAudit(stack(), info.traceId, { decision: 'deny', reason: 'not_in_allow_list', uri: 'demo://beta/info' });
    await legitCallWorks();
  });

  it('no prefix, case, Unicode or encoding trick reaches a forbidden tool or URI on /mcp', async () => {
    const acme = await openSession(stack().mcpUrl, auth.acme);
    const globex = await openSession(stack().mcpUrl, auth.globex);
    const toolTricks = [
      'alpha__ADD', 'alpha__Add', 'ALPHA__add', 'Alpha__add', 'alpha__ａｄｄ', 'alpha__ＡＤＤ', 'alpha__add\u200b', 'alpha__\u200badd',
      'alpha__a\u00addd', 'alpha__\u0430dd', 'alpha__ad\u0501', 'alpha__add ', ' alpha__add', 'alpha__add\n', 'alpha__add\u0000',
      'alpha__add\u202e', 'alpha__a%64d', 'alpha%5F%5Fadd', 'alpha____add', 'alpha___add', 'alpha__alpha__add', 'beta__alpha__add',
      'alpha_add', 'alpha.add', 'alpha/add', 'alpha__', '__add', 'alpha__FAIL', 'alpha__ｆａｉｌ', 'alpha__fai\u200dl', 'alpha__ＦＡＩＬ',
      'alpha__fa\u0131l', 'gamma__FAIL', 'beta__LINK', 'beta__l\u0131nk', 'alpha__DELETE_all', 'alpha__Delete_x',
    ];
    for (const name of toolTricks) {
      const res = await rpc(stack().mcpUrl, acme, 'tools/call', { name, arguments: { a: 1, b: 2 } }, { id: 11 });
      const missing = await rpc(stack().mcpUrl, acme, 'tools/call', { name: 'alpha__no_such_tool', arguments: { a: 1, b: 2 } }, { id: 11 });
      assert.equal(observable(res, name), observable(missing, 'alpha__no_such_tool'), JSON.stringify(name));
      // A name policy lets through may still be one the upstream does not have (`a%64d`); what
      // must never be allowed is the forbidden tool itself.
      const allowed = audits(stack(), res.traceId).filter((l) => l['decision'] === 'allow');
      assert.ok(!allowed.some((l) => ['add', 'fail', 'link'].includes(String(l['tool'])) || /^delete_/i.test(String(l['tool']))), `${JSON.stringify(name)} was allowed`);
    }
    const globexTricks = ['beta__ECHO', 'beta__ｅｃｈｏ', 'beta__echo\u200b', 'beta__\u0435cho', 'beta__echo ', 'beta__add', 'beta____echo'];
    for (const name of globexTricks) {
      const res = await rpc(stack().mcpUrl, globex, 'tools/call', { name, arguments: { text: 'x' } }, { id: 12 });
      const missing = await rpc(stack().mcpUrl, globex, 'tools/call', { name: 'beta__no_such_tool', arguments: { text: 'x' } }, { id: 12 });
      assert.equal(observable(res, name), observable(missing, 'beta__no_such_tool'), JSON.stringify(name));
      assert.ok(!audits(stack(), res.traceId).some((l) => l['decision'] === 'allow'), `${JSON.stringify(name)} was allowed`);
    }
    const uriTricks = [
      'beta+demo://beta/info', 'beta+DEMO://BETA/info', 'beta+demo://shared/../beta/info', 'beta+demo://shared/%2e%2e/beta/info',
      'beta+demo://shared/%2E%2E/beta/info', 'beta+demo://shared/..%2Fbeta/info', 'beta+demo://shared/%252e%252e/beta/info',
      'beta+demo://shared\\..\\beta/info', 'beta+demo://shared/readme/../../beta/info', 'beta+demo://shared/./../beta/info',
      'beta+demo://shared/..;/beta/info', 'beta+demo://shared/\u200b../beta/info', 'beta+demo://ｓhared/../beta/info',
      'beta+demo://shared/%00/../beta/info', 'beta+demo://shared//..//beta/info', 'beta+demo://items/1', 'alpha+demo://shared/readme',
      'BETA+demo://shared/readme', 'beta +demo://shared/readme', 'beta%2Bdemo://shared/readme',
    ];
    for (const uri of uriTricks) {
      const res = await rpc(stack().mcpUrl, globex, 'resources/read', { uri }, { id: 13 });
      const missing = await rpc(stack().mcpUrl, globex, 'resources/read', { uri: 'zeta+demo://none' }, { id: 13 });
      assert.equal(observable(res, uri), observable(missing, 'zeta+demo://none'), JSON.stringify(uri));
      assert.ok(!audits(stack(), res.traceId).some((l) => l['decision'] === 'allow'), `${JSON.stringify(uri)} was allowed`);
    }
    // Subscribing is held to the same rules.
    const sub = await rpc(stack().mcpUrl, globex, 'resources/subscribe', { uri: 'beta+demo://beta/info' });
    assert.equal(rpcError(sub).code, -32002);
    // Completions cannot be used to probe a forbidden prompt either.
    const complete = await rpc(stack().mcpUrl, acme, 'completion/complete', {
      ref: { type: 'ref/prompt', name: 'alpha__with_resource' },
      argument: { name: 'x', value: '' },
    });
    assert.equal(rpcError(complete).code, -32602);

    assert.equal(toolText(await rpc(stack().mcpUrl, globex, 'tools/call', { name: 'beta__echo', arguments: { text: 'fine' } })), 'beta: fine');
    await legitCallWorks();
  });

  it('no case, Unicode or encoding trick reaches a forbidden tool or URI on passthrough; lists there are filtered', async () => {
    const alpha = await openSession(stack().serverUrl('alpha'), auth.acme);
    const alphaTools = listed(await rpc(stack().serverUrl('alpha'), alpha, 'tools/list'), 'tools');
    assert.ok(!alphaTools.includes('add') && !alphaTools.includes('fail') && alphaTools.includes('echo'), alphaTools.join());
    const alphaPrompts = listed(await rpc(stack().serverUrl('alpha'), alpha, 'prompts/list'), 'prompts');
    assert.deepEqual(alphaPrompts, ['greet']);

    // Refused names all get the gateway's one "unknown tool" answer, whether the tool exists or not.
    const tricks = [
      'add', 'ADD', 'Add', 'ａｄｄ', 'add\u200b', '\u0430dd', 'a\u00addd', 'add ', 'fail', 'FAIL', 'ｆａｉｌ', 'fa\u0131l', 'delete_everything', 'DELETE_x',
    ];
    const reference = await rpc(stack().serverUrl('alpha'), alpha, 'tools/call', { name: 'delete_nothing', arguments: {} }, { id: 21 });
    assert.equal(rpcError(reference).code, -32602);
    for (const name of tricks) {
      const res = await rpc(stack().serverUrl('alpha'), alpha, 'tools/call', { name, arguments: { a: 1, b: 2 } }, { id: 21 });
      assert.equal(observable(res, name), observable(reference, 'delete_nothing'), JSON.stringify(name));
      const line = assertAudit(stack(), res.traceId, { decision: 'deny', client_id: 'acme-agent', server: 'alpha' });
      assert.ok(['denied_by_policy', 'blocked', 'suspicious_name'].includes(String(line['reason'])), JSON.stringify(line));
    }
    const prompt = await rpc(stack().serverUrl('alpha'), alpha, 'prompts/get', { name: 'WITH_RESOURCE' });
    assert.equal(rpcError(prompt).code, -32602);

    const beta = await openSession(stack().serverUrl('beta'), auth.globex);
    assert.deepEqual(listed(await rpc(stack().serverUrl('beta'), beta, 'tools/list'), 'tools'), ['echo', 'headers', 'whoami']);
    assert.deepEqual(listed(await rpc(stack().serverUrl('beta'), beta, 'resources/list'), 'resources'), ['demo://shared/readme']);
    for (const name of ['ECHO', 'Echo', 'ｅｃｈｏ', 'echo\u200b', '\u0435cho', 'add', 'link', 'fail']) {
      const res = await rpc(stack().serverUrl('beta'), beta, 'tools/call', { name, arguments: { text: 'x' } });
      assert.equal(rpcError(res).code, -32602, JSON.stringify(name));
      assertAudit(stack(), res.traceId, { decision: 'deny', client_id: 'globex-agent', server: 'beta' });
    }
    for (const uri of [
      'demo://beta/info', 'DEMO://BETA/info', 'demo://shared/../beta/info', 'demo://shared/%2e%2e/beta/info', 'demo://shared/..%2Fbeta/info',
      'demo://shared\\..\\beta/info', 'demo://shared/%252e%252e/beta/info', 'demo://shared/\u200b../beta/info', 'demo://items/1',
    ]) {
      for (const method of ['resources/read', 'resources/subscribe']) {
        const res = await rpc(stack().serverUrl('beta'), beta, method, { uri });
        assert.equal(rpcError(res).code, -32002, `${method} ${JSON.stringify(uri)}: ${res.text}`);
        assertAudit(stack(), res.traceId, { decision: 'deny', server: 'beta', tenant: 'globex' });
      }
    }
    assert.match((await rpc(stack().serverUrl('beta'), beta, 'resources/read', { uri: 'demo://shared/readme' })).text, /readme of beta/);
    assert.equal(toolText(await rpc(stack().serverUrl('beta'), beta, 'tools/call', { name: 'echo', arguments: { text: 'ok' } })), 'beta: ok');
    await legitCallWorks();
  });

  // ---------------------------------------------------------------------------------- sessions

  it('sessions are bound to their creator: anyone else gets the 404 an unknown session gets, and nothing leaks', async () => {
    const owner = await connectClient(stack().mcpUrl, { headers: auth.acme });
    try {
      await owner.client.callTool({ name: 'alpha__echo', arguments: { text: 'mine' } });
      const sid = owner.sessionId!;
      const pv = '2025-06-18';
      const sameKeyJwt = bearer(await jwt({ sub: 'acme-agent', tenant: 'acme' }));
      const thieves: { who: string; headers: HeaderMap; clientId: string }[] = [
        { who: 'other tenant', headers: auth.globex, clientId: 'globex-agent' },
        { who: 'same tenant, other client', headers: auth.acmeOther, clientId: 'acme-other' },
        { who: 'same client id and tenant via JWT', headers: sameKeyJwt, clientId: 'acme-agent' },
      ];
      const before = await authFailures(stack(), 'session_not_owned');
      for (const t of thieves) {
        for (const [method, params] of [
          ['tools/list', undefined],
          ['tools/call', { name: 'alpha__echo', arguments: { text: 'stolen' } }],
          ['resources/read', { uri: 'alpha+demo://shared/readme' }],
        ] as const) {
          const stolen = await rpc(stack().mcpUrl, { ...t.headers, 'mcp-session-id': sid, 'mcp-protocol-version': pv }, method, params, { id: 31 });
          const unknown = await rpc(stack().mcpUrl, { ...t.headers, 'mcp-session-id': `${sid}x`, 'mcp-protocol-version': pv }, method, params, { id: 31 });
          assert.equal(stolen.status, 404, `${t.who} ${method}: ${stolen.text}`);
          assert.equal(rpcError(stolen).code, -32001);
          assert.equal(observable(stolen, sid), observable(unknown, `${sid}x`), `${t.who} ${method}`);
          assert.ok(!stolen.text.includes(sid) && !stolen.text.includes('mine') && !stolen.text.includes('alpha:'));
          assertAudit(stack(), stolen.traceId, { decision: 'deny', reason: 'session_not_owned', client_id: t.clientId });
        }
        // Notifications and DELETE are refused too; the session survives.
        const note = await rawRequest(stack().mcpUrl, {
          headers: { ...t.headers, 'mcp-session-id': sid, 'mcp-protocol-version': pv },
          body: { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 1 } },
        });
        assert.equal(note.status, 404);
        const del = await rawRequest(stack().mcpUrl, { method: 'DELETE', headers: { ...t.headers, 'mcp-session-id': sid } });
        assert.equal(del.status, 404);
        rpcError(del);
      }
      assert.equal(await authFailures(stack(), 'session_not_owned'), before + thieves.length * 5);
      // Without credentials the session id alone is worth nothing.
      const bare = await rpc(stack().mcpUrl, { 'mcp-session-id': sid }, 'tools/list');
      assertChallenge(bare, metadataUrl);

      const still = await owner.client.callTool({ name: 'alpha__echo', arguments: { text: 'still mine' } });
      assert.equal((still.content as { text: string }[])[0]?.text, 'alpha: still mine');
    } finally {
      await owner.close({ terminate: true });
    }
    await legitCallWorks();
  });

  it('passthrough sessions are bound to their creator too; ids the gateway never saw created are unknown', async () => {
    const url = stack().serverUrl('beta');
    const owner = await openSession(url, auth.acme);
    const sid = owner['mcp-session-id']!;
    const pv = '2025-06-18';
    const before = await authFailures(stack(), 'session_not_owned');
    for (const thief of [auth.globex, auth.acmeOther]) {
      const call = { name: 'echo', arguments: { text: 'stolen' } };
      const stolen = await rpc(url, { ...thief, 'mcp-session-id': sid, 'mcp-protocol-version': pv }, 'tools/call', call, { id: 41 });
      const unknown = await rpc(url, { ...thief, 'mcp-session-id': `${sid}x`, 'mcp-protocol-version': pv }, 'tools/call', call, { id: 41 });
      assert.equal(stolen.status, 404, stolen.text);
      assert.equal(rpcError(stolen).code, -32001);
      assert.equal(observable(stolen, sid), observable(unknown, `${sid}x`));
      assert.ok(!stolen.text.includes('stolen'));
      assertAudit(stack(), stolen.traceId, { decision: 'deny', reason: 'session_not_owned', server: 'beta' });
      const stream = await rawRequest(url, { method: 'GET', headers: { ...thief, accept: 'text/event-stream', 'mcp-session-id': sid }, timeoutMs: 5_000 });
      assert.equal(stream.status, 404, stream.text);
      const del = await rawRequest(url, { method: 'DELETE', headers: { ...thief, 'mcp-session-id': sid } });
      assert.equal(del.status, 404, del.text);
      rpcError(del);
    }
    assert.equal(await authFailures(stack(), 'session_not_owned'), before + 6);
    // A session opened at the upstream directly, around the gateway, is worth nothing through it.
    const direct = await rawInitialize(stack().demo['beta']!.url);
    const smuggled = await rpc(url, { ...auth.acme, 'mcp-session-id': direct.sessionId!, 'mcp-protocol-version': pv }, 'tools/list');
    assert.equal(smuggled.status, 404, smuggled.text);
    // The owner's session survived every attempt.
    assert.equal(toolText(await rpc(url, owner, 'tools/call', { name: 'echo', arguments: { text: 'mine' } })), 'beta: mine');
    await legitCallWorks();
  });

  // ---------------------------------------------------------------------------- upstream creds

  it('client credentials never reach an upstream; per-server credentials (literal, ${ENV}, file:) are injected instead', async () => {
    type Seen = Record<string, string | null>;
    const seen = (res: RawResponse): Seen => JSON.parse(toolText(res)) as Seen;
    const forged = { 'x-upstream-token': 'forged-by-client', 'x-upstream-key': 'forged-by-client', 'x-forwarded-client-cert': 'By=spiffe://x;URI=spiffe://evil' };
    const token = await jwt({ sub: 'creds-user' });
    for (const [label, credential] of [
      ['Bearer key', auth.acme],
      ['X-API-Key', auth.acmeXKey],
      ['JWT', bearer(token)],
    ] as const) {
      const s = await openSession(stack().mcpUrl, { ...credential, ...forged });
      // Injected names replace what the client sent; other client headers pass as they are.
      const alpha = seen(await rpc(stack().mcpUrl, s, 'tools/call', { name: 'alpha__headers', arguments: {} }));
      assert.deepEqual(
        alpha,
        {
          authorization: UPSTREAM.alphaAuthorization,
          'x-api-key': null,
          'x-forwarded-client-cert': null,
          'x-upstream-token': UPSTREAM.alphaToken,
          'x-upstream-key': 'forged-by-client',
        },
        label,
      );
      const beta = seen(await rpc(stack().mcpUrl, s, 'tools/call', { name: 'beta__headers', arguments: {} }));
      assert.deepEqual(
        beta,
        { authorization: null, 'x-api-key': null, 'x-forwarded-client-cert': null, 'x-upstream-key': UPSTREAM.betaKey, 'x-upstream-token': 'forged-by-client' },
        label,
      );
      if (label !== 'JWT') {
        // gamma has no credentials of its own: it gets none, and the client's own headers as they are.
        const gamma = seen(await rpc(stack().mcpUrl, s, 'tools/call', { name: 'gamma__headers', arguments: {} }));
        assert.deepEqual(
          gamma,
          { authorization: null, 'x-api-key': null, 'x-forwarded-client-cert': null, 'x-upstream-token': 'forged-by-client', 'x-upstream-key': 'forged-by-client' },
          label,
        );
      }

      for (const server of ['alpha', 'beta'] as const) {
        const p = await openSession(stack().serverUrl(server), { ...credential, ...forged });
        const got = seen(await rpc(stack().serverUrl(server), p, 'tools/call', { name: 'headers', arguments: {} }));
        assert.equal(got['x-api-key'], null, `${label} ${server} passthrough`);
        assert.equal(got['x-forwarded-client-cert'], null);
        assert.equal(got['authorization'], server === 'alpha' ? UPSTREAM.alphaAuthorization : null);
        if (server === 'alpha') assert.equal(got['x-upstream-token'], UPSTREAM.alphaToken);
        else assert.equal(got['x-upstream-key'], UPSTREAM.betaKey);
      }
    }
    // The processor's own calls (upstream session set-up) carry the server's credentials too:
    // alpha got an initialize for the session above, which only works if nothing refused it.
    await legitCallWorks();
  });

  // ------------------------------------------------------------------------ oversized headers

  it('oversized headers get 431 rendered as JSON-RPC, an oversized credential 400, and traffic is unaffected', async () => {
    const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: INIT });
    const base = { accept: 'application/json, text/event-stream', 'content-type': 'application/json' };
    const cases: { what: string; headers: Record<string, string> }[] = [
      { what: '100 KiB header', headers: { ...base, ...auth.acme, 'x-padding': 'a'.repeat(100 * 1024) } },
      { what: '100 KiB bearer token', headers: { ...base, authorization: `Bearer ${'b'.repeat(100 * 1024)}` } },
      { what: '100 KiB API key', headers: { ...base, 'x-api-key': 'k'.repeat(100 * 1024) } },
      { what: '200 headers', headers: { ...base, ...auth.acme, ...Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`x-h${i}`, 'v'])) } },
    ];
    for (const c of cases) {
      const res = await rawHttp(stack().mcpUrl, c.headers, body);
      assert.equal(res.status, 431, `${c.what}: ${res.status} ${res.text.slice(0, 200)}`);
      assert.deepEqual(res.json, { jsonrpc: '2.0', id: null, error: { code: -32000, message: 'Request Header Fields Too Large' } }, c.what);
      await legitCallWorks();
    }
    // Large but under Envoy's limit: the credential itself is refused as malformed (400), never looked up.
    const before = await authFailures(stack(), 'malformed_credential');
    const big = await rpc(stack().mcpUrl, { authorization: `Bearer ${'c'.repeat(20 * 1024)}` }, 'initialize', INIT);
    assert.equal(big.status, 400, big.text);
    rpcError(big);
    assertAudit(stack(), big.traceId, { decision: 'deny', reason: 'malformed_credential' });
    assert.equal(await authFailures(stack(), 'malformed_credential'), before + 1);
    // Control characters and commas (two header lines joined) are malformed too.
    for (const bad of [`${KEYS.acme},${KEYS.globex}`, `${KEYS.acme}\u00e9`]) {
      const res = await rpc(stack().mcpUrl, { 'x-api-key': bad }, 'initialize', INIT);
      assert.equal(res.status, 400, res.text);
    }
    await legitCallWorks();
  });

  // ----------------------------------------------------------------------------- audit & logs

  it('allowed calls are audited on their operation line (client, tenant, server, tool or uri, decision, reason, trace id)', async () => {
    const s = await openSession(stack().mcpUrl, auth.acme);
    const call = await rpc(stack().mcpUrl, s, 'tools/call', { name: 'beta__echo', arguments: { text: 'audit' } });
    const line = assertAudit(stack(), call.traceId, {
      event: 'tool_call',
      decision: 'allow',
      reason: 'allowed',
      client_id: 'acme-agent',
      tenant: 'acme',
      auth_method: 'api_key',
      server: 'beta',
      tool: 'echo',
      mcp_method: 'tools/call',
      status: 'success',
      trace_id: call.traceId,
    });
    assert.equal(line['level'], 'info');
    // One line for the request: its operation, which carries the decision.
    assert.equal(stack().processorLogLines().filter((l) => l['trace_id'] === call.traceId).length, 1);
    const read = await rpc(stack().mcpUrl, s, 'resources/read', { uri: 'alpha+demo://shared/readme' });
    assertAudit(stack(), read.traceId, { decision: 'allow', server: 'alpha', uri: 'demo://shared/readme', tenant: 'acme' });
    const pass = await openSession(stack().serverUrl('alpha'), auth.acme);
    const pcall = await rpc(stack().serverUrl('alpha'), pass, 'tools/call', { name: 'echo', arguments: { text: 'p' } });
    assertAudit(stack(), pcall.traceId, { decision: 'allow', server: 'alpha', tool: 'echo', client_id: 'acme-agent' });
    // Spoofed names are spelled out, never written raw into the log.
    const spoof = await rpc(stack().mcpUrl, s, 'tools/call', { name: 'alpha__add\u202e\u200b', arguments: {} });
    const spoofLine = assertAudit(stack(), spoof.traceId, { decision: 'deny', reason: 'suspicious_name' });
    assert.equal(spoofLine['tool'], 'add\\u{202e}\\u{200b}');
    // Operation lines name the client and tenant as well.
    const op = stack()
      .processorLogLines()
      .find((l) => l['trace_id'] === call.traceId && l['event'] !== 'mcpgw_access');
    assert.equal(op?.['client_id'], 'acme-agent', JSON.stringify(op));
    assert.equal(op?.['tenant'], 'acme');
  });

  it('no key, token or upstream credential appears in any processor or Envoy log line', () => {
    const processor = stack()
      .processorLogLines()
      .map((l) => JSON.stringify(l))
      .join('\n');
    const envoy = stack().envoy.logs();
    assert.ok(processor.length > 10_000, 'the processor logged (debug level) while the suite ran');
    assert.ok(!stack().logs().includes('earlier characters dropped'), 'every log line is still in memory to be checked');
    if (process.env['AUTH_TEST_LOG_SIZE'] !== undefined) process.stderr.write(`processor log: ${processor.length} chars, envoy log: ${envoy.length} chars\n`);
    assert.ok(SECRETS.size > 40);
    for (const secret of SECRETS) {
      assert.ok(!processor.includes(secret), `processor log contains a secret (${secret.slice(0, 12)}…)`);
      assert.ok(!envoy.includes(secret), `Envoy log contains a secret (${secret.slice(0, 12)}…)`);
      // Nor the signature part of a token alone.
      const sig = secret.split('.')[2];
      if (sig !== undefined && sig.length > 20) assert.ok(!processor.includes(sig));
    }
  });
});

// ------------------------------------------------------------------------------------------------

describe('auth: JWT issuers without auth.oauth still publish RFC 9728 metadata, for the URL the client used', () => {
  const jwks = new JwksServer();
  let key: SigningKey;
  let issuer = '';
  let port = 0;
  const audience = 'https://mcp.example.com';
  const stack = useStack(async () => {
    key = await signingKey('ES256', 'es-only');
    jwks.keys = [key.jwk];
    await jwks.start();
    issuer = jwks.url.replace(/\/jwks\.json$/, '');
    [port] = (await freePorts(1)) as [number];
    return {
      gateway: { listen: `127.0.0.1:${port}` },
      servers: { alpha: {} },
      extraConfig: { auth: { jwt: [{ issuer, jwks_uri: jwks.url, algorithms: ['ES256'], audiences: [audience] }] } },
    };
  });
  after(() => jwks.stop());

  it('answers the well-known paths with the issuers as authorization servers and the resource as the client reached it', async () => {
    for (const host of ['127.0.0.1', 'localhost']) {
      const base = `http://${host}:${port}`;
      for (const [path, endpoint] of [
        ['/.well-known/oauth-protected-resource', '/mcp'],
        ['/.well-known/oauth-protected-resource/mcp', '/mcp'],
        ['/.well-known/oauth-protected-resource/servers/alpha/mcp', '/servers/alpha/mcp'],
      ] as const) {
        const res = await fetch(`${base}${path}`);
        assert.equal(res.status, 200, `${host} ${path}`);
        assert.deepEqual(await res.json(), { resource: `${base}${endpoint}`, authorization_servers: [issuer], bearer_methods_supported: ['header'] });
      }
    }
    const other = await fetch(`http://127.0.0.1:${port}/.well-known/oauth-protected-resource/servers/nope/mcp`);
    assert.equal(other.status, 404);
  });

  it('points a 401 at the metadata of the endpoint the client called, and a token from the issuer gets in', async () => {
    const base = `http://localhost:${port}`;
    for (const path of ['/mcp', '/servers/alpha/mcp']) {
      const res = await rawRequest(`${base}${path}`, { body: { jsonrpc: '2.0', id: 1, method: 'initialize', params: INIT } });
      assertChallenge(res, `${base}/.well-known/oauth-protected-resource${path}`);
      const followed = /resource_metadata="([^"]+)"/.exec(res.headers.get('www-authenticate') ?? '')![1]!;
      const doc = (await (await fetch(followed)).json()) as { resource: string; authorization_servers: string[] };
      assert.equal(doc.resource, `${base}${path}`);
      assert.deepEqual(doc.authorization_servers, [issuer]);
    }
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({ sub: 'u', iss: issuer, aud: audience, iat: now, exp: now + 60 }).setProtectedHeader({ alg: 'ES256', kid: key.kid }).sign(key.privateKey);
    const session = await openSession(stack().mcpUrl, { authorization: `Bearer ${token}` });
    assert.ok(session['mcp-session-id']);
  });
});

// ------------------------------------------------------------------------------------------------

describe('names on /mcp: renames and routes never let a forbidden tool through', () => {
  // alpha and beta are the same demo server: echo, whoami and add on both.
  const stack = useStack({
    servers: {
      alpha: { tools: { add: { name: 'sum', description: 'Adds, politely.' } } },
      beta: { tools: { echo: { name: 'say', description: 'Says it back.' } } },
    },
    extraConfig: {
      gateway: { prefix: 'on-collision' },
      routes: [{ tools: 'whoami', server: 'alpha' }],
      policies: [{ servers: ['alpha'], tools: { denied: ['add'] } }],
      blocked_tools: ['beta/whoami'],
    },
  });
  before(() => waitUntil(async () => listed(await rpc(stack().mcpUrl, session ??= await openSession(stack().mcpUrl, {}), 'tools/list'), 'tools').includes('say'), { timeoutMs: 10_000, intervalMs: 100, what: 'the catalogs' }));
  let session: HeaderMap | undefined;

  it('lists what the caller may use under the names the rules give', async () => {
    const tools = listed(await rpc(stack().mcpUrl, session!, 'tools/list'), 'tools');
    // alpha's add is forbidden (its new name with it); beta's add then claims "add" alone.
    for (const name of ['echo', 'say', 'whoami', 'add']) assert.ok(tools.includes(name), `${name} in ${tools.join()}`);
    for (const name of ['sum', 'alpha__add', 'beta__whoami', 'beta__echo', 'alpha__echo']) assert.ok(!tools.includes(name), `${name} not in ${tools.join()}`);
  });

  it('calls each name on the server the rules give it to', async () => {
    const call = async (name: string, args: Record<string, unknown>): Promise<string> => toolText(await rpc(stack().mcpUrl, session!, 'tools/call', { name, arguments: args }));
    assert.equal(await call('echo', { text: 'hi' }), 'alpha: hi');
    assert.equal(await call('say', { text: 'hi' }), 'beta: hi');
    assert.equal(await call('whoami', {}), 'alpha');
    assert.equal(await call('add', { a: 1, b: 2 }), '3');
  });

  it('refuses a forbidden tool under its new name, its old name and its prefixed ones alike, and audits its own name', async () => {
    const answers: string[] = [];
    for (const name of ['sum', 'alpha__add', 'alpha__sum', 'beta__whoami', 'beta__echo', 'nothing_at_all']) {
      const res = await rpc(stack().mcpUrl, session!, 'tools/call', { name, arguments: { a: 1, b: 2 } }, { id: 9 });
      answers.push(observable(res, name));
      if (name === 'sum') assertAudit(stack(), res.traceId, { decision: 'deny', reason: 'denied_by_policy', server: 'alpha', tool: 'add' });
    }
    assert.equal(new Set(answers).size, 1, answers.join('\n'));
  });
});

// ------------------------------------------------------------------------------------------------

describe('auth: anonymous callers, auth_required and anonymous sessions', () => {
  const key = secretKey('team');
  const stack = useStack({
    servers: { alpha: { auth_required: true }, beta: {} },
    extraConfig: {
      auth: {
        api_keys: [{ id: 'team-agent', key_sha256: sha256Hex(key), tenant: 'team' }],
        allow_anonymous: true,
        anonymous_tenant: 'public',
      },
      tenants: {
        public: { servers: ['alpha', 'beta'], namespace: 'public' },
        team: { servers: ['alpha', 'beta'], namespace: 'team' },
      },
    },
  });

  before(() => catalogsReady(stack().mcpUrl, { 'x-api-key': key }, ['alpha', 'beta']));

  it('anonymous callers never see or reach auth_required servers: hidden on /mcp, 401 with a challenge on passthrough', async () => {
    const anon = await openSession(stack().mcpUrl, {});
    const tools = listed(await rpc(stack().mcpUrl, anon, 'tools/list'), 'tools');
    assert.ok(tools.length > 0 && tools.every((t) => t.startsWith('beta__')), tools.join());
    const hidden = await rpc(stack().mcpUrl, anon, 'tools/call', { name: 'alpha__echo', arguments: { text: 'x' } }, { id: 1 });
    const missing = await rpc(stack().mcpUrl, anon, 'tools/call', { name: 'alpha__nope', arguments: { text: 'x' } }, { id: 1 });
    assert.equal(observable(hidden, 'alpha__echo'), observable(missing, 'alpha__nope'));
    assertAudit(stack(), hidden.traceId, { decision: 'deny', reason: 'auth_required', client_id: null, tenant: 'public', auth_method: 'anonymous' });

    const pass = await rpc(stack().serverUrl('alpha'), {}, 'initialize', INIT);
    assert.equal(pass.status, 401, pass.text);
    assert.match(pass.headers.get('www-authenticate') ?? '', /^Bearer/);
    rpcError(pass);
    // A wrong key is not "anonymous": it is refused, never downgraded.
    const wrong = await rpc(stack().mcpUrl, { 'x-api-key': secretKey('bogus') }, 'initialize', INIT);
    assert.equal(wrong.status, 401);

    const team = await openSession(stack().mcpUrl, { 'x-api-key': key });
    assert.equal(toolText(await rpc(stack().mcpUrl, team, 'tools/call', { name: 'alpha__echo', arguments: { text: 'in' } })), 'alpha: in');
    assert.equal(toolText(await rpc(stack().mcpUrl, anon, 'tools/call', { name: 'beta__echo', arguments: { text: 'anon' } })), 'beta: anon');
  });

  it('an anonymous session is useless to an authenticated caller and vice versa', async () => {
    const anon = await openSession(stack().mcpUrl, {});
    const team = await openSession(stack().mcpUrl, { 'x-api-key': key });
    const keyOnAnon = await rpc(stack().mcpUrl, { ...anon, 'x-api-key': key }, 'tools/list');
    assert.equal(keyOnAnon.status, 404, keyOnAnon.text);
    const anonOnKey = await rpc(stack().mcpUrl, { ...team, 'x-api-key': null }, 'tools/list');
    assert.equal(anonOnKey.status, 404, anonOnKey.text);
    assertAudit(stack(), anonOnKey.traceId, { decision: 'deny', reason: 'session_not_owned', auth_method: 'anonymous' });
    assert.equal((await rpc(stack().mcpUrl, team, 'tools/list')).status, 200);
    assert.equal((await rpc(stack().mcpUrl, anon, 'tools/list')).status, 200);

    // The same holds for passthrough sessions.
    const anonPass = await openSession(stack().serverUrl('beta'), {});
    const keyOnAnonPass = await rpc(stack().serverUrl('beta'), { ...anonPass, 'x-api-key': key }, 'tools/list');
    assert.equal(keyOnAnonPass.status, 404, keyOnAnonPass.text);
    const teamPass = await openSession(stack().serverUrl('beta'), { 'x-api-key': key });
    const anonOnKeyPass = await rpc(stack().serverUrl('beta'), { ...teamPass, 'x-api-key': null }, 'tools/list');
    assert.equal(anonOnKeyPass.status, 404, anonOnKeyPass.text);
    assert.equal(listed(await rpc(stack().serverUrl('beta'), anonPass, 'tools/list'), 'tools').length > 0, true);
    assert.equal(listed(await rpc(stack().serverUrl('beta'), teamPass, 'tools/list'), 'tools').length > 0, true);
  });
});
