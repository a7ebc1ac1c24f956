/**
 * The admin console in a real headless Chromium, over a real stack (Envoy, the processor started by
 * its CLI, demo MCP servers): every page renders live data, the catalog seen as a tenant hides what
 * policy hides (checked against the lists those callers really get), ending a session works, and a
 * config is validated, then applied. The JSON API behind the pages, its credentials and its bad
 * inputs are checked with plain HTTP. A screenshot of each page is saved in
 * test-results/admin-console/ for review.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { sha256Hex } from '../../src/auth/api-keys.js';
import { configHash } from '../../src/live-config.js';
import { Browser, type Page } from '../support/browser.js';
import { connectClient, rawRequest, toolNames, type ConnectedClient } from '../support/mcp-client.js';
import { waitUntil } from '../support/proc.js';
import { useStack } from '../support/stack.js';

const SHOTS = join(process.cwd(), 'test-results', 'admin-console');

const key = (label: string): string => `mcpgw_${label}_${randomBytes(18).toString('base64url')}`;
const ADMIN_KEY = key('oncall');
const ALICE_KEY = key('alice');
const BOB_KEY = key('bob');
const ISSUER = 'https://issuer.admin-console.test';
const AUDIENCE = 'https://gateway.admin-console.test/mcp';
/** beta's limit: this many calls, then 429s. */
const BETA_BURST = 3;

/** A tenant's own IdP: trusted for its users on /mcp, never to name gateway admins. */
const TENANT_ISSUER = 'https://idp.acme.test';
/** The processor's environment holds this; validating a config must not reveal it. */
const ENV_SECRET = `env-secret-${randomBytes(9).toString('hex')}`;
process.env['MCPGW_CONSOLE_TEST_SECRET'] = ENV_SECRET;

