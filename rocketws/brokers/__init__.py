"""Brokers carry publications between nodes.

``memory`` is the default (one process); ``redis://`` joins many nodes through Redis.
"""

from __future__ import annotations

from rocketws.brokers.base import STREAM_LIMITS, Broker, BrokerHandler, Control, Publication, StreamLimits
from rocketws.brokers.memory import MemoryBroker

__all__ = ["Broker", "BrokerHandler", "Control", "Publication", "MemoryBroker", "create_broker"]


def create_broker(url: str, limits: StreamLimits = STREAM_LIMITS) -> Broker:
    """Build the broker named by ``url``: ``memory`` (or ``memory://``) or ``redis://...``;
    ``limits``: its history settings.

    Raises ValueError naming an unsupported scheme, ConfigError for a bad Redis URL or
    when redis-py is not installed (with the install hint).
    """
    if url in ("memory", "memory://"):
        return MemoryBroker(limits)
    if url.startswith("redis://"):
        from rocketws.brokers.redis import RedisBroker  # imports redis-py only when asked for

        return RedisBroker(url, limits=limits)
    raise ValueError(f"unsupported broker {url!r} (supported: memory, redis://host:port/db)")
