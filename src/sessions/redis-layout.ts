import { createHash, randomBytes } from 'node:crypto';
import { LuaScript } from '../state/script.js';
import { META_FIELD, OWNER_FIELD } from './serialize.js';

/*
 * How gateway sessions are laid out in Redis, and the scripts that read and change that layout
 * atomically (redis-store.ts calls them; the bindings and asks kept beside the sessions are in
 * redis-records.ts).
 *
 * Layout (P = redis.key_prefix, T = the hash tag {P sessions}):
 *   P sessions   sorted set: session id → lastSeen (ms); idle expiry is decided on this score
 *   P T:s:<id>   hash, see serialize.ts; a backstop TTL removes it if no replica is left to sweep
 *   P T:owner:<digest>  sorted set: one owner's session ids → lastSeen, a copy of their index
 *                scores (digest: the session hash's `o` field). Every path that takes a session
 *                out of the index takes it out here too, so the set goes with the owner's last
 *                session; a backstop TTL, refreshed with the session hashes', covers the case no
 *                replica is left to sweep.
 *
 * All session keys share one Redis Cluster hash slot (the tag T is the
 * index's own name): every script below touches the index, the owners' sets and session hashes
 * together, and a script may only touch keys of one slot. Session state therefore lives on one
 * Cluster primary (and its replicas); that keeps `max_sessions` exact and each decision atomic.
 *
 * A session id starts with its owner's digest (then 120 random bits), so every script gets every
 * key it touches from the caller, as Redis Cluster requires: a script never builds a key name.
 *
 * Caps (see limits.ts): ADMIT decides, atomically and so across replicas, whether a new session
 * fits (the owner's set against max_sessions_per_client, the index's size against max_sessions)
 * and takes the sessions it ends out of the index. Their
 * hashes are claimed afterwards with DELETE, by the replica that ended them, for `onEvict` /
 * `onExpire`. A new session's hash is written before ADMIT and is invisible until ADMIT indexes it
 * (GET looks at the index first); a refused one is deleted.
 *
 * Idle expiry is logical (score older than idleMs) rather than a plain key TTL so that an expired
 * session can still be read once: exactly one replica claims it (ZREM + HGETALL + DEL in one
 * script) and hands it to `onExpire`, which ends its upstream sessions — as MemorySessionStore does.
 *
 * The clock is Redis's TIME unless the store is given one: with N replicas there is then one
 * notion of "idle for an hour".
 */

const CLOCK = `
local function clock(arg)
  if arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`;

/** KEYS: hash. ARGV: meta, owner digest, backstopTtlMs. Writes a new session's hash. Reply: 1, or 0 if the id is taken. */
export const WRITE = new LuaScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], '${META_FIELD}', ARGV[1], '${OWNER_FIELD}', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`);

/**
 * KEYS: index, owner set (one hash slot). ARGV: now, id, idleMs, maxPerClient, maxSessions,
 * batch, backstopTtlMs.
 *
 * The owner's idle sessions are taken out (expired; the index has the last word on idleness, the
 * owner set's copy of lastSeen only finds the candidates). Beyond maxPerClient - 1 sessions, the
 * owner's least recently used are picked (evicted). If the index would then still hold
 * maxSessions, up to `batch` idle sessions of anyone are taken out; if it still would, nothing is
 * evicted and the session is refused. Cost: O(log n) plus the sessions it ends.
 * Reply: {now, evicted ids, expired ids} when admitted; {-1, ms until the least recently used
 * session idles out, expired ids} when refused; {-2} if the id is already indexed.
 */
export const ADMIT = new LuaScript(`${CLOCK}
local now = clock(ARGV[1])
local idle = tonumber(ARGV[3])
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then return {-2} end
local cutoff = '(' .. string.format('%.0f', now - idle)
local expired = {}
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', cutoff)) do
  local seen = redis.call('ZSCORE', KEYS[1], m)
  if not seen then
    redis.call('ZREM', KEYS[2], m)
  elseif now - tonumber(seen) > idle then
    redis.call('ZREM', KEYS[1], m)
    redis.call('ZREM', KEYS[2], m)
    table.insert(expired, m)
  else
    redis.call('ZADD', KEYS[2], seen, m)
  end
end
local victims = {}
local excess = redis.call('ZCARD', KEYS[2]) - (tonumber(ARGV[4]) - 1)
if excess > 0 then victims = redis.call('ZRANGE', KEYS[2], 0, excess - 1) end
local max = tonumber(ARGV[5])
if redis.call('ZCARD', KEYS[1]) - #victims >= max then
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff, 'LIMIT', 0, tonumber(ARGV[6]))) do
    redis.call('ZREM', KEYS[1], m)
    table.insert(expired, m)
  end
  if redis.call('ZCARD', KEYS[1]) - #victims >= max then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    local wait = idle
    if oldest[2] then wait = tonumber(oldest[2]) + idle - now end
    return {-1, wait, expired}
  end
