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
 *   quota:  'q', limit, cost, 0, 0               — counter in KEYS[i] .. ':' .. 'YYYY-MM-DD' (UTC)
 * The bucket arithmetic is `takeTokens` in bucket.ts, in the same integer units.
 *
 * Keys: a bucket key expires (1 s after) when the bucket would be full again, which is the same as
 * no state, so idle buckets cost no memory. A quota key expires a minute after its UTC day ends;
 * its name carries the date, so the expiry only matters for clean-up, never for correctness.
 * Quota keys are built inside the script, which Redis Cluster would not allow; the gateway
 * supports a single Redis (or a primary with replicas), not Cluster.
 *
 * Reply: {allAllowed, now, then per check: allowed, limit, remaining, retryAfterMs, resetMs}.
 */
export const DECIDE_LUA = `
local DAY = 86400000
local function civil(days)
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp + 3
  if mp >= 10 then m = mp - 9 end
  if m <= 2 then y = y + 1 end
  return string.format('%04d-%02d-%02d', y, m, d)
end

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
    c.key = KEYS[i] .. ':' .. civil(day)
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
