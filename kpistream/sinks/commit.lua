-- Apply one partition batch atomically: fence check, offset check, gap check, counters,
-- sessions, visitor state, HyperLogLogs, offset.
-- KEYS: 1 epoch, 2 meta, 3 state, 4 totals, 5 gauges, 6 health, then ARGV[7] counter hashes
--       (buckets), then ARGV[8] HyperLogLogs, then ARGV[9] visitor keys, then the kept
--       records' keys (their number: the changes' [6]).
-- ARGV: 1 epoch, 2 expected offset ('' when none is stored yet), 3 next offset,
--       4 watermark ms, 5 sessions ttl s, 6 visitor ttl s, 7 n buckets, 8 n hlls, 9 n visitors,
--       10 first offset of the batch, 11 offsets before it the worker confirmed are empty,
--       12 the batch's counters, one MessagePack array (one argument, decoded here in C):
--         [1] totals {field, delta, ...}   [2] health {field, delta, ...}
--         [3] gauges {field, value, ...}   [4] per bucket {ttl s (0: kept), {field, delta, ...}}
--         [5] per HyperLogLog {ttl s, {member, ...}}   [6] n kept records
--       (a number is an integer below 2^53, exact in Lua; a larger one comes as its text);
--       then the binary values, as arguments of their own (Redis's cmsgpack has no binary
--       type): per visitor key its value ('' deletes it: the visitor was erased), then per
--       kept record its value (no expiry; '' deletes it);
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
local changes = cmsgpack.unpack(ARGV[12])

local function incr(key, pairs)
  for j = 1, #pairs, 2 do
    redis.call('HINCRBY', key, pairs[j], pairs[j + 1])
  end
end

incr(KEYS[4], changes[1])
incr(KEYS[6], changes[2])
local gauges = changes[3]
for j = 1, #gauges, 2 do
  redis.call('HSET', KEYS[5], gauges[j], gauges[j + 1])
end
local k = 7
for b = 1, n_buckets do
  local bucket = changes[4][b]
  incr(KEYS[k], bucket[2])
  if bucket[1] > 0 then redis.call('EXPIRE', KEYS[k], bucket[1]) end
  k = k + 1
end
for h = 1, n_hlls do
  local hll = changes[5][h]
  local members = hll[2]
  -- unpack() is bounded by Lua's C stack: add members in slices.
  local j = 1
  while j <= #members do
    local last = math.min(#members, j + 999)
    redis.call('PFADD', KEYS[k], unpack(members, j, last))
    j = last + 1
  end
  redis.call('EXPIRE', KEYS[k], hll[1]); k = k + 1
end
local i = 13
for _ = 1, n_visitors do
  if ARGV[i] == '' then
    redis.call('DEL', KEYS[k])
  else
    redis.call('SET', KEYS[k], ARGV[i], 'EX', ARGV[6])
  end
  i = i + 1; k = k + 1
end
for _ = 1, (changes[6] or 0) do
  if ARGV[i] == '' then
    redis.call('DEL', KEYS[k])
  else
    redis.call('SET', KEYS[k], ARGV[i])
  end
  i = i + 1; k = k + 1
end
local n = tonumber(ARGV[i]); i = i + 1
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
