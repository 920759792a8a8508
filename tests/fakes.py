"""Plain test doubles for the core's protocols (no I/O, no gevent)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rocketws.brokers.base import ClientInfo, Control, Publication
from rocketws.core.disconnect import Disconnect


class RecordingOutlet:
    """A session Outlet that counts its wakes and records closes."""

    def __init__(self) -> None:
        self.wakes = 0
        self.later: list[float] = []  # the delay of each wake_later
        self.closed_with: list[Disconnect] = []

    def wake(self) -> None:
        self.wakes += 1

    def wake_later(self, delay: float) -> None:
        self.later.append(delay)

    def close(self, why: Disconnect) -> None:
        self.closed_with.append(why)

    def extend(self, expires_at: float) -> None:
        pass


class FakeNode:
    """A BrokerHandler that records deliveries and reports counts set by the test."""

    def __init__(self) -> None:
        self.delivered: list[Publication] = []
        self.channels: dict[str, int] = {}
        self.connections = 0
        self.controls: list[Control] = []
        self.users: dict[str, int] = {}  # user -> local connections, for apply_control
        self.presence: dict[str, dict[str, ClientInfo]] = {}  # channel -> client -> entry

    def deliver(self, publication: Publication) -> int:
        self.delivered.append(publication)
        if publication.channel is None:
            return self.connections
        n = self.channels.get(publication.channel, 0)
        return n - 1 if publication.skip is not None and n else n

    def apply_control(self, control: Control) -> int:
        self.controls.append(control)
        return self.users.get(control.user, 0)

    def local_channels(self) -> dict[str, int]:
        return {ch: n for ch, n in self.channels.items() if n}

    def local_subscribers(self, channel: str | None = None) -> int:
        if channel is None:
            return self.connections
        return self.channels.get(channel, 0)

    def local_presence(self, channel: str) -> Mapping[str, ClientInfo]:
        return self.presence.get(channel, {})

    def presence_channels(self) -> list[str]:
        return [ch for ch, clients in self.presence.items() if clients]

    def info(self) -> dict[str, Any]:
        return {"id": "fake", "connections": self.connections}

    def payloads(self, channel: str | None = "*") -> list[bytes]:
        return [p.payload for p in self.delivered if channel == "*" or p.channel == channel]
