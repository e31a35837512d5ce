-- Take ownership of a partition: bump its epoch (fencing the previous owner) and return the
-- state to resume from. KEYS: 1 epoch, 2 meta, 3 state (open sessions or accounts).
-- A missing epoch (a new partition, or a Redis that lost its data) starts at the server's
-- clock in milliseconds, not at 1: every epoch handed out before the loss is smaller, so an
-- owner from before still cannot write.
-- Returns {epoch, stored next offset or '', watermark or '', {state field, value, ...},
-- 1 if the epoch was missing else 0}.
local fresh = 0
if redis.call('EXISTS', KEYS[1]) == 0 then
  fresh = 1
  local now = redis.call('TIME')
  redis.call('SET', KEYS[1], string.format('%d', tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)))
end
local epoch = redis.call('INCR', KEYS[1])
local meta = redis.call('HMGET', KEYS[2], 'offset', 'watermark')
return {epoch, meta[1] or '', meta[2] or '', redis.call('HGETALL', KEYS[3]), fresh}
