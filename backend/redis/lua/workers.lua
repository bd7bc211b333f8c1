-- workers keeps the worker registry: KEYS[1] a HASH of worker ID -> entry
-- (JSON), KEYS[2] a ZSET of worker ID by expiry (µs). Entries are dropped
-- once expired at the caller's now, on every call, so that the registry of
-- processes that died stays bounded.
-- ARGV[1] 'register' (ARGV[2] now µs, ARGV[3] ID, ARGV[4] entry, ARGV[5]
-- expiry µs), 'remove' (ARGV[2] ID) or 'list' (ARGV[2] now µs); 'list'
-- returns the live entries.

local op = ARGV[1]
if op == 'remove' then
  redis.call('HDEL', KEYS[1], ARGV[2])
  redis.call('ZREM', KEYS[2], ARGV[2])
  return {}
end
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[2])
for _, id in ipairs(gone) do
  redis.call('HDEL', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
end
if op == 'register' then
  redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
  redis.call('ZADD', KEYS[2], ARGV[5], ARGV[3])
  return {}
end
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[2], '+inf')
if #ids == 0 then return {} end
return redis.call('HMGET', KEYS[1], unpack(ids))
