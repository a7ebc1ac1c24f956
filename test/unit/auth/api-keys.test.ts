import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ApiKeyStore, extractCredential, isWellFormedCredential, sha256Hex } from '../../../src/auth/api-keys.js';
import { ApiKeySchema } from '../../../src/auth/schema.js';

const KEY_A = 'mcpgw_aaaaaaaaaaaaaaaaaaaaaaaaaaaa';
const KEY_B = 'mcpgw_bbbbbbbbbbbbbbbbbbbbbbbbbbbb';

function store(): ApiKeyStore {
  return new ApiKeyStore([
    ApiKeySchema.parse({ id: 'ci', key_sha256: sha256Hex(KEY_A), tenant: 'acme', groups: ['deploy'] }),
    // Upper-case hex in the config is fine.
    ApiKeySchema.parse({ id: 'ops', key_sha256: sha256Hex(KEY_B).toUpperCase() }),
  ]);
}

describe('sha256Hex', () => {
  it('matches the published test vector and hashes UTF-8', () => {
    assert.equal(sha256Hex('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    assert.equal(sha256Hex('é'), sha256Hex('\u00e9'));
    assert.notEqual(sha256Hex('é'), sha256Hex('e\u0301'));
  });
});

describe('ApiKeyStore', () => {
  it('finds each configured key and what it stands for', () => {
    const s = store();
    assert.equal(s.size, 2);
    assert.deepEqual(s.lookup(KEY_A), { id: 'ci', tenant: 'acme', groups: ['deploy'] });
    assert.deepEqual(s.lookup(KEY_B), { id: 'ops', tenant: null, groups: [] });
  });

  it('misses on anything that is not exactly a configured key', () => {
    const s = store();
    for (const miss of ['', KEY_A.slice(0, -1), `${KEY_A}x`, KEY_A.toUpperCase(), ` ${KEY_A}`, sha256Hex(KEY_A), 'x'.repeat(10_000)]) {
      assert.equal(s.lookup(miss), null, JSON.stringify(miss.slice(0, 40)));
    }
  });

  it('does not depend on the order keys are configured in', () => {
    const reversed = new ApiKeyStore([
      ApiKeySchema.parse({ id: 'ops', key_sha256: sha256Hex(KEY_B) }),
      ApiKeySchema.parse({ id: 'ci', key_sha256: sha256Hex(KEY_A), tenant: 'acme' }),
    ]);
    assert.equal(reversed.lookup(KEY_A)?.id, 'ci');
    assert.equal(reversed.lookup(KEY_B)?.id, 'ops');
  });

  it('scales to many keys with one hash and one comparison per lookup', () => {
    const keys = Array.from({ length: 5000 }, (_, i) => `key-number-${i}-padding-padding`);
    const big = new ApiKeyStore(keys.map((k, i) => ApiKeySchema.parse({ id: `c${i}`, key_sha256: sha256Hex(k) })));
    assert.equal(big.lookup(keys[4321]!)?.id, 'c4321');
    assert.equal(big.lookup('key-number-5000-padding-padding'), null);
  });
});

describe('extractCredential', () => {
  const h = (entries: Record<string, string>): Map<string, string> => new Map(Object.entries(entries));

  it('reads Bearer (any case) and X-API-Key', () => {
    assert.deepEqual(extractCredential(h({ authorization: `Bearer ${KEY_A}` })), { kind: 'bearer', token: KEY_A });
    assert.deepEqual(extractCredential(h({ authorization: `bearer   ${KEY_A} ` })), { kind: 'bearer', token: KEY_A });
    assert.deepEqual(extractCredential(h({ 'x-api-key': KEY_A })), { kind: 'api_key', token: KEY_A });
    assert.deepEqual(extractCredential(h({})), { kind: 'none' });
  });

  it('refuses two credentials at once, other schemes and malformed values', () => {
    assert.deepEqual(extractCredential(h({ authorization: `Bearer ${KEY_A}`, 'x-api-key': KEY_B })), {
      kind: 'malformed',
      reason: 'ambiguous_credentials',
    });
    assert.equal((extractCredential(h({ authorization: 'Basic dXNlcjpwYXNz' })) as { reason: string }).reason, 'unsupported_scheme');
    for (const bad of ['Bearer', 'Bearer ', 'Bearer a b', `Bearer ${KEY_A},${KEY_B}`, 'Bearer ключ', `Bearer ${'x'.repeat(20_000)}`]) {
      assert.equal((extractCredential(h({ authorization: bad })) as { reason: string }).reason, 'malformed_credential', bad.slice(0, 30));
    }
    for (const bad of ['', 'a,b', 'tab\there', 'nul\0']) {
      assert.equal((extractCredential(h({ 'x-api-key': bad })) as { reason: string }).reason, 'malformed_credential');
    }
  });

  it('accepts visible ASCII only', () => {
    assert.ok(isWellFormedCredential('abc-DEF_123.~+/='));
    assert.ok(!isWellFormedCredential('with space'));
    assert.ok(!isWellFormedCredential('naïve'));
    assert.ok(!isWellFormedCredential(''));
  });
});
