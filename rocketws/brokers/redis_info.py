"""Every node's ``info`` record, kept in Redis for the backend method ``info``.

Keys (``P`` is the broker's prefix, ``ID`` a node id)::

    P info           set of node ids that have written a record
    P info:ID        the node's record, JSON (expires after the TTL)

Each node rewrites its record on a heartbeat (every TTL/3), so a record is at most that
old and a node that dies drops out within the TTL.  Separate from the presence keys
(``redis_presence``): those are counts read on every publish, this is read only by
``info``.
"""

from __future__ import annotations

from typing import Any

import orjson

from rocketws.brokers.redis_io import Client

# ARGV: prefix.  Returns {id1, record1, id2, record2, ...} of the live records and
# forgets ids whose record expired.
READ_ALL = """
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', ARGV[1] .. 'info')) do
  local v = redis.call('GET', ARGV[1] .. 'info:' .. id)
  if v then
    out[#out + 1] = id
    out[#out + 1] = v
  else
    redis.call('SREM', ARGV[1] .. 'info', id)
  end
end
return out
"""


class InfoBoard:
    """Writes this node's record and reads everyone's (``Client`` errors pass up)."""

    def __init__(self, client: Client, prefix: str, node_id: str, ttl: float) -> None:
        self._client = client
        self._prefix = prefix
        self._node_id = node_id
        self._ttl_ms = max(1, int(ttl * 1000))
        self._set = f"{prefix}info"
        self._key = f"{prefix}info:{node_id}"

    def write(self, record: dict[str, Any]) -> None:
        """Replace this node's record and renew its TTL."""
        self._client.pipeline(
            [
                ("SET", self._key, orjson.dumps(record), "PX", self._ttl_ms),
                ("SADD", self._set, self._node_id),
            ]
        )

    def clear(self) -> None:
        """Remove this node's record now (clean shutdown)."""
        self._client.pipeline([("DEL", self._key), ("SREM", self._set, self._node_id)])

    def read_others(self) -> list[dict[str, Any]]:
        """The other live nodes' records (as last written)."""
        flat = self._client.script(READ_ALL, self._prefix)
        records = []
        for i in range(0, len(flat) - 1, 2):
            if flat[i].decode() == self._node_id:
                continue
            try:
                record = orjson.loads(flat[i + 1])
            except orjson.JSONDecodeError:
                continue  # not ours: something else wrote under the prefix
            if isinstance(record, dict):
                records.append(record)
        return records
