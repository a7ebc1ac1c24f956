import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GlobSet, globMatches } from '../../../src/lib/glob.js';

describe('globMatches', () => {
  it('implements * (any run) and ? (one character), everything else literal', () => {
    const cases: [string, string, boolean][] = [
      ['*', '', true],
      ['*', 'anything', true],
      ['a*', 'a', true],
      ['a*c', 'abbbc', true],
      ['a*c', 'abbbd', false],
      ['a?c', 'abc', true],
      ['a?c', 'ac', false],
      ['a?c', 'abbc', false],
      ['*.txt', 'x.txt', true],
      ['*.txt', 'xytxt', false],
      ['[a]', '[a]', true],
      ['[a]', 'a', false],
      ['a+b', 'a+b', true],
      ['a+b', 'aab', false],
      ['**x', 'x', true],
      ['*a*b*', 'zzazzbzz', true],
      ['*a*b*', 'zzbzzazz', false],
      ['?', '😀', true],
      ['a?b', 'a😀b', true],
      ['*😀', 'x😀', true],
      ['a\nb', 'a\nb', true],
      ['*', 'multi\nline', true],
    ];
    for (const [p, v, want] of cases) assert.equal(globMatches(p, v), want, `${p} ~ ${JSON.stringify(v)}`);
    assert.equal(globMatches('a?c', 'a?c', { questionMark: false }), true);
    assert.equal(globMatches('a?c', 'abc', { questionMark: false }), false);
  });

  it('stays linear on patterns that make backtracking regexes explode', () => {
    const value = 'a'.repeat(8192);
    const started = performance.now();
    assert.equal(globMatches('*a*a*a*a*a*a*b', value), false);
    assert.equal(new GlobSet(['*a*a*a*a*a*a*b', '?*?*?*?*c']).test(value), false);
    assert.ok(performance.now() - started < 2000, 'pathological pattern took too long');
  });
});

describe('GlobSet', () => {
  it('answers exact, prefix and general patterns and reports which matched', () => {
    const set = new GlobSet(['exact', 'pre_*', '*mid*', 'q?']);
    assert.equal(set.firstMatch('exact'), 0);
    assert.equal(set.firstMatch('pre_x'), 1);
    assert.equal(set.firstMatch('xmidx'), 2);
    assert.equal(set.firstMatch('qz'), 3);
    assert.equal(set.firstMatch('nothing'), -1);
    assert.equal(new GlobSet([]).test(''), false);
  });
});
