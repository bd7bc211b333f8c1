-- unique keeps the registry of unique keys, shared by all queues so that a
-- key is unique across them: KEYS[1] a HASH of key -> holder, KEYS[2] a ZSET
-- of keys by UniqueUntil (µs) for keys whose holder was swept. A holder is a
-- record (see lib.lua) of i (job ID), q (its queue), U (UniqueUntil, ns),
-- c (when claimed, ns) and, once swept, s (its last state). Whether a live
-- holder still holds its key depends on its state, which lives in its
-- queue's slot: the caller looks there and decides (see unique.go).
-- ARGV[1] is the operation, ARGV[2] now (ns); items follow.
--   claim:   key, ID, queue, UniqueUntil, steal (the holder the caller found
--            free, or ''). Returns per item {'ok'} (claimed), {'mine'} (held
--            by this ID already) or {'held', ID, queue, UniqueUntil,
--            claimed, state}.
--   drop:    key, ID. Forgets a claim whose job was not stored.
--   release: key, ID, state code, UniqueUntil. The job was swept: its key is
--            freed, or kept as a tomb while UniqueUntil is ahead.
--   clean:   ARGV[3] limit. Forgets tombs whose UniqueUntil has passed.

local op, now = ARGV[1], ARGV[2]

local function dec(s)
  local r, i, n = {}, 1, #s
  while i <= n do
    local tag = string.sub(s, i, i)
    local colon = string.find(s, ':', i + 1, true)
    if not colon then return nil end
    local len = tonumber(string.sub(s, i + 1, colon - 1))
    if not len then return nil end
    r[tag] = string.sub(s, colon + 1, colon + len)
    i = colon + len + 1
  end
  return r
end

local function enc(r)
  local out = {}
  for _, tag in ipairs({'i', 'q', 'U', 'c', 's'}) do
    local v = r[tag]
    if v and v ~= '' then out[#out + 1] = tag .. #v .. ':' .. v end
  end
  return table.concat(out)
end

local function later(a, b)
  if #a ~= #b then return #a > #b end
  return a > b
end

local function entry(key)
  local v = redis.call('HGET', KEYS[1], key)
  return v and dec(v)
end

local out = {}
if op == 'claim' then
  for i = 3, #ARGV - 4, 5 do
    local key, id, queue, untl, steal = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
    local e = entry(key)
    if e and e.i == id and not e.s then
      out[#out + 1] = {'mine'}
    elseif not e or not e.i or (steal ~= '' and e.i == steal) then
      redis.call('HSET', KEYS[1], key, enc({i = id, q = queue, U = untl, c = now}))
      out[#out + 1] = {'ok'}
    else
      out[#out + 1] = {'held', e.i, e.q or '', e.U or '', e.c or '', e.s or ''}
    end
  end
elseif op == 'drop' then
  for i = 3, #ARGV - 1, 2 do
    local e = entry(ARGV[i])
    if e and e.i == ARGV[i + 1] and not e.s then redis.call('HDEL', KEYS[1], ARGV[i]) end
  end
elseif op == 'release' then
  for i = 3, #ARGV - 3, 4 do
    local key, id, state, untl = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
    local e = entry(key)
    if e and e.i == id then
      if untl ~= '' and later(untl, now) then
        e.s = state
        redis.call('HSET', KEYS[1], key, enc(e))
        redis.call('ZADD', KEYS[2], string.sub(untl, 1, -4), key)
      else
        redis.call('HDEL', KEYS[1], key)
      end
    end
  end
elseif op == 'clean' then
  local keys = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', string.sub(now, 1, -4), 'LIMIT', 0, tonumber(ARGV[3]))
  for _, key in ipairs(keys) do
    redis.call('ZREM', KEYS[2], key)
    local e = entry(key)
    if e and e.s and not (e.U and e.U ~= '' and later(e.U, now)) then redis.call('HDEL', KEYS[1], key) end
  end
end
return out
