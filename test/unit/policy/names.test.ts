import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { canonicalizeUri, canonicalizeUriPattern, foldForDeny, suspiciousName } from '../../../src/policy/names.js';

describe('suspiciousName', () => {
  it('accepts spec-style and single-script names', () => {
    for (const n of ['echo', 'get_user.v2', 'a-b_c.d', 'données', 'ツール', 'поиск']) assert.equal(suspiciousName(n), null, n);
  });

  it('names why a name is refused', () => {
    const cases: [string, string][] = [
      ['', 'empty'],
      ['a'.repeat(257), 'too_long'],
      ['a\u200db', 'invisible_or_control'],
      ['a b', 'invisible_or_control'],
      ['a\u00a0b', 'invisible_or_control'],
      ['\u2066x\u2069', 'invisible_or_control'],
      ['e\u0301', 'not_nfc'],
      ['ｅcho', 'compatibility_form'],
      ['ﬁle', 'compatibility_form'],
      ['x²', 'compatibility_form'],
      ['p\u0430ypal', 'mixed_script'],
      ['\u03b1pha_tool', 'mixed_script'],
      ['a\ud800', 'invisible_or_control'],
      ['a\ue000', 'invisible_or_control'],
    ];
    for (const [n, why] of cases) assert.equal(suspiciousName(n), why, JSON.stringify(n));
  });
});

describe('foldForDeny', () => {
  it('folds case, compatibility forms, marks and invisibles', () => {
    assert.equal(foldForDeny('Delete_*'), 'delete_*');
    assert.equal(foldForDeny('ＤＥＬＥＴＥ'), 'delete');
    assert.equal(foldForDeny('d\u00e9l\u00e8te'), 'delete');
    assert.equal(foldForDeny('STRASSE'), foldForDeny('straße'));
    assert.equal(foldForDeny('\u0131d'), 'id');
    assert.equal(foldForDeny('a\u200bb'), 'ab');
  });
});

describe('canonicalizeUri', () => {
  it('decodes unreserved escapes, upper-cases others, lower-cases scheme and host', () => {
    const r = canonicalizeUri('HTTPS://Example.COM/%7euser/a%2dB%3f?q=%3d');
    assert.ok(r.ok);
    assert.equal(r.canonical, 'https://example.com/~user/a-B%3F?q=%3D');
    assert.equal(r.denyForm, 'https://example.com/~user/a-b??q==');
  });

  it('treats patterns the same way without refusing them', () => {
    assert.deepEqual(canonicalizeUriPattern('FILE:///Srv/%7E*'), { canonical: 'file:///Srv/~*', denyForm: 'file:///srv/~*' });
    assert.equal(canonicalizeUriPattern('x:%2F%zz').canonical, 'x:%2F%zz');
  });

  it('refuses what an upstream could read differently', () => {
    for (const [uri, why] of [
      ['a:/b/%2f', 'suspicious_encoding'],
      ['a:/b/%5C', 'suspicious_encoding'],
      ['a:/b/%25', 'suspicious_encoding'],
      ['a:/b/%0a', 'suspicious_encoding'],
      ['a:/b/%g1', 'bad_percent_encoding'],
      ['a:/b/%C3', 'bad_percent_encoding'],
      ['a:/b/..', 'dot_segment'],
      ['a:/b/.', 'dot_segment'],
      ['a:/%2E/b', 'dot_segment'],
      ['a:/b\\c', 'backslash'],
      ['a:/b c', 'invisible_or_control'],
    ] as const) {
      const r = canonicalizeUri(uri);
      assert.ok(!r.ok, uri);
      assert.equal(r.reason, why, uri);
    }
    assert.ok(canonicalizeUri('a:/b/..c/d?x=../y').ok, 'dots inside a segment or in the query are fine');
  });
});
