import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { OutageTracker } from '../../../src/state/outage.js';

function tracker() {
  let t = 1_000;
  const warns: string[] = [];
  const infos: string[] = [];
  const log = { warn: (_: object, m: string) => void warns.push(m), info: (_: object, m: string) => void infos.push(m) };
  const tr = new OutageTracker('rate limits', 'x', log, 'cluster a:1', 250, () => t);
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
