"""The Lua scripts of the Redis store: each keeps the data keys and the namespace's two
sorted sets in step, atomically, in one round trip.

Layout of a namespace (``P`` = ``sessionkv:<escaped namespace>:``)::

    P k:<key>   the value, a plain string expiring at a PXAT time (GET never sees it
                expired)
    P idx       sorted set, every member score 0: the keys, read by ZRANGEBYLEX
    P exp       sorted set, member = key, score = that same expiry time in ms

Expiry times come from the server's clock (``TIME``, once per script), so every node
agrees on them and the index's score is exactly the key's expiry (``PXAT`` and
``PEXPIREAT`` need Redis >= 6.2).

Every script takes ``KEYS = [idx, exp]`` and the data-key prefix ``P k:`` as
``ARGV[1]``; data keys are built inside the script (a single-node layout, not one
for Redis Cluster). Writes end with a bounded trim of expired members, and scans drop
the members whose value is gone, so the index cannot grow without bound.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

__all__ = ["COMPARE_AND_SET", "DELETE", "EXPIRE", "SCAN", "SCRIPTS", "TRIM", "WRITE", "Script"]

TRIM_PER_WRITE = 16
"""Expired index members each write removes (amortised cleanup, O(log n) each)."""


@dataclass(frozen=True)
class Script:
    name: str
    source: bytes = field(repr=False)

    @property
    def sha(self) -> str:
        return hashlib.sha1(self.source).hexdigest()  # Redis names scripts by SHA1


# Shared helpers, prepended to every script. `unpack` takes at most a few thousand
# arguments, so commands over many members go in chunks.
_PRELUDE = (
    f"local TRIM_PER_WRITE = {TRIM_PER_WRITE}\n"
    + """
local idx, exp, prefix = KEYS[1], KEYS[2], ARGV[1]
local CHUNK = 1000

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function each_chunk(list, fn)
  for i = 1, #list, CHUNK do
    fn(unpack(list, i, math.min(i + CHUNK - 1, #list)))
  end
end

local function drop(members)
  if #members > 0 then
    each_chunk(members, function(...) redis.call('ZREM', idx, ...) end)
    each_chunk(members, function(...) redis.call('ZREM', exp, ...) end)
  end
end

-- Record that `member` lives until `at` (ms): listed by scans, trimmed after `at`.
local function index(member, at)
  redis.call('ZADD', idx, 0, member)
  redis.call('ZADD', exp, at, member)
end

-- Remove up to `limit` members whose recorded expiry has passed. A member whose value
-- is still there (its expiry was changed behind our back) is re-scored, not dropped.
local function trim(now, limit)
  local due = redis.call('ZRANGEBYSCORE', exp, '-inf', now, 'LIMIT', 0, limit)
  local gone = {}
  for _, member in ipairs(due) do
    local pttl = redis.call('PTTL', prefix .. member)
    if pttl == -2 then
      gone[#gone + 1] = member
    elseif pttl == -1 then
      redis.call('ZADD', exp, '+inf', member)
    else
      redis.call('ZADD', exp, now + pttl, member)
    end
  end
  drop(gone)
  return #due, #gone
end
"""
)


def _script(name: str, body: str) -> Script:
    return Script(name, (_PRELUDE + body).encode())


WRITE = _script(
    "write",
    """
-- ARGV: prefix, only_if_exists ('1' or '0'), then (key, value, ttl_ms) per item.
local xx = ARGV[2] == '1'
local now = now_ms()
local written = 0
for i = 3, #ARGV, 3 do
  local member, ms = ARGV[i], tonumber(ARGV[i + 2])
  local ok
  if xx then
    ok = redis.call('SET', prefix .. member, ARGV[i + 1], 'PXAT', now + ms, 'XX')
  else
    ok = redis.call('SET', prefix .. member, ARGV[i + 1], 'PXAT', now + ms)
  end
  if ok then
    index(member, now + ms)
    written = written + 1
  end
end
trim(now, TRIM_PER_WRITE)
return written
""",
)

EXPIRE = _script(
    "expire",
    """
-- ARGV: prefix, ttl_ms, keys... PEXPIREAT answers 0 for a missing or expired key, so
-- nothing is resurrected; the index learns the new expiry in the same step.
local ms = tonumber(ARGV[2])
local now = now_ms()
local refreshed = 0
for i = 3, #ARGV do
  local member = ARGV[i]
  if redis.call('PEXPIREAT', prefix .. member, now + ms) == 1 then
    index(member, now + ms)
    refreshed = refreshed + 1
  end
end
trim(now, TRIM_PER_WRITE)
return refreshed
""",
)

DELETE = _script(
    "delete",
    """
-- ARGV: prefix, keys...
local members, names = {}, {}
for i = 2, #ARGV do
  members[#members + 1] = ARGV[i]
  names[#names + 1] = prefix .. ARGV[i]
end
each_chunk(names, function(...) redis.call('DEL', ...) end)
drop(members)
return #members
""",
)

SCAN = _script(
    "scan",
    """
-- ARGV: prefix, lex_min, lex_max, with_values ('1' or '0').
-- Returns key1, value1, key2, value2, ... (or just keys) of the live keys in range,
-- in byte order; members whose value is gone are dropped from the index on the way.
local members = redis.call('ZRANGEBYLEX', idx, ARGV[2], ARGV[3])
local with_values = ARGV[4] == '1'
local out, stale = {}, {}
for i = 1, #members, CHUNK do
  local last = math.min(i + CHUNK - 1, #members)
  local names = {}
  for j = i, last do names[#names + 1] = prefix .. members[j] end
  local values = redis.call('MGET', unpack(names))
  for j = 1, #values do
    local member = members[i + j - 1]
    if values[j] then
      out[#out + 1] = member
      if with_values then out[#out + 1] = values[j] end
    else
      stale[#stale + 1] = member
    end
  end
end
drop(stale)
return out
""",
)

COMPARE_AND_SET = _script(
    "compare_and_set",
    """
-- ARGV: prefix, key, expected, value, ttl_ms. Writes `value` only over a live key that
-- holds exactly `expected` (GET never sees an expired value; a missing key is `false`,
-- which equals no string), never creating one. Returns 1 if it wrote, else 0.
local member = ARGV[2]
local name = prefix .. member
if redis.call('GET', name) ~= ARGV[3] then
  return 0
end
local now = now_ms()
local at = now + tonumber(ARGV[5])
if not redis.call('SET', name, ARGV[4], 'PXAT', at, 'XX') then
  return 0
end
index(member, at)
trim(now, TRIM_PER_WRITE)
return 1
""",
)

TRIM = _script(
    "trim",
    """
-- ARGV: prefix, limit. Returns {members looked at, members removed}.
local due, gone = trim(now_ms(), tonumber(ARGV[2]))
return {due, gone}
""",
)

SCRIPTS = (WRITE, COMPARE_AND_SET, EXPIRE, DELETE, SCAN, TRIM)
