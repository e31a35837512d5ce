-- Admit label values into a bounded global budget, and keep it fresh.
-- KEYS: 1 the budget (sorted set: value -> last seen, ms), 2 the refused values (HyperLogLog).
-- ARGV: 1 max members, 2 now ms, 3 idle ms (0: values never expire),
--       4.. candidate values (sorted by the caller): values in use are refreshed, new ones
--       admitted while there is room, the rest refused (counted once per distinct value).
-- Values unseen for the idle time (after this refresh) are removed: their slots go to
-- newcomers.
-- Returns {all members after admission, number of values freed by idleness}.
local max, now, idle = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local new = {}
for i = 4, #ARGV do  -- values in use first: refreshed, they are not idle
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], now, ARGV[i])
  else
    new[#new + 1] = ARGV[i]
  end
end
local freed = 0
if idle > 0 then
  freed = redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. string.format('%d', now - idle))
end
local size = redis.call('ZCARD', KEYS[1])
local refused = {}
for _, value in ipairs(new) do
  if size < max then
    redis.call('ZADD', KEYS[1], now, value)
    size = size + 1
  else
    refused[#refused + 1] = value
  end
end
local j = 1
while j <= #refused do  -- unpack() is bounded by Lua's C stack: in slices
  redis.call('PFADD', KEYS[2], unpack(refused, j, math.min(j + 999, #refused)))
  j = j + 1000
end
return {redis.call('ZRANGE', KEYS[1], 0, -1), freed}
