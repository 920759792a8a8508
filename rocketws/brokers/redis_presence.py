"""Cluster-wide counts: each node's connections and channel subscribers, kept in Redis.

Keys (``P`` is the broker's prefix, ``ID`` a node id)::

    P nodes          set of node ids that have written presence
    P node:ID        the node's open connection count        (expires after the TTL)
    P node:ID:ch     hash channel -> the node's subscribers  (expires after the TTL)

Each node rewrites its own keys when its counts change and at least every TTL/3, so a
node that dies stops counting within the TTL.  Readers skip (and forget) ids whose
``node:ID`` key has expired.  Scripts run server-side so each answer is one round trip.
"""

from __future__ import annotations

from typing import Any

from rocketws.brokers.redis_io import Client

# Adds to ``total`` the other live nodes' count for ARGV[6] ('' = connections), with
# ARGV[1] the prefix and ARGV[2] this node's id (shared with redis_streams.PUBLISH).
COUNT_OTHERS = """
for _, id in ipairs(redis.call('SMEMBERS', ARGV[1] .. 'nodes')) do
  if id ~= ARGV[2] then
    local v
    if ARGV[6] == '' then
      v = redis.call('GET', ARGV[1] .. 'node:' .. id)
    else
      v = redis.call('HGET', ARGV[1] .. 'node:' .. id .. ':ch', ARGV[6])
    end
    if v then total = total + tonumber(v) end
  end
end
"""

# ARGV: prefix, own id, redis channel, message, (unused), field ('' = connections).
# Publishes once and returns the other live nodes' count for ``field``.
PUBLISH_AND_COUNT = (
    """
redis.call('PUBLISH', ARGV[3], ARGV[4])
local total = 0
"""
    + COUNT_OTHERS
    + "return total\n"
)

# ARGV: prefix, own id.  Returns {connections, ch1, n1, ch2, n2, ...} summed over the
# other live nodes, and forgets nodes whose presence expired.
READ_OTHERS = """
local conns = 0
local counts = {}
for _, id in ipairs(redis.call('SMEMBERS', ARGV[1] .. 'nodes')) do
  if id ~= ARGV[2] then
    local v = redis.call('GET', ARGV[1] .. 'node:' .. id)
    if v then
      conns = conns + tonumber(v)
      local flat = redis.call('HGETALL', ARGV[1] .. 'node:' .. id .. ':ch')
      for i = 1, #flat, 2 do
        counts[flat[i]] = (counts[flat[i]] or 0) + tonumber(flat[i + 1])
      end
    else
      redis.call('SREM', ARGV[1] .. 'nodes', id)
    end
  end
end
local out = {conns}
for ch, n in pairs(counts) do
  out[#out + 1] = ch
  out[#out + 1] = n
end
return out
"""


class Presence:
    """Writes this node's counts and reads everyone else's (``Client`` errors pass up)."""

    def __init__(self, client: Client, prefix: str, node_id: str, ttl: float) -> None:
        self._client = client
        self._prefix = prefix
        self._node_id = node_id
        self._ttl_ms = max(1, int(ttl * 1000))
        self._nodes = f"{prefix}nodes"
        self._conns_key = f"{prefix}node:{node_id}"
        self._channels_key = f"{prefix}node:{node_id}:ch"

    def write(self, connections: int, channels: dict[str, int]) -> None:
        """Replace this node's counts atomically and renew their TTL."""
        commands: list[tuple[Any, ...]] = [
            ("MULTI",),
            ("SET", self._conns_key, connections, "PX", self._ttl_ms),
            ("DEL", self._channels_key),
        ]
        if channels:
            flat: list[Any] = []
            for channel, count in channels.items():
                flat += (channel, count)
            commands += [
                ("HSET", self._channels_key, *flat),
                ("PEXPIRE", self._channels_key, self._ttl_ms),
            ]
        commands += [("SADD", self._nodes, self._node_id), ("EXEC",)]
        self._client.pipeline(commands)

    def clear(self) -> None:
        """Remove this node's counts now (clean shutdown)."""
        self._client.pipeline(
            [("DEL", self._conns_key, self._channels_key), ("SREM", self._nodes, self._node_id)]
        )

    def publish(self, redis_channel: bytes, message: bytes, channel: str | None) -> int:
        """PUBLISH ``message``; return the other nodes' subscribers of ``channel``.

        ``channel`` None counts the other nodes' open connections.
        """
        return int(
            self._client.script(
                PUBLISH_AND_COUNT,
                self._prefix,
                self._node_id,
                redis_channel,
                message,
                "",
                "" if channel is None else channel,
            )
        )

    def others(self) -> tuple[int, dict[str, int]]:
        """The other live nodes' (connections, channel -> subscribers), summed."""
        reply = self._client.script(READ_OTHERS, self._prefix, self._node_id)
        counts = {reply[i].decode(): int(reply[i + 1]) for i in range(1, len(reply) - 1, 2)}
        return int(reply[0]), counts
