-- finish ends attempts of one queue. ARGV[4] is the number of acks; each
-- takes 6 values: job ID, token, outcome (1 completed, 2 retry, 3 failed,
-- 4 canceled, 5 released, 6 throttled), result, error, RetryAt (ns).
-- It returns {codes, cross}: one code per ack ('ok' or 'lost'), and the
-- dependents in other queues to resolve (see settle).

local n = tonumber(ARGV[4])
local ids = {}
for k = 1, n do ids[k] = ARGV[5 + (k - 1) * 6] end
local raws = n > 0 and rcall('HMGET', K_JOBS, unpack(ids)) or {}
local codes, seen = {}, {}
local hset, zrem = {'HSET', K_JOBS}, {'ZREM', K_ACTIVE}
for k = 1, n do
  local i = 5 + (k - 1) * 6
  local id, token, outcome, result, err, retry_at =
    ARGV[i], ARGV[i + 1], s2n(ARGV[i + 2]), ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  local r = raws[k] and dec(raws[k])
  if not r or r.s ~= 'a' or r.L ~= token or seen[id] then
    codes[k] = 'lost'
  else
    seen[id] = true
    codes[k] = 'ok'
    -- A worker must not hand back a job whose cancel was requested: it
    -- would run again. Such a job ends canceled, and the failed attempt is
    -- not counted, since the cancel is what stopped it.
    if r.C == '1' and (outcome == 2 or outcome == 5 or outcome == 6) then outcome = 4 end
    -- An API's answer holds for the key whatever becomes of this job.
    if s2n(ARGV[i + 2]) == 6 and LIMITS_ON and r.k then throttle(r.k, retry_at) end
    zrem[#zrem + 1] = id
    local reason = r.Q
    end_lease(r)
    if outcome == 1 then
      count('processed', 1)
      r.y = result
      terminate(id, r, 'c')
      emit('completed', id, r, 'y', result)
      if r.n then settle(id, r) end
    elseif outcome == 2 then
      r.f = n2s(int(r.f) + 1)
      count('failures', 1)
      r.E = err
      r.x = retry_at
      move('a', 'r')
      r.s = 'r'
      rcall('ZADD', K_SCHED, num(us(retry_at)), id)
      emit('retrying', id, r, 'E', err, 'x', retry_at)
    elseif outcome == 3 then
      r.f = n2s(int(r.f) + 1)
      count('failures', 1)
      r.E = err
      terminate(id, r, 'f')
      emit('failed', id, r, 'E', err)
      if r.n then settle(id, r) end
    elseif outcome == 4 then
      -- The reason given to Cancel wins over the worker's error.
      r.E = (reason and reason ~= '') and reason or err
      terminate(id, r, 'x')
      emit('canceled', id, r, 'E', r.E)
      if r.n then settle(id, r) end
    elseif outcome == 5 then
      r.a = n2s(math.max(int(r.a) - 1, 0))
      move('a', 'q')
      r.s = 'q'
      push_ready(id, r, true)
      emit('queued', id, r)
    else
      -- Throttled: no failure; the job waits out the API's limit, scheduled.
      r.a = n2s(math.max(int(r.a) - 1, 0))
      r.E = err
      r.x = retry_at
      move('a', 's')
      r.s = 's'
      rcall('ZADD', K_SCHED, num(us(retry_at)), id)
      emit('queued', id, r, 'x', retry_at, 'E', err)
    end
    hset[#hset + 1] = id
    local rec = enc(r)
    -- An ended job is read again only by Sweep or a lookup: not worth a place.
    if not TERMINAL[r.s] then remember(rec, r) end
    hset[#hset + 1] = rec
  end
end
if #zrem > 2 then
  rcall(unpack(zrem))
  rcall(unpack(hset))
end
flush()
return {codes, cross}
