-- Forgets, in one batch, paths whose entries have all expired.
-- KEYS[1] the path list (<prefix>:{paths})
-- KEYS[2] the expiries (<prefix>:{paths}:exp)
-- ARGV[1] now, Unix ms: paths expiring before it go
-- ARGV[2] the batch size (the caller repeats while a full batch went)
-- Reply: how many paths were forgotten
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #gone > 0 then
  redis.call('ZREM', KEYS[1], unpack(gone))
  redis.call('ZREM', KEYS[2], unpack(gone))
end
return #gone
