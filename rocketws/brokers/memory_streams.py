"""The memory broker's channel streams and idempotency keys, bounded in memory.

Each channel with history has a ring buffer of at most ``size`` publications (their
push bytes), expired ``ttl`` seconds after the channel's last publication, and a meta
record (epoch, top offset) kept ``meta_ttl`` seconds after it.  Every stream of the
process together holds at most ``memory_max_bytes`` (payload bytes plus a fixed
overhead per publication and per stream); past it, the streams published least
recently lose their oldest publications first (whole streams, meta included, once
empty: a stream that comes back gets a new epoch).  A recovery that would need what was
dropped answers ``recovered: false``: bounded memory never turns into a silent gap.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from rocketws.brokers.base import History, Position, Published, Stream, StreamLimits
from rocketws.core.streams import with_position

ENTRY_OVERHEAD = 100  # bytes counted per kept publication beside its payload
STREAM_OVERHEAD = 400  # bytes counted per stream (meta, ring, index)


def new_epoch() -> str:
    """A fresh epoch: 8 random hex digits (JSON-safe, short)."""
    return os.urandom(4).hex()


class _Stream:
    __slots__ = ("epoch", "top", "ring", "expires", "meta_expires", "size")

    def __init__(self, epoch: str) -> None:
        self.epoch = epoch
        self.top = 0
        self.ring: deque[tuple[int, bytes]] = deque()
        self.expires = 0.0  # monotonic time the ring empties
        self.meta_expires = 0.0  # monotonic time the whole stream is forgotten
        self.size = STREAM_OVERHEAD  # bytes counted against the global cap


class MemoryStreams:
    """Streams and idempotency keys for one MemoryBroker (no I/O, never blocks)."""

    def __init__(self, limits: StreamLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._streams: OrderedDict[str, _Stream] = OrderedDict()  # least recently published first
        self._bytes = 0
        self._keys: OrderedDict[tuple[str, str], tuple[float, Published]] = OrderedDict()

    @property
    def counted(self) -> int:
        """Bytes counted against ``memory_max_bytes`` now."""
        return self._bytes

    def _get(self, channel: str, now: float) -> _Stream:
        stream = self._streams.get(channel)
        if stream is not None and stream.meta_expires and stream.meta_expires <= now:
            self._drop(channel)
            stream = None
        if stream is None:
            stream = self._streams[channel] = _Stream(new_epoch())
            stream.meta_expires = now + self.limits.meta_ttl
            self._bytes += stream.size
        elif stream.ring and stream.expires <= now:
            self._clear_ring(stream)
        return stream

    def _clear_ring(self, stream: _Stream) -> None:
        freed = sum(len(p) + ENTRY_OVERHEAD for _, p in stream.ring)
        stream.ring.clear()
        stream.size -= freed
        self._bytes -= freed

    def _drop(self, channel: str) -> None:
        stream = self._streams.pop(channel)
        self._bytes -= stream.size

    def append(self, channel: str, options: Stream, payload: bytes) -> tuple[bytes, int, str]:
        """Give ``payload`` the channel's next offset; return (push with position, offset, epoch)."""
        now = self._clock()
        stream = self._get(channel, now)
        stream.top += 1
        pushed = with_position(payload, stream.top, stream.epoch)
        stream.ring.append((stream.top, pushed))
        cost = len(pushed) + ENTRY_OVERHEAD
        stream.size += cost
        self._bytes += cost
        while len(stream.ring) > options.size:
            _, old = stream.ring.popleft()
            stream.size -= len(old) + ENTRY_OVERHEAD
            self._bytes -= len(old) + ENTRY_OVERHEAD
        stream.expires = now + options.ttl
        stream.meta_expires = now + max(options.ttl, self.limits.meta_ttl)
        self._streams.move_to_end(channel)
        self._enforce_cap(channel)
        return pushed, stream.top, stream.epoch

    def _enforce_cap(self, keep: str) -> None:
        cap = self.limits.memory_max_bytes
        while self._bytes > cap:
            channel, stream = next(iter(self._streams.items()))
            if channel == keep:  # only the stream just written is left: trim its oldest
                if len(stream.ring) <= 1:
                    return
                _, old = stream.ring.popleft()
                stream.size -= len(old) + ENTRY_OVERHEAD
                self._bytes -= len(old) + ENTRY_OVERHEAD
            elif stream.ring:
                _, old = stream.ring.popleft()
                stream.size -= len(old) + ENTRY_OVERHEAD
                self._bytes -= len(old) + ENTRY_OVERHEAD
            else:
                self._drop(channel)

    def read(self, channel: str, since: Position | None, limit: int, reverse: bool) -> History:
        """The publications after ``since`` (all kept when None; none when its epoch is
        not the stream's), at most ``limit``, oldest first unless ``reverse``."""
        stream = self._get(channel, self._clock())
        if limit <= 0 or (since is not None and since.epoch != stream.epoch):
            return History([], stream.top, stream.epoch)
        after = since.offset if since is not None else 0
        out: list[tuple[int, bytes]]
        if reverse:
            out = []
            for item in reversed(stream.ring):
                if item[0] <= after or len(out) >= limit:
                    break
                out.append(item)
        else:
            out = [item for item in stream.ring if item[0] > after][:limit]
        return History(out, stream.top, stream.epoch)

    def remembered(self, channel: str, key: str) -> Published | None:
        """The answer of an earlier emit with ``key`` on ``channel`` within the window."""
        now = self._clock()
        keys = self._keys
        while keys:  # insertion order is expiry order: the window is the same for all
            first = next(iter(keys.values()))
            if first[0] > now:
                break
            keys.popitem(last=False)
        found = keys.get((channel, key))
        return None if found is None else found[1]

    def remember(self, channel: str, key: str, published: Published) -> None:
        """Answer ``published`` to emits with ``key`` on ``channel`` for the window."""
        keys = self._keys
        keys[(channel, key)] = (self._clock() + self.limits.idempotency_window, published)
        while len(keys) > self.limits.idempotency_max_keys:
            keys.popitem(last=False)
