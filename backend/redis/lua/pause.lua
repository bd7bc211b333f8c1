-- pause pauses (ARGV[4] '1') or resumes (ARGV[4] '0') this queue; it
-- records EventPaused or EventResumed when that changes anything, and a
-- resume wakes blocked Lease calls when jobs are ready.

local on = ARGV[4] == '1'
if on and not paused() then
  rcall('HSET', K_META, 'paused', '1')
  rcall('DEL', K_WAKE)
  rcall('XADD', K_EVENTS, 'MAXLEN', '~', CAP, '*', 'O', order_us(), 'k', 'paused', 'T', NOW)
elseif not on and paused() then
  rcall('HDEL', K_META, 'paused')
  if rcall('ZCARD', K_PRIOS) > 0 then wake() end
  rcall('XADD', K_EVENTS, 'MAXLEN', '~', CAP, '*', 'O', order_us(), 'k', 'resumed', 'T', NOW)
end
return 'ok'
