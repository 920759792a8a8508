"""Channel streams and idempotent emits on Redis: one Lua script per publication.

Keys (``P`` is the broker's prefix)::

    P h:CHANNEL       Redis Stream: entry id ``OFFSET-0``, field ``p`` = the push bytes
                      (with offset and epoch); MAXLEN history_size; expires history_ttl
                      after the last publication
    P m:CHANNEL       hash: ``e`` epoch, ``s`` top offset; expires HISTORY_META_TTL after the last
                      publication (so offsets outlive a quiet spell)
    P i:CHANNEL:KEY   an emit's idempotency key -> its answer; expires after the window

``PUBLISH`` does, atomically (a script runs alone): the idempotency check, the count of
other nodes' subscribers, the offset (``HINCRBY``), the ``XADD``, the TTLs, the
``PUBLISH`` of the envelope whose header carries the offset and epoch, and the record
of the answer under the idempotency key.  So no node sees a publication without its
offset, or one offset twice.  A missing meta hash means the stream's past is gone
(flush, eviction, restart without persistence): the script starts a new epoch (given
by the caller, random) and drops whatever stream is left, so an old offset can never be
read in the new epoch.
"""

from __future__ import annotations

from rocketws.brokers.redis_presence import COUNT_OTHERS

PUBLISH = (
    """
local idem = ARGV[14]
if idem ~= '' then
  local prev = redis.call('GET', idem)
  if prev then return {1, prev} end
end
local total = tonumber(ARGV[7])
"""
    + COUNT_OTHERS
    + """
local offset, epoch = 0, ''
local header, payload = ARGV[4] .. '}', ARGV[5]
if tonumber(ARGV[8]) > 0 then
  local meta, stream = ARGV[13], ARGV[12]
  epoch = redis.call('HGET', meta, 'e')
  if not epoch then
    epoch = ARGV[11]
    redis.call('DEL', stream)
    redis.call('HSET', meta, 'e', epoch, 's', 0)
  end
  offset = redis.call('HINCRBY', meta, 's', 1)
  redis.call('PEXPIRE', meta, ARGV[10])
  local position = ',"offset":' .. offset .. ',"epoch":"' .. epoch .. '"'
  payload = string.sub(payload, 1, -3) .. position .. '}}'
  redis.call('XADD', stream, 'MAXLEN', ARGV[8], offset .. '-0', 'p', payload)
  redis.call('PEXPIRE', stream, ARGV[9])
  header = ARGV[4] .. position .. '}'
end
redis.call('PUBLISH', ARGV[3], header .. '\\n' .. payload)
local answer = total .. ' ' .. offset .. ' ' .. epoch
if idem ~= '' then redis.call('SET', idem, answer, 'PX', ARGV[15]) end
return {0, answer}
"""
)
"""ARGV: 1 prefix, 2 own node id, 3 Redis channel, 4 envelope header without its closing
``}``, 5 push payload (ends with ``}}``), 6 count field (channel; '' = connections), 7 this
node's own count, 8 history size (0: none), 9 history TTL ms, 10 meta TTL ms, 11 a new
epoch, 12 stream key, 13 meta key, 14 idempotency key ('' = none), 15 window ms.
Returns {0, "delivered offset epoch"}, or {1, the same} for an idempotent repeat."""

READ = """
local meta, stream = ARGV[1], ARGV[2]
local epoch = redis.call('HGET', meta, 'e')
if not epoch then
  epoch = ARGV[3]
  redis.call('DEL', stream)
  redis.call('HSET', meta, 'e', epoch, 's', 0)
  redis.call('PEXPIRE', meta, ARGV[4])
end
local top = tonumber(redis.call('HGET', meta, 's'))
local limit = tonumber(ARGV[6])
if ARGV[5] ~= '' and ARGV[8] ~= epoch then limit = 0 end
local out = {epoch, top}
if limit > 0 then
  local low = '-'
  if ARGV[5] ~= '' then low = (tonumber(ARGV[5]) + 1) .. '-0' end
  local entries
  if ARGV[7] == '1' then
    entries = redis.call('XREVRANGE', stream, '+', low, 'COUNT', limit)
  else
    entries = redis.call('XRANGE', stream, low, '+', 'COUNT', limit)
  end
  for _, entry in ipairs(entries) do
    out[#out + 1] = entry[1]
    out[#out + 1] = entry[2][2]
  end
end
return out
"""
"""ARGV: 1 meta key, 2 stream key, 3 a new epoch, 4 meta TTL ms, 5 offset to read after
('' = from the oldest), 6 limit, 7 '1' for newest first, 8 the epoch of that offset.
Returns {epoch, top offset, id, push, id, push, ...} (flat: one reply to parse)."""


def keys(prefix: str, channel: str) -> tuple[bytes, bytes]:
    """(stream key, meta key) of ``channel``."""
    encoded = channel.encode()
    return prefix.encode() + b"h:" + encoded, prefix.encode() + b"m:" + encoded


def idempotency_key(prefix: str, channel: str, key: str) -> bytes:
    """The Redis key remembering an emit's ``key`` on ``channel``."""
    return b"%si:%s:%s" % (prefix.encode(), channel.encode(), key.encode())


def parse_answer(reply: bytes) -> tuple[int, int, str]:
    """(delivered, offset, epoch) from the script's answer string."""
    delivered, offset, epoch = reply.decode().split(" ")
    return int(delivered), int(offset), epoch


def parse_entries(flat: list[bytes]) -> list[tuple[int, bytes]]:
    """(offset, push bytes) of the READ script's ``id, push, ...`` pairs."""
    return [(int(flat[i].split(b"-", 1)[0]), flat[i + 1]) for i in range(0, len(flat), 2)]
