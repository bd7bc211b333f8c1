-- heartbeat extends leases of one queue. ARGV[4] is the new expiry (ns);
-- then pairs of job ID and token. It returns one code per lease: 'ok',
-- 'lost' (the token no longer owns the job) or 'cancel' (extended, but a
-- cancel is pending).

local until_ns = ARGV[4]
local until_us = num(us(until_ns))
local ids = {}
for i = 5, #ARGV - 1, 2 do ids[#ids + 1] = ARGV[i] end
if #ids == 0 then return {} end
local raws = rcall('HMGET', K_JOBS, unpack(ids))
local out, hset, zadd = {}, {'HSET', K_JOBS}, {'ZADD', K_ACTIVE, 'XX'}
local seen = {}
for k, id in ipairs(ids) do
  local token = ARGV[4 + 2 * k]
  local r = raws[k] and dec(raws[k])
  -- A lease whose expiry passed but that Reap has not handled yet still
  -- owns its job: the token decides, not the clock.
  if not r or r.s ~= 'a' or r.L ~= token or seen[id] then
    out[k] = 'lost'
  else
    seen[id] = true
    r.l = until_ns
    hset[#hset + 1] = id
    local rec = enc(r)
    remember(rec, r)
    hset[#hset + 1] = rec
    zadd[#zadd + 1] = until_us
    zadd[#zadd + 1] = id
    out[k] = (r.C == '1') and 'cancel' or 'ok'
  end
end
if #hset > 2 then
  rcall(unpack(hset))
  rcall(unpack(zadd))
end
return out
