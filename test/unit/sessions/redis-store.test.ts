/**
 * RedisSessionStore against a real redis-server started by this file. Two store instances on two
 * connections stand in for two processor replicas.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { decodeSession, encodeMeta, encodeUpstream } from '../../../src/sessions/serialize.js';
import { RedisSessionStore, type RedisSessionStoreOptions } from '../../../src/sessions/redis-store.js';
import type { GatewaySession } from '../../../src/sessions/store.js';
import { StateUnavailableError } from '../../../src/state/errors.js';
import type { StateLogger } from '../../../src/state/outage.js';
import { createRedisClient, waitForRedis } from '../../../src/state/redis.js';
import { waitUntil } from '../../support/proc.js';
import { RedisServer } from '../../support/redis.js';

const IDLE_MS = 60_000;
const INIT = {
  protocolVersion: '2025-06-18',
  clientMetadata: JSON.stringify({ capabilities: { sampling: {}, roots: { listChanged: true } }, clientInfo: { name: 'test-client', version: '1.0.0' } }),
  identity: 'user:alice',
  owner: 'id:user:alice',
};
const { owner: _owner, ...SESSION_FIELDS } = INIT;

async function client(server: RedisServer): Promise<Redis> {
  const c = createRedisClient({ target: { mode: 'single', url: server.url }, commandTimeoutMs: 100 });
  assert.equal(await waitForRedis(c, 5_000), true);
  return c as Redis;
}

describe('RedisSessionStore', () => {
  let server: RedisServer;
  let ca: Redis;
  let cb: Redis;
  let n = 0;
  let t = Date.UTC(2030, 0, 1);
  const clock = (): number => t;

  /** Two "replicas" with a fresh prefix, the test's clock and no background sweeper. */
  function replicas(over: Partial<RedisSessionStoreOptions> = {}): [RedisSessionStore, RedisSessionStore] {
    const opts: RedisSessionStoreOptions = { keyPrefix: `s${++n}:`, idleMs: IDLE_MS, clock, sweepIntervalMs: 0, ...over };
    return [new RedisSessionStore(ca, opts), new RedisSessionStore(cb, opts)];
  }

  before(async () => {
    server = await RedisServer.start();
    ca = await client(server);
    cb = await client(server);
  });

  after(async () => {
    ca?.disconnect();
    cb?.disconnect();
    await server?.stop();
  });

  it('creates on one replica and serves and updates the session on another', async () => {
    const [A, B] = replicas();
    const s = await A.create(INIT);
    assert.equal(s.lastSeen, t);
    assert.match(s.id, /^[A-Za-z0-9_-]{32}$/);

    const onB = await B.get(s.id);
    assert.ok(onB !== null);
    assert.deepEqual(
      { ...onB, upstream: [...onB.upstream], ownLists: [...onB.ownLists], subscriptions: [...onB.subscriptions] },
      { ...SESSION_FIELDS, id: s.id, createdAt: t, logLevel: null, lastSeen: t, upstream: [], ownLists: [], subscriptions: [] },
    );

    await B.setUpstream(onB, 'github', { sessionId: 'up-1', protocolVersion: '2025-03-26' });
    await B.setUpstream(onB, 'stateless', { sessionId: null, protocolVersion: '2025-06-18' });
    await A.setLogLevel(s, 'debug');
    assert.equal(s.logLevel, 'debug', 'the caller’s object is updated too');

    const again = await A.get(s.id);
    assert.ok(again !== null);
    assert.equal(again.logLevel, 'debug');
    assert.deepEqual(Object.fromEntries(again.upstream), {
      github: { sessionId: 'up-1', protocolVersion: '2025-03-26' },
      stateless: { sessionId: null, protocolVersion: '2025-06-18' },
    });
  });

  it('survives the replica that created it going away', async () => {
    const opts = { keyPrefix: `s${++n}:`, idleMs: IDLE_MS, clock, sweepIntervalMs: 0 };
    const doomedClient = await client(server);
    const doomed = new RedisSessionStore(doomedClient, opts);
    const s = await doomed.create(INIT);
    await doomed.setUpstream(s, 'github', { sessionId: 'up-1', protocolVersion: '2025-06-18' });
    doomed.close();
    doomedClient.disconnect();

    const survivor = new RedisSessionStore(ca, opts);
    const got = await survivor.get(s.id);
    assert.equal(got?.upstream.get('github')?.sessionId, 'up-1');
  });

  it('slides the idle timeout on get and expires exactly after idleMs unused (injected clock)', async () => {
    const [A, B] = replicas();
    const t0 = t;
    const s = await A.create(INIT);
    t = t0 + IDLE_MS; // exactly idle: still alive
    assert.equal((await B.get(s.id))?.lastSeen, t0 + IDLE_MS);
    t = t0 + 2 * IDLE_MS; // idle again, measured from the last get
    assert.ok((await A.get(s.id)) !== null);
    t = t0 + 3 * IDLE_MS + 1;
    assert.equal(await B.get(s.id), null);
    assert.equal(await A.get(s.id), null);
    assert.equal(await ca.exists(`s${n}:{s${n}:sessions}:s:${s.id}`), 0, 'the hash is gone');
    t = t0;
  });

  it('keeps a backstop TTL on the hash, refreshed by get', async () => {
    const [A] = replicas();
    const s = await A.create(INIT);
    const key = `s${n}:{s${n}:sessions}:s:${s.id}`;
    await ca.pexpire(key, 50);
    await A.get(s.id);
    const pttl = await ca.pttl(key);
    assert.ok(pttl > 2 * IDLE_MS && pttl <= 2 * IDLE_MS + 60_000, `pttl ${pttl}`);
  });

  it('reports each idle session to onExpire exactly once across replicas, with its upstream sessions', async () => {
    const expired: [string, GatewaySession][] = [];
    const prefix = `s${++n}:`;
    const mk = (name: string, c: Redis): RedisSessionStore =>
      new RedisSessionStore(c, { keyPrefix: prefix, idleMs: IDLE_MS, clock, sweepIntervalMs: 0, onExpire: (s) => void expired.push([name, s]) });
    const A = mk('A', ca);
    const B = mk('B', cb);
    const t0 = t;
    const sessions = await Promise.all(Array.from({ length: 150 }, (_, i) => A.create({ ...INIT, owner: `id:user${i}` })));
    await A.setUpstream(sessions[0]!, 'github', { sessionId: 'up-0', protocolVersion: '2025-06-18' });
    const keep = await A.create(INIT);
    t = t0 + IDLE_MS;
    assert.ok((await A.get(keep.id)) !== null);

    t = t0 + IDLE_MS + 1;
    const [byA, byB] = await Promise.all([A.sweepExpired(), B.sweepExpired()]);
    assert.equal(byA + byB, 150);
    assert.equal(expired.length, 150);
    assert.equal(new Set(expired.map(([, s]) => s.id)).size, 150);
    const first = expired.find(([, s]) => s.id === sessions[0]!.id)?.[1];
    assert.equal(first?.upstream.get('github')?.sessionId, 'up-0');
    assert.equal(await B.get(sessions[1]!.id), null);
    assert.equal(await B.size(), 1);
    assert.ok((await B.get(keep.id)) !== null);

    // A get that finds the session idle claims it and reports it, once.
    t = t0 + 3 * IDLE_MS;
    expired.length = 0;
    assert.deepEqual(await Promise.all([A.get(keep.id), B.get(keep.id)]), [null, null]);
    assert.deepEqual(expired.map(([, s]) => s.id), [keep.id]);
    t = t0;
  });

  it('deletes on any replica; later writes do not resurrect the session', async () => {
    const [A, B] = replicas();
    const s = await A.create(INIT);
    await A.setUpstream(s, 'github', { sessionId: 'up-1', protocolVersion: '2025-06-18' });
    const gone = await B.delete(s.id);
    assert.equal(gone?.upstream.get('github')?.sessionId, 'up-1', 'delete returns the session for clean-up');
    assert.equal(await A.delete(s.id), null, 'only one replica gets it');
    await A.setUpstream(s, 'other', { sessionId: 'x', protocolVersion: '2025-06-18' });
    await A.setLogLevel(s, 'info');
    assert.equal(await ca.exists(`s${n}:{s${n}:sessions}:s:${s.id}`), 0);
    assert.equal(await B.get(s.id), null);
  });

  it('counts the generations of a session’s own lists across replicas', async () => {
    const [A, B] = replicas();
    const s = await A.create(INIT);
    assert.equal(await A.markOwnList(s, 'github', 'resources'), 1);
    const onB = (await B.get(s.id))!;
    assert.deepEqual([...onB.ownLists], [['github\nresources', 1]]);
    assert.equal(await B.markOwnList(onB, 'github', 'resources'), 2, 'a change on another replica is a new generation');
    await B.markOwnList(onB, 'github', 'tools');
    assert.deepEqual(Object.fromEntries((await A.get(s.id))!.ownLists), { 'github\nresources': 2, 'github\ntools': 1 });
    await A.delete(s.id);
    await A.markOwnList(s, 'github', 'tools');
    assert.equal(await ca.exists(`s${n}:{s${n}:sessions}:s:${s.id}`), 0);
  });

  it('forgets a stale upstream session without erasing a fresh one stored by another replica', async () => {
    const [A, B] = replicas();
    const s = await A.create(INIT);
    await A.setUpstream(s, 'github', { sessionId: 'old', protocolVersion: '2025-06-18' });
    const onA = (await A.get(s.id))!;
    const onB = (await B.get(s.id))!;
    // B saw the upstream session die first and replaced it.
    await B.setUpstream(onB, 'github', null);
    await B.setUpstream(onB, 'github', { sessionId: 'new', protocolVersion: '2025-06-18' });
    // A now drops the one it knew about: the fresh one must stay.
    await A.setUpstream(onA, 'github', null);
    assert.equal(onA.upstream.has('github'), false);
    assert.equal((await A.get(s.id))?.upstream.get('github')?.sessionId, 'new');
  });

  it('lets exactly one replica claim an upstream session slot', async () => {
    const [A, B] = replicas();
    const s = await A.create(INIT);
    const onB = (await B.get(s.id))!;
    const [wa, wb] = await Promise.all([
      A.claimUpstream(s, 'github', { sessionId: 'from-A', protocolVersion: '2025-06-18' }),
      B.claimUpstream(onB, 'github', { sessionId: 'from-B', protocolVersion: '2025-06-18' }),
    ]);
    assert.deepEqual(wa, wb);
    assert.equal(s.upstream.get('github')?.sessionId, wa.sessionId);
  });

  it('binds passthrough sessions to their creator on every replica, with the idle timeout as TTL', async () => {
    const [A, B] = replicas();
    await A.bind('passthrough', 'github', 'up-1', 'user:alice');
    await A.bind('passthrough', 'github', 'up-anon', null);
    assert.equal(await B.boundOwner('passthrough', 'github', 'up-1'), 'user:alice');
    assert.equal(await B.boundOwner('passthrough', 'github', 'up-anon'), null);
    assert.equal(await B.boundOwner('passthrough', 'gitlab', 'up-1'), undefined, 'bindings are per server');
    assert.equal(await B.boundOwner('passthrough', 'github', 'never-seen'), undefined);
    const long = `signed.${'x'.repeat(1000)}`;
    await A.bind('passthrough', 'github', long, 'user:bob');
    assert.equal(await B.boundOwner('passthrough', 'github', long), 'user:bob', 'long upstream ids (signed tokens) are bound too');
    assert.equal(await B.boundOwner('passthrough', 'github', 'x'.repeat(10_000)), undefined);
    const ttl = await ca.pttl(`s${n}:p:github:up-1`);
    assert.ok(ttl > IDLE_MS - 5_000 && ttl <= IDLE_MS, String(ttl));
  });

  it('keeps task bindings apart from passthrough bindings of the same upstream id', async () => {
    const [A, B] = replicas();
    await A.bind('task', 'github', 'same-id', 'user:carol');
    assert.equal(await B.boundOwner('task', 'github', 'same-id'), 'user:carol');
    assert.equal(await B.boundOwner('passthrough', 'github', 'same-id'), undefined);
    await B.bind('passthrough', 'github', 'same-id', 'user:dave');
    assert.equal(await A.boundOwner('task', 'github', 'same-id'), 'user:carol', 'one kind never overwrites the other');
    assert.equal(await B.bind('task', 'github', 'same-id', 'user:eve'), false, 'an id another identity holds stays theirs');
    assert.equal(await A.boundOwner('task', 'github', 'same-id'), 'user:carol');
    assert.equal(await B.bind('task', 'github', 'same-id', 'user:carol'), true, 'its holder may bind it again');
    assert.equal(await B.bind('task', 'github', 'anon-id', null), true);
    assert.equal(await A.bind('task', 'github', 'anon-id', 'user:carol'), false, 'an anonymous binding is a binding too');
  });

  it('uses Redis’s clock by default', async () => {
    const store = new RedisSessionStore(ca, { keyPrefix: `s${++n}:`, idleMs: IDLE_MS, sweepIntervalMs: 0 });
    const before = Date.now();
    const s = await store.create(INIT);
    assert.ok(Math.abs(s.lastSeen - before) < 5_000);
    assert.ok((await store.get(s.id)) !== null);
    assert.equal(await store.get('x'.repeat(1000)), null);
    assert.equal(await store.get('unknown'), null);
  });
});

