import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MtlsIdentities, parseXfcc, XfccParseError } from '../../../src/auth/mtls.js';
import { MtlsSchema } from '../../../src/auth/schema.js';

// Shapes as Envoy documents them for x-forwarded-client-cert.
const SINGLE =
  'By=spiffe://lyft.com/frontend;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;' +
  'Subject="/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client";URI=spiffe://lyft.com/testclient';
const TWO =
  'By=http://frontend.lyft.com;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;URI=http://testclient.lyft.com,' +
  'By=http://backend.lyft.com;Hash=9ba61d6425303443c0748a02dd8de688468ed33be74eee6556d90c0149c1309e;URI=http://frontend.lyft.com';

describe('parseXfcc', () => {
  it('parses one element with a quoted subject', () => {
    const [el, ...rest] = parseXfcc(SINGLE);
    assert.equal(rest.length, 0);
    assert.equal(el?.by, 'spiffe://lyft.com/frontend');
    assert.equal(el?.hash, '468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688');
    assert.equal(el?.subject, '/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client');
    assert.deepEqual(el?.uri, ['spiffe://lyft.com/testclient']);
    assert.deepEqual(el?.dns, []);
  });

  it('parses several elements, repeated SANs and case-insensitive keys', () => {
    const els = parseXfcc(TWO);
    assert.equal(els.length, 2);
    assert.deepEqual(els.map((e) => e.uri[0]), ['http://testclient.lyft.com', 'http://frontend.lyft.com']);
    const [el] = parseXfcc('hash=abc;dns=a.example.com;DNS=b.example.com;uri=spiffe://x/1;URI=spiffe://x/2');
    assert.deepEqual(el?.dns, ['a.example.com', 'b.example.com']);
    assert.deepEqual(el?.uri, ['spiffe://x/1', 'spiffe://x/2']);
  });

  it('honours quoting: commas, semicolons and escaped quotes stay inside the value', () => {
    const [a, b] = parseXfcc('Subject="CN=a\\"b, O=x;y";URI=spiffe://x/y,Subject="CN=\\\\back";DNS=d.example.com');
    assert.equal(a?.subject, 'CN=a"b, O=x;y');
    assert.deepEqual(a?.uri, ['spiffe://x/y']);
    assert.equal(b?.subject, 'CN=\\back');
    assert.deepEqual(b?.dns, ['d.example.com']);
    assert.equal(parseXfcc('Cert="-----BEGIN%20CERTIFICATE-----%0Afoo"')[0]?.cert, '-----BEGIN%20CERTIFICATE-----%0Afoo');
  });

  it('rejects malformed headers', () => {
    for (const bad of ['', 'URI', 'Subject="unterminated', 'Subject="x"trailing', 'URI=a,', 'URI=a"b', 'Subject="x\\', ';URI=a', 'b@d=1']) {
      assert.throws(() => parseXfcc(bad), XfccParseError, bad);
    }
  });
});

describe('MtlsIdentities', () => {
  it('takes the identity from the last element (the one our Envoy set)', () => {
    const m = new MtlsIdentities(MtlsSchema.parse({ identity: 'uri_san', tenant: 'acme' }));
    const r = m.identify(TWO);
    assert.ok(r.ok);
    assert.equal(r.identity.clientId, 'http://frontend.lyft.com');
    assert.equal(r.identity.tenant, 'acme');
  });

  it('maps certificates through the clients list, first match wins, others refused', () => {
    const m = new MtlsIdentities(
      MtlsSchema.parse({
        identity: 'uri_san',
        tenant: 'fallback',
        clients: [
          { match: 'spiffe://example.org/ns/acme/*', tenant: 'acme', groups: ['svc'] },
          { match: 'spiffe://example.org/ns/ops/sa/?i', client_id: 'ops-ci' },
        ],
      }),
    );
    const acme = m.identify('URI=spiffe://example.org/ns/acme/sa/api');
    assert.ok(acme.ok);
    assert.deepEqual(acme.identity, {
      clientId: 'spiffe://example.org/ns/acme/sa/api',
      certificateName: 'spiffe://example.org/ns/acme/sa/api',
      tenant: 'acme',
      groups: ['svc'],
    });
    const ops = m.identify('URI=spiffe://example.org/ns/ops/sa/ci');
    assert.ok(ops.ok);
    assert.equal(ops.identity.clientId, 'ops-ci');
    assert.equal(ops.identity.tenant, 'fallback');
    assert.deepEqual(m.identify('URI=spiffe://example.org/ns/other/sa/x'), { ok: false, reason: 'unknown_client' });
    assert.deepEqual(m.identify('URI=spiffe://example.org/ns/acme'), { ok: false, reason: 'unknown_client' });
  });

  it('uses DNS SANs or the subject when so configured', () => {
    const dns = new MtlsIdentities(MtlsSchema.parse({ identity: 'dns_san' }));
    const r = dns.identify('DNS=api.example.com;DNS=www.example.com;URI=spiffe://x/y');
    assert.ok(r.ok && r.identity.clientId === 'api.example.com');
    assert.deepEqual(dns.identify('URI=spiffe://x/y'), { ok: false, reason: 'no_certificate_identity' });
    const subject = new MtlsIdentities(MtlsSchema.parse({ identity: 'subject' }));
    const s = subject.identify(SINGLE);
    assert.ok(s.ok && s.identity.clientId === '/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client');
  });

  it('refuses malformed headers and names with control characters', () => {
    const m = new MtlsIdentities(MtlsSchema.parse({}));
    assert.deepEqual(m.identify('Subject="open'), { ok: false, reason: 'malformed_xfcc' });
    assert.deepEqual(m.identify('URI="spiffe://x/\u202eevil"'), { ok: false, reason: 'no_certificate_identity' });
  });
});
