"""The in-memory broker: one process, publications delivered synchronously."""

from __future__ import annotations

from rocketws.brokers.base import (
    STREAM_LIMITS,
    BrokerHandler,
    Control,
    Emit,
    History,
    Position,
    Publication,
    Published,
    StreamLimits,
)
from rocketws.brokers.memory_streams import MemoryStreams


class MemoryBroker:
    """Delivers every publication straight to the local node (the default broker).

    History and idempotency keys live in ``streams`` (``memory_streams``): one process,
    lost on restart, when every stream gets a new epoch.
    """

    def __init__(self, limits: StreamLimits = STREAM_LIMITS) -> None:
        self._handler: BrokerHandler | None = None
        self.streams = MemoryStreams(limits)

    def start(self, handler: BrokerHandler) -> None:
        self._handler = handler

    def _node(self) -> BrokerHandler:
        if self._handler is None:
            raise RuntimeError("MemoryBroker used before start()")
        return self._handler

    def publish(self, publication: Publication) -> int:
        handler = self._handler  # inlined _node(): this runs on every emit
        if handler is None:
            raise RuntimeError("MemoryBroker used before start()")
        return handler.deliver(publication)

    def control(self, control: Control) -> int:
        return self._node().apply_control(control)

    def subscribe(self, channel: str) -> None:
        pass  # every local channel is delivered locally

    def unsubscribe(self, channel: str) -> None:
        pass

    def channels(self) -> list[str]:
        return sorted(self._node().local_channels())

    def subscribers(self, channel: str | None = None) -> int:
        return self._node().local_subscribers(channel)

    def close(self) -> None:
        self._handler = None

    # -- history (issue 11) -------------------------------------------------------------

    def publish_many(self, emits: list[Emit]) -> list[Published | Exception]:
        return [self._publish_one(emit) for emit in emits]

    def _publish_one(self, emit: Emit) -> Published:
        publication, stream, key = emit
        channel = publication.channel
        streams = self.streams
        if key is not None and channel is not None:
            earlier = streams.remembered(channel, key)
            if earlier is not None:
                return earlier
        if stream is None or channel is None:
            published = Published(self.publish(publication))
        else:
            payload, offset, epoch = streams.append(channel, stream, publication.payload)
            delivered = self.publish(publication._replace(payload=payload, offset=offset, epoch=epoch))
            published = Published(delivered, offset, epoch)
        if key is not None and channel is not None:
            streams.remember(channel, key, published)
        return published

    def history(self, channel: str, since: Position | None, limit: int, reverse: bool = False) -> History:
        return self.streams.read(channel, since, limit, reverse)

    def confirmed(self, channel: str) -> bool:
        return True

    def ready(self) -> bool:
        return True
