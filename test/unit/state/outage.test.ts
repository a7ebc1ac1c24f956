import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HOLD_BACK_AFTER_FAILURES, OutageTracker } from '../../../src/state/outage.js';

/** A tracker on a fake clock; `holdBackAfter` 1 (hold back at the first failure) unless told otherwise. */
function tracker(holdBackAfter = 1) {
  let t = 1_000;
  const warns: string[] = [];
  const infos: string[] = [];
  const log = { warn: (_: object, m: string) => void warns.push(m), info: (_: object, m: string) => void infos.push(m) };
  const tr = new OutageTracker('rate limits', 'x', log, 'cluster a:1', 250, () => t, holdBackAfter);
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
  it('keeps trying after one failure: a single late answer does not fail the calls that follow', () => {
    const { tr, warns, infos } = tracker(HOLD_BACK_AFTER_FAILURES);
    tr.fail(new Error('Command timed out'));
    assert.equal(tr.down, true);
    assert.equal(warns.length, 1, 'the failure is still logged');
    for (let i = 0; i < 10; i++) assert.equal(tr.shouldTry(), true);
    tr.ok();
    assert.equal(tr.down, false);
    assert.equal(infos.length, 1);
  });

  it('holds calls back after several failures in a row, probing once per interval', () => {
    const { tr, advance } = tracker(HOLD_BACK_AFTER_FAILURES);
    for (let i = 0; i < HOLD_BACK_AFTER_FAILURES - 1; i++) {
      tr.fail(new Error('Command timed out'));
      assert.equal(tr.shouldTry(), true);
    }
    tr.fail(new Error('Command timed out'));
    assert.equal(tr.shouldTry(), false);
    advance(250);
    assert.equal(tr.shouldTry(), true, 'one probe');
    assert.equal(tr.shouldTry(), false);
  });

  it('starts counting again after a success in between', () => {
    const { tr } = tracker(HOLD_BACK_AFTER_FAILURES);
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < HOLD_BACK_AFTER_FAILURES - 1; i++) tr.fail(new Error('Command timed out'));
      assert.equal(tr.shouldTry(), true);
      tr.ok();
    }
  });

  it('counts per slot on Redis Cluster', () => {
    const { tr } = tracker(HOLD_BACK_AFTER_FAILURES);
    for (let i = 0; i < HOLD_BACK_AFTER_FAILURES; i++) tr.fail(new Error('Command timed out'), 7);
    tr.fail(new Error('Command timed out'), 9);
    assert.equal(tr.shouldTry(7), false);
    assert.equal(tr.shouldTry(9), true);
  });
});
