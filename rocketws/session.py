"""One client connection's state: id, subscriptions and a bounded outbox."""

from __future__ import annotations

import uuid
from enum import Enum
from typing import Protocol


class Outlet(Protocol):
    """The transport side of a session."""

    def wake(self) -> None:
        """Called when the outbox becomes non-empty or the session overflows.

        Must not block and must not call back into the session.
        """


class State(Enum):
    OPEN = "open"
    OVERFLOWED = "overflowed"  # outbox limit crossed: to be closed with 4008
    CLOSED = "closed"


class Session:
    """A connection's subscriptions and its queue of encoded frames.

    ``push`` only appends a reference, so fan-out never blocks; the transport takes the
    queued bytes with ``take`` and reports what it wrote with ``sent``.  ``pending`` is
    every byte queued or taken but not yet written; crossing ``max_pending`` moves the
    session to OVERFLOWED and stops further queueing.
    """

    __slots__ = ("id", "channels", "_outbox", "pending", "max_pending", "dirty", "state", "_outlet")

    def __init__(self, outlet: Outlet, max_pending: int, session_id: str | None = None) -> None:
        self.id = session_id or uuid.uuid4().hex
        self.channels: set[str] = set()
        self._outbox: list[bytes] = []
        self.pending = 0
        self.max_pending = max_pending
        self.dirty = False
        self.state = State.OPEN
        self._outlet = outlet

    def __repr__(self) -> str:
        return f"<Session {self.id} {self.state.value} channels={len(self.channels)}>"

    def push(self, frame: bytes) -> bool:
        """Queue ``frame``; return whether it was accepted.  Never blocks."""
        if self.state is not State.OPEN:
            return False
        self._outbox.append(frame)
        self.pending += len(frame)
        if self.pending > self.max_pending:
            self.state = State.OVERFLOWED
            self._outbox.clear()
            self._outlet.wake()
            return False
        if not self.dirty:
            self.dirty = True
            self._outlet.wake()
        return True

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

    def close(self) -> None:
        """Stop queueing and drop whatever is queued."""
        self.state = State.CLOSED
        self._outbox.clear()
        self.dirty = False
