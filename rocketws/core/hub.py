"""The local registry: channel -> subscribed sessions, user -> sessions, every open session."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from rocketws.core.session import Batch, Session

Deflated = Callable[[], bytes]
"""Makes a publication's frame for sessions with ``deflate`` (called at most once)."""


class Hub:
    """Who is connected to this node and which channels they subscribe to.

    ``subscribe``/``unsubscribe``/``disconnect`` report when a channel gains its first
    or loses its last local subscriber, so the node can (un)subscribe its broker.
    ``fan_out``/``broadcast`` only queue the same frame bytes to each session: one
    frame for every session, or, when some sessions negotiated permessage-deflate
    (``Session.deflate``), a second frame made once for all of those.  The hub counts
    such sessions per channel, so a publication nobody compressed can use is never
    compressed.
    Sessions with a ``user`` are indexed by it (``user_sessions``); anonymous ones are not.

    Delayed publications of a channel (``fan_out`` with a ``delay``, nobody skipped,
    nobody compressing) are queued to its subscribers as one shared ``Batch``: the first
    one of a window pushes the batch to each subscriber, the next ones append to it while
    it is open.  A change of the channel's subscribers seals it, so it only ever reaches
    the sessions that were subscribed when each of its publications was made.
    """

    def __init__(self) -> None:
        self._channels: dict[str, set[Session]] = {}
        self._sessions: dict[str, Session] = {}
        self._deflating: dict[str, int] = {}  # channel -> subscribers with deflate
        self._deflate_sessions = 0  # open sessions with deflate
        self._users: dict[str, set[Session]] = {}
        self._batches: dict[str, Batch] = {}  # channel -> its open batch of delayed frames

    def connect(self, session: Session) -> None:
        if session.id not in self._sessions and session.deflate:
            self._deflate_sessions += 1
        self._sessions[session.id] = session
        if session.user:
            self._users.setdefault(session.user, set()).add(session)

    def identify(self, session: Session, user: str) -> None:
        """Set ``session.user`` ("" = anonymous) and move it in the user index."""
        if session.user:  # anonymous sessions are not indexed
            self._forget_user(session)
        session.user = user
        if user and session.id in self._sessions:
            self._users.setdefault(user, set()).add(session)

    def user_sessions(self, user: str) -> list[Session]:
        """The open sessions of ``user`` (a copy: callers may close them while iterating)."""
        sessions = self._users.get(user)
        return list(sessions) if sessions else []

    def user_connections(self, user: str) -> int:
        """How many open sessions ``user`` has (0 for "")."""
        return len(self._users.get(user, ())) if user else 0

    def _forget_user(self, session: Session) -> None:
        sessions = self._users.get(session.user)
        if sessions is not None:
            sessions.discard(session)
            if not sessions:
                del self._users[session.user]

    def disconnect(self, session: Session) -> list[str]:
        """Forget ``session`` and all its subscriptions; return channels now empty."""
        if self._sessions.pop(session.id, None) is not None and session.deflate:
            self._deflate_sessions -= 1
        self._forget_user(session)
        if self._batches:
            for channel in session.channels:
                self._seal(channel)
        emptied = [ch for ch in session.channels if self._remove(session, ch)]
        session.channels.clear()
        return emptied

    def subscribe(self, session: Session, channel: str) -> bool:
        """Add the subscription; return True if it is the channel's first subscriber."""
        session.channels.add(channel)
        subs = self._channels.get(channel)
        first = subs is None
        if subs is None:
            self._channels[channel] = {session}
        elif session in subs:
            return False
        else:
            if self._batches:
                self._seal(channel)  # the new subscriber must not get what is in it
            subs.add(session)
        if session.deflate:
            self._deflating[channel] = self._deflating.get(channel, 0) + 1
        return first

    def unsubscribe(self, session: Session, channel: str) -> bool:
        """Remove the subscription; return True if the channel has no subscriber left."""
        if channel not in session.channels:
            return False
        session.channels.discard(channel)
        if self._batches:
            self._seal(channel)  # what is appended from now on must not reach it
        return self._remove(session, channel)

    def _remove(self, session: Session, channel: str) -> bool:
        subs = self._channels.get(channel)
        if subs is None or session not in subs:
            return False
        subs.discard(session)
        if session.deflate:
            left = self._deflating.pop(channel) - 1
            if left:
                self._deflating[channel] = left
        if subs:
            return False
        del self._channels[channel]
        return True

    def fan_out(
        self,
        channel: str,
        frame: bytes,
        skip: str | None = None,
        deflated: Deflated | None = None,
        delay: float = 0.0,
    ) -> int:
        """Queue ``frame`` to every subscriber of ``channel`` but ``skip``; return count.

        ``deflated``: makes the frame for subscribers with ``deflate``; called once, and
        only when the channel has such subscribers (else they get ``frame``).
        ``delay`` > 0: the frames may wait that many seconds (``Session.push_later``).
        """
        subs = self._channels.get(channel)
        if not subs:
            return 0
        if delay:
            if deflated is not None and channel in self._deflating:
                return _push_later(subs, frame, deflated(), skip, delay)
            if skip is not None:
                return _push_later(subs, frame, frame, skip, delay)
            batch = self._batches.get(channel)
            if batch is not None:  # open: every holder is a subscriber, and only they are
                batch.append(frame)
                return len(batch.holders)
            return self._push_batch(channel, subs, frame, delay)
        if deflated is not None and channel in self._deflating:
            return _push_mixed(subs, frame, deflated(), skip)
        n = 0
        if skip is None:
            for session in subs:
                n += session.push(frame)
        else:
            for session in subs:
                if session.id != skip:
                    n += session.push(frame)
        return n

    def _push_batch(self, channel: str, subs: set[Session], frame: bytes, delay: float) -> int:
        """Start ``channel``'s batch with ``frame``: queue it to every subscriber."""
        batch = Batch(channel, frame, self._sealed)
        holders = batch.holders
        for session in subs:
            if session.push_batch(batch, delay):
                holders.append(session)
        if holders:
            self._batches[channel] = batch
        return len(holders)

    def _seal(self, channel: str) -> None:
        batch = self._batches.get(channel)
        if batch is not None:
            batch.seal()

    def _sealed(self, batch: Batch) -> None:
        """``Batch`` callback: ``batch`` stopped growing; forget it."""
        if self._batches.get(batch.channel) is batch:
            del self._batches[batch.channel]

    def broadcast(self, frame: bytes, deflated: Deflated | None = None, delay: float = 0.0) -> int:
        """Queue ``frame`` to every open session; return count (``deflated``, ``delay``:
        as for ``fan_out``)."""
        if delay:
            other = deflated() if deflated is not None and self._deflate_sessions else frame
            return _push_later(self._sessions.values(), frame, other, None, delay)
        if deflated is not None and self._deflate_sessions:
            return _push_mixed(self._sessions.values(), frame, deflated(), None)
        n = 0
        for session in self._sessions.values():
            n += session.push(frame)
        return n

    def channels(self) -> dict[str, int]:
        """Channel -> number of local subscribers."""
        return {ch: len(subs) for ch, subs in self._channels.items()}

    def count(self, channel: str) -> int:
        subs = self._channels.get(channel)
        return len(subs) if subs else 0

    @property
    def channel_count(self) -> int:
        return len(self._channels)

    @property
    def subscription_count(self) -> int:
        """(session, channel) subscriptions here."""
        return sum(map(len, self._channels.values()))

    @property
    def user_count(self) -> int:
        """Users with at least one open session here."""
        return len(self._users)

    @property
    def connections(self) -> int:
        return len(self._sessions)

    # -- history (issue 11) -------------------------------------------------------------

    def subscribers(self, channel: str) -> list[Session]:
        """The sessions subscribed to ``channel`` (a copy: callers may close them)."""
        return list(self._channels.get(channel, ()))

    def fan_out_except(
        self, channel: str, frame: bytes, skip: set[str], deflated: Deflated | None = None
    ) -> int:
        """``fan_out`` skipping every session whose id is in ``skip`` (rare: sessions
        that have a publication from their recovery answer already)."""
        subs = self._channels.get(channel)
        if not subs:
            return 0
        compressed = deflated() if deflated is not None and channel in self._deflating else None
        n = 0
        for session in subs:
            if session.id not in skip:
                n += session.push(compressed if compressed is not None and session.deflate else frame)
        return n


def _push_mixed(sessions: Iterable[Session], frame: bytes, deflated: bytes, skip: str | None) -> int:
    """Queue ``deflated`` to sessions with ``deflate``, ``frame`` to the others."""
    n = 0
    for session in sessions:
        if session.id != skip:
            n += session.push(deflated if session.deflate else frame)
    return n


def _push_later(
    sessions: Iterable[Session], frame: bytes, deflated: bytes, skip: str | None, delay: float
) -> int:
    """``Session.push_later`` of ``deflated`` to sessions with ``deflate``, ``frame`` to the
    others (the same bytes when nobody compresses)."""
    n = 0
    if deflated is frame and skip is None:  # the usual case: one loop, no per-session test
        for session in sessions:
            n += session.push_later(frame, delay)
        return n
    for session in sessions:
        if session.id != skip:
            n += session.push_later(deflated if session.deflate else frame, delay)
    return n
