-- Apply one partition batch atomically: fence check, offset check, counters, sessions, offset.
-- KEYS: 1 epoch, 2 meta, 3 sessions, 4 totals, 5.. bucket hashes
-- ARGV: 1 epoch, 2 expected offset ('' when none is stored yet), 3 next offset, 4 watermark ms,
--       5 bucket ttl s, 6 sessions ttl s,
--       then: n_totals, n x (field, delta);
--       then for each bucket key KEYS[5..]: n_fields, n x (field, delta);
--       then: n_set, n x (session field, value); then: n_del, n x session field.
-- Returns {1} on success, {-1, stored epoch} when fenced, {-2, stored offset} on offset mismatch.
local epoch = redis.call('GET', KEYS[1])
if epoch ~= ARGV[1] then return {-1, epoch or ''} end
local offset = redis.call('HGET', KEYS[2], 'offset')
if (offset or '') ~= ARGV[2] then return {-2, offset or ''} end

local i = 7
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('HINCRBY', KEYS[4], ARGV[i], ARGV[i + 1]); i = i + 2
end
for k = 5, #KEYS do
  n = tonumber(ARGV[i]); i = i + 1
  for _ = 1, n do
    redis.call('HINCRBY', KEYS[k], ARGV[i], ARGV[i + 1]); i = i + 2
  end
  redis.call('EXPIRE', KEYS[k], ARGV[5])
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1]); i = i + 2
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('HDEL', KEYS[3], ARGV[i]); i = i + 1
end
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('EXPIRE', KEYS[3], ARGV[6]) end
local watermark = tonumber(redis.call('HGET', KEYS[2], 'watermark') or '0')
if tonumber(ARGV[4]) > watermark then watermark = tonumber(ARGV[4]) end
redis.call('HSET', KEYS[2], 'offset', ARGV[3], 'watermark', string.format('%d', watermark))
return {1}
