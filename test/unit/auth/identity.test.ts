import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import { sha256Hex } from '../../../src/auth/api-keys.js';
import {
  Authenticator,
  authFailureOf,
  isAuthenticated,
  sessionBoundTo,
  type Identity,
} from '../../../src/auth/identity.js';
import { AuthSchema } from '../../../src/auth/schema.js';
import { GatewayError } from '../../../src/errors/gateway-error.js';

const KEY = 'mcpgw_0123456789abcdefghijklmnop';
const RESOURCE = 'https://mcp.example.com/mcp';
const METADATA = 'https://mcp.example.com/.well-known/oauth-protected-resource/mcp';
const ISSUER = 'https://idp.example.com';

const h = (entries: Record<string, string> = {}): Map<string, string> => new Map(Object.entries(entries));

async function rejection(p: Promise<unknown>): Promise<GatewayError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof GatewayError, String(err));
    return err;
  }
  assert.fail('expected authentication to fail');
}

describe('Authenticator', () => {
  let signer: CryptoKey;
  let auth: Authenticator;

  async function build(extra: Record<string, unknown> = {}): Promise<Authenticator> {
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    signer = privateKey;
    const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' };
    return Authenticator.create(
      AuthSchema.parse({
        api_keys: [{ id: 'ci', key_sha256: sha256Hex(KEY), tenant: 'acme', groups: ['deploy'] }],
        jwt: [{ issuer: ISSUER, jwks: { keys: [jwk] }, tenant_claim: 'tenant' }],
        oauth: { resource: RESOURCE, authorization_servers: [ISSUER] },
        ...extra,
      }),
    );
  }

  async function token(claims: Record<string, unknown> = {}, expIn = 300): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ sub: 'user-7', tenant: 'acme', ...claims })
      .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
      .setIssuer(ISSUER)
      .setAudience(RESOURCE)
      .setExpirationTime(now + expIn)
      .sign(signer);
  }

  it('treats everyone as anonymous when auth is not configured', async () => {
    const none = await Authenticator.create(undefined);
    assert.equal(none.enabled, false);
    const id = await none.authenticate(h({ authorization: 'Bearer whatever' }));
    assert.equal(id.method, 'anonymous');
    assert.equal(id.clientId, null);
    assert.equal(isAuthenticated(id), false);
  });

  it('authenticates API keys in either header', async () => {
    auth = await build();
    const variants: Record<string, string>[] = [{ authorization: `Bearer ${KEY}` }, { 'x-api-key': KEY }];
    for (const headers of variants) {
      const id = await auth.authenticate(h(headers));
      assert.equal(id.method, 'api_key');
      assert.equal(id.clientId, 'ci');
      assert.equal(id.tenant, 'acme');
      assert.deepEqual(id.groups, ['deploy']);
      assert.equal(id.subject, JSON.stringify(['api_key', null, 'ci', 'acme']));
    }
  });

  it('authenticates JWTs, audience defaulting to the gateway resource', async () => {
    auth = await build();
    const id = await auth.authenticate(h({ authorization: `Bearer ${await token()}` }));
    assert.equal(id.method, 'jwt');
    assert.equal(id.clientId, 'user-7');
    assert.equal(id.issuer, ISSUER);
    assert.equal(id.tenant, 'acme');
    assert.ok(id.expiresAt !== null && id.expiresAt > Date.now());
  });

  it('answers a missing credential with a challenge pointing at the metadata', async () => {
    auth = await build();
    const err = await rejection(auth.authenticate(h()));
    assert.equal(err.httpStatus, 401);
    assert.equal(err.code, 'GW_ERR_AUTH_UNAUTHENTICATED');
    assert.equal(err.headers['www-authenticate'], `Bearer resource_metadata="${METADATA}"`);
    assert.equal(authFailureOf(err)?.reason, 'no_credentials');
  });

  it('answers bad credentials with invalid_token, never naming the cause to the client', async () => {
    auth = await build();
    const cases: [Record<string, string>, string][] = [
      [{ authorization: 'Bearer mcpgw_not-a-configured-key-at-all' }, 'unknown_api_key'],
      [{ 'x-api-key': 'mcpgw_not-a-configured-key-at-all' }, 'unknown_api_key'],
      [{ authorization: `Bearer ${await token({}, -3600)}` }, 'expired'],
      [{ authorization: `Bearer ${(await token()).slice(0, -4)}AAAA` }, 'bad_signature'],
      [{ authorization: `Bearer ${await token({ tenant: ['a', 'b'] })}` }, 'ambiguous_tenant'],
    ];
    for (const [headers, reason] of cases) {
      const err = await rejection(auth.authenticate(h(headers)));
      assert.equal(err.httpStatus, 401);
      const www = err.headers['www-authenticate'] ?? '';
      assert.match(www, /^Bearer resource_metadata="[^"]+", error="invalid_token"/);
      assert.equal(authFailureOf(err)?.reason, reason);
      assert.ok(!err.message.includes(reason));
      assert.ok(!JSON.stringify(err.headers).includes(KEY));
      if (reason === 'expired') assert.match(www, /error_description="The access token expired"/);
    }
  });

  it('refuses doubled or malformed credentials with 400, and other schemes with a plain challenge', async () => {
    auth = await build();
    const both = await rejection(auth.authenticate(h({ authorization: `Bearer ${KEY}`, 'x-api-key': KEY })));
    assert.equal(both.httpStatus, 400);
    assert.match(both.headers['www-authenticate'] ?? '', /error="invalid_request"/);
    assert.equal(authFailureOf(both)?.reason, 'ambiguous_credentials');
    const basic = await rejection(auth.authenticate(h({ authorization: 'Basic dXNlcjpwYXNz' })));
    assert.equal(basic.httpStatus, 401);
    assert.equal(basic.headers['www-authenticate'], `Bearer resource_metadata="${METADATA}"`);
  });

  it('lets anonymous callers in only when allowed, with their tenant', async () => {
    auth = await build({ allow_anonymous: true, anonymous_tenant: 'public' });
    const id = await auth.authenticate(h());
    assert.equal(id.method, 'anonymous');
    assert.equal(id.tenant, 'public');
    // A bad credential is still refused: it is never downgraded to anonymous.
    await rejection(auth.authenticate(h({ 'x-api-key': 'mcpgw_wrong-wrong-wrong-wrong' })));
  });

  it('takes mTLS identities from the header Envoy sets, only when configured, and only without a token', async () => {
    const mtls = await build({ mtls: { identity: 'uri_san', tenant: 'acme' } });
    const xfcc = { 'x-forwarded-client-cert': 'Hash=abc;URI=spiffe://example.org/ns/acme/sa/ci' };
    const id = await mtls.authenticate(h(xfcc));
    assert.equal(id.method, 'mtls');
    assert.equal(id.clientId, 'spiffe://example.org/ns/acme/sa/ci');
    assert.equal((await mtls.authenticate(h({ ...xfcc, 'x-api-key': KEY }))).method, 'api_key');
    const broken = await rejection(mtls.authenticate(h({ 'x-forwarded-client-cert': 'Subject="open' })));
    assert.equal(authFailureOf(broken)?.reason, 'malformed_xfcc');

    auth = await build();
    const ignored = await rejection(auth.authenticate(h(xfcc)));
    assert.equal(authFailureOf(ignored)?.reason, 'no_credentials');
  });

  it('builds plain challenges when no OAuth metadata is configured', async () => {
    const plain = await Authenticator.create(AuthSchema.parse({ api_keys: [{ id: 'x', key_sha256: sha256Hex(KEY) }] }));
    assert.equal(plain.resource, null);
    const err = await rejection(plain.authenticate(h()));
    assert.equal(err.headers['www-authenticate'], 'Bearer');
    const bad = await rejection(plain.authenticate(h({ authorization: 'Bearer a.b.c' })));
    assert.equal(authFailureOf(bad)?.reason, 'unknown_api_key');
    assert.equal(plain.challenge().httpStatus, 401);
  });
});

describe('session binding', () => {
  const id = (subject: string, method: Identity['method'] = 'jwt'): Identity => ({
    method,
    clientId: method === 'anonymous' ? null : 'c',
    tenant: null,
    groups: [],
    scopes: [],
    issuer: null,
    expiresAt: null,
    subject,
  });

  it('binds sessions to the exact subject; unbound sessions stay anonymous', () => {
    assert.ok(sessionBoundTo('s1', id('s1')));
    assert.ok(!sessionBoundTo('s1', id('s2')));
    assert.ok(sessionBoundTo(null, id('anon', 'anonymous')));
    assert.ok(!sessionBoundTo(null, id('s1')));
  });
});
