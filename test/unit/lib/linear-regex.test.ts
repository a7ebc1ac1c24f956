import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LinearRegex, RegexSyntaxError } from '../../../src/lib/linear-regex.js';

/** Every match JavaScript's own engine finds (the same dialect, the global flag). */
function jsSpans(pattern: string, text: string): { start: number; end: number }[] {
  const out: { start: number; end: number }[] = [];
  const re = new RegExp(pattern, 'g');
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    out.push({ start: m.index, end: m.index + m[0].length });
    if (m[0].length === 0) re.lastIndex++;
  }
  return out;
}

describe('LinearRegex', () => {
  it('finds what JavaScript finds, pattern after pattern', () => {
    const cases: [string, string[]][] = [
      ['EMP-\\d{6}', ['id EMP-123456 and EMP-12345, EMP-1234567', 'none']],
      ['[A-Z]{2}\\d{2}[ -]?[A-Z0-9]{4}', ['GB82 WEST and de44-5001', 'gb82west']],
      ['a|ab|abc', ['abc abd']],
      ['(?:ab|a)c', ['abc ac']],
      ['colou?r', ['color colour colouur']],
      ['\\bcat\\b', ['cat concat cat. bobcat cats']],
      ['^\\w+', ['hello world']],
      ['\\w+$', ['hello world']],
      ['x*', ['axxb']],
      ['[^\\s,]+', ['a, bb ,ccc']],
      ['\\d{2,4}-\\d+', ['12-3 12345-67 1-2']],
      ['(a|b)*c', ['abababc bc c ac']],
      ['[.]\\.', ['a.. b..c']],
      ['ticket #?\\d{3,}', ['ticket 12345, ticket #999, ticket 12']],
      ['.+@corp', ['x@corp\ny@corp']],
    ];
    for (const [pattern, texts] of cases) {
      const re = new LinearRegex(pattern);
      for (const text of texts) assert.deepEqual(re.spans(text), jsSpans(pattern, text), `${pattern} on ${JSON.stringify(text)}`);
    }
  });

  it('takes time linear in the input where JavaScript’s engine blows up', () => {
    for (const [pattern, text] of [
      ['(a+)+$', `${'a'.repeat(20_000)}!`],
      ['(a|a)*b', 'a'.repeat(20_000)],
      ['\\d*\\d*\\d*\\d*x', '1'.repeat(20_000)],
      ['(x+x+)+y', 'x'.repeat(20_000)],
    ] as const) {
      const re = new LinearRegex(pattern);
      const started = performance.now();
      assert.deepEqual(re.spans(text), [], pattern);
      const ms = performance.now() - started;
      assert.ok(ms < 3000, `${pattern}: ${ms.toFixed(0)} ms`);
    }
  });

  it('refuses what needs backtracking or memory, saying what', () => {
    for (const [pattern, what] of [
      ['(a)\\1', /not supported/],
      ['(?=a)b', /lookaround/],
      ['a+?', /lazy/],
      ['a{1001}', /out of range/],
      ['(ab', /missing \)/],
      ['[a-', /missing \]/],
      ['*a', /nothing to repeat/],
      ['\\u0041', /not supported/],
    ] as const) {
      assert.throws(() => new LinearRegex(pattern), (e: unknown) => e instanceof RegexSyntaxError && what.test(e.message), pattern);
    }
  });
});
