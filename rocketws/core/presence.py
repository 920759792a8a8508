"""A node's own presence: who subscribes here to the channels whose namespace keeps
presence or announces joins and leaves, and the ``join``/``leave`` pushes.

Only those channels are tracked (``Namespace.presence`` / ``join_leave``): a channel of
a namespace with neither costs nothing here.  The Node keeps one ``LocalPresence``; the
brokers read it (``BrokerHandler.local_presence``), the Redis broker to write it to
Redis and refresh it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from rocketws.brokers.base import ClientInfo
from rocketws.core.jsonrpc import dumps

_NONE: Mapping[str, ClientInfo] = MappingProxyType({})


class _Tracked:
    """One tracked channel: its flags and its local subscribers."""

    __slots__ = ("presence", "join_leave", "clients")

    def __init__(self, presence: bool, join_leave: bool) -> None:
        self.presence = presence
        self.join_leave = join_leave
        self.clients: dict[str, ClientInfo] = {}


class LocalPresence:
    """Channel -> client id -> ClientInfo, for the tracked channels of this node."""

    __slots__ = ("_channels",)

    def __init__(self) -> None:
        self._channels: dict[str, _Tracked] = {}

    def __bool__(self) -> bool:
        """Whether any channel is tracked (the disconnect path skips the work when not)."""
        return bool(self._channels)

    def add(self, channel: str, entry: ClientInfo, *, presence: bool, join_leave: bool) -> None:
        """Record ``entry`` as a subscriber of ``channel`` (its namespace's flags given)."""
        tracked = self._channels.get(channel)
        if tracked is None:
            tracked = self._channels[channel] = _Tracked(presence, join_leave)
        tracked.clients[entry.client] = entry

    def remove(self, channel: str, client: str) -> tuple[ClientInfo, bool, bool] | None:
        """Forget ``client`` in ``channel``; return (its entry, presence, join_leave), or
        None when it was not tracked there."""
        tracked = self._channels.get(channel)
        if tracked is None:
            return None
        entry = tracked.clients.pop(client, None)
        if entry is None:
            return None
        if not tracked.clients:
            del self._channels[channel]
        return entry, tracked.presence, tracked.join_leave

    def tracks(self, channel: str) -> bool:
        return channel in self._channels

    def clients(self, channel: str) -> Mapping[str, ClientInfo]:
        """The local subscribers of ``channel`` where it keeps presence (else empty);
        a live view, not a copy."""
        tracked = self._channels.get(channel)
        if tracked is None or not tracked.presence:
            return _NONE
        return tracked.clients

    def presence_channels(self) -> list[str]:
        """The tracked channels that keep presence."""
        return [channel for channel, tracked in self._channels.items() if tracked.presence]


def encode_join_leave(joined: bool, channel: str, entry: ClientInfo) -> bytes:
    """The ``join``/``leave`` notification pushed to a channel's other subscribers."""
    params = {"channel": channel, **entry.as_json()}
    return dumps({"jsonrpc": "2.0", "method": "join" if joined else "leave", "params": params})
