-- limits keeps the limits of backend.Limiter (see base.lua for the keys).
-- ARGV[1] now (ns), ARGV[2] the operation:
--   set:     ARGV[3] key, ARGV[4] "concurrency,rate,period (ns)" or '' to
--            remove it. A limit that gives room wakes the parked jobs.
--   list:    returns key, limit, key, limit...
--   promote: records now as the latest Promote's, wakes the parked jobs of
--            keys whose throttle or rate window has ended, and returns when
--            the first key still held back by one opens (ns), or ''.

local op = ARGV[2]
if op == 'list' then return rcall('HGETALL', K_LIMITS) end

if op == 'set' then
  local k, v = ARGV[3], ARGV[4]
  if v == '' then
    rcall('HDEL', K_LIMITS, k)
    rcall('DEL', starts_key(k))
  else
    rcall('HSET', K_LIMITS, k, v)
    local r = int(match(v, '^%d+,(%d+),'))
    if r > 0 then
      rcall('ZREMRANGEBYRANK', starts_key(k), 0, -(r + 1))
    else
      rcall('DEL', starts_key(k))
    end
  end
  if room(k) > 0 then wake_parked(k) end
  return ''
end

-- promote
local prev = rcall('HGET', K_LSTATE, 'promoted')
if not prev or later(NOW, prev) then rcall('HSET', K_LSTATE, 'promoted', NOW) end
local at = limit_at()
local next_us
local function opens(t)
  if not next_us or t < next_us then next_us = t end
end
local thr = rcall('HGETALL', K_THROTTLES)
for i = 1, #thr - 1, 2 do
  local k, t = thr[i], us(thr[i + 1])
  if t <= at then
    rcall('HDEL', K_THROTTLES, k)
    LTHR[k] = 0
    if room(k) > 0 then wake_parked(k) end
  else
    opens(t)
  end
end
local lim = rcall('HGETALL', K_LIMITS)
for i = 1, #lim - 1, 2 do
  local k = lim[i]
  local d = limit_of(k)
  if d and d.r > 0 then
    if starts_in_window(k, d) >= d.r then
      local first = rcall('ZRANGEBYSCORE', starts_key(k), '(' .. num(at - d.per), '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
      opens(tonumber(first[2]) + d.per)
    elseif room(k) > 0 then
      wake_parked(k)
    end
  end
end
if not next_us then return '' end
return num(next_us) .. '000'
