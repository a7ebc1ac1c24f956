import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ClientProfiles, NO_CAPABILITIES, profileOf } from '../../../src/upstream/profiles.js';

function metadata(capabilities: unknown, name = 'c'): string {
  return JSON.stringify({ capabilities, clientInfo: { name, version: '1' } });
}

describe('client profiles', () => {
  it('keeps the shape of the capabilities, not their values or order', () => {
    assert.equal(profileOf({}), NO_CAPABILITIES);
    const a = profileOf({ sampling: {}, elicitation: { form: {}, url: {} }, roots: { listChanged: true } });
    const b = profileOf({ roots: { listChanged: true }, elicitation: { url: { x: 1 }, form: {} }, sampling: { note: 'ignored' } });
    assert.equal(a.key, b.key);
    assert.notEqual(a.key, profileOf({ sampling: {}, elicitation: { form: {} }, roots: { listChanged: true } }).key, 'url elicitation is a different shape');
    assert.notEqual(profileOf({ roots: {} }).key, profileOf({ roots: { listChanged: true } }).key);
    assert.equal(profileOf({ roots: { listChanged: false } }).key, profileOf({ roots: {} }).key, 'only true flags count');
    assert.deepEqual(profileOf({ sampling: {} }).capabilities, { sampling: {} });
    assert.equal(profileOf({ sampling: true, roots: 'yes' }), NO_CAPABILITIES, 'a capability that is not an object declares nothing');
    assert.equal(profileOf({ experimental: { anything: {} }, madeUp: {} }), NO_CAPABILITIES, 'only capabilities servers act on count');
  });

  it('bounds what a hostile client can make it keep', () => {
    const wide: Record<string, unknown> = {};
    for (let i = 0; i < 1000; i++) wide[`k${i}`] = {};
    assert.ok(profileOf(wide).key.length < 2_000);
    let deep: Record<string, unknown> = {};
    for (let i = 0; i < 100; i++) deep = { d: deep };
    assert.ok(profileOf(deep).key.length < 100);
    assert.ok(!Object.hasOwn(JSON.parse(profileOf(JSON.parse('{"__proto__":{"x":{}}}')).key) as object, '__proto__'));
  });

  it('keeps at most max profiles, dropping the least recently used', () => {
    const evicted: string[] = [];
    const p = new ClientProfiles(2, (x) => evicted.push(x.key));
    const s = p.of(metadata({ sampling: {} }));
    const r = p.of(metadata({ roots: {} }));
    assert.equal(p.of(metadata({}, 'anyone')), NO_CAPABILITIES, 'no capabilities: the default catalog, never counted');
    assert.equal(p.of(metadata({ sampling: {} }, 'another client')), s, 'one profile for one shape');
    p.of(metadata({ elicitation: {} }));
    assert.deepEqual(evicted, [r.key]);
  });
});
