"""The Broker interface every broker implements, and what travels through it."""

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


class BrokerHandler(Protocol):
    """What a broker calls back into (the Node)."""

    def deliver(self, publication: Publication) -> int:
        """Deliver to local sessions; return how many were reached.  Never blocks."""

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
