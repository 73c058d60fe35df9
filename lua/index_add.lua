-- Adds members to a purge index set and keeps the set alive as long as its longest
-- member (never shortens its lifetime).
-- KEYS[1] index set key (<prefix>:tag:{tag}, <prefix>:path:{hash},
--         <prefix>:cache:{path hash}:<entry hash>:variants)
-- ARGV[1] ttl in ms
-- ARGV[2..] members
-- Reply: the set's size after adding
for i = 2, #ARGV do
  redis.call('SADD', KEYS[1], ARGV[i])
end
local ttl = tonumber(ARGV[1])
local current = redis.call('PTTL', KEYS[1])
if current >= 0 and current < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
elseif current == -1 then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return redis.call('SCARD', KEYS[1])
