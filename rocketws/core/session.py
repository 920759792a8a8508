"""One client connection's state: id, user, subscriptions and a bounded outbox."""

from __future__ import annotations

import uuid
from typing import Any, ClassVar, Protocol

from rocketws.core.disconnect import Disconnect

LATER = 2
"""``Session.dirty`` after ``push_later`` woke the transport with a delay (not ``True``,
so that a ``push`` still wakes it at once)."""


class Outlet(Protocol):
    """The transport side of a session."""

    def wake(self) -> None:
        """Called when the outbox has frames to write now.  Must not block or push."""

    def wake_later(self, delay: float) -> None:
        """Called when the outbox becomes non-empty with frames that may wait up to
        ``delay`` seconds (``Session.push_later``).  Must not block or push."""

    def close(self, why: Disconnect) -> None:
        """Begin closing the connection from the server side, through its state machine
        (queued frames are delivered first).  Idempotent; must not block."""

    def extend(self, expires_at: float) -> None:
        """The connection's identity now expires at ``expires_at`` (Unix time, 0 = never):
        re-arm its ``refresh_required`` and expiry deadlines.  Must not block."""


class Session:
    """A connection's subscriptions and its queue of encoded frames.

    ``push`` only appends a reference, so fan-out never blocks; the transport takes the
    queued bytes with ``take`` and reports what it wrote with ``sent``.  ``pending`` is
    every byte queued or taken but not yet written.  ``push_later`` queues a frame that may
    wait (a namespace's ``write_delay``): the transport is woken with the delay, and
    whatever is queued until then leaves in the same write; a ``push`` meanwhile makes
    everything leave at once.  The transport checks ``over_limit``
    after offering the queue to the socket, once per event-loop turn with new frames, so
    the bound is ``max_pending`` plus what one turn publishes.  Whether the connection is
    open is its transport's state (``core.connection``); the session only knows whether
    it still takes frames (``closed``).

    ``deflate``: whether the connection negotiated permessage-deflate (RFC 7692), so
    fan-out queues it a publication's compressed frame (``Hub.fan_out``); True for a
    ``DeflateSession``.

    ``user`` is who the connection belongs to ("" = anonymous); it changes only through
    ``Node.identify`` (the hub indexes sessions by user).  Its expiry is its transport's
    (``expire`` moves it, as a backend's ``refresh`` does).
    """

    __slots__ = (
        "id",
        "user",
        "info",
        "meta",
        "channels",
        "_outbox",
        "pending",
        "max_pending",
        "dirty",
        "_outlet",
    )
    deflate: ClassVar[bool] = False

    def __init__(self, outlet: Outlet, max_pending: int, session_id: str | None = None) -> None:
        self.id = session_id or uuid.uuid4().hex
        self.user = ""
        self.channels: set[str] = set()
        self._outbox: list[bytes] | None = []  # None once closed
        self.pending = 0
        self.max_pending = max_pending
        self.dirty: bool | int = False  # True: woken; LATER: woken with a delay
        self._outlet = outlet
        # Who the connection is (core/auth.py): public ``info`` (never an IP address),
        # server-only ``meta``.
        self.info: Any = None
        self.meta: Any = None

    def __repr__(self) -> str:
        state = "closed" if self._outbox is None else "open"
        return f"<Session {self.id} {state} channels={len(self.channels)}>"

    @property
    def closed(self) -> bool:
        """True once ``close`` was called: frames are no longer taken."""
        return self._outbox is None

    def push(self, frame: bytes) -> bool:
        """Queue ``frame``; return whether it was accepted (False once closed).

        Only appends a reference and, on the first frame since the last ``take``, calls
        ``outlet.wake()``.  Never blocks and never writes.
        """
        out = self._outbox
        if out is None:
            return False
        out.append(frame)
        self.pending += len(frame)
        if self.dirty is not True:
            self.dirty = True
            self._outlet.wake()
        return True

    def push_later(self, frame: bytes, delay: float) -> bool:
        """``push``, but the frame may wait up to ``delay`` seconds for others to join it.

        Wakes the transport with ``outlet.wake_later(delay)`` on the first frame since the
        last ``take`` (so the first frame's delay bounds how long the queue waits); a
        session already woken is not woken again.
        """
        out = self._outbox
        if out is None:
            return False
        out.append(frame)
        self.pending += len(frame)
        if not self.dirty:
            self.dirty = LATER
            self._outlet.wake_later(delay)
        return True

    @property
    def over_limit(self) -> bool:
        """True when more than ``max_pending`` bytes are unsent (a slow consumer)."""
        return self.pending > self.max_pending

    def take(self) -> bytes:
        """Everything queued, joined into one buffer (empty when nothing is queued)."""
        self.dirty = False
        out = self._outbox
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return data

    def sent(self, nbytes: int) -> None:
        """Record that ``nbytes`` of taken data reached the socket."""
        self.pending -= nbytes

    def disconnect(self, why: Disconnect) -> None:
        """Ask the transport to close the connection with ``why`` (see ``Outlet.close``)."""
        self._outlet.close(why)

    def expire(self, expires_at: float) -> None:
        """Move the connection's expiry to ``expires_at`` (see ``Outlet.extend``)."""
        self._outlet.extend(expires_at)

    def close(self) -> None:
        """Stop queueing and drop whatever is queued."""
        self._outbox = None
        self.dirty = False


class DeflateSession(Session):
    """A session whose connection negotiated permessage-deflate.

    A class rather than a flag so that it costs no byte per connection: a slot would
    grow every session, compressed or not, by 8 bytes (measured with tracemalloc).
    """

    __slots__ = ()
    deflate: ClassVar[bool] = True
