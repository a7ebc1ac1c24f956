/**
 * Session caps, with the same expectations for both stores: MemorySessionStore, and
 * RedisSessionStore against a real redis-server started by this file (two store instances on two
 * connections stand in for two processor replicas).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { GatewayError } from '../../../src/errors/gateway-error.js';
import { RedisSessionStore } from '../../../src/sessions/redis-store.js';
import { addressBucket, retryAfterSeconds, sessionOwner } from '../../../src/sessions/limits.js';
import type { SessionInit } from '../../../src/sessions/serialize.js';
import { MemorySessionStore, type GatewaySession, type SessionStore } from '../../../src/sessions/store.js';
import { createRedisClient, waitForRedis } from '../../../src/state/redis.js';
import { waitUntil } from '../../support/proc.js';
import { RedisServer } from '../../support/redis.js';

const IDLE_MS = 60_000;

function init(owner: string, identity: string | null = null): SessionInit {
  return {
    protocolVersion: '2025-11-25',
    clientMetadata: JSON.stringify({ capabilities: { sampling: {} }, clientInfo: { name: owner, version: '1' } }),
    identity,
    owner,
  };
}

interface Harness {
  store: SessionStore;
  expired: GatewaySession[];
  evicted: GatewaySession[];
  advance(ms: number): void;
  now(): number;
}

interface Limits {
  maxSessions?: number;
  maxSessionsPerClient?: number;
}

/** The expectations both stores must meet. */
function limitSuite(make: (limits: Limits) => Harness): void {
  it('lists live sessions for the console, most recently used first, with tenant and opening time, leaving idle ones out', async () => {
    const h = make({});
    const opened = h.now();
    const a = await h.store.create({ ...init('id:a', 'a'), tenant: 'acme' });
    h.advance(1);
    const b = await h.store.create(init('id:b', 'b'));
    h.advance(1);
    await h.store.get(a.id);
    const listed = await h.store.list(10);
    assert.equal(listed.total, 2);
    assert.deepEqual(listed.sessions.map((s) => s.id), [a.id, b.id]);
    assert.equal(listed.sessions[0]!.tenant, 'acme');
    assert.equal(listed.sessions[1]!.tenant ?? null, null);
    assert.ok(Math.abs(listed.sessions[0]!.createdAt! - opened) < 60_000, 'opening time kept');
    assert.deepEqual((await h.store.list(1)).sessions.map((s) => s.id), [a.id], 'at most max, total still all');
    assert.equal((await h.store.list(1)).total, 2);
    assert.deepEqual(await h.store.liveIds(10), [a.id, b.id]);
    h.advance(IDLE_MS - 1);
    await h.store.get(b.id);
    h.advance(2);
    const later = await h.store.list(10);
    assert.deepEqual(later.sessions.map((s) => s.id), [b.id], 'an idle session is not listed');
    assert.equal(later.total, 1);
    assert.deepEqual(await h.store.liveIds(10), [b.id]);
  });

  it('keeps at most maxSessionsPerClient per client by ending that client’s least recently used session', async () => {
    const h = make({ maxSessionsPerClient: 3 });
    const a1 = await h.store.create(init('id:a', 'a'));
    await h.store.setUpstream(a1, 'github', { sessionId: 'up-a1', protocolVersion: '2025-11-25' });
    h.advance(1);
    const a2 = await h.store.create(init('id:a', 'a'));
    h.advance(1);
    const a3 = await h.store.create(init('id:a', 'a'));
    const b1 = await h.store.create(init('id:b', 'b'));
    h.advance(1);
    assert.ok((await h.store.get(a1.id)) !== null); // a1 is now the most recently used
    h.advance(1);
    const a4 = await h.store.create(init('id:a', 'a'));

    assert.deepEqual(h.evicted.map((s) => s.id), [a2.id], 'the least recently used one went');
    assert.equal(await h.store.get(a2.id), null);
    assert.equal(h.expired.length, 0);

    h.advance(1);
    const a5 = await h.store.create(init('id:a', 'a'));
    assert.deepEqual(h.evicted.map((s) => s.id), [a2.id, a3.id]);
    h.advance(1);
    await h.store.get(a4.id);
    await h.store.get(a5.id);
    h.advance(1);
    const a6 = await h.store.create(init('id:a', 'a'));
    const last = h.evicted.at(-1)!;
    assert.equal(last.id, a1.id);
    assert.equal(last.upstream.get('github')?.sessionId, 'up-a1', 'the evicted session comes with its upstream sessions, to end them');
    for (const s of [a4, a5, a6, b1]) assert.ok((await h.store.get(s.id)) !== null, 'the newest three and another client’s session are live');
    assert.equal(h.evicted.length, 3);
  });

  it('refuses a new session once maxSessions are live, with Retry-After, and ends none', async () => {
    const h = make({ maxSessions: 3, maxSessionsPerClient: 2 });
    const held = [await h.store.create(init('ip:192.0.2.1')), await h.store.create(init('ip:192.0.2.1'))];
    h.advance(30_000);
    held.push(await h.store.create(init('ip:192.0.2.2')));
    h.advance(5_000);
    await h.store.get(held[1]!.id);
    await h.store.get(held[2]!.id);
    // The least recently used session (held[0]) idles out 25 s from now.
    const err: unknown = await h.store.create(init('ip:192.0.2.3')).then(
      () => null,
      (e: unknown) => e,
    );
    assert.ok(err instanceof GatewayError, String(err));
    assert.equal(err.code, 'GW_ERR_SESSION_LIMIT');
    assert.equal(err.httpStatus, 503);
    assert.equal(err.headers['retry-after'], '25');
    await assert.rejects(h.store.create(init('ip:192.0.2.2')), /max_sessions/, 'below its own cap, but the gateway is full');
    for (const s of held) {
      h.advance(1);
      assert.ok((await h.store.get(s.id)) !== null);
    }
    assert.equal(h.evicted.length, 0);

    // A client at its own cap still rotates: its least recently used session makes room.
    const rotated = await h.store.create(init('ip:192.0.2.1'));
    assert.deepEqual(h.evicted.map((s) => s.id), [held[0]!.id]);
    assert.ok((await h.store.get(rotated.id)) !== null);
  });

  it('never counts idle sessions: they are ended as expired to make room', async () => {
    const h = make({ maxSessions: 3, maxSessionsPerClient: 2 });
    const old = [await h.store.create(init('id:a', 'a')), await h.store.create(init('id:a', 'a')), await h.store.create(init('id:b', 'b'))];
    h.advance(IDLE_MS + 1);
    const fresh = [await h.store.create(init('id:a', 'a')), await h.store.create(init('id:a', 'a')), await h.store.create(init('id:c', 'c'))];
    assert.equal(h.evicted.length, 0, 'idle sessions are expired, not evicted');
    assert.deepEqual(new Set(h.expired.map((s) => s.id)), new Set(old.map((s) => s.id)));
    for (const s of fresh) assert.ok((await h.store.get(s.id)) !== null);
  });

  it('frees the slot of a deleted session', async () => {
    const h = make({ maxSessions: 2, maxSessionsPerClient: 2 });
    const a1 = await h.store.create(init('id:a', 'a'));
    const a2 = await h.store.create(init('id:a', 'a'));
    assert.ok((await h.store.delete(a1.id)) !== null);
    const b1 = await h.store.create(init('id:b', 'b'));
    assert.equal(h.evicted.length, 0);
    assert.ok((await h.store.get(a2.id)) !== null);
    assert.ok((await h.store.get(b1.id)) !== null);
  });

  it('keeps the client metadata as the JSON text it was given', async () => {
    const h = make({});
    const i = init('id:a', 'a');
    const s = await h.store.create(i);
    assert.equal(s.clientMetadata, i.clientMetadata);
    assert.equal((await h.store.get(s.id))?.clientMetadata, i.clientMetadata);
  });
}

