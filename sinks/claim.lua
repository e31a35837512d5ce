-- Take ownership of a partition: bump its epoch (fencing the previous owner) and return the
-- state to resume from. KEYS: 1 epoch, 2 meta, 3 sessions.
-- Returns {epoch, stored next offset or '', watermark or '', {session field, value, ...}}.
local epoch = redis.call('INCR', KEYS[1])
local meta = redis.call('HMGET', KEYS[2], 'offset', 'watermark')
return {epoch, meta[1] or '', meta[2] or '', redis.call('HGETALL', KEYS[3])}
