import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HOLD_BACK_AFTER_FAILURES, HOLD_BACK_AFTER_MS, OutageTracker } from '../../../src/state/outage.js';

/** A tracker on a fake clock that holds back at the first failure unless told otherwise. */
function tracker(holdBackAfter = 1, holdBackAfterMs = 0) {
  let t = 1_000;
  const warns: string[] = [];
  const infos: string[] = [];
  const log = { warn: (_: object, m: string) => void warns.push(m), info: (_: object, m: string) => void infos.push(m) };
  const tr = new OutageTracker('rate limits', 'x', log, 'cluster a:1', 250, () => t, holdBackAfter, holdBackAfterMs);
  return { tr, warns, infos, advance: (ms: number) => void (t += ms) };
}

describe('OutageTracker scopes (Redis Cluster slots)', () => {
  it('holds back calls to a failing slot only', () => {
    const { tr, advance } = tracker();
    tr.fail(new Error('timeout'), 7);
    assert.equal(tr.shouldTry(7), false, 'the failing slot waits for its next probe');
    assert.equal(tr.shouldTry(8), true, 'another slot is tried at once');
    tr.ok(8);
    assert.equal(tr.shouldTry(7), false);
    advance(250);
    assert.equal(tr.shouldTry(7), true, 'one probe per interval');
    assert.equal(tr.shouldTry(7), false);
  });

  it('ends the outage when the failing slots answer, not at the first healthy slot', () => {
    const { tr, warns, infos, advance } = tracker();
    tr.fail(new Error('timeout'), 7);
    tr.fail(new Error('timeout'), 9);
    assert.equal(warns.length, 1, 'the outage is logged once');
    tr.ok(8);
    assert.equal(infos.length, 0);
    assert.equal(tr.down, true);
    tr.ok(7);
    assert.equal(infos.length, 0, 'slot 9 still fails');
    advance(250);
    tr.ok(9);
    assert.equal(infos.length, 1);
    assert.equal(tr.down, false);
    assert.equal(tr.shouldTry(7) && tr.shouldTry(9), true);
  });

  it('forgets a failing slot that has seen no failure for a while', () => {
    const { tr, infos, advance } = tracker();
    tr.fail(new Error('timeout'), 7);
    advance(1_000);
    tr.ok(8);
    assert.equal(infos.length, 0);
    advance(1_500);
    tr.ok(8);
    assert.equal(infos.length, 1, 'slot 7 has been quiet for 8 probe intervals');
  });

  it('clears a slot even when the outage was ended by an unscoped call', () => {
    const { tr } = tracker();
    tr.fail(new Error('timeout'), 7);
    tr.ok();
    tr.ok(7);
    assert.equal(tr.shouldTry(7), true);
  });
});

describe('OutageTracker hold-back', () => {
  const defaults = (): ReturnType<typeof tracker> => tracker(HOLD_BACK_AFTER_FAILURES, HOLD_BACK_AFTER_MS);

  it('keeps trying while Redis has failed only for a moment: a stall does not fail the calls that follow', () => {
    const { tr, warns, infos, advance } = defaults();
    for (let i = 0; i < 20; i++) {
      tr.fail(new Error('Command timed out'));
      advance(40);
      assert.equal(tr.shouldTry(), true, `after ${i + 1} failures in ${(i + 1) * 40} ms`);
    }
    assert.equal(tr.down, true);
    assert.equal(warns.length, 1, 'the failure is still logged, once');
    tr.ok();
    assert.equal(tr.down, false);
    assert.equal(infos.length, 1);
  });

  it('holds calls back once they have failed in a row for a second, probing once per interval', () => {
    const { tr, advance } = defaults();
    tr.fail(new Error('Command timed out'));
    advance(HOLD_BACK_AFTER_MS);
    for (let i = 1; i < HOLD_BACK_AFTER_FAILURES - 1; i++) tr.fail(new Error('Command timed out'));
    assert.equal(tr.shouldTry(), true, 'not enough failures yet');
    tr.fail(new Error('Command timed out'));
    assert.equal(tr.shouldTry(), true, 'a probe: none went out for a while');
    assert.equal(tr.shouldTry(), false, 'the rest are held back');
    advance(250);
    assert.equal(tr.shouldTry(), true, 'one probe per interval');
    assert.equal(tr.shouldTry(), false);
  });

  it('starts the row again after a success in between', () => {
    const { tr, advance } = defaults();
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < HOLD_BACK_AFTER_FAILURES; i++) tr.fail(new Error('Command timed out'));
      advance(HOLD_BACK_AFTER_MS - 1);
      assert.equal(tr.shouldTry(), true);
      tr.ok();
      advance(10);
    }
  });

  it('counts per slot on Redis Cluster', () => {
    const { tr, advance } = defaults();
    for (let i = 0; i < HOLD_BACK_AFTER_FAILURES; i++) tr.fail(new Error('Command timed out'), 7);
    advance(HOLD_BACK_AFTER_MS);
    tr.fail(new Error('Command timed out'), 7);
    tr.fail(new Error('Command timed out'), 9);
    assert.equal(tr.shouldTry(7), false);
    assert.equal(tr.shouldTry(9), true);
  });
});
