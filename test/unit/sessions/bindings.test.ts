import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemorySessionStore } from '../../../src/sessions/store.js';

describe('bindings in the in-memory store', () => {
  it('keeps an id to the identity that bound it until it idles out', async () => {
    let now = 1_000;
    const store = new MemorySessionStore({ idleMs: 60_000, now: () => now });
    try {
      assert.equal(await store.bind('task', 'alpha', 't-1', 'user:a'), true);
      assert.equal(await store.bind('task', 'alpha', 't-1', 'user:b'), false);
      assert.equal(await store.boundOwner('task', 'alpha', 't-1'), 'user:a');
      assert.equal(await store.bind('task', 'alpha', 't-1', 'user:a'), true);
      assert.equal(await store.boundOwner('passthrough', 'alpha', 't-1'), undefined, 'kinds are apart');
      now += 60_001;
      assert.equal(await store.bind('task', 'alpha', 't-1', 'user:b'), true, 'an idle binding no longer holds the id');
      assert.equal(await store.boundOwner('task', 'alpha', 't-1'), 'user:b');
    } finally {
      store.close();
    }
  });
});
