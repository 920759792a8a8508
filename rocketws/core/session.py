"""One client connection's state: id, user, subscriptions and a bounded outbox."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

from rocketws.core.disconnect import Disconnect

LATER = 2
"""``Session.dirty`` after ``push_later`` woke the transport with a delay (not ``True``,
so that a ``push`` still wakes it at once)."""
BATCH_LATER = 3
"""``Session.dirty``: woken with a delay, and the outbox ends with a ``Batch`` that may
still grow (anything else queued seals it first)."""
BATCH_NOW = 4
"""``Session.dirty``: woken to write at once, and the outbox ends with a ``Batch`` that
may still grow."""


class Batch:
    """Delayed publications of one channel, queued once as one entry of every subscriber's
    outbox (``Session.push_batch``), so that publications arriving within a
    ``write_delay`` cost one append each instead of one push per subscriber.

    The batch grows (``append``) only while it is open: while it is the last entry of
    every holder's outbox and no holder took it.  Whatever breaks that seals it first:
    a holder queueing anything else, taking its queue, closing or being re-armed
    (``Session``), or the channel's subscribers changing (``Hub``); a later publication
    then starts a new batch.  So each holder receives exactly the frames it would have
    had with one ``push_later`` per frame, in the same order.

    ``pending``: a holder is charged the first frame when the batch is queued and the
    frames appended meanwhile when it is sealed, which happens before any of them is
    taken and before any ``over_limit`` check of a holder that took or re-armed.
    """

    __slots__ = ("channel", "frames", "size", "holders", "data", "_charged", "_on_seal")

    def __init__(self, channel: str, frame: bytes, on_seal: Callable[[Batch], None]) -> None:
        self.channel = channel
        self.frames: list[bytes] = [frame]
        self.size = len(frame)  # bytes in frames
        self.holders: list[Session] = []  # the sessions it was queued to (set by the Hub)
        self.data: bytes | None = None  # the joined frames, once sealed
        self._charged = len(frame)  # what each holder's ``pending`` already counts
        self._on_seal = on_seal

    @property
    def open(self) -> bool:
        return self.data is None

    def append(self, frame: bytes) -> None:
        """Add ``frame`` for every holder (only while ``open``)."""
        self.frames.append(frame)
        self.size += len(frame)

    def seal(self) -> bytes:
        """Stop growing; return the joined frames (the same bytes on every call).

        The first call charges each holder what was appended since it was queued and
        forgets the holders."""
        data = self.data
        if data is not None:
            return data
        frames = self.frames
        data = self.data = frames[0] if len(frames) == 1 else b"".join(frames)
        extra = self.size - self._charged
        if extra:
            for session in self.holders:
                session.pending += extra
        self.frames = []
        self.holders = []
        self._on_seal(self)
        return data


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
    everything leave at once.  ``push_batch`` queues a ``Batch`` of one channel's delayed
    publications shared by its subscribers; while it is the outbox's last entry
    (``dirty`` is ``BATCH_LATER`` or ``BATCH_NOW``) anything else queued, ``take``,
    ``rearm`` and ``close`` seal it first, which keeps every frame in queue order.  The
    transport checks ``over_limit``
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
        self._outbox: list[bytes | Batch] | None = []  # None once closed
        self.pending = 0
        self.max_pending = max_pending
        # True: woken; LATER: woken with a delay; BATCH_*: the same, the outbox ends with
        # a Batch that may grow
        self.dirty: bool | int = False
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
        dirty = self.dirty
        if dirty is not True:
            self.dirty = True
            if dirty is False:
                self._outlet.wake()
            else:
                if dirty >= BATCH_LATER:
                    _seal_tail(out)
                if dirty != BATCH_NOW:
                    self._outlet.wake()
        out.append(frame)
        self.pending += len(frame)
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
        dirty = self.dirty
        if dirty >= BATCH_LATER:
            _seal_tail(out)
            self.dirty = LATER if dirty == BATCH_LATER else True
        elif not dirty:
            self.dirty = LATER
            self._outlet.wake_later(delay)
        out.append(frame)
        self.pending += len(frame)
        return True

    def push_batch(self, batch: Batch, delay: float) -> bool:
        """``push_later`` of an open ``batch`` (its frames so far, and what is appended to
        it while it stays open); return whether it was accepted (False once closed)."""
        out = self._outbox
        if out is None:
            return False
        dirty = self.dirty
        if dirty >= BATCH_LATER:
            _seal_tail(out)  # the previous batch ends here; the wake-up stays as it was
        else:
            if not dirty:
                self._outlet.wake_later(delay)
            self.dirty = BATCH_NOW if dirty is True else BATCH_LATER
        out.append(batch)
        self.pending += batch.size
        return True

    def rearm(self) -> None:
        """Let the next push wake the transport again (it has a backlog to write first);
        an open batch at the end of the queue is sealed."""
        if self.dirty >= BATCH_LATER and self._outbox:
            _seal_tail(self._outbox)
        self.dirty = False

    @property
    def over_limit(self) -> bool:
        """True when more than ``max_pending`` bytes are unsent (a slow consumer)."""
        return self.pending > self.max_pending

    def take(self) -> bytes:
        """Everything queued, joined into one buffer (empty when nothing is queued);
        batches in the queue are sealed."""
        self.dirty = False
        out = self._outbox
        if not out:
            return b""
        if len(out) == 1:
            first = out[0]
            data = first.seal() if isinstance(first, Batch) else first
        else:
            try:
                data = b"".join(out)  # type: ignore[arg-type]  # a Batch raises TypeError
            except TypeError:
                data = b"".join([f.seal() if isinstance(f, Batch) else f for f in out])
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
        """Stop queueing and drop whatever is queued (an open batch at its end is
        sealed: it no longer reaches this session)."""
        if self.dirty >= BATCH_LATER and self._outbox:
            _seal_tail(self._outbox)
        self._outbox = None
        self.dirty = False


def _seal_tail(out: list[bytes | Batch]) -> None:
    tail = out[-1]
    if isinstance(tail, Batch):
        tail.seal()


class DeflateSession(Session):
    """A session whose connection negotiated permessage-deflate.

    A class rather than a flag so that it costs no byte per connection: a slot would
    grow every session, compressed or not, by 8 bytes (measured with tracemalloc).
    """

    __slots__ = ()
    deflate: ClassVar[bool] = True