end
for _, m in ipairs(victims) do
  redis.call('ZREM', KEYS[1], m)
  redis.call('ZREM', KEYS[2], m)
end
redis.call('ZADD', KEYS[1], now, ARGV[2])
redis.call('ZADD', KEYS[2], now, ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[7])
return {now, victims, expired}
`);

/** Lua: the owner digest in a flat HGETALL reply, or nil. */
const OWNER_OF = `
local function owner_of(fields)
  for i = 1, #fields, 2 do
    if fields[i] == '${OWNER_FIELD}' then return fields[i + 1] end
  end
  return nil
end
`;

/**
 * KEYS: hash, index, owner set. ARGV: now, id, idleMs, backstopTtlMs.
 * Reply: nil (unknown), {1, now, fields} (live, now marked used), {0, now, fields} (expired and
 * claimed by this call).
 */
export const GET = new LuaScript(`${CLOCK}${OWNER_OF}
local now = clock(ARGV[1])
local seen = redis.call('ZSCORE', KEYS[2], ARGV[2])
if not seen then return false end
local fields = redis.call('HGETALL', KEYS[1])
local owner = owner_of(fields)
if now - tonumber(seen) > tonumber(ARGV[3]) or #fields == 0 then
  redis.call('ZREM', KEYS[2], ARGV[2])
  redis.call('DEL', KEYS[1])
  if owner then redis.call('ZREM', KEYS[3], ARGV[2]) end
  if #fields == 0 then return false end
  return {0, now, fields}
end
if now > tonumber(seen) then redis.call('ZADD', KEYS[2], now, ARGV[2]) end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if owner then
  if now > tonumber(seen) then redis.call('ZADD', KEYS[3], 'XX', now, ARGV[2]) end
  redis.call('PEXPIRE', KEYS[3], ARGV[4])
end
return {1, now, fields}
`);

/** KEYS: hash. ARGV: field, value. Sets the field only on a live session (never resurrects one). Reply: 1 or 0. */
export const SET_FIELD = new LuaScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
`);

/** KEYS: hash. ARGV: field. Reply: the field's value plus one, or nil if the session is gone. */
export const INCREMENT_FIELD = new LuaScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
return redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
`);

/** KEYS: hash. ARGV: field, value. First writer wins. Reply: the stored value, or nil if the session is gone. */
export const CLAIM_FIELD = new LuaScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
return redis.call('HGET', KEYS[1], ARGV[1])
`);

/** KEYS: hash. ARGV: field, expected ('' = any). Deletes the field if it still holds `expected`. */
export const CLEAR_FIELD = new LuaScript(`
if ARGV[2] == '' or redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
`);

/**
 * KEYS: hash, index, owner set. ARGV: id. Reply: the deleted fields (empty if unknown).
 * Also claims the hash of a session ADMIT or SWEEP took out of the index.
 */
export const DELETE = new LuaScript(`${OWNER_OF}
redis.call('ZREM', KEYS[2], ARGV[1])
local fields = redis.call('HGETALL', KEYS[1])
redis.call('DEL', KEYS[1])
local owner = owner_of(fields)
if owner then redis.call('ZREM', KEYS[3], ARGV[1]) end
return fields
`);

/**
 * KEYS: index. ARGV: now, idleMs, batch. Takes up to `batch` expired sessions out of the index;
 * the caller then claims each one's hash with DELETE. Reply: {now, id, id, …}.
 */
export const SWEEP = new LuaScript(`${CLOCK}
local now = clock(ARGV[1])
local cutoff = '(' .. string.format('%.0f', now - tonumber(ARGV[2]))
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff, 'LIMIT', 0, tonumber(ARGV[3]))
local out = {now}
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  table.insert(out, id)
end
return out
`);

/** Length of the owner digest that starts every session id. */
export const OWNER_DIGEST_LENGTH = 12;

/**
 * The owner-set name of an owner: short, fixed length, whatever characters the identity holds.
 * 72 bits: owners sharing a digest (and so a per-client cap) are unlikely below billions of owners.
 */
export function ownerDigest(owner: string): string {
  return createHash('sha256').update(owner).digest('base64url').slice(0, OWNER_DIGEST_LENGTH);
}

/** A new session id: the owner's digest, then 120 random bits; 32 characters of [A-Za-z0-9_-]. */
export function newOwnedSessionId(digest: string): string {
  return digest + randomBytes(15).toString('base64url');
}