describe('session limit helpers', () => {
  it('asks a refused client to come back when the least recently used session idles out, 1 to 60 s later', () => {
    assert.equal(retryAfterSeconds(25_000), 25);
    assert.equal(retryAfterSeconds(24_001), 25);
    assert.equal(retryAfterSeconds(0), 1);
    assert.equal(retryAfterSeconds(-5), 1);
    assert.equal(retryAfterSeconds(3_600_000), 60);
  });

  it('counts identities by subject and anonymous callers by address (IPv6 by /64)', () => {
    assert.equal(sessionOwner('["api_key",null,"ci","acme"]', '192.0.2.1'), 'id:["api_key",null,"ci","acme"]');
    assert.equal(sessionOwner(null, '192.0.2.1'), 'ip:192.0.2.1');
    assert.equal(sessionOwner(null, null), 'ip:unknown');
    assert.equal(addressBucket('192.0.2.1'), '192.0.2.1');
    assert.equal(addressBucket('::ffff:192.0.2.1'), '192.0.2.1');
    assert.equal(addressBucket('2001:db8:1:2::1'), '2001:db8:1:2::/64');
    assert.equal(addressBucket('2001:DB8:1:2:abcd:ef01:2345:6789'), '2001:db8:1:2::/64');
    assert.equal(addressBucket('2001:db8::'), '2001:db8:0:0::/64');
    assert.equal(addressBucket('::1'), '0:0:0:0::/64');
    assert.equal(addressBucket('fe80::1%eth0'), 'fe80:0:0:0::/64');
    assert.equal(addressBucket('not an address'), 'not an address');
  });
});

