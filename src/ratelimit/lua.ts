/**
 * The one Lua script behind every rate-limit decision in Redis.
 *
 * It checks all buckets and quotas that apply to a request and spends from them only if every one
 * allows it (so a request refused by its tool limit does not also drain the server budget or the
 * tenant's daily quota). Running as one script makes the read-compute-write atomic: replicas
 * hammering the same key are serialised by Redis and the limit holds exactly.
 *
 * Time: `ARGV[1]` is the caller's clock in ms, or empty to use Redis's `TIME`. The gateway uses
 * Redis's clock in production: all replicas then refill buckets against one clock, whereas with
 * each replica's own clock a replica running ahead would mint tokens (its "elapsed" is longer) and
 * one running behind would see no refill at all. Tests pass their own clock to assert exact refill
 * and day rollover without sleeping. `TIME` before writes is fine: since Redis 5 scripts are
 * replicated by their effects, not re-run.
 *
 * Per check, five ARGV fields follow:
 *   bucket: 'b', count, periodMs, burst, cost   — state in hash KEYS[i] {u: units, a: at}
 *   quota:  'q', limit, cost, day, 0             — counter in KEYS[i], the caller's key for UTC day
 *                                                  `day` (days since the epoch, named …:YYYY-MM-DD)
 * The bucket arithmetic is `takeTokens` in bucket.ts, in the same integer units.
 *
 * The caller names every key, as Redis Cluster requires (a script never builds a key name). A
 * quota's key depends on the day of `now`, which the caller can only guess when the script reads
 * Redis's clock: if the script's day is another one (around midnight, with clocks apart), it
 * changes nothing and replies {-3, now}; the caller asks again with that day's key.
 *
 * Keys: a bucket key expires (1 s after) when the bucket would be full again, which is the same as
 * no state, so idle buckets cost no memory. A quota key expires a minute after its UTC day ends;
 * its name carries the date, so the expiry only matters for clean-up, never for correctness.
 *
 * Reply: {allAllowed, now, then per check: allowed, limit, remaining, retryAfterMs, resetMs}, or
 * {-3, now} as above.
 */
export const DECIDE_LUA = `
local DAY = 86400000

local n = #KEYS
if #ARGV ~= 1 + 5 * n then return redis.error_reply('decide: expected ' .. (1 + 5 * n) .. ' arguments') end

local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[1])
end

local checks = {}
local all = true
for i = 1, n do
  local o = 2 + (i - 1) * 5
  local c = { kind = ARGV[o], a = tonumber(ARGV[o + 1]), b = tonumber(ARGV[o + 2]), c = tonumber(ARGV[o + 3]), d = tonumber(ARGV[o + 4]) }
  if c.kind == 'b' then
    c.cap = c.c * c.b
    c.need = c.d * c.b
    c.units = c.cap
    c.at = now
    local st = redis.call('HMGET', KEYS[i], 'u', 'a')
    if st[1] and st[2] then
      local su = tonumber(st[1])
      local sa = tonumber(st[2])
      if now - sa > 0 then c.units = math.min(c.cap, su + (now - sa) * c.a) else c.units = math.min(c.cap, su) end
      if sa > now then c.at = sa end
    end
    c.ok = c.units >= c.need
  elseif c.kind == 'q' then
    local day = math.floor(now / DAY)
    if day ~= c.c then return { -3, now } end
    c.key = KEYS[i]
    c.used = tonumber(redis.call('GET', c.key) or '0')
    c.reset = (day + 1) * DAY - now
    c.ok = c.used + c.b <= c.a
  else
    return redis.error_reply('decide: unknown check kind ' .. tostring(c.kind))
  end
  if not c.ok then all = false end
  checks[i] = c
end

local out = { all and 1 or 0, now }
for i = 1, n do
  local c = checks[i]
  local spend = all
  if c.kind == 'b' then
    local lag = c.at - now
    local after = c.units
    if spend then after = c.units - c.need end
    local retry = 0
    if not c.ok then retry = lag + math.ceil((c.need - c.units) / c.a) end
    local reset = lag + math.ceil((c.cap - after) / c.a)
    if spend then
      redis.call('HSET', KEYS[i], 'u', string.format('%.0f', after), 'a', string.format('%.0f', c.at))
      redis.call('PEXPIRE', KEYS[i], reset + 1000)
    end
    table.insert(out, c.ok and 1 or 0)
    table.insert(out, c.c)
    table.insert(out, math.floor(after / c.b))
    table.insert(out, retry)
    table.insert(out, reset)
  else
    local after = c.used
    if spend then
      after = redis.call('INCRBY', c.key, c.b)
      redis.call('PEXPIRE', c.key, c.reset + 60000)
    end
    local retry = 0
    if not c.ok then retry = c.reset end
    table.insert(out, c.ok and 1 or 0)
    table.insert(out, c.a)
    table.insert(out, math.max(0, c.a - after))
    table.insert(out, retry)
    table.insert(out, c.reset)
  end
end
return out
`;

/**
 * Gives back what DECIDE spent on a Redis Cluster decision whose keys span several hash slots,
 * when another slot's part refused the request (see RedisLimiterStore). Per check, three ARGV
 * fields: bucket 'b', units spent, bucket capacity in units; quota 'q', cost, 0. Keys that are
 * gone (expired meanwhile) stay gone: an absent bucket is full and an absent counter is zero.
 */
export const REFUND_LUA = `
for i = 1, #KEYS do
  local o = (i - 1) * 3
  local kind, amount, cap = ARGV[o + 1], tonumber(ARGV[o + 2]), tonumber(ARGV[o + 3])
  if kind == 'b' then
    local u = redis.call('HGET', KEYS[i], 'u')
    if u then redis.call('HSET', KEYS[i], 'u', string.format('%.0f', math.min(cap, tonumber(u) + amount))) end
  else
    local used = tonumber(redis.call('GET', KEYS[i]) or '0')
    if used >= amount then redis.call('DECRBY', KEYS[i], amount) end
  end
end
return 1
`;
