import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, UnsecuredJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose';
import { JwtIssuerSchema, type JwtIssuerConfig } from '../../../src/auth/schema.js';
import { claimAt, JwtError, JwtIssuers, JwtVerifier, looksLikeJwt, type JwtFailureReason } from '../../../src/auth/jwt.js';
import { StaticKeySet } from '../../../src/auth/jwks.js';

const ISSUER = 'https://idp.example.com';
const AUDIENCE = 'https://gateway.example.com/mcp';

interface TestKey {
  readonly kid: string;
  readonly alg: 'RS256' | 'ES256';
  readonly privateKey: CryptoKey;
  readonly publicKey: CryptoKey;
  readonly jwk: JWK;
}

async function makeKey(alg: 'RS256' | 'ES256', kid: string): Promise<TestKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { kid, alg, privateKey, publicKey, jwk };
}

/** A JWKS endpoint on 127.0.0.1 that counts its fetches. */
class JwksServer {
  keys: JWK[] = [];
  fetches = 0;
  status = 200;
  hang = false;
  private server: Server | null = null;
  url = '';

  async start(): Promise<void> {
    this.server = createServer((_req, res) => {
      this.fetches += 1;
      if (this.hang) return; // never answers: exercises the fetch timeout
      res.writeHead(this.status, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ keys: this.keys }));
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/jwks.json`;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()));
  }
}

/** A controllable clock, starting at real time so jose's own iat handling stays sane. */
function clock(): { now: () => number; advance: (ms: number) => void } {
  let t = Date.now();
  return { now: () => t, advance: (ms) => void (t += ms) };
}

function issuerConfig(overrides: Record<string, unknown>): JwtIssuerConfig {
  return JwtIssuerSchema.parse({ issuer: ISSUER, audiences: [AUDIENCE], ...overrides });
}

async function sign(
  key: TestKey,
  nowMs: number,
  claims: JWTPayload = {},
  opts: { kid?: string | null; iss?: string; aud?: string | string[]; expIn?: number | null; nbfIn?: number } = {},
): Promise<string> {
  const nowS = Math.floor(nowMs / 1000);
  const header: { alg: string; kid?: string } = { alg: key.alg };
  if (opts.kid !== null) header.kid = opts.kid ?? key.kid;
  const jwt = new SignJWT({ sub: 'client-1', ...claims })
    .setProtectedHeader(header)
    .setIssuer(opts.iss ?? ISSUER)
    .setAudience(opts.aud ?? AUDIENCE)
    .setIssuedAt(nowS);
  if (opts.expIn !== null) jwt.setExpirationTime(nowS + (opts.expIn ?? 300));
  if (opts.nbfIn !== undefined) jwt.setNotBefore(nowS + opts.nbfIn);
  return jwt.sign(key.privateKey);
}

async function reasonOf(p: Promise<unknown>): Promise<JwtFailureReason> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof JwtError, `expected JwtError, got ${String(err)}`);
    return err.reason;
  }
  assert.fail('expected the token to be refused');
}

describe('JWT verification against a live JWKS endpoint', () => {
  const server = new JwksServer();
  let rsa: TestKey;
  let ec: TestKey;

  before(async () => {
    rsa = await makeKey('RS256', 'rsa-1');
    ec = await makeKey('ES256', 'ec-1');
    await server.start();
  });
  after(() => server.stop());

  function fresh(overrides: Record<string, unknown> = {}): { verifier: Promise<JwtVerifier>; c: ReturnType<typeof clock> } {
    server.keys = [rsa.jwk, ec.jwk];
    server.fetches = 0;
    server.status = 200;
    server.hang = false;
    const c = clock();
    const verifier = JwtVerifier.create(issuerConfig({ jwks_uri: server.url, ...overrides }), { now: c.now });
    return { verifier, c };
  }

  it('accepts RS256 and ES256 tokens and maps client, tenant and groups claims', async () => {
    const { verifier: vp, c } = fresh({ tenant_claim: 'org.tenant', groups_claim: 'realm_access.roles' });
    const v = await vp;
    const claims = { org: { tenant: 'acme' }, realm_access: { roles: ['admin', 'dev'] }, scope: 'mcp:read mcp:write' };
    for (const key of [rsa, ec]) {
      const t = await v.verify(await sign(key, c.now(), claims));
      assert.equal(t.clientId, 'client-1');
      assert.equal(t.tenant, 'acme');
      assert.deepEqual(t.groups, ['admin', 'dev']);
      assert.deepEqual(t.scopes, ['mcp:read', 'mcp:write']);
      assert.equal(t.issuer, ISSUER);
    }
  });

  it('fetches the key set once for many verifications, concurrent ones included', async () => {
    const { verifier: vp, c } = fresh();
    const v = await vp;
    const tokens = await Promise.all(Array.from({ length: 20 }, (_, i) => sign(i % 2 ? rsa : ec, c.now(), { sub: `c${i}` })));
    await Promise.all(tokens.map((t) => v.verify(t)));
    for (const t of tokens) await v.verify(t);
    assert.equal(server.fetches, 1);
  });

  it('refetches exactly once when a rotated-in kid appears', async () => {
    const { verifier: vp, c } = fresh({ jwks_refresh_cooldown: '30s' });
    const v = await vp;
    await v.verify(await sign(rsa, c.now()));
    assert.equal(server.fetches, 1);

    const rotated = await makeKey('RS256', 'rsa-2');
    server.keys = [rsa.jwk, rotated.jwk];
    c.advance(31_000);
    const tokens = await Promise.all(Array.from({ length: 10 }, (_, i) => sign(rotated, c.now(), { sub: `r${i}` })));
    await Promise.all(tokens.map((t) => v.verify(t)));
    assert.equal(server.fetches, 2, 'one refetch for the new kid, shared by concurrent verifications');
    await v.verify(await sign(rotated, c.now(), { sub: 'later' }));
    await v.verify(await sign(rsa, c.now(), { sub: 'old-key-still-listed' }));
    assert.equal(server.fetches, 2);
  });

  it('rate-limits refetches under a flood of unknown kids', async () => {
    const { verifier: vp, c } = fresh({ jwks_refresh_cooldown: '30s' });
    const v = await vp;
    await v.verify(await sign(rsa, c.now()));
    const stranger = await makeKey('RS256', 'never-published');
    c.advance(31_000);

    const flood = await Promise.all(Array.from({ length: 50 }, (_, i) => sign(stranger, c.now(), {}, { kid: `bogus-${i}` })));
    const reasons = await Promise.all(flood.map((t) => reasonOf(v.verify(t))));
    assert.ok(reasons.every((r) => r === 'unknown_key'), reasons.join(','));
    assert.equal(server.fetches, 2, 'the whole concurrent flood cost one refetch');

    for (let i = 0; i < 50; i++) {
      c.advance(100);
      assert.equal(await reasonOf(v.verify(await sign(stranger, c.now(), {}, { kid: `more-${i}` }))), 'unknown_key');
    }
    assert.equal(server.fetches, 2, 'nothing more within the cooldown');

    c.advance(31_000);
    assert.equal(await reasonOf(v.verify(await sign(stranger, c.now(), {}, { kid: 'after-cooldown' }))), 'unknown_key');
    assert.equal(server.fetches, 3, 'one more after the cooldown');
  });

  it('does not accept a rotated key before the cooldown allows a refetch, then does', async () => {
    const { verifier: vp, c } = fresh({ jwks_refresh_cooldown: '30s' });
    const v = await vp;
    await v.verify(await sign(rsa, c.now()));
    const rotated = await makeKey('ES256', 'ec-2');
    server.keys = [rsa.jwk, rotated.jwk];
    c.advance(1_000);
    assert.equal(await reasonOf(v.verify(await sign(rotated, c.now()))), 'unknown_key');
    assert.equal(server.fetches, 1);
    c.advance(30_000);
    assert.equal((await v.verify(await sign(rotated, c.now()))).clientId, 'client-1');
    assert.equal(server.fetches, 2);
  });

  it('refreshes stale keys in the background while still serving the cached ones', async () => {
    const { verifier: vp, c } = fresh({ jwks_cache_ttl: '10m' });
    const v = await vp;
    await v.verify(await sign(rsa, c.now()));
    c.advance(11 * 60_000);
    await v.verify(await sign(rsa, c.now(), { sub: 'stale-but-served' }));
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(server.fetches, 2);
  });

  it('reports an unreachable key set as keys_unavailable and does not hammer it', async () => {
    const { verifier: vp, c } = fresh({ jwks_refresh_cooldown: '30s' });
    server.status = 500;
    const v = await vp;
    assert.equal(await reasonOf(v.verify(await sign(rsa, c.now()))), 'keys_unavailable');
    assert.equal(await reasonOf(v.verify(await sign(rsa, c.now(), { sub: 'again' }))), 'keys_unavailable');
    assert.equal(server.fetches, 1);
    server.status = 200;
    c.advance(31_000);
    assert.equal((await v.verify(await sign(rsa, c.now()))).clientId, 'client-1');
    assert.equal(server.fetches, 2);
  });

  it('times out a key-set fetch that never answers', async () => {
    const { verifier: vp, c } = fresh({ jwks_timeout: '200ms' });
    server.hang = true;
    const v = await vp;
    const started = Date.now();
    assert.equal(await reasonOf(v.verify(await sign(rsa, c.now()))), 'keys_unavailable');
    assert.ok(Date.now() - started < 5_000);
  });

  it('refuses alg none, however it is spelled', async () => {
    const { verifier: vp, c } = fresh();
    const v = await vp;
    const nowS = Math.floor(c.now() / 1000);
    const unsecured = new UnsecuredJWT({ sub: 'x' }).setIssuer(ISSUER).setAudience(AUDIENCE).setExpirationTime(nowS + 300).encode();
    assert.equal(await reasonOf(v.verify(unsecured)), 'alg_not_allowed');
    const b64 = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');
    const payload = b64({ sub: 'x', iss: ISSUER, aud: AUDIENCE, exp: nowS + 300 });
    for (const alg of ['none', 'None', 'NONE']) {
      const token = `${b64({ alg, kid: rsa.kid })}.${payload}.`;
      assert.ok(looksLikeJwt(token));
      assert.equal(await reasonOf(v.verify(token)), 'alg_not_allowed', alg);
    }
    assert.equal(server.fetches, 0, 'refused before any key lookup');
  });

  it('refuses an HS256 token signed with the RSA public key as the secret (key confusion)', async () => {
    const { verifier: vp, c } = fresh();
    const v = await vp;
    const pem = await exportSPKI(rsa.publicKey);
    for (const secret of [Buffer.from(pem), Buffer.from(JSON.stringify(rsa.jwk)), Buffer.from(String(rsa.jwk.n), 'base64url')]) {
      const token = await new SignJWT({ sub: 'attacker' })
        .setProtectedHeader({ alg: 'HS256', kid: rsa.kid })
        .setIssuer(ISSUER)
        .setAudience(AUDIENCE)
        .setExpirationTime(Math.floor(c.now() / 1000) + 300)
        .sign(secret);
      assert.equal(await reasonOf(v.verify(token)), 'alg_not_allowed');
    }
  });

  it('refuses an algorithm outside the configured allow-list', async () => {
    const { verifier: vp, c } = fresh({ algorithms: ['RS256'] });
    const v = await vp;
    assert.equal(await reasonOf(v.verify(await sign(ec, c.now()))), 'alg_not_allowed');
    assert.equal((await v.verify(await sign(rsa, c.now()))).clientId, 'client-1');
  });

  it('refuses the wrong issuer and the wrong audience', async () => {
    const { verifier: vp, c } = fresh();
    const v = await vp;
    assert.equal(await reasonOf(v.verify(await sign(rsa, c.now(), {}, { iss: 'https://evil.example.com' }))), 'wrong_issuer');
    assert.equal(await reasonOf(v.verify(await sign(rsa, c.now(), {}, { aud: 'https://other.example.com/mcp' }))), 'wrong_audience');
    assert.equal(await reasonOf(v.verify(await sign(rsa, c.now(), {}, { aud: [] }))), 'wrong_audience');
    assert.equal((await v.verify(await sign(rsa, c.now(), {}, { aud: ['https://other.example.com', AUDIENCE] }))).clientId, 'client-1');
  });

  it('checks exp and nbf with the configured clock skew', async () => {
    const { verifier: vp, c } = fresh({ clock_skew: '30s' });
    const v = await vp;
    assert.equal(await reasonOf(v.verify(await sign(rsa, c.now(), {}, { expIn: -60 }))), 'expired');
    assert.equal((await v.verify(await sign(rsa, c.now(), { sub: 'a' }, { expIn: -10 }))).clientId, 'a');
    assert.equal(await reasonOf(v.verify(await sign(rsa, c.now(), {}, { nbfIn: 120 }))), 'not_yet_valid');
    assert.equal((await v.verify(await sign(rsa, c.now(), { sub: 'b' }, { nbfIn: 10 }))).clientId, 'b');
    assert.equal(await reasonOf(v.verify(await sign(rsa, c.now(), {}, { expIn: null }))), 'missing_claim');
  });

  it('stops honouring a cached token once it expires', async () => {
    const { verifier: vp, c } = fresh({ clock_skew: '0s' });
    const v = await vp;
    const token = await sign(rsa, c.now(), {}, { expIn: 60 });
    await v.verify(token);
    await v.verify(token);
    c.advance(61_000);
    assert.equal(await reasonOf(v.verify(token)), 'expired');
  });

  it('refuses tampered payloads and signatures', async () => {
    const { verifier: vp, c } = fresh();
    const v = await vp;
    for (const key of [rsa, ec]) {
      const token = await sign(key, c.now());
      const [h, p, s] = token.split('.') as [string, string, string];
      const payload = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;
      const forged = Buffer.from(JSON.stringify({ ...payload, sub: 'admin' })).toString('base64url');
      assert.equal(await reasonOf(v.verify(`${h}.${forged}.${s}`)), 'bad_signature');
      const flipped = s.slice(0, 10) + (s[10] === 'A' ? 'B' : 'A') + s.slice(11);
      assert.equal(await reasonOf(v.verify(`${h}.${p}.${flipped}`)), 'bad_signature');
      assert.equal(await reasonOf(v.verify(`${h}.${p}.`)), 'bad_signature');
      // The header names the key; swapping it for another kid must not help.
      const otherKid = Buffer.from(JSON.stringify({ alg: key.alg, kid: key === rsa ? ec.kid : rsa.kid })).toString('base64url');
      assert.ok(await reasonOf(v.verify(`${otherKid}.${p}.${s}`)));
    }
  });

  it('refuses tokens whose claims cannot name one client and one tenant', async () => {
    const { verifier: vp, c } = fresh({ tenant_claim: 'tenant' });
    const v = await vp;
    assert.equal(await reasonOf(v.verify(await sign(rsa, c.now(), { tenant: ['a', 'b'] }))), 'ambiguous_tenant');
    assert.equal(await reasonOf(v.verify(await sign(rsa, c.now(), { tenant: 42 }))), 'bad_claim');
    assert.equal(await reasonOf(v.verify(await sign(rsa, c.now(), { sub: 'evil\u202e' }))), 'missing_claim');
    assert.equal((await v.verify(await sign(rsa, c.now(), { tenant: ['solo'] }))).tenant, 'solo');
    assert.equal((await v.verify(await sign(rsa, c.now(), { sub: 'no-tenant' }))).tenant, null);
  });
});

describe('JWT key sets from configuration', () => {
  it('verifies against an inline JWKS and a JWKS file, trying each key when the token has no kid', async () => {
    const a = await makeKey('ES256', 'a');
    const b = await makeKey('ES256', 'b');
    const jwks = { keys: [a.jwk, b.jwk] };
    const inline = await JwtVerifier.create(issuerConfig({ jwks }));
    const now = Date.now();
    assert.equal((await inline.verify(await sign(b, now, {}, { kid: null }))).clientId, 'client-1');

    const dir = await mkdtemp(join(tmpdir(), 'jwks-'));
    try {
      const file = join(dir, 'jwks.json');
      await writeFile(file, JSON.stringify(jwks));
      const fromFile = await JwtVerifier.create(issuerConfig({ jwks_file: file }));
      assert.equal((await fromFile.verify(await sign(a, now))).clientId, 'client-1');
      await assert.rejects(JwtVerifier.create(issuerConfig({ jwks_file: join(dir, 'missing.json') })), /ENOENT/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses key sets holding private or symmetric keys', async () => {
    const { privateKey } = await generateKeyPair('ES256', { extractable: true });
    const priv = { ...(await exportJWK(privateKey)), kid: 'p' };
    assert.throws(() => StaticKeySet.fromDocument({ keys: [priv] }), /private key material/);
    assert.throws(() => StaticKeySet.fromDocument({ keys: [{ kty: 'oct', k: 'c2VjcmV0' }] }), /symmetric/);
    assert.throws(() => StaticKeySet.fromDocument({ keys: [] }), /at least one key/);
  });

  it('uses the gateway resource as the default audience', async () => {
    const k = await makeKey('RS256', 'k');
    const cfg = JwtIssuerSchema.parse({ issuer: ISSUER, jwks: { keys: [k.jwk] } });
    const v = await JwtVerifier.create(cfg, { defaultAudience: AUDIENCE });
    assert.deepEqual(v.acceptedAudiences, [AUDIENCE]);
    assert.equal((await v.verify(await sign(k, Date.now()))).clientId, 'client-1');
    await assert.rejects(JwtVerifier.create(cfg), /no audience/);
  });

  it('dispatches several issuers by iss and refuses unknown ones', async () => {
    const k1 = await makeKey('RS256', 'k1');
    const k2 = await makeKey('ES256', 'k2');
    const issuers = await JwtIssuers.create([
      issuerConfig({ issuer: 'https://one.example.com', jwks: { keys: [k1.jwk] } }),
      issuerConfig({ issuer: 'https://two.example.com', jwks: { keys: [k2.jwk] }, client_claim: 'azp' }),
    ]);
    const now = Date.now();
    assert.equal((await issuers.verify(await sign(k1, now, {}, { iss: 'https://one.example.com' }))).issuer, 'https://one.example.com');
    const two = await issuers.verify(await sign(k2, now, { azp: 'app-2' }, { iss: 'https://two.example.com' }));
    assert.equal(two.clientId, 'app-2');
    assert.equal(await reasonOf(issuers.verify(await sign(k1, now, {}, { iss: 'https://three.example.com' }))), 'unknown_issuer');
    // A token from issuer one's key claiming issuer two is checked against issuer two's keys.
    assert.equal(await reasonOf(issuers.verify(await sign(k1, now, {}, { iss: 'https://two.example.com', kid: 'k2' }))), 'unknown_key');
    assert.equal(await reasonOf(issuers.verify('not-a-jwt')), 'malformed');
  });
});

describe('claimAt', () => {
  it('prefers literal names, then walks dotted paths', () => {
    const payload = { 'https://example.com/tenant': 'lit', a: { b: { c: 'deep' } }, 'a.b': 'flat' };
    assert.equal(claimAt(payload, 'https://example.com/tenant'), 'lit');
    assert.equal(claimAt(payload, 'a.b.c'), 'deep');
    assert.equal(claimAt(payload, 'a.b'), 'flat');
    assert.equal(claimAt(payload, 'a.x.c'), undefined);
    assert.equal(claimAt(payload, '__proto__'), undefined);
    assert.equal(claimAt(payload, 'constructor.name'), undefined);
  });
});