describe('MemorySessionStore limits', () => {
  limitSuite((limits) => {
    let t = Date.UTC(2030, 0, 1);
    const expired: GatewaySession[] = [];
    const evicted: GatewaySession[] = [];
    const store = new MemorySessionStore({
      idleMs: IDLE_MS,
      ...limits,
      now: () => t,
      onExpire: (s) => void expired.push(s),
      onEvict: (s) => void evicted.push(s),
    });
    return { store, expired, evicted, advance: (ms) => void (t += ms), now: () => t };
  });
});

describe('RedisSessionStore limits', () => {
  let server: RedisServer;
  let ca: Redis;
  let cb: Redis;
  let n = 0;
  const stores: RedisSessionStore[] = [];

  async function client(): Promise<Redis> {
    const c = createRedisClient({ target: { mode: 'single', url: server.url }, commandTimeoutMs: 500 });
    assert.equal(await waitForRedis(c, 5_000), true);
    return c as Redis;
  }

  before(async () => {
    server = await RedisServer.start();
    ca = await client();
    cb = await client();
  });

  after(async () => {
    for (const s of stores) s.close();
    ca?.disconnect();
    cb?.disconnect();
    await server?.stop();
  });

  /** Two replicas on a fresh prefix, sharing a test clock; reports go to one list each. */
  function replicas(limits: Limits, prefix = `l${++n}:`) {
    let t = Date.UTC(2030, 0, 1);
    const expired: GatewaySession[] = [];
    const evicted: GatewaySession[] = [];
    const mk = (c: Redis): RedisSessionStore => {
      const s = new RedisSessionStore(c, {
        keyPrefix: prefix,
        idleMs: IDLE_MS,
        clock: () => t,
        sweepIntervalMs: 0,
        ...limits,
        onExpire: (x) => void expired.push(x),
        onEvict: (x) => void evicted.push(x),
      });
      stores.push(s);
      return s;
    };
    return { A: mk(ca), B: mk(cb), expired, evicted, advance: (ms: number) => void (t += ms), now: () => t, prefix };
  }

  // The shared expectations, alternating replicas: what one creates the other must count.
  limitSuite((limits) => {
    const r = replicas(limits);
    let flip = false;
    const pick = (): RedisSessionStore => ((flip = !flip) ? r.A : r.B);
    const store: SessionStore = {
      shared: true,
      create: (i) => pick().create(i),
      get: (id) => pick().get(id),
      setUpstream: (s, server, u) => pick().setUpstream(s, server, u),
      claimUpstream: (s, server, u) => pick().claimUpstream(s, server, u),
      setLogLevel: (s, l) => pick().setLogLevel(s, l),
      markOwnList: (s, server, kind) => pick().markOwnList(s, server, kind),
      setSubscribed: (s, server, uri, on) => pick().setSubscribed(s, server, uri, on),
      delete: (id) => pick().delete(id),
      bind: (k, a, b, c) => pick().bind(k, a, b, c),
      boundOwner: (k, a, b) => pick().boundOwner(k, a, b),
      putAsk: (id, rec, ttl) => pick().putAsk(id, rec, ttl),
      answerAsk: (id, k, a) => pick().answerAsk(id, k, a),
      getAsk: (id) => pick().getAsk(id),
      dropAsk: (id) => pick().dropAsk(id),
      list: (max) => pick().list(max),
      liveIds: (max) => pick().liveIds(max),
      localSessions: () => [],
      close: () => {},
    };
    return { store, expired: r.expired, evicted: r.evicted, advance: r.advance, now: r.now };
  });

  it('holds the per-client cap across replicas under concurrent creates, reporting each evicted session once', async () => {
    const r = replicas({ maxSessionsPerClient: 5 });
    const created = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? r.A : r.B).create(init('id:flood', 'flood'))));
    const other = await r.B.create(init('id:other', 'other'));
    const live = (await Promise.all(created.map((s) => r.A.get(s.id)))).filter((s) => s !== null);
    assert.equal(live.length, 5);
    assert.equal(r.evicted.length, 35);
    assert.equal(new Set(r.evicted.map((s) => s.id)).size, 35, 'each evicted session reported once');
    assert.ok((await r.A.get(other.id)) !== null);
    assert.equal(await r.A.size(), 6);
  });

  it('holds the overall cap across replicas under concurrent creates', async () => {
    const r = replicas({ maxSessions: 10 });
    const results = await Promise.allSettled(Array.from({ length: 30 }, (_, i) => (i % 2 === 0 ? r.A : r.B).create(init(`ip:10.0.0.${i}`))));
    assert.equal(results.filter((x) => x.status === 'fulfilled').length, 10);
    for (const x of results) {
      if (x.status === 'rejected') assert.equal((x.reason as GatewayError).code, 'GW_ERR_SESSION_LIMIT');
    }
    assert.equal(await r.B.size(), 10);
    const orphans = (await ca.keys(`${r.prefix}{${r.prefix}sessions}:s:*`)).length;
    assert.equal(orphans, 10, 'a refused create leaves no session hash behind');
  });

  it('shrinks a client to a lowered cap on its next session (a config change across replicas)', async () => {
    const prefix = `l${++n}:`;
    const wide = replicas({ maxSessionsPerClient: 6 }, prefix);
    for (let i = 0; i < 6; i++) await wide.A.create(init('id:a', 'a'));
    const narrow = replicas({ maxSessionsPerClient: 2 }, prefix);
    const newest = await narrow.B.create(init('id:a', 'a'));
    assert.equal(narrow.evicted.length, 5);
    assert.ok((await narrow.A.get(newest.id)) !== null);
    assert.equal(await narrow.A.size(), 2);
  });

  it('keeps no per-client entry beyond the sessions themselves: deleted, expired and swept sessions leave their client’s set', async () => {
    const r = replicas({ maxSessionsPerClient: 3 });
    const a = [await r.A.create(init('id:a', 'a')), await r.A.create(init('id:a', 'a')), await r.A.create(init('id:a', 'a'))];
    await r.B.delete(a[0]!.id);
    r.advance(IDLE_MS + 1);
    assert.equal(await r.B.get(a[1]!.id), null);
    assert.equal(await r.A.sweepExpired(), 1);
    const ownerKeys = (await ca.keys(`${r.prefix}*`)).filter((k) => k.includes(':owner:'));
    assert.deepEqual(ownerKeys, [], 'the client’s set is gone with its last session');
  });

  it('takes idleness from the index, not from the owner set’s copy of lastSeen', async () => {
    const r = replicas({ maxSessionsPerClient: 2 });
    const a1 = await r.A.create(init('id:a', 'a'));
    r.advance(IDLE_MS);
    // A replica from before the caps marks the session used in the index only.
    await ca.zadd(`${r.prefix}sessions`, r.now(), a1.id);
    r.advance(10);
    const a2 = await r.B.create(init('id:a', 'a'));
    assert.equal(r.expired.length + r.evicted.length, 0);
    assert.ok((await r.A.get(a1.id)) !== null);
    assert.ok((await r.A.get(a2.id)) !== null);
  });

  it('keeps each client’s count in the hash slot of the sessions index (Redis Cluster)', async () => {
    const r = replicas({});
    await r.A.create(init('id:["jwt","https://issuer","c{1}","t"]', 'x'));
    const keys = await ca.keys(`${r.prefix}*`);
    const index = `${r.prefix}sessions`;
    const owners = keys.filter((k) => k.includes(':owner:'));
    assert.equal(owners.length, 1, keys.join(', '));
    assert.equal(keySlot(owners[0]!), keySlot(index));
    // With a hash tag in the prefix every key shares its slot, the new ones included.
    const tagged = replicas({}, `{gw${++n}}:`);
    await tagged.A.create(init('id:a', 'a'));
    const taggedKeys = await ca.keys(`${tagged.prefix}*`);
    assert.ok(taggedKeys.length >= 3, taggedKeys.join(', '));
    for (const k of taggedKeys) assert.equal(keySlot(k), keySlot(`${tagged.prefix}sessions`), k);
  });
});

