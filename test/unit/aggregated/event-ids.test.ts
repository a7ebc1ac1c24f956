import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fanInEventId, parseEventId, postEventId } from '../../../src/aggregated/event-ids.js';

const known = (s: string): boolean => s === 'alpha' || s === 'beta';

describe('gateway SSE event ids', () => {
  it('carry every upstream position of a fan-in stream and give them back', () => {
    const positions = new Map([
      ['alpha', '_GET_stream.17'],
      ['beta', 'x:y;z'],
    ]);
    const id = fanInEventId(positions);
    assert.match(id, /^g\.[A-Za-z0-9_-]+$/);
    assert.deepEqual(parseEventId(id, known), { kind: 'fan-in', positions });
  });

  it('carry the server, its event id and the method of a POST answer', () => {
    assert.deepEqual(parseEventId(postEventId('alpha', 'e-1', 'tools/call'), known), { kind: 'post', server: 'alpha', upstreamId: 'e-1', requestMethod: 'tools/call' });
    assert.deepEqual(parseEventId(postEventId('beta', 'e-2', null), known), { kind: 'post', server: 'beta', upstreamId: 'e-2', requestMethod: null });
  });

  it('name only servers the caller may use, and ignore what the gateway never issued', () => {
    const id = fanInEventId(new Map([['alpha', '1'], ['gamma', '2']]));
    assert.deepEqual(parseEventId(id, known), { kind: 'fan-in', positions: new Map([['alpha', '1']]) });
    assert.equal(parseEventId(postEventId('gamma', '1', null), known), null);
    for (const junk of ['', '17', 'g.', 'g.!!!', 'p.e30', 'x.e30', `g.${'A'.repeat(20_000)}`, `g.${Buffer.from('[1]').toString('base64url')}`]) {
      const parsed = parseEventId(junk, known);
      assert.ok(parsed === null || (parsed.kind === 'fan-in' && parsed.positions.size === 0), junk.slice(0, 20));
    }
  });
});
