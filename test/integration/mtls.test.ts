/**
 * mTLS end to end: Envoy terminates TLS with certificates this file generates (openssl, temp dir),
 * verifies client certificates against the test CA, and the processor takes the client identity
 * from the URI SAN Envoy passes in X-Forwarded-Client-Cert — never from what a client sends.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sha256Hex } from '../../src/auth/api-keys.js';
import { parseMcpBody, type RawResponse } from '../support/mcp-client.js';
import { onProcessExit, waitUntil } from '../support/proc.js';
import { useStack, type Stack } from '../support/stack.js';

// ------------------------------------------------------------------------------ certificates

const ACME_ID = 'spiffe://example.org/ns/acme/sa/agent';
const GLOBEX_ID = 'spiffe://example.org/ns/globex/sa/agent';

interface Pem {
  readonly cert: Buffer;
  readonly key: Buffer;
}

interface Pki {
  /** Removes the temp dir. */
  cleanup(): void;
  readonly caFile: string;
  readonly serverCert: string;
  readonly serverKey: string;
  readonly ca: Buffer;
  readonly clients: Record<'acme' | 'globex' | 'stranger' | 'dnsOnly' | 'rogue' | 'expired', Pem>;
}

/** A CA, a server certificate for 127.0.0.1/localhost, and client certificates, made with openssl. */
function makePki(): Pki {
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-mtls-'));
  const remove = (): void => rmSync(dir, { recursive: true, force: true });
  const unregister = onProcessExit(remove);
  const openssl = (...args: string[]): void => {
    execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  };
  const file = (name: string): string => join(dir, name);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

  const makeCa = (name: string): void => {
    openssl('req', '-x509', ...ec, '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '2', '-subj', `/CN=${name}`,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  };
  makeCa('ca');
  makeCa('rogue-ca');

  const issue = (name: string, ca: string, san: string, usage: 'serverAuth' | 'clientAuth', dates?: { start: string; end: string }): void => {
    openssl('req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
    writeFileSync(file(`${name}.ext`), `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=${usage}\nsubjectAltName=${san}\n`);
    if (dates === undefined) {
      openssl('x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-set_serial', `0x${randomBytes(8).toString('hex')}`,
        '-days', '2', '-sha256', '-extfile', `${name}.ext`, '-out', `${name}.crt`);
      return;
    }
    // `openssl ca` is the one tool in OpenSSL 3.0 that sets arbitrary validity dates.
    writeFileSync(file('index.txt'), '');
    writeFileSync(file('serial'), `${randomBytes(8).toString('hex')}\n`);
    writeFileSync(file('ca.cnf'), [
      '[ ca ]', 'default_ca = test_ca', '[ test_ca ]', `dir = ${dir}`, 'database = $dir/index.txt', 'new_certs_dir = $dir',
      `certificate = $dir/${ca}.crt`, `private_key = $dir/${ca}.key`, 'serial = $dir/serial', 'default_md = sha256',
      'policy = any', 'unique_subject = no', '[ any ]', 'commonName = supplied', '',
    ].join('\n'));
    openssl('ca', '-batch', '-config', 'ca.cnf', '-in', `${name}.csr`, '-out', `${name}.crt`, '-startdate', dates.start, '-enddate', dates.end,
      '-extfile', `${name}.ext`, '-notext');
  };
  issue('server', 'ca', 'IP:127.0.0.1,DNS:localhost', 'serverAuth');
  issue('acme', 'ca', `URI:${ACME_ID}`, 'clientAuth');
  issue('globex', 'ca', `URI:${GLOBEX_ID},DNS:globex.example.org`, 'clientAuth');
  issue('stranger', 'ca', 'URI:spiffe://other.example/ns/x/sa/y', 'clientAuth');
  issue('dns-only', 'ca', 'DNS:agent.example.org', 'clientAuth');
  issue('rogue', 'rogue-ca', `URI:${ACME_ID}`, 'clientAuth');
  issue('expired', 'ca', `URI:${ACME_ID}`, 'clientAuth', { start: '20200101000000Z', end: '20200102000000Z' });

  const pem = (name: string): Pem => ({ cert: readFileSync(file(`${name}.crt`)), key: readFileSync(file(`${name}.key`)) });
  return {
    cleanup: () => {
      unregister();
      remove();
    },
    caFile: file('ca.crt'),
    serverCert: file('server.crt'),
    serverKey: file('server.key'),
    ca: readFileSync(file('ca.crt')),
    clients: {
      acme: pem('acme'),
      globex: pem('globex'),
      stranger: pem('stranger'),
      dnsOnly: pem('dns-only'),
      rogue: pem('rogue'),
      expired: pem('expired'),
    },
  };
}

// ------------------------------------------------------------------------------- HTTPS client

interface TlsRequest {
  method?: string;
  headers?: Record<string, string>;
  body?: unknown;
  ca: Buffer;
  client?: Pem;
}

/** One request over TLS (a fresh connection each time, so each carries its own certificate). */
function tlsFetch(url: string, req: TlsRequest): Promise<RawResponse> {
  const body = req.body === undefined ? undefined : JSON.stringify(req.body);
  const headers: Record<string, string> = {
    accept: 'application/json, text/event-stream',
    ...(body === undefined ? {} : { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) }),
    ...req.headers,
  };
  return new Promise((resolve, reject) => {
    const r = httpsRequest(
      url,
      {
        method: req.method ?? (body === undefined ? 'GET' : 'POST'),
        headers,
        ca: req.ca,
        ...(req.client === undefined ? {} : { cert: req.client.cert, key: req.client.key }),
        agent: false,
        timeout: 10_000,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => {
          const h = new Headers();
          for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') h.set(k, v);
          const { json, messages } = parseMcpBody(text, h.get('content-type') ?? '');
          resolve({ status: res.statusCode ?? 0, headers: h, text, ...(json === undefined ? {} : { json }), messages, sessionId: h.get('mcp-session-id') ?? undefined });
        });
        res.on('error', reject);
      },
    );
    r.on('timeout', () => r.destroy(new Error('timeout')));
    r.on('error', reject);
    r.end(body);
  });
}

/** The request is refused before any HTTP answer: the TLS handshake (or the first read) fails. */
async function assertHandshakeRefused(url: string, req: TlsRequest, what: string): Promise<void> {
  let status: number | undefined;
  try {
    status = (await tlsFetch(url, req)).status;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    // A TLS alert (unknown CA, certificate expired / required); with TLS 1.3 the server may also
    // just close while the client is already writing its request.
    assert.ok(
      e.code === 'ECONNRESET' || e.code === 'EPIPE' || /^ERR_SSL_|socket hang up/.test(`${e.code ?? ''} ${e.message}`),
      `${what}: ${e.code} ${e.message}`,
    );
    return;
  }
  assert.fail(`${what}: expected the connection to be refused, got HTTP ${status}`);
}

const INIT = { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'mtls-test', version: '0' } };

