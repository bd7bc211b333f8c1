-- enqueue stores new jobs of one queue, each in order. Unique keys were
-- claimed before, in the registry of all queues (unique.lua).
-- ARGV[4] is the number of jobs; each job then takes 8 values and 3 per
-- dependency:
--   id, body (see lib.lua), priority, RunAt (ns or ''), type, limit key,
--   now (ns), n,
--   then n times: dependency ID, its queue, its state code there ('' when
--   it is in this queue, which the script reads itself; '-' when not found).
-- It returns one reply per job: the state code of a job stored, or
-- {code, id, state} where code is 'exists' (the ID is taken) or 'nodep'
-- (id names the dependency that was not found). A lone string costs Redis
-- far less to hand back than a list of three.
--
-- Each job comes with its own now: jobs of several Enqueue calls that
-- arrived together share one call (see group.go), each as of its own call.
--
-- The records, the ready lists and the schedule are written once for the
-- whole batch at the end; until then the jobs of the batch live in new, where
-- later jobs of the batch look for their ID and their parents first.

-- The common single Enqueue, one job without dependencies, takes a short
-- road: HSETNX stores it and finds a taken ID in one command.
if ARGV[4] == '1' and ARGV[12] == '0' then
  local id, p = ARGV[5], ARGV[7]
  NOW = ARGV[11]
  -- Made with every field it may get, so that it never grows.
  local r = {s = 'q', body = ARGV[6], tp = ARGV[9], x = nil, k = nil}
  if ARGV[8] ~= '' then r.x = ARGV[8] end
  if ARGV[10] ~= '' then r.k = ARGV[10] end
  if r.x and later(r.x, NOW) then r.s = 's' end
  local rec = enc(r)
  if rcall('HSETNX', K_JOBS, id, rec) == 0 then
    local old = dec(rcall('HGET', K_JOBS, id))
    return {{'exists', id, (old and old.s) or ''}}
  end
  move(nil, r.s)
  local keep = true
  if r.s == 's' then
    rcall('ZADD', K_SCHED, num(us(r.x)), id)
    emit('queued', id, r, 'x', r.x)
  else
    -- A list that was empty had no entry in prios and, unless other lists
    -- had jobs, no wake marker; one that was not has both (see below).
    local n = rcall('RPUSH', ready_key(p), id)
    if n == 1 then
      rcall('ZADD', K_PRIOS, p, p)
      wake()
    end
    emit('queued', id, r)
    keep = n <= RECS_BACKLOG
  end
  if keep then remember(rec, r) end
  flush()
  return {r.s}
end

