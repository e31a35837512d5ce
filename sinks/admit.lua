-- Admit label values into a bounded global set, first come first served.
-- KEYS: 1 the set. ARGV: 1 max members, 2.. candidate values (sorted by the caller).
-- Returns all members after admission.
local max = tonumber(ARGV[1])
local size = redis.call('SCARD', KEYS[1])
for i = 2, #ARGV do
  if size >= max then break end
  size = size + redis.call('SADD', KEYS[1], ARGV[i])
end
return redis.call('SMEMBERS', KEYS[1])
