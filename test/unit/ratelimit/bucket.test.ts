import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { assertValidRule, countQuota, DAY_MS, takeTokens, utcDateOf, utcDay, type BucketState } from '../../../src/ratelimit/bucket.js';

describe('takeTokens', () => {
  // 6 per minute: one token every 10 s; at most 5 at once.
  const rule = { count: 6, periodMs: 60_000, burst: 5 };
  const t0 = Date.UTC(2030, 5, 1, 12, 0, 0);

  it('allows exactly burst requests at once, then refuses with the exact wait', () => {
    let state: BucketState | null = null;
    for (let i = 0; i < 5; i++) {
      const r = takeTokens(state, t0, rule);
      assert.equal(r.allowed, true);
      assert.equal(r.remaining, 4 - i);
      state = r.newState;
    }
    const refused = takeTokens(state, t0, rule);
    assert.equal(refused.allowed, false);
    assert.equal(refused.remaining, 0);
    assert.equal(refused.retryAfterMs, 10_000);
    assert.equal(refused.resetMs, 50_000);
  });

  it('refills at the configured rate, to the millisecond', () => {
    let state: BucketState | null = null;
    for (let i = 0; i < 5; i++) state = takeTokens(state, t0, rule).newState;
    assert.equal(takeTokens(state, t0 + 9_999, rule).allowed, false);
    assert.equal(takeTokens(state, t0 + 9_999, rule).retryAfterMs, 1);
    const r = takeTokens(state, t0 + 10_000, rule);
    assert.equal(r.allowed, true);
    assert.equal(r.remaining, 0);
    // Half a token left over does not count, but is kept.
    const half = takeTokens(r.newState, t0 + 15_000, rule);
    assert.equal(half.allowed, false);
    assert.equal(half.retryAfterMs, 5_000);
    assert.equal(takeTokens(half.newState, t0 + 20_000, rule).allowed, true);
  });

  it('never holds more than burst, however long the bucket idled', () => {
    let state: BucketState | null = takeTokens(null, t0, rule).newState;
    const later = takeTokens(state, t0 + 10 * DAY_MS, rule);
    assert.equal(later.remaining, 4);
    state = later.newState;
    assert.equal(state.units, 4 * rule.periodMs);
  });

  it('keeps integer state for rates that do not divide evenly', () => {
    const odd = { count: 7, periodMs: 60_000, burst: 3 };
    let state: BucketState | null = null;
    let t = t0;
    for (let i = 0; i < 1000; i++) {
      t += (i * 7919) % 13_000;
      state = takeTokens(state, t, odd).newState;
      assert.ok(Number.isInteger(state.units) && state.units >= 0 && state.units <= 3 * 60_000);
    }
  });

  it('adds nothing when the clock goes backwards and measures waits from the later time', () => {
    let state: BucketState | null = null;
    for (let i = 0; i < 5; i++) state = takeTokens(state, t0, rule).newState;
    const r = takeTokens(state, t0 - 3_000, rule);
    assert.equal(r.allowed, false);
    assert.equal(r.retryAfterMs, 13_000);
    assert.equal(r.newState.at, t0);
  });

  it('rejects rules that cannot be computed exactly', () => {
    assert.throws(() => assertValidRule({ count: 1.5, periodMs: 60_000, burst: 1 }), RangeError);
    assert.throws(() => assertValidRule({ count: 1, periodMs: 60_000, burst: 1 }, 2), /exceeds burst/);
    assert.doesNotThrow(() => assertValidRule({ count: 1_000_000, periodMs: DAY_MS, burst: 1_000_000 }));
  });
});

describe('countQuota', () => {
  it('counts up to the limit and resets at 00:00 UTC', () => {
    const lastSecond = Date.UTC(2031, 0, 1, 23, 59, 59);
    assert.deepEqual(countQuota(0, lastSecond, 2), { allowed: true, remaining: 1, retryAfterMs: 0, resetMs: 1_000, used: 1 });
    assert.deepEqual(countQuota(2, lastSecond, 2), { allowed: false, remaining: 0, retryAfterMs: 1_000, resetMs: 1_000, used: 2 });
    assert.equal(countQuota(0, Date.UTC(2031, 0, 2), 2).resetMs, DAY_MS);
  });

  it('names UTC days by their date', () => {
    assert.equal(utcDateOf(utcDay(Date.UTC(2031, 0, 1, 23, 59, 59, 999))), '2031-01-01');
    assert.equal(utcDateOf(utcDay(Date.UTC(2031, 0, 2))), '2031-01-02');
    assert.equal(utcDateOf(0), '1970-01-01');
  });
});
