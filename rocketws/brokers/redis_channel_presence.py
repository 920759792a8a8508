"""Channel presence across nodes, kept in Redis (namespaces with ``presence``).

Keys (``P`` is the broker's prefix, ``CH`` a RocketWS channel)::

    P presence:CH        sorted set: client id -> expiry (Redis server time, ms)
    P presence-info:CH   hash: client id -> entry (``encode_entry``: node, user, info)

Each node writes its own entries: when a client subscribes (a background writer, one
pipeline per burst, within milliseconds), removes them when it unsubscribes or
disconnects, and rewrites every entry it holds every ``heartbeat`` seconds with an
expiry ``expiry`` seconds ahead.  A node that dies stops rewriting, so its entries
expire within ``expiry`` of its last heartbeat.  Readers skip expired entries and delete
them; both keys expire with their last entry, so a channel whose nodes all died leaves
nothing behind.  Times are Redis's ``TIME``, so the nodes' clocks do not matter.

A write is one Lua script call per channel (entries in chunks of ``CHUNK``) and a whole
flush or heartbeat is pipelined (``PIPELINE`` calls per round trip).  A reader gets the
other nodes' entries from Redis and its own node's, exactly, from the Node.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event

from rocketws.brokers.base import BrokerHandler, ClientInfo
from rocketws.brokers.redis_io import Client, RedisDown, import_redis
from rocketws.core.jsonrpc import ParseError, dumps, loads

logger = logging.getLogger(__name__)

CHUNK = 500  # entries per script call (Lua's unpack() takes a few thousand at most)
PIPELINE = 200  # script calls per round trip
MAX_PENDING = 100_000  # presence changes waiting for Redis; beyond, the oldest are dropped
MAX_PUBLICATIONS = 10_000  # join/leave pushes waiting for Redis; beyond, dropped
RETRY = 0.5  # seconds between attempts while Redis does not answer

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# Drop expired entries; let both keys expire with the last one.
_CLEAN = """
local stale = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
if #stale > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  for i = 1, #stale, 500 do
    redis.call('HDEL', KEYS[2], unpack(stale, i, math.min(i + 499, #stale)))
  end
end
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if #top == 0 then
  redis.call('DEL', KEYS[1], KEYS[2])
else
  redis.call('PEXPIREAT', KEYS[1], top[2])
  redis.call('PEXPIREAT', KEYS[2], top[2])
end
"""

# KEYS: zset, hash.  ARGV: expiry ms, n, then n (client, entry) pairs, then clients to remove.
WRITE = (
    _NOW
    + """
local n = tonumber(ARGV[2])
if n > 0 then
  local at = now + tonumber(ARGV[1])
  local scores, fields = {}, {}
  for i = 0, n - 1 do
    local id = ARGV[3 + 2 * i]
    scores[#scores + 1] = at
    scores[#scores + 1] = id
    fields[#fields + 1] = id
    fields[#fields + 1] = ARGV[4 + 2 * i]
  end
  redis.call('ZADD', KEYS[1], unpack(scores))
  redis.call('HSET', KEYS[2], unpack(fields))
end
if #ARGV >= 3 + 2 * n then
  local gone = {}
  for i = 3 + 2 * n, #ARGV do gone[#gone + 1] = ARGV[i] end
  redis.call('ZREM', KEYS[1], unpack(gone))
  redis.call('HDEL', KEYS[2], unpack(gone))
end
"""
    + _CLEAN
    + "return 1\n"
)

# The other nodes' live entries: ``clients`` and their ``values`` (the same order).
_LIVE = """
local clients, values = {}, {}
local mine = ARGV[1] .. '\\n'
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
for i = 1, #ids, 500 do
  local last = math.min(i + 499, #ids)
  local got = redis.call('HMGET', KEYS[2], unpack(ids, i, last))
  for j = 1, last - i + 1 do
    local v = got[j]
    if v and string.sub(v, 1, #mine) ~= mine then
      clients[#clients + 1] = ids[i + j - 1]
      values[#values + 1] = v
    end
  end
end
"""

# KEYS: zset, hash.  ARGV: this node's id, as encoded in entries.
# Returns {client1, value1, client2, value2, ...}.
READ = (
    _NOW
    + _CLEAN
    + _LIVE
    + """
local out = {}
for i = 1, #clients do
  out[#out + 1] = clients[i]
  out[#out + 1] = values[i]
end
return out
"""
)

# The same, counted: {clients, user1, user2, ...} (distinct users, anonymous left out).
STATS = (
    _NOW
    + _CLEAN
    + _LIVE
    + """
local out, seen = {#values}, {}
for _, v in ipairs(values) do
  local a = string.find(v, '\\n', 1, true)
  local b = a and string.find(v, '\\n', a + 1, true)
  local user = b and string.sub(v, a + 1, b - 1) or '""'  -- not an entry of ours: no user
  if user ~= '""' and not seen[user] then
    seen[user] = true
    out[#out + 1] = user
  end
end
return out
"""
)

_SHAS = {source: hashlib.sha1(source.encode()).hexdigest() for source in (WRITE, READ, STATS)}


def encode_entry(node: str, entry: ClientInfo) -> bytes:
    """``"node"\\n"user"\\n[info, chan_info]``: JSON text per line (JSON strings hold no
    raw newline), so scripts compare the node and count users without decoding JSON."""
    return dumps(node) + b"\n" + dumps(entry.user) + b"\n" + dumps([entry.info, entry.chan_info])


def decode_entry(client: str, value: bytes) -> ClientInfo:
    """The ClientInfo in an entry.  Raises ValueError if ``value`` is not one."""
    try:
        _node, user, rest = value.split(b"\n", 2)
        name, (info, chan_info) = loads(user), loads(rest)
    except (ValueError, ParseError, TypeError) as exc:
        raise ValueError(f"not a presence entry: {exc}") from None
    if not isinstance(name, str):
        raise ValueError("not a presence entry: the user is not a string")
    return ClientInfo(client, name, info, chan_info)


class ChannelPresence:
    """Reads and writes channel presence in Redis (``Client`` errors pass up)."""

    def __init__(self, client: Client, prefix: str, node_id: str, expiry: float) -> None:
        self._client = client
        self._zset = f"{prefix}presence:".encode()
        self._hash = f"{prefix}presence-info:".encode()
        self.node_id = node_id
        self._node = dumps(node_id)
        self._expiry_ms = max(1, int(expiry * 1000))
        self.bad_entries = 0

    def _keys(self, channel: str) -> tuple[bytes, bytes]:
        name = channel.encode()
        return self._zset + name, self._hash + name

    def write_commands(
        self, channel: str, adds: list[ClientInfo], removes: list[str]
    ) -> list[tuple[Any, ...]]:
        """The script calls that write ``adds`` (with a new expiry) and delete ``removes``."""
        head = ("EVALSHA", _SHAS[WRITE], 2, *self._keys(channel), self._expiry_ms)
        calls: list[tuple[Any, ...]] = []
        for start in range(0, len(adds), CHUNK):
            part = adds[start : start + CHUNK]
            args: list[Any] = []
            for entry in part:
                args += (entry.client, encode_entry(self.node_id, entry))
            calls.append((*head, len(part), *args))
        for start in range(0, len(removes), CHUNK):
            calls.append((*head, 0, *removes[start : start + CHUNK]))
        return calls

    def run(self, commands: list[tuple[Any, ...]]) -> None:
        """Send ``commands`` (script calls and PUBLISHes) in pipelines of ``PIPELINE``;
        scripts Redis does not know (after a restart) are loaded and their calls rerun.
        Raises RedisDown."""
        no_script = import_redis().exceptions.NoScriptError
        for start in range(0, len(commands), PIPELINE):
            part = commands[start : start + PIPELINE]
            replies = self._client.pipeline(part)
            again = [cmd for cmd, reply in zip(part, replies, strict=True) if isinstance(reply, no_script)]
            if again:
                self.load()
                replies = self._client.pipeline(again)
            for reply in replies:
                if isinstance(reply, Exception) and not isinstance(reply, no_script):
                    logger.warning("Redis broker: Redis refused a presence write: %s", reply)

    def load(self) -> None:
        """Load the scripts (at start and after a reconnection: Redis may have restarted,
        and a write must not have to be rerun after the PUBLISHes behind it).  Raises
        RedisDown."""
        self._client.pipeline([("SCRIPT", "LOAD", source) for source in _SHAS])

    def _script(self, source: str, channel: str) -> Any:
        """Run a read script; Redis refusing it (a key of another type, OOM) is RedisDown."""
        zset, info = self._keys(channel)
        exceptions = import_redis().exceptions
        try:
            try:
                return self._client.execute("EVALSHA", _SHAS[source], 2, zset, info, self._node)
            except exceptions.NoScriptError:
                return self._client.execute("EVAL", source, 2, zset, info, self._node)
        except exceptions.ResponseError as exc:
            raise RedisDown(f"Redis refused the presence read: {exc}") from None

    def read(self, channel: str) -> dict[str, ClientInfo]:
        """The other nodes' live entries of ``channel``.  Raises RedisDown."""
        out: dict[str, ClientInfo] = {}
        reply = self._script(READ, channel)
        for i in range(0, len(reply) - 1, 2):
            client = reply[i].decode("utf-8", "replace")
            try:
                out[client] = decode_entry(client, reply[i + 1])
            except ValueError as exc:
                self.bad_entries += 1
                logger.warning("Redis broker: skipped a presence entry of %r: %s", channel, exc)
        return out

    def stats(self, channel: str) -> tuple[int, set[str]]:
        """The other nodes' live clients of ``channel`` and their distinct users.
        Raises RedisDown."""
        reply = self._script(STATS, channel)
        users = set()
        for raw in reply[1:]:
            try:
                user = loads(raw)
            except ParseError:
                continue
            if isinstance(user, str):
                users.add(user)
        return int(reply[0]), users


class PresenceWriter:
    """This node's background writer: presence changes and ``join``/``leave`` pushes as
    they come (one pipeline per burst, changes before pushes), and the heartbeat.

    Changes are recorded as (channel, client) and written as the Node then has them
    (``local_presence``): present -> written, absent -> removed.  While Redis does not
    answer, changes wait (at most ``MAX_PENDING``; dropped removals expire anyway,
    dropped additions come back with the next heartbeat) and pushes are dropped
    (pub/sub is at-most-once); after a reconnection everything is rewritten at once.
    """

    def __init__(self, store: ChannelPresence, heartbeat: float, reconnects: Callable[[], int]) -> None:
        self._store = store
        self.heartbeat = heartbeat
        self._reconnects = reconnects
        self._dirty: dict[tuple[str, str], None] = {}
        self._publications: list[tuple[Any, ...]] = []
        self._wake = gevent.event.Event()
        self._handler: BrokerHandler | None = None
        self._greenlet: gevent.Greenlet | None = None
        self.dropped = 0
        self.heartbeats = 0

    def start(self, handler: BrokerHandler) -> None:
        self._handler = handler
        self._greenlet = gevent.spawn(self._run)

    def changed(self, channel: str, client: str) -> None:
        """Record a change (never blocks)."""
        dirty = self._dirty
        dirty.pop((channel, client), None)
        dirty[(channel, client)] = None
        if len(dirty) > MAX_PENDING:
            del dirty[next(iter(dirty))]
            self.dropped += 1
        self._wake.set()

    def publish(self, redis_channel: bytes, message: bytes) -> None:
        """Queue a PUBLISH, sent after the changes recorded before it (never blocks)."""
        if len(self._publications) >= MAX_PUBLICATIONS:
            self.dropped += 1
            return
        self._publications.append(("PUBLISH", redis_channel, message))
        self._wake.set()

    def close(self) -> None:
        """Stop; write what is pending and remove this node's remaining entries (best
        effort: they expire anyway)."""
        if self._greenlet is not None:
            self._greenlet.kill(block=True, timeout=2)
        handler = self._handler
        if handler is not None:
            for channel in handler.presence_channels():
                for client in handler.local_presence(channel):
                    self._dirty[(channel, client)] = None
        try:
            self._flush(full=False, gone=True)
        except RedisDown as exc:
            logger.debug("Redis broker: presence not removed at close: %s", exc)
        self._handler = None

    def _run(self) -> None:
        seen = self._reconnects()
        due = 0.0  # the next heartbeat (monotonic); 0: now
        failing, load = False, True
        while True:
            now = time.monotonic()
            if self._reconnects() != seen:  # Redis may have lost everything: rewrite now
                seen, due, load = self._reconnects(), 0.0, True
            full = now >= due
            try:
                if load:
                    self._store.load()
                    load = False
                if full or self._dirty or self._publications:
                    self._flush(full=full)
            except RedisDown as exc:
                if not failing:
                    logger.warning("Redis broker: presence write failed (%s); retrying", exc)
                failing = True
                self._publications.clear()
                gevent.sleep(RETRY)
                continue
            except Exception:
                logger.exception("Redis broker: presence write failed")
                self._publications.clear()
                gevent.sleep(RETRY)
                continue
            if failing:
                logger.info("Redis broker: presence written again")
                failing = False
            if full:
                self.heartbeats += 1
                due = now + self.heartbeat
            self._wake.wait(max(0.0, min(due - time.monotonic(), 1.0)))
            self._wake.clear()

    def _flush(self, *, full: bool, gone: bool = False) -> None:
        """Write the pending changes (all entries when ``full``; removals only when
        ``gone``), then the pending pushes, in one pipeline."""
        handler = self._handler
        if handler is None:
            return
        dirty, self._dirty = self._dirty, {}
        publications, self._publications = self._publications, []
        try:
            adds: dict[str, list[ClientInfo]] = {}
            removes: dict[str, list[str]] = {}
            if full and not gone:
                for channel in handler.presence_channels():
                    adds[channel] = list(handler.local_presence(channel).values())
            for channel, client in dirty:
                entry = None if gone else handler.local_presence(channel).get(client)
                if entry is None:
                    removes.setdefault(channel, []).append(client)
                elif not full:
                    adds.setdefault(channel, []).append(entry)
            commands: list[tuple[Any, ...]] = []
            for channel in adds.keys() | removes.keys():
                commands += self._store.write_commands(
                    channel, adds.get(channel, []), removes.get(channel, [])
                )
            self._store.run(commands + publications)
        except BaseException:
            for key in dirty:  # keep them for the next attempt (bounded in ``changed``)
                self._dirty.setdefault(key, None)
            raise
