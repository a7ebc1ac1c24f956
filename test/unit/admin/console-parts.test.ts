import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AdminAuth, sameOrigin } from '../../../src/admin/auth.js';
import { MASK, maskConfig } from '../../../src/admin/data.js';
import { esc, html, sparkline } from '../../../src/admin/html.js';
import { AdminSchema } from '../../../src/config/schema.js';
import { sha256Hex } from '../../../src/auth/api-keys.js';
import { Authenticator, subjectKey, subjectParts } from '../../../src/auth/identity.js';
import { ConfigError, envReferences, parseConfigDocument, parseConfigText } from '../../../src/config/load.js';

const KEY = 'mcpgw_admin_key_0123456789abcdef';
const MINIMAL = 'servers:\n  alpha:\n    url: http://127.0.0.1:3001/mcp\n';

function refusal(yaml: string): string {
  try {
    parseConfigText(yaml, {});
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.message;
  }
  assert.fail('expected a refusal');
}

describe('admin console parts', () => {
  it('is off by default, and cannot be turned on without credentials of its own', () => {
    assert.equal(parseConfigText(MINIMAL, {}).admin.console, false);
    assert.match(refusal(`${MINIMAL}admin:\n  console: true\n`), /credentials of its own[\s\S]*at admin\.console\b/);
    assert.match(refusal(`${MINIMAL}admin:\n  jwt_groups: [ops]\n`), /needs jwt_issuers[\s\S]*at admin\.jwt_issuers/);
    assert.match(refusal(`${MINIMAL}admin:\n  jwt_groups: [ops]\n  jwt_issuers: [https://nobody]\n`), /https:\/\/nobody is not an auth\.jwt issuer[\s\S]*at admin\.jwt_issuers\[0\]/);
    const hash = sha256Hex(KEY);
    assert.match(
      refusal(`${MINIMAL}auth:\n  api_keys: [{id: c, key_sha256: "${hash}"}]\nadmin:\n  console: true\n  api_keys: [{id: a, key_sha256: "${hash.toUpperCase()}"}]\n`),
      /must not also be a client key[\s\S]*at admin\.api_keys\[0\]\.key_sha256/,
    );
    assert.match(
      refusal(`${MINIMAL}gateway:\n  listen: 127.0.0.1:8080\n  admin: 0.0.0.0:8080\nadmin:\n  console: true\n  api_keys: [{id: a, key_sha256: "${sha256Hex(KEY)}"}]\n`),
      /client listener[\s\S]*at gateway\.admin/,
    );
    assert.match(refusal(`${MINIMAL}admin:\n  api_keys: [{id: a, key_sha256: nothex}]\n`), /admin\.api_keys\[0\]\.key_sha256/);
    assert.match(refusal(`${MINIMAL}admin:\n  bogus: 1\n`), /"bogus"[\s\S]*at admin$/);
  });

  it('takes its own key as Basic password, Bearer or X-Admin-Key, one credential at a time', async () => {
    const admin = AdminSchema.parse({ console: true, api_keys: [{ id: 'oncall', key_sha256: sha256Hex(KEY) }] });
    const auth = new AdminAuth(admin, await Authenticator.create(undefined));
    const basic = (user: string, pass: string) => `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
    const ok = { id: 'oncall', method: 'admin_key' };
    assert.deepEqual(await auth.check({ authorization: basic('anyone', KEY) }), ok);
    assert.deepEqual(await auth.check({ authorization: `Bearer ${KEY}` }), ok);
    assert.deepEqual(await auth.check({ 'x-admin-key': KEY }), ok);
    for (const headers of [
      {},
      { authorization: basic('oncall', 'wrong-key-0123456789') },
      { authorization: basic(KEY, '') },
      { authorization: `Bearer ${KEY}x` },
      { authorization: `Bearer ${KEY}`, 'x-admin-key': KEY },
      { authorization: `Digest ${KEY}` },
      { authorization: 'Basic' },
      { 'x-admin-key': `${KEY}\u00e9` },
    ]) {
      assert.equal(await auth.check(headers), null, JSON.stringify(headers));
    }
  });

  it('accepts changes only from its own pages (or from clients that are no browser)', () => {
    assert.equal(sameOrigin({ 'sec-fetch-site': 'same-origin', host: 'a:1' }), true);
    assert.equal(sameOrigin({ 'sec-fetch-site': 'none' }), true);
    assert.equal(sameOrigin({ 'sec-fetch-site': 'cross-site', origin: 'http://a:1', host: 'a:1' }), false);
    assert.equal(sameOrigin({ 'sec-fetch-site': 'same-site' }), false);
    assert.equal(sameOrigin({ origin: 'http://a:1', host: 'a:1' }), true);
    assert.equal(sameOrigin({ origin: 'https://evil.example', host: 'a:1' }), false);
    assert.equal(sameOrigin({ origin: 'null', host: 'a:1' }), false);
    assert.equal(sameOrigin({ host: 'a:1' }), true, 'curl and scripts send neither');
  });

  it('masks secrets wherever they are, and keeps the rest', () => {
    const masked = maskConfig({
      servers: { gh: { url: 'https://api.example.com/mcp', headers: { Authorization: 'Bearer ghp_secret', 'X-Team': 'ops' } } },
      redis: { url: 'redis://user:hunter2@redis:6379/0', password: 'pw', username: 'acl-user', tls: true },
      auth: {
        api_keys: [{ id: 'alice', key_sha256: 'ab'.repeat(32), tenant: 'acme' }],
        jwt: [{ issuer: 'https://idp', jwks_uri: 'https://idp/jwks?api_key=qs-secret', jwks: { keys: [{ kty: 'RSA', kid: 'k1', n: 'pub', e: 'AQAB', d: 'private-d' }] } }],
      },
      filters: { defaults: [{ tools: ['*'], arguments: { api_token: 'injected-secret', limit: 10 } }] },
      other: 'https://token@host.example/x',
    }) as Record<string, any>;
    assert.deepEqual(masked['servers'].gh.headers, { Authorization: MASK, 'X-Team': MASK });
    assert.equal(masked['servers'].gh.url, 'https://api.example.com/mcp');
    assert.equal(masked['redis'].url, `redis://user:${MASK}@redis:6379/0`);
    assert.equal(masked['redis'].password, MASK);
    assert.equal(masked['redis'].tls, true);
    assert.equal(masked['redis'].username, MASK);
    assert.equal(masked['auth'].jwt[0].jwks_uri, `https://idp/jwks?api_key=${MASK}`);
    assert.deepEqual(masked['auth'].jwt[0].jwks.keys[0], { kty: 'RSA', kid: 'k1', n: 'pub', e: 'AQAB', d: MASK });
    assert.deepEqual(masked['filters'].defaults[0], { tools: ['*'], arguments: { api_token: MASK, limit: MASK } });
    assert.deepEqual(masked['auth'].api_keys[0], { id: 'alice', key_sha256: MASK, tenant: 'acme' });
    assert.equal(masked['other'], `https://${MASK}@host.example/x`);
    assert.doesNotMatch(JSON.stringify(masked), /hunter2|ghp_secret|abab|qs-secret|private-d|injected-secret|acl-user/);
  });

  it('reads a session subject back into its parts', () => {
    assert.deepEqual(subjectParts(subjectKey('jwt', 'https://idp', 'alice', 'acme')), { method: 'jwt', issuer: 'https://idp', clientId: 'alice', tenant: 'acme' });
    assert.deepEqual(subjectParts(subjectKey('anonymous', null, null, null)), { method: 'anonymous', issuer: null, clientId: null, tenant: null });
    for (const junk of ['', 'alice', '[1,2,3,4]', '["jwt"]', '{}']) assert.equal(subjectParts(junk), null, junk);
  });

  it('leaves switches named like secrets alone', () => {
    const masked = maskConfig({ logging: { arguments: false }, filters: { pii: { arguments: true } } }) as Record<string, any>;
    assert.equal(masked['logging'].arguments, false);
    assert.equal(masked['filters'].pii.arguments, true);
  });

  it('finds every ${VAR} a config refers to, however the YAML spells it', () => {
    const doc = parseConfigDocument('a: ${PLAIN}\nb: "\\x24{ESCAPED}"\nc: ["\\u0024{UNICODE:-d}"]\nd: "${SPLIT\\\n  NAME}"\ne: $NOT_A_REF\n');
    assert.deepEqual([...envReferences(doc)].sort(), ['ESCAPED', 'PLAIN', 'SPLITNAME', 'UNICODE']);
  });

  it('escapes every value it renders', () => {
    const evil = '<script>alert("x")</script>&\'';
    assert.equal(esc(evil), '&#60;script&#62;alert(&#34;x&#34;)&#60;/script&#62;&#38;&#39;');
    assert.equal(html`<td title="${evil}">${[evil, html`<b>${evil}</b>`]}</td>`.text.includes('<script>'), false);
    assert.match(html`<b>${html`<i>kept</i>`}</b>`.text, /<b><i>kept<\/i><\/b>/);
    assert.match(sparkline([1, 2, -1, 4]).text, /<polyline[^>]+points="0\.0,[\d.]+ [\d.]+,[\d.]+ 160\.0,2\.0"/);
    assert.match(sparkline([1, 2, -1, 4]).text, /<line x1="106\.7"/, 'a failed check is a red tick');
  });
});
