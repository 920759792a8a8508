"""Brokers carry publications between nodes.

``memory`` is the default (one process); ``redis://`` joins many nodes through Redis.
"""

from __future__ import annotations

from rocketws.brokers.base import Broker, BrokerHandler, Control, Publication
from rocketws.brokers.memory import MemoryBroker

__all__ = ["Broker", "BrokerHandler", "Control", "Publication", "MemoryBroker", "create_broker"]


def create_broker(url: str) -> Broker:
    """Build the broker named by ``url``: ``memory`` (or ``memory://``) or ``redis://...``.

    Raises ValueError naming an unsupported scheme, ConfigError for a bad Redis URL or
    when redis-py is not installed (with the install hint).
    """
    if url in ("memory", "memory://"):
        return MemoryBroker()
    if url.startswith("redis://"):
        from rocketws.brokers.redis import RedisBroker  # imports redis-py only when asked for

        return RedisBroker(url)
    raise ValueError(f"unsupported broker {url!r} (supported: memory, redis://host:port/db)")
