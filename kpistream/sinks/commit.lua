-- Apply one partition batch atomically: fence check, offset check, gap check, counters,
-- sessions, visitor state, HyperLogLogs, offset.
-- KEYS: 1 epoch, 2 meta, 3 state, 4 totals, 5 gauges, 6 health, then ARGV[7] counter hashes
--       (buckets),
--       then ARGV[8] HyperLogLogs, then ARGV[9] visitor keys.
-- ARGV: 1 epoch, 2 expected offset ('' when none is stored yet), 3 next offset,
--       4 watermark ms, 5 sessions ttl s, 6 visitor ttl s, 7 n buckets, 8 n hlls, 9 n visitors,
--       10 first offset of the batch, 11 offsets before it the worker confirmed are empty,
--       then: n_totals, n x (field, delta); then: n_health, n x (field, delta);
--       then: n_gauges, n x (field, value);
--       then per bucket: ttl s, n_fields, n x (field, delta);
--       then per HyperLogLog: ttl s, n_members, members;
--       then per visitor key: value ('' deletes it: the visitor was erased);
--       then: n_set, n x (state field, value); then: n_del, n x state field.
-- Returns {1} on success, {-1, stored epoch} when fenced, {-2, stored offset} on offset
-- mismatch, {-3, ''} when the partition has no epoch (Redis lost its data), {-4, stored
-- offset} when the batch does not start where the stored offset says (records skipped).
local epoch = redis.call('GET', KEYS[1])
if not epoch then return {-3, ''} end
if epoch ~= ARGV[1] then return {-1, epoch} end
local offset = redis.call('HGET', KEYS[2], 'offset')
if (offset or '') ~= ARGV[2] then return {-2, offset or ''} end
if offset and tonumber(ARGV[10]) ~= tonumber(offset) + tonumber(ARGV[11]) then
  return {-4, offset}
end

local n_buckets, n_hlls, n_visitors = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local i = 12
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('HINCRBY', KEYS[4], ARGV[i], ARGV[i + 1]); i = i + 2
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('HINCRBY', KEYS[6], ARGV[i], ARGV[i + 1]); i = i + 2
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('HSET', KEYS[5], ARGV[i], ARGV[i + 1]); i = i + 2
end
local k = 7
for _ = 1, n_buckets do
  local ttl = ARGV[i]; n = tonumber(ARGV[i + 1]); i = i + 2
  for _ = 1, n do
    redis.call('HINCRBY', KEYS[k], ARGV[i], ARGV[i + 1]); i = i + 2
  end
  redis.call('EXPIRE', KEYS[k], ttl); k = k + 1
end
for _ = 1, n_hlls do
  local ttl = ARGV[i]; n = tonumber(ARGV[i + 1]); i = i + 2
  -- unpack() is bounded by Lua's C stack: add members in slices.
  local j = 0
  while j < n do
    local m = math.min(n - j, 1000)
    redis.call('PFADD', KEYS[k], unpack(ARGV, i + j, i + j + m - 1))
    j = j + m
  end
  i = i + n
  redis.call('EXPIRE', KEYS[k], ttl); k = k + 1
end
for _ = 1, n_visitors do
  if ARGV[i] == '' then
    redis.call('DEL', KEYS[k])
  else
    redis.call('SET', KEYS[k], ARGV[i], 'EX', ARGV[6])
  end
  i = i + 1; k = k + 1
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1]); i = i + 2
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('HDEL', KEYS[3], ARGV[i]); i = i + 1
end
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('EXPIRE', KEYS[3], ARGV[5]) end
local watermark = tonumber(redis.call('HGET', KEYS[2], 'watermark') or '0')
if tonumber(ARGV[4]) > watermark then watermark = tonumber(ARGV[4]) end
redis.call('HSET', KEYS[2], 'offset', ARGV[3], 'watermark', string.format('%d', watermark))
return {1}
