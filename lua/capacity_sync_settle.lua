-- capacity_sync_settle: ends the lease of posted names; on failure marks them dirty
-- again so the next attempt posts their then-current state.
-- KEYS[1] dirty set      <prefix>:cap:{capNN}:dirty
-- KEYS[2] leased zset    <prefix>:cap:{capNN}:syncing
-- ARGV[1] "1" delivered, "0" failed
-- ARGV[2..] counter names "<ns>/<id>"
-- Reply: the number of names settled
for i = 2, #ARGV do
  redis.call('ZREM', KEYS[2], ARGV[i])
  if ARGV[1] == '0' then
    redis.call('SADD', KEYS[1], ARGV[i])
  end
end
return #ARGV - 1
