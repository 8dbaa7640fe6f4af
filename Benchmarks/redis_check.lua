-- The check a user would build on Redis instead of Tollgate (scripts/bench.sh loads it with SCRIPT LOAD and
-- calls it with EVALSHA). Tokens are hashes keyed by the SHA-256 hex of the secret (the client hashes it):
--   tok:<sha256 hex>  license  expires_at (ms, 0 = never)  revoked (0/1)  scopes (comma-separated, * = all)
-- KEYS[1] = tok:<sha256 hex>; ARGV = now_ms, required scope ('' for none), meter, cost.
-- Returns the license's usage of the meter after the increment (> 0) when allowed, or a code <= 0 when
-- denied: 0 unknown token, -1 revoked, -2 expired, -3 insufficient scope.
local t = redis.call('HMGET', KEYS[1], 'license', 'expires_at', 'revoked', 'scopes')
if not t[1] then return 0 end
if t[3] ~= '0' then return -1 end
local expires = tonumber(t[2])
if expires ~= 0 and tonumber(ARGV[1]) >= expires then return -2 end
local scope = ARGV[2]
if scope ~= '' and t[4] ~= '*' and not string.find(',' .. t[4] .. ',', ',' .. scope .. ',', 1, true) then
  return -3
end
return redis.call('HINCRBY', 'usage:' .. t[1], ARGV[3], tonumber(ARGV[4]))