describe('RedisSessionStore when Redis fails', () => {
  let server: RedisServer;
  let c: Redis;

  before(async () => {
    server = await RedisServer.start();
    c = await client(server);
  });

  after(async () => {
    c?.disconnect();
    await server?.stop();
  });

  it('fails fast with StateUnavailableError, logs once, and recovers', async () => {
    const warns: string[] = [];
    const infos: string[] = [];
    const log: StateLogger = { warn: (_o, m) => void warns.push(m), info: (_o, m) => void infos.push(m) };
    const store = new RedisSessionStore(c, { keyPrefix: 'f:', idleMs: IDLE_MS, log, sweepIntervalMs: 0, probeIntervalMs: 50 });
    const s = await store.create(INIT);

    await server.kill();
    for (let i = 0; i < 20; i++) {
      const started = performance.now();
      await assert.rejects(store.get(s.id), (err: unknown) => err instanceof StateUnavailableError && err.code === 'GW_ERR_STATE_UNAVAILABLE');
      assert.ok(performance.now() - started < 500);
    }
    await assert.rejects(store.create(INIT), StateUnavailableError);
    assert.deepEqual(warns, ['sessions: Redis unavailable, requests that need a session get 503 (GW_ERR_STATE_UNAVAILABLE)']);

    await server.restart();
    await waitUntil(
      async () => {
        try {
          await store.create(INIT);
          return true;
        } catch {
          return false;
        }
      },
      { timeoutMs: 10_000, intervalMs: 50, what: 'session store to recover' },
    );
    assert.equal(infos.length, 1);
    assert.equal(warns.length, 1);
  });

  it('does not hang while Redis answers nothing', async () => {
    const store = new RedisSessionStore(c, { keyPrefix: 'p:', idleMs: IDLE_MS, sweepIntervalMs: 0, probeIntervalMs: 50 });
    await waitUntil(async () => (await store.get('nope').then(() => true, () => false)), { timeoutMs: 10_000, what: 'healthy' });
    server.pause();
    try {
      const started = performance.now();
      const results = await Promise.allSettled(Array.from({ length: 20 }, () => store.get('nope')));
      assert.ok(results.every((r) => r.status === 'rejected' && r.reason instanceof StateUnavailableError));
      assert.ok(performance.now() - started < 500, `took ${(performance.now() - started).toFixed(0)} ms`);
    } finally {
      server.resume();
    }
  });
});

describe('session serialization', () => {
  it('round-trips and rejects malformed data', () => {
    const flat = ['m', encodeMeta(INIT), 'l', 'warning', 'u:github', encodeUpstream({ sessionId: 'u', protocolVersion: 'p' }), 'u:bad', '{"x":1}'];
    const s = decodeSession('id1', 5, flat);
    assert.ok(s !== null);
    assert.equal(s.logLevel, 'warning');
    assert.deepEqual([...s.upstream.keys()], ['github']);
    assert.equal(decodeSession('id1', 5, []), null);
    assert.equal(decodeSession('id1', 5, ['m', '{not json']), null);
    assert.equal(decodeSession('id1', 5, ['m', JSON.stringify({ v: 2 })]), null);
  });
});
