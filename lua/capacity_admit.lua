-- capacity_admit: admits a member to a counter, never more than `capacity` members,
-- idempotent per member.
-- KEYS[1] counter hash   <prefix>:cap:{capNN}:<ns>/<id>          fields capacity, version
-- KEYS[2] member set     <prefix>:cap:{capNN}:<ns>/<id>/members
-- KEYS[3] dirty set      <prefix>:cap:{capNN}:dirty               names changed since the last sync
-- ARGV[1] member id
-- ARGV[2] capacity that defines the counter when it does not exist ("" = do not define)
-- ARGV[3] counter name "<ns>/<id>" (what the dirty set records)
-- Reply: {outcome, count, capacity, version}
--   outcome 1 admitted, 2 already admitted (nothing counted), 3 full, 0 no counter defined
local h = redis.call('HMGET', KEYS[1], 'capacity', 'version')
local capacity = tonumber(h[1])
local version = tonumber(h[2]) or 0
local changed = false
if not capacity then
  if ARGV[2] == '' then
    return {0, 0, 0, 0}
  end
  capacity = tonumber(ARGV[2])
  version = version + 1
  redis.call('HSET', KEYS[1], 'capacity', ARGV[2], 'version', version)
  changed = true
end
local count = redis.call('SCARD', KEYS[2])
local outcome
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then
  outcome = 2
elseif count >= capacity then
  outcome = 3
else
  redis.call('SADD', KEYS[2], ARGV[1])
  count = count + 1
  version = redis.call('HINCRBY', KEYS[1], 'version', 1)
  changed = true
  outcome = 1
end
if changed then
  redis.call('SADD', KEYS[3], ARGV[3])
end
return {outcome, count, capacity, version}
