-- promote makes due scheduled and retrying jobs of one queue queued, at
-- most ARGV[4] of them, and returns {moved, next, rechecks}: next is the
-- RunAt (ns) of the earliest job still waiting, or '' when none; rechecks
-- lists deferred jobs whose dependencies in other queues are due to be
-- looked at again, each as {id, queue, dependency, queue, dependency...}
-- (at most ARGV[5] of them). ARGV[6] is how long a corrupt job is kept once
-- failed (ns).

local now_us = num(us(NOW))
local ids = rcall('ZRANGEBYSCORE', K_SCHED, '-inf', now_us, 'LIMIT', 0, tonumber(ARGV[4]))
local moved = 0
for _, id in ipairs(ids) do
  rcall('ZREM', K_SCHED, id)
  local r, why, raw = load(id)
  if r == nil then
    count('scheduled', -1)
  elseif r == false then
    fail_corrupt(id, why, raw, ARGV[6], 's')
  elseif r.s == 's' or r.s == 'r' then
    move(r.s, 'q')
    r.s = 'q'
    push_ready(id, r, false)
    emit('queued', id, r)
    save(id, r)
    moved = moved + 1
  end
end

local nxt = ''
local first = rcall('ZRANGE', K_SCHED, 0, 0)
if first[1] then
  local r = load(first[1])
  if r and r.x then nxt = r.x end
end

local rechecks = {}
local due = rcall('ZRANGEBYSCORE', K_RECHECK, '-inf', now_us, 'LIMIT', 0, tonumber(ARGV[5]))
for _, id in ipairs(due) do
  local r = load(id)
  local waits = r and ldec(r.w) or {}
  local item = {id}
  for j = 1, #waits - 1, 2 do
    if waits[j] ~= QUEUE then
      item[#item + 1] = waits[j]
      item[#item + 1] = waits[j + 1]
    end
  end
  if r and r.s == 'd' and #item > 1 then
    rcall('ZADD', K_RECHECK, recheck_at(r), id)
    rechecks[#rechecks + 1] = item
  else
    rcall('ZREM', K_RECHECK, id)
  end
end
flush()
return {moved, nxt, rechecks}
