import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PII_RULES, scanText, scanValue, type PiiRule } from '../../../src/filters/pii.js';
import { LinearRegex } from '../../../src/lib/linear-regex.js';

const ALL: ReadonlySet<PiiRule> = new Set(PII_RULES);
const found = (text: string): string[] => [...scanText(text, ALL, false).found];
const redacted = (text: string): string => scanText(text, ALL, true).text;

describe('PII and secret detection', () => {
  it('finds each kind, with the checks the shape alone cannot make', () => {
    assert.deepEqual(found('write to jane.doe+ops@mail.example.co.uk today'), ['email']);
    assert.deepEqual(found('card 4111 1111 1111 1111 on file'), ['card']);
    assert.deepEqual(found('card 4111 1111 1111 1112 on file'), [], 'fails Luhn');
    assert.deepEqual(found('ssn 123-45-6789'), ['ssn']);
    assert.deepEqual(found('ssn 000-45-6789, 666-12-3456, 923-45-6789, 123-00-6789, 123-45-0000'), [], 'never issued');
    assert.deepEqual(found('IBAN GB82 WEST 1234 5698 7654 32'), ['iban']);
    assert.deepEqual(found('IBAN GB82 WEST 1234 5698 7654 33'), [], 'fails mod 97');
    assert.deepEqual(found('call +44 20 7946 0958 or (415) 555-2671'), ['phone']);
    assert.deepEqual(found('at 2026-12-03 07:36, order 202612030736, v1.2.3.4'), [], 'dates, order numbers and versions are not phones');
    for (const secret of [
      'AKIAIOSFODNN7EXAMPLE',
      `ghp_${'a'.repeat(36)}`,
      'xoxb-1234567890-abcdefghij',
      `sk-proj-${'A1b2'.repeat(8)}`,
      `sk_live_${'9'.repeat(24)}`,
      `AIza${'x'.repeat(35)}`,
      'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U',
      '-----BEGIN RSA PRIVATE KEY-----',
    ]) {
      assert.deepEqual(found(`token: ${secret} end`), ['secret'], secret);
    }
  });

  it('redacts each finding with a typed placeholder and leaves the rest as it was', () => {
    assert.equal(redacted('mail jane@example.com, ssn 123-45-6789.'), 'mail [REDACTED:email], ssn [REDACTED:ssn].');
    assert.equal(redacted('nothing to see here'), 'nothing to see here');
  });

  it('walks JSON values: strings at any depth, keys kept, untouched values returned as they were', () => {
    const clean = { a: [1, 'two', { b: null }] };
    assert.equal(scanValue(clean, ALL, true).value, clean, 'the same object when nothing was found');
    const scan = scanValue({ content: [{ type: 'text', text: 'reach me at jane@example.com' }], structuredContent: { card: '4111-1111-1111-1111' } }, ALL, true);
    assert.deepEqual(scan.value, { content: [{ type: 'text', text: 'reach me at [REDACTED:email]' }], structuredContent: { card: '[REDACTED:card]' } });
    assert.deepEqual(scan.found, ['email', 'card']);
    assert.deepEqual(scanValue('jane@example.com', new Set<PiiRule>(['card']), true).found, [], 'only the rules asked for');
  });

  it('runs an operator’s own rules beside the built-in ones, redacting and reporting them by name', () => {
    const custom = [{ name: 'employee_id', re: new LinearRegex('EMP-\\d{6}') }, { name: 'hostile', re: new LinearRegex('(a+)+$') }];
    const scan = scanValue({ note: 'EMP-123456 wrote to jane@example.com about EMP-654321' }, ALL, true, custom);
    assert.deepEqual(scan.value, { note: '[REDACTED:employee_id] wrote to [REDACTED:email] about [REDACTED:employee_id]' });
    assert.deepEqual(scan.found, ['email', 'employee_id']);
    // The hostile custom pattern on the input that makes JavaScript's engine backtrack: no time.
    const started = performance.now();
    assert.deepEqual(scanValue(`${'a'.repeat(50_000)}!`, ALL, true, custom).found, []);
    assert.ok(performance.now() - started < 1500);
  });

  it('takes time linear in hostile input (no backtracking blow-up)', () => {
    const hostile = [
      'a'.repeat(200_000) + '@',
      '1 '.repeat(100_000),
      '+1'.repeat(100_000),
      'eyJ'.repeat(60_000) + '.',
      `${'a.'.repeat(100_000)}@b`,
      '-'.repeat(200_000),
    ];
    for (const text of hostile) {
      const started = performance.now();
      scanText(text, ALL, true);
      const ms = performance.now() - started;
      assert.ok(ms < 1500, `${text.slice(0, 12)}… took ${ms.toFixed(0)} ms`);
    }
  });
});