-- A job is read where it stands in ARGV (at[k] is the index of job k's ID):
-- a table per job would cost more than the rest of its parsing.
local at, deps_of_job, ids, none = {}, {}, {}, {}
local i = 5
for k = 1, tonumber(ARGV[4]) do
  local ndeps = s2n(ARGV[i + 7])
  local deps = none
  if ndeps > 0 then
    deps = {}
    for d = 0, ndeps - 1 do
      deps[d + 1] = {ARGV[i + 8 + d * 3], ARGV[i + 9 + d * 3], ARGV[i + 10 + d * 3]}
    end
  end
  at[k] = i
  deps_of_job[k] = deps
  ids[k] = ARGV[i]
  i = i + 8 + ndeps * 3
end
if #ids == 0 then return {} end

local existing = rcall('HMGET', K_JOBS, unpack(ids))
local new, order = {}, {}
local ready, ready_prios = {}, {}
local sched = {'ZADD', K_SCHED}

-- parent returns the record of a job of this queue, from this batch or
-- stored, and whether it is new.
local function parent(id)
  if new[id] then return new[id], true end
  return load(id), false
end

local out = {}
for k, id in ipairs(ids) do
  local a, deps = at[k], deps_of_job[k]
  NOW = ARGV[a + 6]
  local result
  if new[id] then
    result = {'exists', id, new[id].s}
  elseif existing[k] then
    local r = dec(existing[k])
    result = {'exists', id, (r and r.s) or ''}
  end

  -- Look at every dependency before storing anything: an unknown one
  -- refuses the whole job.
  -- Most jobs have no dependency, and get no tables for them.
  local ended, ended_state, local_waits, waits, cross_waits = nil, nil, none, none, false
  if not result and deps ~= none then
    local seen = {}
    local_waits, waits = {}, {}
    for _, d in ipairs(deps) do
      local did, dq, ds = d[1], d[2], d[3]
      if not seen[did] then
        seen[did] = true
        if dq == QUEUE then
          local p = parent(did)
          if p == nil then ds = '-' elseif p == false then ds = 'f' else ds = p.s end
        end
        if ds == '-' or ds == '' then
          result = {'nodep', did, ''}
          break
        elseif ds == 'f' or ds == 'x' then
          if not ended then ended, ended_state = did, ds end
        elseif ds ~= 'c' then
          waits[#waits + 1] = dq
          waits[#waits + 1] = did
          if dq == QUEUE then local_waits[#local_waits + 1] = did else cross_waits = true end
        end
      end
    end
  end

  if not result then
    -- Made with room for every field it may get, so that it never grows.
    local r = {body = ARGV[a + 1], tp = ARGV[a + 4], cr = NOW, s = nil, x = nil, k = nil, E = nil, w = nil}
    if ARGV[a + 3] ~= '' then r.x = ARGV[a + 3] end
    if ARGV[a + 5] ~= '' then r.k = ARGV[a + 5] end
    if ended then
      r.E = 'dependency ' .. ended .. ' ' .. STATE[ended_state]
      terminate(id, r, 'x')
      emit('canceled', id, r, 'E', r.E)
    elseif #waits > 0 then
      move(nil, 'd')
      r.s = 'd'
      r.w = lenc(waits)
      for _, pid in ipairs(local_waits) do
        local p, is_new = parent(pid)
        local deps_of = ldec(p.n)
        deps_of[#deps_of + 1] = QUEUE
        deps_of[#deps_of + 1] = id
        p.n = lenc(deps_of)
        if not is_new then save(pid, p) end
      end
      if cross_waits then rcall('ZADD', K_RECHECK, recheck_at(r), id) end
      emit('queued', id, r)
    elseif r.x and later(r.x, NOW) then
      move(nil, 's')
      r.s = 's'
      sched[#sched + 1] = num(us(r.x))
      sched[#sched + 1] = id
      emit('queued', id, r, 'x', r.x)
    else
      move(nil, 'q')
      r.s = 'q'
      local p = ARGV[a + 2]
      if not ready[p] then
        ready[p] = {'RPUSH', ready_key(p)}
        ready_prios[#ready_prios + 1] = p
      end
      ready[p][#ready[p] + 1] = id
      emit('queued', id, r)
    end
    new[id] = r
    order[#order + 1] = id
    result = r.s
  end
  out[k] = result
end

-- The marker needs setting only where a list was empty: while jobs are
-- ready, either the marker is there or the Lease call that took it will
-- lease and leave it again for the jobs still ready (or put it back).
local made, backlog = false, 0
for _, p in ipairs(ready_prios) do
  local n = rcall(unpack(ready[p]))
  if n > backlog then backlog = n end
  if n == #ready[p] - 2 then
    rcall('ZADD', K_PRIOS, p, p)
    made = true
  end
end
if made then wake() end
if #order > 0 then
  local keep = backlog <= RECS_BACKLOG
  local hset = {'HSET', K_JOBS}
  for _, id in ipairs(order) do
    hset[#hset + 1] = id
    local r = new[id]
    local rec = enc(r)
    if keep then
      -- A remembered head holds only what its record says (cr is NOW, the
      -- body's creation time, but read from the body when needed).
      r.cr = nil
      remember(rec, r)
    end
    hset[#hset + 1] = rec
  end
  rcall(unpack(hset))
end
if #sched > 2 then rcall(unpack(sched)) end
flush()
return out
