import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { COMMAND_WAIT_CAP_FACTOR, createRedisClient, waitForRedis, type RedisClient } from '../../../src/state/redis.js';
import { RedisServer } from '../../support/redis.js';

const TIMEOUT_MS = 100;

/** Blocks the event loop (no timers, no socket reads) for `ms`, as a long GC or a starved CPU would. */
function busy(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // spin
  }
}

/**
 * Sends `GET key` and, once the command has been written (ioredis flushes auto-pipelined commands
 * in a setImmediate, so one queued after it runs after the write), blocks the loop for `stallMs`:
 * Redis answers within a millisecond, but the answer stays unread in the socket until the stall ends.
 */
function getDuringStall(client: RedisClient, key: string, stallMs: number): Promise<string | null> {
  const reply = client.get(key);
  setImmediate(() => busy(stallMs));
  return reply;
}

describe('Redis command timeout (real redis-server)', () => {
  let redis: RedisServer;
  let client: RedisClient;

  before(async () => {
    redis = await RedisServer.start();
    client = createRedisClient({ target: { mode: 'single', url: redis.url }, commandTimeoutMs: TIMEOUT_MS });
    assert.ok(await waitForRedis(client, 5_000));
    await client.set('k', 'v');
  });
  after(async () => {
    client?.disconnect();
    await redis?.stop();
  });

  it('does not fail a command whose answer came in while the event loop was blocked past the timeout', async () => {
    for (let i = 0; i < 5; i++) assert.equal(await getDuringStall(client, 'k', 3 * TIMEOUT_MS), 'v');
  });

  it('waits for an answer Redis sends only after a stall of this process that outlasted the timeout', async () => {
    // Both starved: Redis does not run (SIGSTOP) while this process is blocked past the deadline;
    // Redis runs again when the stall ends, so its answer comes a moment after the timer fired.
    redis.pause();
    try {
      const reply = client.get('k');
      setImmediate(() => {
        busy(3 * TIMEOUT_MS);
        redis.resume();
      });
      assert.equal(await reply, 'v');
    } finally {
      redis.resume();
    }
  });

  it('(the same stall fails with ioredis’s own commandTimeout: the cause this guards against)', async () => {
    const plain = new Redis(redis.url, { commandTimeout: TIMEOUT_MS, enableAutoPipelining: true, maxRetriesPerRequest: 0 });
    try {
      await plain.ping();
      await assert.rejects(getDuringStall(plain, 'k', 3 * TIMEOUT_MS), /Command timed out/);
    } finally {
      plain.disconnect();
    }
  });

  it('still fails every command within the bound when Redis hangs (SIGSTOP), and recovers after', async () => {
    redis.pause();
    try {
      const started = performance.now();
      const results = await Promise.allSettled([client.get('k'), client.set('x', '1'), client.evalsha('0'.repeat(40), 0)]);
      const elapsed = performance.now() - started;
      for (const r of results) {
        assert.equal(r.status, 'rejected');
        assert.match(String((r as PromiseRejectedResult).reason), /Command timed out/);
      }
      assert.ok(elapsed >= TIMEOUT_MS - 5, `failed after ${elapsed.toFixed(0)} ms, before the timeout`);
      // The bound is the timeout plus one turn of the loop; the slack is for a loaded test machine.
      assert.ok(elapsed < TIMEOUT_MS + 400, `failed after ${elapsed.toFixed(0)} ms`);

      // A stall while Redis hangs is given back once, then the command fails: no answer comes.
      const t0 = performance.now();
      await assert.rejects(getDuringStall(client, 'k', 2 * TIMEOUT_MS), /Command timed out after \d+ ms \(the event loop was blocked for \d+ ms of it\)/);
      assert.ok(performance.now() - t0 < 4 * TIMEOUT_MS + 400);

      // However long the process is starved, a command settles within 10 times the timeout.
      const t1 = performance.now();
      const capped = client.get('k');
      const stalls = setInterval(() => busy(TIMEOUT_MS / 2), 1);
      try {
        await assert.rejects(capped, /Command timed out/);
      } finally {
        clearInterval(stalls);
      }
      const elapsed1 = performance.now() - t1;
      assert.ok(elapsed1 < COMMAND_WAIT_CAP_FACTOR * TIMEOUT_MS + 400, `settled after ${elapsed1.toFixed(0)} ms`);
    } finally {
      redis.resume();
    }
    assert.equal(await client.get('k'), 'v');
  });
});
