-- peek returns the state code of each job ID in ARGV from 4 in this queue:
-- '' when it is not here, 'f' for an unreadable record.

local out = {}
for i = 4, #ARGV do
  local r = load(ARGV[i])
  if r == nil then out[#out + 1] = '' elseif r == false then out[#out + 1] = 'f' else out[#out + 1] = r.s end
end
return out