let rpcId = 1;

function newTraceId(): string {
  return randomBytes(16).toString('hex');
}

async function rpc(url: string, req: Omit<TlsRequest, 'body'>, method: string, params?: Record<string, unknown>): Promise<RawResponse & { traceId: string }> {
  const traceId = newTraceId();
  const res = await tlsFetch(url, {
    ...req,
    headers: { ...req.headers, traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01` },
    body: { jsonrpc: '2.0', id: rpcId++, method, ...(params === undefined ? {} : { params }) },
  });
  return Object.assign(res, { traceId });
}

/** initialize + notifications/initialized; returns the headers the session's requests carry. */
async function openSession(url: string, req: Omit<TlsRequest, 'body'>): Promise<Record<string, string>> {
  const init = await rpc(url, req, 'initialize', INIT);
  assert.equal(init.status, 200, init.text);
  assert.ok(init.sessionId);
  const headers = { ...req.headers, 'mcp-session-id': init.sessionId, 'mcp-protocol-version': '2025-06-18' };
  const ack = await tlsFetch(url, { ...req, headers, body: { jsonrpc: '2.0', method: 'notifications/initialized' } });
  assert.ok(ack.status === 202 || ack.status === 200, ack.text);
  return headers;
}

function toolText(res: RawResponse): string {
  const msg = res.json as { result?: { content?: { text?: string }[] } } | undefined;
  assert.ok(msg?.result !== undefined, `expected a result, got ${res.status} ${res.text}`);
  return (msg.result.content ?? []).map((c) => c.text ?? '').join('');
}

function toolNames(res: RawResponse): string[] {
  const msg = res.json as { result?: { tools?: { name: string }[] } } | undefined;
  assert.ok(msg?.result?.tools, `expected tools, got ${res.status} ${res.text}`);
  return msg.result.tools.map((t) => t.name).sort();
}

function audit(stack: Stack, traceId: string): Record<string, unknown> {
  const line = stack
    .processorLogLines()
    .filter((l) => l['trace_id'] === traceId && (l['event'] === 'mcpgw_access' || 'decision' in l))
    .at(-1);
  assert.ok(line !== undefined, `no audit line for trace ${traceId}`);
  return line;
}

async function authFailures(stack: Stack, reason: string): Promise<number> {
  const text = await (await fetch(`${stack.adminUrl}/metrics`)).text();
  const m = new RegExp(`^mcp_gateway_auth_failures_total\\{reason="${reason}"\\} (\\d+)`, 'm').exec(text);
  return m === null ? 0 : Number(m[1]);
}

function xfcc(uri: string): string {
  return `By=spiffe://example.org/gateway;Hash=${randomBytes(32).toString('hex')};Subject="CN=acme";URI=${uri}`;
}

/**
 * Waits until the certificate client's tools/list shows `server`'s tools: right after start-up
 * the processor may have found Envoy not yet listening and leaves upstreams out for a moment.
 */
async function catalogReady(url: string, req: Omit<TlsRequest, 'body'>, server: string): Promise<void> {
  const s = await openSession(url, req);
  let names: string[] = [];
  await waitUntil(
    async () => {
      names = toolNames(await rpc(url, { ...req, headers: s }, 'tools/list'));
      return names.some((n) => n.startsWith(`${server}__`));
    },
    { timeoutMs: 10_000, intervalMs: 100, what: () => `${server}'s tools to be listed (have ${names.join(', ')})` },
  );
}

// ------------------------------------------------------------------------------------ suites

const pki = makePki();
after(() => pki.cleanup());

const API_KEY = `mcpgw_mtls_${randomBytes(18).toString('base64url')}`;

function mtlsConfig(requireClientCert: boolean): Record<string, unknown> {
  return {
    auth: {
      api_keys: [{ id: 'acme-key', key_sha256: sha256Hex(API_KEY), tenant: 'acme' }],
      mtls: {
        identity: 'uri_san',
        clients: [
          { match: 'spiffe://example.org/ns/acme/*', tenant: 'acme', groups: ['agents'] },
          { match: 'spiffe://example.org/ns/globex/*', tenant: 'globex' },
        ],
      },
    },
    tenants: {
      acme: { servers: ['alpha'], namespace: 'acme' },
      globex: { servers: ['beta'], namespace: 'globex' },
    },
    gateway: {
      tls: { cert_file: pki.serverCert, key_file: pki.serverKey, client_ca_file: pki.caFile, require_client_cert: requireClientCert },
    },
  };
}

describe('mTLS with optional client certificates: identity from the verified certificate only', () => {
  const stack = useStack({
    demoServers: ['alpha', 'beta'],
    extraConfig: mtlsConfig(false),
    tlsClient: { ca: pki.ca },
  });
  const acme = { ca: pki.ca, client: pki.clients.acme };
  const globex = { ca: pki.ca, client: pki.clients.globex };
  before(async () => {
    await catalogReady(stack().mcpUrl, acme, 'alpha');
    await catalogReady(stack().mcpUrl, globex, 'beta');
  });

  it('serves TLS with the generated certificate; plain HTTP is not spoken there', async () => {
    assert.match(stack().mcpUrl, /^https:\/\/127\.0\.0\.1:\d+\/mcp$/);
    const res = await tlsFetch(stack().mcpUrl, { ca: pki.ca });
    assert.equal(res.status, 401, 'TLS without any credential reaches the processor and is challenged');
    await assert.rejects(fetch(stack().mcpUrl.replace('https:', 'http:'), { signal: AbortSignal.timeout(5_000) }));
  });

  it('the URI SAN of the verified certificate is the client id, with the tenant its mapping gives', async () => {
    const s = await openSession(stack().mcpUrl, acme);
    const acmeTools = toolNames(await rpc(stack().mcpUrl, { ...acme, headers: s }, 'tools/list'));
    assert.ok(acmeTools.includes('alpha__echo') && acmeTools.every((n) => n.startsWith('alpha__')), acmeTools.join());
    const call = await rpc(stack().mcpUrl, { ...acme, headers: s }, 'tools/call', { name: 'alpha__echo', arguments: { text: 'cert' } });
    assert.equal(toolText(call), 'alpha: cert');
    const line = audit(stack(), call.traceId);
    assert.deepEqual(
      { client_id: line['client_id'], tenant: line['tenant'], auth_method: line['auth_method'], decision: line['decision'], server: line['server'], tool: line['tool'] },
      { client_id: ACME_ID, tenant: 'acme', auth_method: 'mtls', decision: 'allow', server: 'alpha', tool: 'echo' },
    );
    // The operation line names the certificate client too.
    const op = stack()
      .processorLogLines()
      .find((l) => l['trace_id'] === call.traceId && l['event'] !== 'mcpgw_access');
    assert.equal(op?.['client_id'], ACME_ID);

    // The certificate details stay at the gateway: the upstream gets no X-Forwarded-Client-Cert.
    const headersCall = await rpc(stack().mcpUrl, { ...acme, headers: s }, 'tools/call', { name: 'alpha__headers', arguments: {} });
    const seen = JSON.parse(toolText(headersCall)) as Record<string, unknown>;
    assert.equal(seen['x-forwarded-client-cert'], null);
    assert.equal(seen['authorization'], null);

    const g = await openSession(stack().mcpUrl, globex);
    const gTools = toolNames(await rpc(stack().mcpUrl, { ...globex, headers: g }, 'tools/list'));
    assert.ok(gTools.length > 0 && gTools.every((n) => n.startsWith('beta__')), gTools.join());
    const cross = await rpc(stack().mcpUrl, { ...globex, headers: g }, 'tools/call', { name: 'alpha__echo', arguments: { text: 'x' } });
    assert.equal((cross.json as { error?: { code: number } }).error?.code, -32602);
    assert.equal(audit(stack(), cross.traceId)['client_id'], GLOBEX_ID);

    // Passthrough: the certificate's tenant decides.
    const p = await openSession(stack().serverUrl('alpha'), acme);
    assert.equal(toolText(await rpc(stack().serverUrl('alpha'), { ...acme, headers: p }, 'tools/call', { name: 'whoami', arguments: {} })), 'alpha');
    const denied = await rpc(stack().serverUrl('alpha'), globex, 'initialize', INIT);
    assert.equal(denied.status, 404, denied.text);
  });

  it('a client cannot forge the identity with X-Forwarded-Client-Cert, with or without a certificate of its own', async () => {
    const before = await authFailures(stack(), 'no_credentials');
    for (const forged of [xfcc(ACME_ID), `URI=${ACME_ID}`, `${xfcc(GLOBEX_ID)},${xfcc(ACME_ID)}`]) {
      const res = await rpc(stack().mcpUrl, { ca: pki.ca, headers: { 'x-forwarded-client-cert': forged } }, 'initialize', {
        protocolVersion: '2025-06-18',
        capabilities: {},
        clientInfo: { name: 'forger', version: '0' },
      });
      assert.equal(res.status, 401, res.text);
      assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer/);
      assert.equal((res.json as { error?: { message: string } }).error?.message, 'Unauthorized');
      const line = audit(stack(), res.traceId);
      assert.equal(line['reason'], 'no_credentials');
      assert.equal(line['client_id'], null);
    }
    assert.equal(await authFailures(stack(), 'no_credentials'), before + 3);

    // With a real certificate, a forged header is replaced by what Envoy verified.
    const g = await openSession(stack().mcpUrl, { ...globex, headers: { 'x-forwarded-client-cert': xfcc(ACME_ID) } });
    const tools = toolNames(await rpc(stack().mcpUrl, { ...globex, headers: { ...g, 'x-forwarded-client-cert': xfcc(ACME_ID) } }, 'tools/list'));
    assert.ok(tools.length > 0 && tools.every((n) => n.startsWith('beta__')), tools.join());
    const forgedHeaders = { ...g, 'x-forwarded-client-cert': xfcc(ACME_ID) };
    const call = await rpc(stack().mcpUrl, { ...globex, headers: forgedHeaders }, 'tools/call', { name: 'beta__whoami', arguments: {} });
    assert.equal(toolText(call), 'beta');
    assert.equal(audit(stack(), call.traceId)['client_id'], GLOBEX_ID);

    // With an API key and no certificate, the key decides and the forged header is ignored.
    const k = await openSession(stack().mcpUrl, { ca: pki.ca, headers: { 'x-api-key': API_KEY, 'x-forwarded-client-cert': xfcc(GLOBEX_ID) } });
    const keyCall = await rpc(stack().mcpUrl, { ca: pki.ca, headers: k }, 'tools/call', { name: 'alpha__whoami', arguments: {} });
    assert.equal(toolText(keyCall), 'alpha');
    assert.equal(audit(stack(), keyCall.traceId)['client_id'], 'acme-key');

    // A legitimate certificate client right after is unaffected.
    const s = await openSession(stack().mcpUrl, acme);
    assert.equal(toolText(await rpc(stack().mcpUrl, { ...acme, headers: s }, 'tools/call', { name: 'alpha__echo', arguments: { text: 'ok' } })), 'alpha: ok');
  });

  it('certificates from another CA or expired ones fail the handshake; verified ones without a usable identity get 401', async () => {
    await assertHandshakeRefused(stack().mcpUrl, { ca: pki.ca, client: pki.clients.rogue, body: {} }, 'certificate from a rogue CA');
    await assertHandshakeRefused(stack().mcpUrl, { ca: pki.ca, client: pki.clients.expired, body: {} }, 'expired certificate');

    const stranger = await rpc(stack().mcpUrl, { ca: pki.ca, client: pki.clients.stranger }, 'initialize', INIT);
    assert.equal(stranger.status, 401, stranger.text);
    assert.deepEqual([audit(stack(), stranger.traceId)['reason'], audit(stack(), stranger.traceId)['auth_method']], ['unknown_client', 'mtls']);
    const dnsOnly = await rpc(stack().mcpUrl, { ca: pki.ca, client: pki.clients.dnsOnly }, 'initialize', INIT);
    assert.equal(dnsOnly.status, 401, dnsOnly.text);
    assert.equal(audit(stack(), dnsOnly.traceId)['reason'], 'no_certificate_identity');

    const s = await openSession(stack().mcpUrl, acme);
    assert.equal(toolText(await rpc(stack().mcpUrl, { ...acme, headers: s }, 'tools/call', { name: 'alpha__echo', arguments: { text: 'fine' } })), 'alpha: fine');
  });

  it('a session is bound to the certificate identity that created it', async () => {
    const s = await openSession(stack().mcpUrl, acme);
    const sid = s['mcp-session-id']!;
    const session = { 'mcp-session-id': sid, 'mcp-protocol-version': '2025-06-18' };
    const thieves: { who: string; req: Omit<TlsRequest, 'body'>; clientId: string }[] = [
      { who: 'another certificate', req: { ...globex, headers: session }, clientId: GLOBEX_ID },
      { who: 'an API key of the same tenant', req: { ca: pki.ca, headers: { ...session, 'x-api-key': API_KEY } }, clientId: 'acme-key' },
    ];
    for (const t of thieves) {
      const stolen = await rpc(stack().mcpUrl, t.req, 'tools/list');
      assert.equal(stolen.status, 404, `${t.who}: ${stolen.status} ${stolen.text}`);
      assert.equal((stolen.json as { error?: { code: number } }).error?.code, -32001);
      assert.ok(!stolen.text.includes('alpha__'));
      const line = audit(stack(), stolen.traceId);
      assert.deepEqual([line['reason'], line['client_id']], ['session_not_owned', t.clientId], t.who);
    }
    // The certificate's identity cannot be borrowed by naming it in a header either.
    const forged = await rpc(stack().mcpUrl, { ca: pki.ca, headers: { ...session, 'x-forwarded-client-cert': xfcc(ACME_ID) } }, 'tools/list');
    assert.equal(forged.status, 401, forged.text);
    const p = await openSession(stack().serverUrl('beta'), globex);
    const pSession = { 'mcp-session-id': p['mcp-session-id']! };
    const otherGlobex = await rpc(stack().serverUrl('beta'), { ca: pki.ca, client: pki.clients.acme, headers: pSession }, 'tools/list');
    assert.equal(otherGlobex.status, 404, otherGlobex.text);
    assert.equal(toolNames(await rpc(stack().mcpUrl, { ...acme, headers: s }, 'tools/list')).length > 0, true);
  });
});

describe('mTLS with required client certificates', () => {
  const stack = useStack({
    demoServers: ['alpha', 'beta'],
    extraConfig: mtlsConfig(true),
    tlsClient: { ca: pki.ca, cert: pki.clients.acme.cert, key: pki.clients.acme.key },
  });

  it('refuses connections without a client certificate, even with a valid API key or a forged header', async () => {
    await assertHandshakeRefused(stack().mcpUrl, { ca: pki.ca, body: {} }, 'no client certificate');
    await assertHandshakeRefused(stack().mcpUrl, { ca: pki.ca, headers: { 'x-api-key': API_KEY }, body: {} }, 'API key but no certificate');
    await assertHandshakeRefused(stack().mcpUrl, { ca: pki.ca, headers: { 'x-forwarded-client-cert': xfcc(ACME_ID) }, body: {} }, 'forged XFCC, no certificate');
    await assertHandshakeRefused(stack().mcpUrl, { ca: pki.ca, client: pki.clients.rogue, body: {} }, 'rogue certificate');

    const acme = { ca: pki.ca, client: pki.clients.acme };
    const s = await openSession(stack().mcpUrl, acme);
    const call = await rpc(stack().mcpUrl, { ...acme, headers: s }, 'tools/call', { name: 'alpha__echo', arguments: { text: 'required' } });
    assert.equal(toolText(call), 'alpha: required');
    assert.equal(audit(stack(), call.traceId)['client_id'], ACME_ID);
  });
});
