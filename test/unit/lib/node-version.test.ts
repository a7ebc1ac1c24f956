import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MIN_NODE_MAJOR, unsupportedNode } from '../../../src/lib/node-version.js';

describe('the Node versions the processor runs on', () => {
  it('refuses Node below 22 with a message that says why, and takes 22 and newer', () => {
    assert.equal(MIN_NODE_MAJOR, 22);
    assert.match(unsupportedNode('20.20.2') ?? '', /Node 20\.20\.2 is not supported: the processor needs Node 22 or newer/);
    assert.match(unsupportedNode('21.7.3') ?? '', /not supported/);
    assert.equal(unsupportedNode('22.0.0'), null);
    assert.equal(unsupportedNode('24.21.0'), null);
  });
});
