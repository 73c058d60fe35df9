-- Records a cached path for prefix purges. A lexicographic range read (ZRANGE BYLEX)
-- is defined only over members of one score, so the path list keeps every member at
-- score 0, and the paths' expiries live in a second sorted set (score = expiry).
-- KEYS[1] the path list (<prefix>:{paths}), every member at score 0
-- KEYS[2] the expiries (<prefix>:{paths}:exp), member = path, score = Unix ms
-- ARGV[1] the canonical path and query
-- ARGV[2] when its last entry expires, Unix ms (kept when later than the stored one)
-- Reply: 1
redis.call('ZADD', KEYS[1], 0, ARGV[1])
redis.call('ZADD', KEYS[2], 'GT', ARGV[2], ARGV[1])
return 1
