-- capacity_set: defines a counter or changes its capacity. Lowering it below the
-- count is allowed: nobody new is admitted until the count is below it again.
-- KEYS[1] counter hash   <prefix>:cap:{capNN}:<ns>/<id>          fields capacity, version
-- KEYS[2] member set     <prefix>:cap:{capNN}:<ns>/<id>/members
-- KEYS[3] dirty set      <prefix>:cap:{capNN}:dirty
-- ARGV[1] capacity
-- ARGV[2] counter name "<ns>/<id>"
-- Reply: {count, capacity, version} (the version moves only when the capacity changed)
local h = redis.call('HMGET', KEYS[1], 'capacity', 'version')
local capacity = tonumber(ARGV[1])
local version = tonumber(h[2]) or 0
if tonumber(h[1]) ~= capacity then
  version = version + 1
  redis.call('HSET', KEYS[1], 'capacity', ARGV[1], 'version', version)
  redis.call('SADD', KEYS[3], ARGV[2])
end
return {redis.call('SCARD', KEYS[2]), capacity, version}
