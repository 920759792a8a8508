"""Test doubles and polling helpers for broker tests (run inside the gevent hub)."""

from __future__ import annotations

import time
from collections.abc import Callable

import gevent

from rocketws.brokers.base import Publication


class FakeNode:
    """A BrokerHandler that records deliveries and reports counts set by the test."""

    def __init__(self) -> None:
        self.delivered: list[Publication] = []
        self.channels: dict[str, int] = {}
        self.connections = 0

    def deliver(self, publication: Publication) -> int:
        self.delivered.append(publication)
        if publication.channel is None:
            return self.connections
        n = self.channels.get(publication.channel, 0)
        return n - 1 if publication.skip is not None and n else n

    def local_channels(self) -> dict[str, int]:
        return {ch: n for ch, n in self.channels.items() if n}

    def local_subscribers(self, channel: str | None = None) -> int:
        if channel is None:
            return self.connections
        return self.channels.get(channel, 0)

    def payloads(self, channel: str | None = "*") -> list[bytes]:
        return [p.payload for p in self.delivered if channel == "*" or p.channel == channel]


def wait_for(
    condition: Callable[[], object], timeout: float = 5.0, what: str = "condition"
) -> None:
    """Yield to the hub until ``condition()`` is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        gevent.sleep(0.005)
