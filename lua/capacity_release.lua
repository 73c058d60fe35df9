-- capacity_release: removes an admitted member, freeing its place.
-- KEYS[1] counter hash   <prefix>:cap:{capNN}:<ns>/<id>          fields capacity, version
-- KEYS[2] member set     <prefix>:cap:{capNN}:<ns>/<id>/members
-- KEYS[3] dirty set      <prefix>:cap:{capNN}:dirty
-- ARGV[1] member id
-- ARGV[2] counter name "<ns>/<id>"
-- Reply: {outcome, count, capacity, version}; outcome 1 released, 0 was not admitted
if redis.call('SREM', KEYS[2], ARGV[1]) == 0 then
  return {0, 0, 0, 0}
end
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('SADD', KEYS[3], ARGV[2])
local capacity = tonumber(redis.call('HGET', KEYS[1], 'capacity')) or 0
return {1, redis.call('SCARD', KEYS[2]), capacity, version}
