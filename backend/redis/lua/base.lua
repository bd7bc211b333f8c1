-- base.lua comes first in every script: helpers that know no queue, and the
-- limits of backend.Limiter. Nothing here reads KEYS or ARGV when it is
-- loaded: every script (or function of the library, see scripts.go) calls
-- init_base (lib.lua's init does) with its KEYS, its ARGV and LK, the index
-- in KEYS of the first limit key (see below), before anything else. ARGV[1]
-- is always now (ns). A library is loaded once and its functions called many
-- times, so init_base resets every value that belongs to one call.

-- A library's code may reach no global but redis while it loads, so even
-- these are set by init_base, at the first call.
local sub, find, match, concat, nxt, fmt
-- rcall is redis.call, an upvalue rather than a global and a field: every
-- global of a function is looked up through the globals table's metatable.
local rcall
local NOW

-- Lua 5.1 turns numbers into strings with sprintf and strings into numbers
-- with strtod, both slow next to everything else a script does; a batch
-- meets the same few lengths, counters and times again and again, so the
-- conversions are remembered. They are pure, so the memory outlives the
-- call (a library's upvalues live as long as it is loaded), until it holds
-- CACHE_MAX entries: init_base then starts it afresh.
local N2S, S2N, F2S, HDR, US, CACHED, CACHE_MAX = {}, {}, {}, {}, {}, 0, 2048
-- n2s is tostring for small integers (lengths, attempts).
local function n2s(n)
  local s = N2S[n]
  if not s then
    s = tostring(n)
    N2S[n] = s
    CACHED = CACHED + 1
  end
  return s
end
local function s2n(s)
  local n = S2N[s]
  if not n then
    n = tonumber(s)
    if n then
      S2N[s] = n
      CACHED = CACHED + 1
    end
  end
  return n
end
-- num writes a number of any size (scores, times) without an exponent.
local function num(x)
  local s = F2S[x]
  if not s then
    s = fmt('%.0f', x)
    F2S[x] = s
    CACHED = CACHED + 1
  end
  return s
end

-- field_head is the start of a record's field of tag whose value is len
-- bytes long: tag .. len .. ':' (see lib.lua), made once.
local function field_head(tag, len)
  local h = HDR[tag]
  if not h then
    h = {}
    HDR[tag] = h
  end
  local s = h[len]
  if not s then
    s = tag .. n2s(len) .. ':'
    h[len] = s
    CACHED = CACHED + 1
  end
  return s
end

-- us turns a nanosecond time or duration into microseconds (for scores).
-- A call meets the same now and the same TTLs job after job.
local function us(ns)
  if not ns then return 0 end
  local u = US[ns]
  if not u then
    u = #ns > 3 and tonumber(sub(ns, 1, -4)) or 0
    US[ns] = u
    CACHED = CACHED + 1
  end
  return u
end

-- later reports whether time a is after time b, both decimal nanoseconds:
-- compared as strings, so that no precision is lost to doubles.
local function later(a, b)
  if sub(a, 1, 1) == '-' or sub(b, 1, 1) == '-' then
    return (tonumber(a) or 0) > (tonumber(b) or 0)
  end
  if #a ~= #b then return #a > #b end
  return a > b
end

local function int(v) return s2n(v or '0') or 0 end

-- Limits live in keys shared by all queues, in the {prefix} slot:
--   KEYS[LK]   limits     HASH key -> "concurrency,rate,period (ns)"
--   {prefix}:limit:active     HASH key -> active jobs with the key, in every queue
--   {prefix}:limit:throttles  HASH key -> throttled until (ns)
--   {prefix}:limit:state      HASH promoted -> the now of the latest Promote (ns)
-- (only the first is passed: the others' names follow from it, and a call
-- makes them only when it meets a new prefix) and, per key,
-- {prefix}:limit:starts:<key> (ZSET: the latest leases, by time in µs) and
-- {prefix}:limit:queues:<key> (SET: the queues where jobs with the key are
-- parked). A queue script reaches them only where one
-- script may touch keys of several slots, on a single Redis: on a Cluster
-- KEYS has no limit keys, LIMITS_ON is false and limit keys are not
-- enforced (SetLimit says so).
local K_LIMITS, K_LACTIVE, K_THROTTLES, K_LSTATE, LIMITS_ON, PREFIX
local function starts_key(k) return '{' .. PREFIX .. '}:limit:starts:' .. k end
local function lqueues_key(k) return '{' .. PREFIX .. '}:limit:queues:' .. k end

-- What the call has read of the limits, kept in step as it goes. Most calls
-- touch none of them: init_base makes new tables only for those the last
-- call wrote in (one that failed halfway may have left anything there).
local LDEF, LACT, LDELTA, LTHR, LAT = {}, {}, {}, {}, nil

-- init_base sets what belongs to one call; see the top of this file.
local function init_base(keys, argv, lk)
  if not nxt then
    sub, find, match, concat, nxt, fmt = string.sub, string.find, string.match, table.concat, next, string.format
    rcall = redis.call
  end
  NOW = argv[1]
  if CACHED > CACHE_MAX then N2S, S2N, F2S, HDR, US, CACHED = {}, {}, {}, {}, {}, 0 end
  -- Strings are interned: the same limits key as the last call's costs a
  -- comparison here, not new strings.
  local kl = keys[lk]
  if kl ~= K_LIMITS then
    K_LIMITS = kl
    LIMITS_ON = kl ~= nil
    if LIMITS_ON then
      PREFIX = sub(kl, 2, -9) -- from "{prefix}:limits"
      local g = '{' .. PREFIX .. '}:'
      K_LACTIVE, K_THROTTLES, K_LSTATE = g .. 'limit:active', g .. 'limit:throttles', g .. 'limit:state'
    end
  end
  if nxt(LDEF) then LDEF = {} end
  if nxt(LACT) then LACT = {} end
  if nxt(LDELTA) then LDELTA = {} end
  if nxt(LTHR) then LTHR = {} end
  LAT = nil
end

-- limit_at is the time (µs) limits are judged at: now, or the now of the
-- latest Promote if that is later. A Lease that blocked before a rate window
-- opened and that the Promote at its opening woke must see it open, though
-- its own now is from before.
local function limit_at()
  if not LAT then LAT = math.max(us(NOW), us(rcall('HGET', K_LSTATE, 'promoted'))) end
  return LAT
end

-- limit_of returns the stored limit of key k ({c, r, per} with per in µs),
-- or false.
local function limit_of(k)
  local d = LDEF[k]
  if d == nil then
    d = false
    local v = rcall('HGET', K_LIMITS, k)
    if v then
      local c, r, p = match(v, '^(%d+),(%d+),(%d+)$')
      if c then d = {c = int(c), r = int(r), per = us(p)} end
    end
    LDEF[k] = d
  end
  return d
end

local function active_of(k)
  local n = LACT[k]
  if n == nil then
    n = int(rcall('HGET', K_LACTIVE, k))
    LACT[k] = n
  end
  return n
end

-- add_active counts a job of key k that becomes active (1) or stops (-1);
-- the count is written by flush_limits.
local function add_active(k, d)
  LACT[k] = active_of(k) + d
  LDELTA[k] = (LDELTA[k] or 0) + d
end

local function throttled_until(k)
  local t = LTHR[k]
  if t == nil then
    t = us(rcall('HGET', K_THROTTLES, k))
    LTHR[k] = t
  end
  return t
end

-- starts_in_window counts the leases of key k in the window (at-per, at]: a
-- lease at t counts until, not at, t+per.
local function starts_in_window(k, d)
  return rcall('ZCOUNT', starts_key(k), '(' .. num(limit_at() - d.per), '+inf')
end

-- room returns how many jobs of key k may start now: 0 while it is held back
-- (throttled, Concurrency active, or Rate leased in the window), math.huge
-- when nothing caps it.
local function room(k)
  if throttled_until(k) > limit_at() then return 0 end
  local d = limit_of(k)
  if not d then return math.huge end
  local n = math.huge
  if d.c > 0 then n = d.c - active_of(k) end
  if d.r > 0 then n = math.min(n, d.r - starts_in_window(k, d)) end
  return math.max(n, 0)
end

-- admit counts a lease of a job of key k; member names the lease in the
-- window. Only the latest Rate leases are kept: the window needs no more.
local function admit(k, member)
  add_active(k, 1)
  local d = limit_of(k)
  if d and d.r > 0 then
    rcall('ZADD', starts_key(k), num(limit_at()), member)
    rcall('ZREMRANGEBYRANK', starts_key(k), 0, -(d.r + 1))
  end
end

-- throttle holds key k back until until (ns); a throttle never ends an
-- earlier one sooner.
local function throttle(k, until_ns)
  if us(until_ns) > throttled_until(k) then
    rcall('HSET', K_THROTTLES, k, until_ns)
    LTHR[k] = us(until_ns)
  end
end

-- wake_parked wakes blocked Lease calls of every queue where jobs of key k
-- are parked, so that they take them now that the key has room.
local function wake_parked(k)
  for _, q in ipairs(rcall('SMEMBERS', lqueues_key(k))) do
    local base = '{' .. PREFIX .. ':' .. q .. '}:'
    if rcall('HEXISTS', base .. 'meta', 'paused') == 0 then rcall('ZADD', base .. 'wake', '0', 'w') end
  end
end

-- flush_limits writes the active counts and, for keys that a job stopped
-- holding, wakes the queues whose parked jobs may now run.
local function flush_limits()
  if not nxt(LDELTA) then return end
  for k, d in pairs(LDELTA) do
    if d ~= 0 then
      if rcall('HINCRBY', K_LACTIVE, k, n2s(d)) <= 0 then rcall('HDEL', K_LACTIVE, k) end
      if d < 0 and room(k) > 0 then wake_parked(k) end
    end
  end
  LDELTA = {}
end
