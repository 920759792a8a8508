"""The Broker interface every broker implements, and what travels through it.

Two kinds travel: a ``Publication`` (pushes for a channel's subscribers) and a ``Control``
(a backend's command for every connection of one user: disconnect, subscribe,
unsubscribe, refresh).
"""

from __future__ import annotations

from typing import NamedTuple, Protocol


class Publication(NamedTuple):
    """One publication: an encoded push notification (JSON bytes, not yet framed).

    ``channel`` is None for a broadcast to every connection.  ``skip`` is the id of a
    session that must not receive it (the sender of ``send_data``).  A NamedTuple: one
    is made per emit, and a frozen dataclass costs 3 times more to make.
    """

    channel: str | None
    payload: bytes
    skip: str | None = None
    # -- history (issue 11): set on publications of channels with history --
    offset: int = 0  # its place in the channel's stream; 0: the channel keeps no history
    epoch: str = ""  # the stream's epoch (see Position)


class Control(NamedTuple):
    """A server-side command for every connection of ``user``, on every node.

    ``action`` is one of ``ACTIONS``; ``disconnect`` uses ``code`` and ``reason``,
    ``subscribe``/``unsubscribe`` use ``channel``, ``refresh`` uses ``expire_at`` (Unix
    seconds, None = no expiry).  Values are validated by the node that accepts the
    command (rpc.py), before it is published.
    """

    action: str
    user: str
    channel: str = ""
    code: int = 0
    reason: str = ""
    expire_at: float | None = None


ACTIONS = ("disconnect", "subscribe", "unsubscribe", "refresh")


# -- history, recovery and idempotent emits (docs/protocol.md#history-and-recovery) ------


class Position(NamedTuple):
    """A place in a channel's stream: the ``offset`` of a publication in ``epoch``.

    Offsets start at 1 and grow by one per publication; ``epoch`` changes whenever the
    stream's past is lost (a new stream), so an offset means nothing in another epoch.
    """

    offset: int
    epoch: str


class Stream(NamedTuple):
    """How a channel keeps history: at most ``size`` publications, for ``ttl`` seconds
    after the last one (the namespace's ``history_size`` and ``history_ttl``)."""

    size: int
    ttl: float


class Emit(NamedTuple):
    """One publication for ``Broker.publish_many``.

    ``stream`` None: the channel keeps no history (the payload travels as is).  Else the
    broker gives it the next offset and adds ``"offset"`` and ``"epoch"`` to the push's
    params (``core.streams.with_position``), atomically with the append and the publish.
    ``idempotency_key`` (None: none): within the broker's idempotency window, a second
    emit with the same key on the same channel publishes nothing and answers the first
    one's ``Published``.
    """

    publication: Publication
    stream: Stream | None = None
    idempotency_key: str | None = None


class Published(NamedTuple):
    """What publishing an Emit did: subscribers reached (best known count) and, on a
    channel with history, its position (offset 0, epoch "" without history)."""

    delivered: int
    offset: int = 0
    epoch: str = ""


class History(NamedTuple):
    """A read of a stream: ``publications`` as (offset, push payload) in the order
    asked for, and the stream's current top ``offset`` (0 when empty) and ``epoch``."""

    publications: list[tuple[int, bytes]]
    offset: int
    epoch: str


class StreamLimits(NamedTuple):
    """Broker-wide history settings (``HISTORY`` in settings.py)."""

    memory_max_bytes: int = 64 * 1024 * 1024  # the memory broker's global cap
    meta_ttl: float = 86400.0  # seconds a stream's epoch and top offset outlive its last publication
    idempotency_window: float = 300.0  # seconds an idempotency key is remembered
    idempotency_max_keys: int = 100_000  # the memory broker's bound on remembered keys


STREAM_LIMITS = StreamLimits()


class BrokerHandler(Protocol):
    """What a broker calls back into (the Node)."""

    def deliver(self, publication: Publication) -> int:
        """Deliver to local sessions; return how many were reached.  Never blocks."""

    def apply_control(self, control: Control) -> int:
        """Apply ``control`` to the local connections of its user; return how many.
        Never blocks."""

    def local_channels(self) -> dict[str, int]:
        """Channel -> local subscriber count."""

    def local_subscribers(self, channel: str | None = None) -> int:
        """Local subscribers of ``channel``, or local open connections when None."""


class Broker(Protocol):
    """Carries publications to every node (including the publishing one).

    Contract: ``start`` is called once before any other method; every publication
    reaches ``handler.deliver`` once on each node that subscribed its channel (all nodes
    for broadcasts); ``subscribe``/``unsubscribe`` are called by the node when a channel
    gains its first / loses its last local subscriber; ``close`` is called once.
    """

    def start(self, handler: BrokerHandler) -> None:
        """Begin delivering to ``handler``."""

    def publish(self, publication: Publication) -> int:
        """Publish; return the number of subscribers reached (best known count).

        Raises BrokerUnavailable if the publication cannot be accepted.
        """

    def control(self, control: Control) -> int:
        """Have every node (this one too) ``apply_control``; return the sum of their counts.

        A broker that must wait for other nodes waits at most its timeout and returns the
        counts that arrived by then (a lower bound).  Raises BrokerUnavailable if the
        command cannot be sent.
        """

    def subscribe(self, channel: str) -> None:
        """Start receiving publications of ``channel`` on this node.  Must not block long."""

    def unsubscribe(self, channel: str) -> None:
        """Stop receiving publications of ``channel`` on this node."""

    def channels(self) -> list[str]:
        """Sorted channels with at least one subscriber anywhere."""

    def subscribers(self, channel: str | None = None) -> int:
        """Subscribers of ``channel`` anywhere, or open connections when None."""

    def close(self) -> None:
        """Stop; release resources.  Called once."""

    # -- history (issue 11) -------------------------------------------------------------

    def publish_many(self, emits: list[Emit]) -> list[Published | Exception]:
        """Publish ``emits`` in order (on Redis: one round trip for all of them).

        Each answer is its Published, or the BrokerUnavailable it failed with: then it
        was not published (or, on a timeout, may have been: a retry with the same
        idempotency key is then safe).  Publications of one channel keep their order.
        """

    def history(self, channel: str, since: Position | None, limit: int, reverse: bool = False) -> History:
        """Read ``channel``'s stream: at most ``limit`` publications (0: only the top),
        those after ``since.offset`` when ``since`` is given and its epoch is the
        current one, oldest first (``reverse``: newest first).  A channel never published
        gets its stream (epoch) here, so the position answered stays valid.

        Raises BrokerUnavailable.
        """

    def confirmed(self, channel: str) -> bool:
        """Whether every publication of ``channel`` made from now on reaches this node
        (its subscription is in place, not only wished for).  Never blocks."""

    def ready(self) -> bool:
        """Whether this node hears every channel it subscribed (after a Redis outage:
        once it has resubscribed).  Until then publishing raises BrokerUnavailable and
        ``/health`` answers 503.  Never blocks."""
