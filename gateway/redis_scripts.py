"""Lua run inside Redis, so a key's check-and-count is one atomic step for every worker and
replica, on one clock (Redis's TIME). The same rules as gateway/limits.py (MemoryStore).

Layout under the prefix P (`switchyard:`):
  P keys                      hash  key id -> KeyRecord JSON (revoked ones stay, for usage history)
  P keys:by_hash              hash  sha256(secret) -> key id (active keys only: revoking deletes the entry)
  P key:<id>:limits           hash  rpm, tpm, budget_usd (absent = unlimited)
  P key:<id>:requests|tokens  hash  bucket number -> count (expires after two windows idle)
  P usage:key|router|expert:<name>  hash requests, prompt_tokens, completion_tokens, cost_usd
  P usage:keys|routers|experts      set of the names above
"""

from __future__ import annotations

_WINDOW = """
local width = window / 60
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local current = math.floor(now / width)
"""

# KEYS: by_hash, records. ARGV: token hash, window_s, count (1|0), prefix. Returns JSON.
ADMIT = """
local P, window, count = ARGV[4], tonumber(ARGV[2]), ARGV[3] == '1'
local id = redis.call('HGET', KEYS[1], ARGV[1])
if not id then
  return cjson.encode({status = 'unknown', any_keys = redis.call('HLEN', KEYS[2]) > 0})
end
""" + _WINDOW + """
local function live(key)
  local raw = redis.call('HGETALL', key)
  local items = {}
  for i = 1, #raw, 2 do
    local b = tonumber(raw[i])
    if b < current - 59 then redis.call('HDEL', key, raw[i]) else items[#items + 1] = {b, tonumber(raw[i + 1])} end
  end
  table.sort(items, function(x, y) return x[1] < y[1] end)
  return items
end

local function state(items, limit)
  local used = 0
  for _, it in ipairs(items) do used = used + it[2] end
  local reset = 0
  if #items > 0 then reset = math.max(0, (items[#items][1] + 60) * width - now) end
  local wait = nil
  if used >= limit then
    local left = used
    for _, it in ipairs(items) do
      left = left - it[2]
      if left < limit then wait = math.max(0, (it[1] + 60) * width - now); break end
    end
  end
  return {limit = limit, used = used, reset_s = reset}, wait
end

local lim = redis.call('HMGET', P .. 'key:' .. id .. ':limits', 'rpm', 'tpm', 'budget_usd')
local rpm, tpm, budget = tonumber(lim[1]), tonumber(lim[2]), tonumber(lim[3])
local spent = tonumber(redis.call('HGET', P .. 'usage:key:' .. id, 'cost_usd') or '0')
local out = {status = 'ok', key_id = id, spent_usd = spent, budget_usd = budget}
local rkey = P .. 'key:' .. id .. ':requests'
local rwait, twait
if rpm then out.requests, rwait = state(live(rkey), rpm) end
if tpm then out.tokens, twait = state(live(P .. 'key:' .. id .. ':tokens'), tpm) end
if budget and spent >= budget then out.status = 'budget'
elseif rwait then out.status = 'requests'; out.retry_after_s = rwait
elseif twait then out.status = 'tokens'; out.retry_after_s = twait
elseif count and rpm then
  redis.call('HINCRBY', rkey, current, 1)
  redis.call('PEXPIRE', rkey, math.ceil(window * 2000))
  out.requests.used = out.requests.used + 1
  out.requests.reset_s = (current + 60) * width - now
end
return cjson.encode(out)
"""

# ARGV: prefix, key id, router, expert, prompt tokens, completion tokens, cost, window_s.
RECORD = """
local P, id = ARGV[1], ARGV[2]
local pt, ct, window = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[8])
local function add(kind, name)
  local k = P .. 'usage:' .. kind .. ':' .. name
  redis.call('HINCRBY', k, 'requests', 1)
  redis.call('HINCRBY', k, 'prompt_tokens', pt)
  redis.call('HINCRBY', k, 'completion_tokens', ct)
  redis.call('HINCRBYFLOAT', k, 'cost_usd', ARGV[7])
  redis.call('SADD', P .. 'usage:' .. kind .. 's', name)
end
add('key', id)
add('router', ARGV[3])
add('expert', ARGV[4])
if pt + ct > 0 and redis.call('HEXISTS', P .. 'key:' .. id .. ':limits', 'tpm') == 1 then
""" + _WINDOW + """
  local tkey = P .. 'key:' .. id .. ':tokens'
  redis.call('HINCRBY', tkey, current, pt + ct)
  redis.call('PEXPIRE', tkey, math.ceil(window * 2000))
end
return 1
"""
