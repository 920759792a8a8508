"""Brokers carry publications between nodes.  ``memory`` is the default (one process)."""

from __future__ import annotations

from .base import Broker, BrokerHandler, Publication
from .memory import MemoryBroker

__all__ = ["Broker", "BrokerHandler", "Publication", "MemoryBroker", "create_broker"]


def create_broker(url: str) -> Broker:
    """Build the broker named by ``url``: ``memory`` (or ``memory://``).

    Raises ValueError naming the unsupported scheme.
    """
    if url in ("memory", "memory://"):
        return MemoryBroker()
    raise ValueError(f"unsupported broker {url!r} (supported: memory)")