/** A Redis server for one describe and two clients of it (two replicas' connections). */
function twoRedisClients(): { readonly a: Redis; readonly b: Redis } {
  let server: RedisServer;
  let a: Redis | undefined;
  let b: Redis | undefined;
  before(async () => {
    server = await RedisServer.start();
    const client = async (): Promise<Redis> => {
      const c = createRedisClient({ target: { mode: 'single', url: server.url }, commandTimeoutMs: 1000 }) as Redis;
      assert.ok(await waitForRedis(c, 5000));
      return c;
    };
    a = await client();
    b = await client();
  });
  after(async () => {
    a?.disconnect();
    b?.disconnect();
    await server?.stop();
  });
  return {
    get a() {
      return a!;
    },
    get b() {
      return b!;
    },
  };
}

describe('questions put to clients (asks), in either store', () => {
  const redis = twoRedisClients();

  /** One store's view and another's (the same one in memory; two replicas on Redis), and how to let time pass. */
  async function check(writer: SessionStore, reader: SessionStore, expire: () => Promise<void>): Promise<void> {
    assert.equal(await reader.getAsk('q1'), null);
    assert.equal(await writer.answerAsk('q1', 'k', '{}'), false, 'no answer without its question');
    assert.equal(await reader.getAsk('q1'), null, 'nor does an answer create it');
    await writer.putAsk('q1', 'record-1', 60_000);
    assert.deepEqual(await reader.getAsk('q1'), { record: 'record-1', answers: new Map() });
    assert.equal(await reader.answerAsk('q1', 'a.b', '{"x":1}'), true);
    assert.equal(await writer.answerAsk('q1', 'a.b', '{"x":2}'), false, 'answered once');
    assert.deepEqual([...(await writer.getAsk('q1'))!.answers], [['a.b', '{"x":1}']]);
    // A new round replaces the record and forgets the old answers.
    await writer.putAsk('q1', 'record-2', 60_000);
    assert.deepEqual(await reader.getAsk('q1'), { record: 'record-2', answers: new Map() });
    await reader.dropAsk('q1');
    assert.equal(await writer.getAsk('q1'), null);
    await writer.putAsk('q2', 'short', 40);
    await expire();
    assert.equal(await reader.getAsk('q2'), null, 'expired');
    assert.equal(await reader.answerAsk('q2', 'k', '{}'), false);
  }

  it('in memory', async () => {
    let t = 1_000;
    const store = new MemorySessionStore({ idleMs: IDLE_MS, now: () => t });
    try {
      await check(store, store, async () => void (t += 41));
    } finally {
      store.close();
    }
  });

  it('on Redis, across replicas', async () => {
    const mk = (c: Redis) => new RedisSessionStore(c, { keyPrefix: 'asks:', idleMs: IDLE_MS, sweepIntervalMs: 0 });
    const [a, b] = [mk(redis.a), mk(redis.b)];
    try {
      await check(a, b, () => waitUntil(async () => (await redis.a.exists('asks:ask:q2')) === 0, { timeoutMs: 5_000, what: 'the key to expire' }));
    } finally {
      a.close();
      b.close();
    }
  });
});