const signer = await generateKeyPair('ES256', { extractable: true });
const jwk = { ...(await exportJWK(signer.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
const tenantSigner = await generateKeyPair('ES256', { extractable: true });
const tenantJwk = { ...(await exportJWK(tenantSigner.publicKey)), kid: 't1', alg: 'ES256', use: 'sig' };

function token(sub: string, groups: string[], signingKey: CryptoKey = signer.privateKey, issuer = ISSUER): Promise<string> {
  return new SignJWT({ groups, tenant: 'acme' })
    .setProtectedHeader({ alg: 'ES256', kid: issuer === ISSUER ? 'k1' : 't1' })
    .setIssuer(issuer)
    .setAudience(AUDIENCE)
    .setSubject(sub)
    .setIssuedAt()
    .setExpirationTime('10m')
    .sign(signingKey);
}

const alphaOf = (config: Record<string, unknown>): object => (config['servers'] as Record<string, object>)['alpha']!;

const basic = (secret: string): string => `Basic ${Buffer.from(`oncall:${secret}`).toString('base64')}`;
const ADMIN = { authorization: basic(ADMIN_KEY) };
const alice = { authorization: `Bearer ${ALICE_KEY}` };
const bob = { authorization: `Bearer ${BOB_KEY}` };

describe('admin console', () => {
  const stack = useStack({
    demoServers: ['alpha', 'beta'],
    processor: 'child',
    extraConfig: {
      auth: {
        api_keys: [
          { id: 'alice', key_sha256: sha256Hex(ALICE_KEY), tenant: 'acme' },
          { id: 'bob', key_sha256: sha256Hex(BOB_KEY), tenant: 'globex' },
        ],
        jwt: [
          { issuer: ISSUER, audiences: [AUDIENCE], jwks: { keys: [jwk] }, algorithms: ['ES256'], tenant_claim: 'tenant', groups_claim: 'groups' },
          { issuer: TENANT_ISSUER, audiences: [AUDIENCE], jwks: { keys: [tenantJwk] }, algorithms: ['ES256'], tenant: 'acme', groups_claim: 'groups' },
        ],
      },
      tenants: { acme: { servers: ['alpha', 'beta'], namespace: 'acme' }, globex: { servers: ['beta'], namespace: 'globex' } },
      policies: [
        { tenant: 'acme', servers: ['*'], tools: { denied: ['add'] } },
        { tenant: '*', servers: ['*'], tools: { allowed: ['*'] } },
      ],
      rate_limits: { beta: { requests_per_minute: BETA_BURST, burst_size: BETA_BURST } },
      health: { interval: '1s' },
      admin: { console: true, api_keys: [{ id: 'oncall', key_sha256: sha256Hex(ADMIN_KEY) }], jwt_groups: ['gateway-admins'], jwt_issuers: [ISSUER], allow_apply: true, audit_buffer: 200 },
    },
  });
  let browser: Browser;
  let aliceSession: ConnectedClient;
  let bobSession: ConnectedClient;
  /** How many of bob's calls to beta were refused with 429. */
  let refused = 0;

  before(async () => {
    mkdirSync(SHOTS, { recursive: true });
    browser = await Browser.launch();
    // Live traffic for the pages: alice (acme) uses alpha and is refused `add`; bob (globex) runs
    // into beta's limit.
    aliceSession = await connectClient(stack().mcpUrl, { headers: alice, name: 'alice-agent', version: '1.2.3' });
    await aliceSession.client.callTool({ name: 'alpha__echo', arguments: { text: 'hi' } });
    await assert.rejects(aliceSession.client.callTool({ name: 'alpha__add', arguments: { a: 1, b: 2 } }));
    bobSession = await connectClient(stack().mcpUrl, { headers: bob, name: 'bob-agent' });
    for (let i = 0; i < BETA_BURST + 2; i++) {
      try {
        await bobSession.client.callTool({ name: 'beta__echo', arguments: { text: `n${i}` } });
      } catch (err) {
        assert.match(String(err), /Rate limit exceeded/);
        refused++;
      }
    }
    assert.equal(refused, 2, 'two calls over the burst were refused');
  });

  after(async () => {
    await aliceSession?.close().catch(() => {});
    await bobSession?.close().catch(() => {});
    await browser?.close();
  });

  const adminApi = async (path: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}) => {
    const res = await fetch(`${stack().adminUrl}${path}`, { method: init.method ?? 'GET', headers: { ...ADMIN, ...(init.headers ?? {}) }, ...(init.body === undefined ? {} : { body: init.body }) });
    const text = await res.text();
    return { status: res.status, headers: res.headers, text, json: res.headers.get('content-type')?.includes('json') ? (JSON.parse(text) as Record<string, unknown>) : null };
  };

  async function open(path: string, javascript = true): Promise<{ page: Page; status: number }> {
    const page = await browser.newPage({ headers: ADMIN, javascript });
    const status = await page.goto(`${stack().adminUrl}${path}`);
    return { page, status };
  }

  describe('access', () => {
    it('refuses requests without an admin credential, with a Basic challenge, and never takes a client key', async () => {
      for (const headers of [{}, alice, { authorization: basic(ALICE_KEY) }, { 'x-admin-key': 'mcpgw_wrong_key_0123456789abcdef' }, { authorization: `Bearer ${await token('eve', ['developers'])}` }]) {
        const res = await fetch(`${stack().adminUrl}/admin/api/sessions`, { headers });
        assert.equal(res.status, 401, JSON.stringify(headers));
        assert.match(res.headers.get('www-authenticate') ?? '', /^Basic realm=/);
        const body = (await res.json()) as { error: { message: string } };
        assert.match(body.error.message, /admin credential/);
      }
      // A token signed by another key names the admin group but does not verify.
      const forged = await token('mallory', ['gateway-admins'], (await generateKeyPair('ES256')).privateKey);
      assert.equal((await fetch(`${stack().adminUrl}/admin/api/servers`, { headers: { authorization: `Bearer ${forged}` } })).status, 401);
      // A tenant's own IdP is trusted for its users on /mcp, but its word on who is an admin is not.
      const tenantAdmin = await token('acme-admin', ['gateway-admins'], tenantSigner.privateKey, TENANT_ISSUER);
      assert.ok((await toolNames(stack().mcpUrl, { authorization: `Bearer ${tenantAdmin}` })).length > 0, 'the token is good on /mcp');
      assert.equal((await fetch(`${stack().adminUrl}/admin/api/servers`, { headers: { authorization: `Bearer ${tenantAdmin}` } })).status, 401);
    });

    it('survives a malformed request line and an oversized body, answering each with an error', async () => {
      const raw = await new Promise<string>((resolve, reject) => {
        const { port } = new URL(stack().adminUrl);
        const socket = connect(Number(port), '127.0.0.1', () => socket.end('GET //[ HTTP/1.1\r\nHost: x\r\n\r\n'));
        let got = '';
        socket.on('data', (c) => (got += c.toString()));
        socket.on('end', () => resolve(got));
        socket.on('error', reject);
      });
      assert.match(raw, /^HTTP\/1\.1 4\d\d/);
      assert.equal((await fetch(`${stack().adminUrl}/readyz`)).status, 200, 'the processor is still up');
      const big = await adminApi('/admin/api/config/validate', { method: 'POST', body: 'x'.repeat(1024 * 1024 + 1) });
      assert.equal(big.status, 413);
      assert.match(String((big.json!['error'] as { message: string }).message), /over 1048576 bytes/);
    });

    it('opens with the admin key (Basic, Bearer or X-Admin-Key) and with a token of an admin group', async () => {
      const ways = [ADMIN, { authorization: `Bearer ${ADMIN_KEY}` }, { 'x-admin-key': ADMIN_KEY }, { authorization: `Bearer ${await token('carol', ['gateway-admins'])}` }];
      for (const headers of ways) {
        const res = await fetch(`${stack().adminUrl}/admin/api/servers`, { headers });
        assert.equal(res.status, 200, JSON.stringify(Object.keys(headers)));
        assert.equal(res.headers.get('cache-control'), 'no-store');
      }
    });

    it('is not served on the client listener', async () => {
      for (const path of ['/admin/servers', '/admin/api/sessions', '/admin']) {
        const res = await fetch(`${stack().baseUrl}${path}`, { headers: ADMIN });
        assert.equal(res.status, 404, path);
        assert.doesNotMatch(await res.text(), /live sessions|"sessions"/);
      }
    });

    it('refuses a change posted from another site', async () => {
      const listed = await adminApi('/admin/api/sessions');
      const ref = (listed.json!['sessions'] as { ref: string }[])[0]!.ref;
      const res = await adminApi(`/admin/api/sessions/${ref}/end`, { method: 'POST', headers: { 'sec-fetch-site': 'cross-site' } });
      assert.equal(res.status, 403);
      const form = await adminApi('/admin/sessions/end', { method: 'POST', headers: { origin: 'https://evil.example', 'content-type': 'application/x-www-form-urlencoded' }, body: `ref=${ref}` });
      assert.equal(form.status, 403);
      assert.equal((await adminApi('/admin/api/sessions')).json!['total'], listed.json!['total'], 'nothing ended');
    });
  });

  describe('pages in a real browser', () => {
    it('servers: health, latency history and catalog sizes of each server', async () => {
      // Two successful health checks at least, so the latency line has points.
      await waitUntil(
        async () =>
          ((await adminApi('/admin/api/servers')).json!['servers'] as { samples: { latency_ms: number }[] }[]).every(
            (x) => x.samples.filter((p) => p.latency_ms >= 0).length >= 2,
          ),
        { timeoutMs: 10_000, what: 'two successful health checks of each server' },
      );
      const { page, status } = await open('/admin/servers');
      assert.equal(status, 200);
      const alphaTools = (await (await connectClient(stack().demo['alpha']!.url)).client.listTools()).tools.length;
      const rows = await page.evaluate<{ server: string; status: string; catalog: string; points: number; history: string }[]>(`
        [...document.querySelectorAll('#servers tbody tr')].map((tr) => ({
          server: tr.dataset.server,
          status: tr.querySelector('.status').textContent.trim(),
          catalog: tr.querySelector('.catalog').textContent,
          points: tr.querySelector('svg.sparkline polyline')?.getAttribute('points').split(' ').length ?? 0,
          history: tr.querySelector('.history').textContent,
        }))`);
      assert.deepEqual(rows.map((r) => r.server), ['alpha', 'beta']);
      for (const r of rows) {
        assert.equal(r.status, 'healthy');
        assert.ok(r.points >= 2, `latency points for ${r.server}: ${r.points}`);
        assert.match(r.history, /→ healthy/);
      }
      assert.match(rows[0]!.catalog, new RegExp(`tools ${alphaTools}\\b`));
      await page.screenshot(join(SHOTS, 'servers.png'));
    });

    it('catalog: as a tenant and client sees it after policy, the same as its own tools/list', async () => {
      for (const [who, headers, query] of [
        ['alice', alice, 'tenant=acme&client=alice'],
        ['bob', bob, 'tenant=globex&client=bob'],
      ] as const) {
        const { page, status } = await open(`/admin/catalog?${query}`);
        assert.equal(status, 200);
        const shown = await page.evaluate<{ name: string; visible: string; why: string }[]>(`
          [...document.querySelectorAll('tr[data-kind="tools"]')].map((tr) => ({ name: tr.dataset.name, visible: tr.dataset.visible, why: tr.lastElementChild.textContent }))`);
        const visible = shown.filter((e) => e.visible === 'yes').map((e) => e.name).sort();
        assert.deepEqual(visible, (await toolNames(stack().mcpUrl, headers)).sort(), `${who}'s view is what ${who}'s lists hold`);
        const hidden = shown.filter((e) => e.visible === 'no');
        if (who === 'alice') {
          assert.deepEqual(hidden.map((e) => e.name).sort(), ['alpha__add', 'beta__add']);
          for (const h of hidden) assert.match(h.why, /denied_by_policy: policies\[0\]\.tools\.denied/);
        } else {
          assert.ok(hidden.length > 0 && hidden.every((e) => e.name.startsWith('alpha__')), 'bob sees nothing of alpha');
          for (const h of hidden) assert.match(h.why, /server_not_in_tenant/);
        }
        assert.match((await page.text('#viewing-as')) ?? '', new RegExp(`client ${who}`));
        await page.screenshot(join(SHOTS, `catalog-as-${who}.png`));
      }
      // Anonymous callers are refused on this gateway: the console says so rather than guess.
      const anon = await adminApi('/admin/api/catalog?anonymous=true');
      assert.equal(anon.status, 400);
      assert.match(String((anon.json!['error'] as { message: string }).message), /allow_anonymous is off/);
      // An unknown tenant is a clear error, on the page and from the API.
      const bad = await open('/admin/catalog?tenant=nobody');
      assert.equal(bad.status, 400);
      assert.match((await bad.page.text('#error')) ?? '', /tenant nobody is not configured/);
      const api = await adminApi('/admin/api/catalog?tenant=nobody');
      assert.equal(api.status, 400);
      assert.match(String((api.json!['error'] as { message: string }).message), /tenant nobody/);
    });

    it('audit: recent decisions, filtered by client and decision', async () => {
      const { page, status } = await open('/admin/audit?client=alice&decision=deny');
      assert.equal(status, 200);
      const rows = await page.evaluate<{ decision: string; client: string; target: string }[]>(`
        [...document.querySelectorAll('#audit tbody tr')].map((tr) => ({ decision: tr.dataset.decision, client: tr.querySelector('.client').firstChild.textContent, target: tr.children[7].textContent }))`);
      assert.ok(rows.length >= 1);
      assert.ok(rows.every((r) => r.decision === 'deny' && r.client === 'alice'));
      assert.ok(rows.some((r) => r.target === 'add'), 'the refused add call is there');
      await page.screenshot(join(SHOTS, 'audit.png'));
      const allowed = await adminApi('/admin/api/audit?client=bob&decision=allow');
      const entries = allowed.json!['entries'] as { client_id: string; decision: string; server: string | null }[];
      assert.ok(entries.length >= BETA_BURST);
      assert.ok(entries.every((e) => e.client_id === 'bob' && e.decision === 'allow'));
      assert.equal((await adminApi('/admin/api/audit?decision=maybe')).status, 400);
    });

    it('limits: the emptied bucket and the refusals per limit', async () => {
      const { page, status } = await open('/admin/limits');
      assert.equal(status, 200);
      const refusals = await page.evaluate<{ limit: string; total: string }[]>(`
        [...document.querySelectorAll('#refusals tbody tr')].map((tr) => ({ limit: tr.dataset.limit, total: tr.querySelector('.refused-total').textContent }))`);
      assert.equal(refusals.length, 1);
      assert.match(refusals[0]!.limit, /server "beta"/);
      assert.equal(Number(refusals[0]!.total), refused);
      const buckets = await page.evaluate<string[]>(`[...document.querySelectorAll('#near-empty tbody tr')].map((tr) => tr.dataset.bucket)`);
      assert.ok(buckets.some((b) => b.includes('client:bob')), `bob's bucket is near empty: ${buckets.join(', ')}`);
      await page.screenshot(join(SHOTS, 'limits.png'));
    });

    it('read-only pages work without JavaScript and ship none', async () => {
      for (const name of ['servers', 'catalog', 'sessions', 'audit', 'limits', 'config']) {
        const { page, status } = await open(`/admin/${name}`, false);
        assert.equal(status, 200, name);
        const scripts = await page.evaluate<number>('document.scripts.length');
        assert.equal(scripts, 0, `${name} has no script`);
        assert.equal(await page.text('h1'), name[0]!.toUpperCase() + name.slice(1));
        // Following a navigation link is plain HTML.
        const next = await page.clickAndWait('header nav a[href="/admin/servers"]');
        assert.equal(next, 200);
      }
    });

    it('sessions: counted per tenant; ending one closes it for its client', async () => {
      const { page, status } = await open('/admin/sessions');
      assert.equal(status, 200);
      await page.screenshot(join(SHOTS, 'sessions.png'));
      const before = Number(await page.text('#session-total'));
      assert.ok(before >= 2);
      const rows = await page.evaluate<{ ref: string; tenant: string; identity: string; client: string }[]>(`
        [...document.querySelectorAll('#sessions tbody tr')].map((tr) => ({ ref: tr.dataset.session, tenant: tr.children[1].textContent, identity: tr.children[2].textContent, client: tr.children[3].textContent }))`);
      const mine = rows.filter((r) => r.client.includes('alice-agent 1.2.3'));
      assert.equal(mine.length, 1, 'alice’s session is listed with its client');
      assert.equal(mine[0]!.tenant, 'acme');
      assert.equal(await page.evaluate<string | null>(`document.querySelector('.card[data-tenant="globex"] b')?.textContent ?? null`) !== null, true);

      const after = await page.clickAndWait(`tr[data-session="${mine[0]!.ref}"] button`);
      assert.equal(after, 200);
      assert.match((await page.text('#ended')) ?? '', new RegExp(mine[0]!.ref));
      assert.equal(await page.evaluate<number>(`document.querySelectorAll('tr[data-session="${mine[0]!.ref}"]').length`), 0);
      await page.screenshot(join(SHOTS, 'sessions-ended.png'));

      // Alice's client finds its session gone: 404, as the protocol says for an ended session.
      const res = await rawRequest(stack().mcpUrl, {
        headers: { ...alice, 'mcp-session-id': aliceSession.sessionId!, 'mcp-protocol-version': '2025-11-25' },
        body: { jsonrpc: '2.0', id: 7, method: 'tools/list' },
      });
      assert.equal(res.status, 404);
      // Bob's is untouched.
      assert.ok((await bobSession.client.listTools()).tools.length > 0);
      // The change is logged with the operator who made it (log lines reach stdout within 250 ms).
      const actionLines = (): string[] =>
        stack()
          .logs()
          .split('\n')
          .filter((l) => l.includes('"admin_action"') && l.includes(mine[0]!.ref));
      await waitUntil(() => actionLines().length > 0, { timeoutMs: 5_000, what: 'the admin_action line' });
      const action = actionLines();
      assert.equal(action.length, 1, 'one admin_action line');
      assert.match(action[0]!, /"action":"session_end".*"admin":"oncall"/);
      // Ending it again: not found.
      const again = await adminApi(`/admin/api/sessions/${mine[0]!.ref}/end`, { method: 'POST' });
      assert.equal(again.status, 404);
      assert.equal((await adminApi('/admin/api/sessions/nothex/end', { method: 'POST' })).status, 400);
      assert.equal((await adminApi(`/admin/api/sessions/${mine[0]!.ref}/end`)).status, 405);
    });

    it('config: masked, with its hash; a bad config is refused naming the field; a good one is applied', async () => {
      const { page, status } = await open('/admin/config');
      assert.equal(status, 200);
      const ready = await (await fetch(`${stack().adminUrl}/readyz`)).text();
      const hash = (await page.text('#config-hash'))!;
      assert.ok(ready.includes(hash), `${hash} is the config in force (${ready})`);
      const shown = (await page.text('#config-yaml'))!;
      assert.doesNotMatch(shown, new RegExp(sha256Hex(ADMIN_KEY)));
      assert.doesNotMatch(shown, new RegExp(sha256Hex(ALICE_KEY)));
      assert.match(shown, /key_sha256: •••/);
      await page.screenshot(join(SHOTS, 'config.png'));

      const file = stack().configPath!;
      const current = parseYaml(readFileSync(file, 'utf8')) as Record<string, unknown>;
      // A bad one: the verdict names the field, nothing changes.
      await page.fill('textarea[name="text"]', toYaml({ ...current, tenants: { acme: { servers: ['alpha'] } } }));
      assert.equal(await page.clickAndWait('button[value="validate"]'), 200);
      assert.equal(await page.evaluate<string>(`document.querySelector('#verdict').dataset.valid`), 'no');
      assert.match((await page.text('#verdict'))!, /tenants\.acme\.namespace/);

      // A good one: alice may use add again. Validated first (what would change), then applied.
      const next: Record<string, unknown> = { ...current, policies: [{ tenant: '*', servers: ['*'], tools: { allowed: ['*'] } }] };
      await page.fill('textarea[name="text"]', toYaml(next));
      await page.clickAndWait('button[value="validate"]');
      assert.equal(await page.evaluate<string>(`document.querySelector('#verdict').dataset.valid`), 'yes');
      assert.match((await page.text('#verdict'))!, /sections changed: policies/);
      assert.ok((await toolNames(stack().mcpUrl, alice)).every((n) => !n.endsWith('__add')), 'validating applies nothing');
      await page.clickAndWait('button[value="apply"]');
      assert.equal(await page.evaluate<string>(`document.querySelector('#verdict').dataset.applied`), 'yes');
      await page.screenshot(join(SHOTS, 'config-applied.png'));
      const newHash = (await page.text('#config-hash'))!;
      assert.notEqual(newHash, hash);
      assert.ok((await (await fetch(`${stack().adminUrl}/readyz`)).text()).includes(newHash));
      assert.ok((await toolNames(stack().mcpUrl, alice)).includes('alpha__add'), 'the applied config is in force');
      assert.deepEqual(parseYaml(readFileSync(file, 'utf8')), next, 'written to the config file');

      // The JSON API says the same, and refuses what it cannot use.
      const invalid = await adminApi('/admin/api/config/validate', { method: 'POST', body: 'servers: {}\n' });
      assert.equal(invalid.status, 422);
      assert.match(String(invalid.json!['error']), /servers/);
      const valid = await adminApi('/admin/api/config/validate', { method: 'POST', body: readFileSync(file, 'utf8') });
      assert.equal(valid.status, 200);
      assert.deepEqual((valid.json!['changes'] as { sectionsChanged: string[] }).sectionsChanged, []);
      assert.equal((await adminApi('/admin/api/config/validate')).status, 405);

      // An operator edits the file to send alpha a credential from the environment; it reloads.
      const withSecret = { ...next, servers: { ...(next['servers'] as object), alpha: { ...alphaOf(next), headers: { 'X-Probe': '${MCPGW_CONSOLE_TEST_SECRET}' } } } };
      writeFileSync(file, toYaml(withSecret));
      const editedHash = configHash(toYaml(withSecret));
      await waitUntil(async () => (await (await fetch(`${stack().adminUrl}/readyz`)).text()).includes(editedHash), { timeoutMs: 10_000, what: 'the edited file in force' });
      assert.doesNotMatch((await adminApi('/admin/api/config')).text, new RegExp(ENV_SECRET), 'the header is masked');

      // Validating is no way to read the processor's environment: the values of the ${VAR}s the
      // file uses never appear in an answer, and other variables cannot be named at all (escaped or not).
      const probe = { ...withSecret, filters: { defaults: [{ tools: ['*'], arguments: { x: '{{${MCPGW_CONSOLE_TEST_SECRET}}}' } }] } };
      const leaked = await adminApi('/admin/api/config/validate', { method: 'POST', body: toYaml(probe) });
      assert.equal(leaked.status, 422);
      assert.doesNotMatch(leaked.text, new RegExp(ENV_SECRET));
      assert.match(String(leaked.json!['error']), /unknown placeholder \{\{\$\{MCPGW_CONSOLE_TEST_SECRET\}\}\}/);
      for (const ref of ['"${HOME}"', '"\\x24{HOME}"']) {
        const text = toYaml(withSecret).replace('service_name: mcp-gateway', `service_name: ${ref}`);
        assert.ok(text.includes(ref));
        const foreign = await adminApi('/admin/api/config/validate', { method: 'POST', body: text });
        assert.equal(foreign.status, 422, ref);
        assert.match(String(foreign.json!['error']), /may use only the \$\{VAR\}s the config file in force uses; \$\{HOME\} is not among them/);
      }
      // What the page shows masked is refused as a value.
      const maskedBack = await adminApi('/admin/api/config/validate', { method: 'POST', body: shown });
      assert.equal(maskedBack.status, 422);
      assert.match(String(maskedBack.json!['error']), /\.api_keys\[0\]\.key_sha256 holds •••, a value the config page masks/);

      // Applying says which config it replaces; a config that validates but cannot be loaded is
      // refused, and the file keeps what is in force.
      assert.equal((await adminApi('/admin/api/config/apply', { method: 'POST', body: toYaml(withSecret) })).status, 400);
      const before = readFileSync(file, 'utf8');
      const unloadable = { ...withSecret, servers: { ...(withSecret['servers'] as object), alpha: { ...alphaOf(withSecret), headers: { Authorization: 'file:/nonexistent/token' } } } };
      const refusedApply = await adminApi(`/admin/api/config/apply?base=${editedHash}`, { method: 'POST', body: toYaml(unloadable) });
      assert.equal(refusedApply.status, 422);
      assert.equal(readFileSync(file, 'utf8'), before, 'the file is untouched');
      assert.ok((await (await fetch(`${stack().adminUrl}/readyz`)).text()).includes(editedHash), 'and so is the config in force');

      // Two applies against the same config: the first takes its place, the second is refused
      // (it was checked against a config no longer in force); the winner is in force and on disk.
      const variants = [1, 2, 3].map((n) => ({ ...withSecret, health: { interval: `${n}s` } }));
      const results = await Promise.all(variants.map((v) => adminApi(`/admin/api/config/apply?base=${editedHash}`, { method: 'POST', body: toYaml(v) })));
      const applied = results.filter((r) => r.status === 200);
      assert.equal(applied.length, 1, results.map((r) => `${r.status} ${r.text}`).join('\n'));
      for (const r of results.filter((x) => x !== applied[0])) {
        assert.equal(r.status, 409);
        assert.match(String((r.json!['error'] as { message: string }).message), /changed since this one was checked/);
      }
      const winner = variants[results.indexOf(applied[0]!)]!;
      assert.ok((await (await fetch(`${stack().adminUrl}/readyz`)).text()).includes(String(applied[0]!.json!['hash'])));
      assert.equal(readFileSync(file, 'utf8'), toYaml(winner), 'and it is the file’s');
    });
  });

  it('serves every page’s data as JSON, and lists its endpoints', async () => {
    const index = await adminApi('/admin/api');
    assert.equal(index.status, 200);
    const endpoints = Object.keys(index.json!['endpoints'] as object);
    for (const name of ['servers', 'catalog', 'sessions', 'audit', 'limits', 'config']) {
      assert.ok(endpoints.some((e) => e.startsWith(`GET /admin/api/${name}`)), name);
      const res = await adminApi(`/admin/api/${name}`);
      assert.equal(res.status, 200, name);
    }
    const servers = (await adminApi('/admin/api/servers')).json!['servers'] as { server: string; status: string; samples: unknown[] }[];
    assert.deepEqual(servers.map((s) => s.server), ['alpha', 'beta']);
    assert.ok(servers.every((s) => s.samples.length > 0));
    assert.equal((await adminApi('/admin/api/nothing')).status, 404);
    assert.equal((await adminApi('/admin/nothing')).status, 404);
  });

  it('servers: a server going down shows as unhealthy, with its last error and the change in its history', async () => {
    await stack().demo['beta']!.close();
    const beta = async () => ((await adminApi('/admin/api/servers')).json!['servers'] as { server: string; status: string }[]).find((s) => s.server === 'beta')!;
    await waitUntil(async () => (await beta()).status === 'unhealthy', { timeoutMs: 15_000, what: 'beta reported unhealthy' });
    const { page } = await open('/admin/servers');
    const row = await page.evaluate<{ status: string; error: string; history: string; failed: number }>(`(() => {
      const tr = document.querySelector('tr[data-server="beta"]');
      return { status: tr.querySelector('.status').textContent.trim(), error: tr.querySelector('.last-error').textContent, history: tr.querySelector('.history').textContent,
        failed: [...tr.querySelectorAll('svg.strip rect')].filter((r) => r.getAttribute('fill') !== '#1a7f37').length };
    })()`);
    assert.equal(row.status, 'unhealthy');
    assert.notEqual(row.error.trim(), 'none');
    assert.match(row.history, /→ unhealthy/);
    assert.ok(row.failed >= 2, 'the failed checks are in the strip');
    assert.equal(await page.evaluate<string>(`document.querySelector('tr[data-server="alpha"] .status').textContent.trim()`), 'healthy');
    await page.screenshot(join(SHOTS, 'servers-beta-down.png'));
  });
});
