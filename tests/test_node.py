"""Unit tests of the Node with the memory broker (pure core)."""

from __future__ import annotations

import json

import pytest

from rocketws.brokers import MemoryBroker, Publication, create_broker
from rocketws.core.exceptions import LimitExceeded, NotSubscribed
from rocketws.core.hub import Hub
from rocketws.core.node import Node
from rocketws.core.session import Session

from .test_hub import Outlet


class RecordingBroker(MemoryBroker):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, object]] = []

    def subscribe(self, channel: str) -> None:
        self.calls.append(("subscribe", channel))

    def unsubscribe(self, channel: str) -> None:
        self.calls.append(("unsubscribe", channel))

    def publish(self, publication: Publication) -> int:
        self.calls.append(("publish", publication.channel))
        return super().publish(publication)


@pytest.fixture
def node() -> Node:
    n = Node(Hub(), RecordingBroker(), max_channels_per_connection=2, clock=lambda: 42.0)
    n.start()
    return n


def session(node: Node) -> Session:
    s = Session(Outlet(), 1 << 20)
    node.connect(s)
    return s


def frames(s: Session) -> list[dict]:
    data, out = s.take(), []
    while data:
        n = data[1] & 0x7F
        start = 2 if n < 126 else 4
        if n == 126:
            n = int.from_bytes(data[2:4], "big")
        out.append(json.loads(data[start:start + n]))
        data = data[start + n:]
    return out


def test_node_broker_subscribe_on_first_unsubscribe_on_last(node: Node) -> None:
    a, b = session(node), session(node)
    node.subscribe(a, "c")
    node.subscribe(b, "c")
    node.unsubscribe(a, "c")
    node.disconnect(b)
    assert node.broker.calls == [("subscribe", "c"), ("unsubscribe", "c")]


def test_node_channel_limit(node: Node) -> None:
    a = session(node)
    node.subscribe(a, "1")
    node.subscribe(a, "2")
    node.subscribe(a, "2")
    with pytest.raises(LimitExceeded):
        node.subscribe(a, "3")


def test_node_emit_and_send_data(node: Node) -> None:
    a, b = session(node), session(node)
    node.subscribe(a, "c")
    node.subscribe(b, "c")
    assert node.emit("c", {"x": 1}) == 2
    assert frames(a) == [{"jsonrpc": "2.0", "method": "message",
                          "params": {"channel": "c", "data": {"x": 1}, "ts": 42.0}}]
    assert node.send_data(a, "c", "hi") == 1
    assert frames(a) == [] and frames(b)[-1]["params"]["data"] == "hi"
    with pytest.raises(NotSubscribed):
        node.send_data(a, "other", 1)


def test_node_notify_all_and_stats(node: Node) -> None:
    a, b = session(node), session(node)
    node.subscribe(a, "z")
    node.subscribe(a, "c")
    assert node.notify_all("hey") == 2
    assert frames(b) == [{"jsonrpc": "2.0", "method": "broadcast", "params": {"data": "hey", "ts": 42.0}}]
    assert node.available_channels() == ["c", "z"]
    assert node.total_subscribers() == 2 and node.total_subscribers("c") == 1


def test_create_broker_rejects_unknown() -> None:
    assert isinstance(create_broker("memory"), MemoryBroker)
    with pytest.raises(ValueError, match="unsupported broker"):
        create_broker("nats://x")