describe('resource subscriptions a session keeps for sessionless servers, in either store', () => {
  const redis = twoRedisClients();

  const uris = (s: GatewaySession | null): Record<string, string[]> => Object.fromEntries([...(s?.subscriptions ?? [])].map(([k, v]) => [k, [...v].sort()]));

  async function check(writer: SessionStore, reader: SessionStore): Promise<void> {
    const s = await writer.create(init('id:a', 'a'));
    assert.deepEqual(uris(s), {});
    await writer.setSubscribed(s, 'nova', 'note://readme', true);
    // A URI holds any character, the field separator included.
    await writer.setSubscribed(s, 'nova', 'db://x:1/a b', true);
    await writer.setSubscribed(s, 'vega', 'note://readme', true);
    assert.deepEqual(uris(s), { nova: ['db://x:1/a b', 'note://readme'], vega: ['note://readme'] }, 'the writer’s copy');
    assert.deepEqual(uris(await reader.get(s.id)), { nova: ['db://x:1/a b', 'note://readme'], vega: ['note://readme'] });
    const seen = (await reader.get(s.id))!;
    await reader.setSubscribed(seen, 'nova', 'note://readme', false);
    await reader.setSubscribed(seen, 'vega', 'note://readme', false);
    await reader.setSubscribed(seen, 'vega', 'never://subscribed', false);
    assert.deepEqual(uris(await writer.get(s.id)), { nova: ['db://x:1/a b'] });
    // A subscription recorded after the session ended does not bring it back.
    await writer.delete(s.id);
    await reader.setSubscribed(seen, 'nova', 'late://one', true);
    assert.equal(await writer.get(s.id), null);
  }

  it('in memory', async () => {
    const store = new MemorySessionStore({ idleMs: IDLE_MS });
    try {
      await check(store, store);
    } finally {
      store.close();
    }
  });

  it('on Redis, across replicas', async () => {
    const mk = (c: Redis) => new RedisSessionStore(c, { keyPrefix: 'subs:', idleMs: IDLE_MS, sweepIntervalMs: 0 });
    const [a, b] = [mk(redis.a), mk(redis.b)];
    try {
      await check(a, b);
    } finally {
      a.close();
      b.close();
    }
  });
});

/** Redis Cluster's key slot: CRC16 (XMODEM) of the key, or of its first non-empty `{…}` tag, mod 16384. */
function keySlot(key: string): number {
  const open = key.indexOf('{');
  let hashed = key;
  if (open >= 0) {
    const close = key.indexOf('}', open + 1);
    if (close > open + 1) hashed = key.slice(open + 1, close);
  }
  let crc = 0;
  for (const byte of Buffer.from(hashed)) {
    crc ^= byte << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc % 16384;
}
