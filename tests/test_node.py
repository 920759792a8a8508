"""Unit tests of the Node with the memory broker (pure core)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rocketws.brokers import MemoryBroker, Publication
from rocketws.core.channels import Namespace, Namespaces
from rocketws.core.exceptions import LimitExceeded, NotAllowed, NotSubscribed
from rocketws.core.hub import Hub
from rocketws.core.node import Node
from rocketws.core.session import Session

from .fakes import RecordingOutlet
from .wsraw import split_frames


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
    s = Session(RecordingOutlet(), 1 << 20)
    node.connect(s)
    return s


def frames(s: Session) -> list[Any]:
    """The JSON documents of the text frames queued on ``s``."""
    parsed, rest = split_frames(s.take())
    assert rest == b"" and all(opcode == 0x1 for opcode, _ in parsed)
    return [json.loads(payload) for _, payload in parsed]


def test_node_broker_subscribe_on_first_unsubscribe_on_last(node: Node) -> None:
    a, b = session(node), session(node)
    node.subscribe(a, "c")
    node.subscribe(b, "c")
    node.unsubscribe(a, "c")
    node.disconnect(b)
    assert isinstance(node.broker, RecordingBroker)
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
    assert frames(a) == [
        {"jsonrpc": "2.0", "method": "message", "params": {"channel": "c", "data": {"x": 1}, "ts": 42.0}}
    ]
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


def test_node_namespace_without_send_data_refuses_it_before_the_subscription_check() -> None:
    rules = Namespaces([Namespace("news", allow_send_data=False)], allow_unknown=True)
    node = Node(Hub(), RecordingBroker(), namespaces=rules)
    node.start()
    s = session(node)
    node.subscribe(s, "news:sport")
    with pytest.raises(NotAllowed) as info:
        node.send_data(s, "news:sport", "hi")
    assert info.value.data == {
        "channel": "news:sport",
        "namespace": "news",
        "reason": "send_data is disabled in namespace 'news'",
    }
    with pytest.raises(NotAllowed):
        node.send_data(s, "news:other", "hi")  # not subscribed: the namespace rule answers first
    node.subscribe(s, "chat")
    assert node.send_data(s, "chat", "hi") == 0  # other namespaces keep send_data


def test_node_unknown_namespace_refused_on_subscribe() -> None:
    broker = RecordingBroker()
    node = Node(Hub(), broker, namespaces=Namespaces([Namespace("news")], allow_unknown=False))
    s = session(node)
    with pytest.raises(NotAllowed):
        node.subscribe(s, "x:y")
    assert s.channels == set() and broker.calls == []
    node.subscribe(s, "news:a")
    node.subscribe(s, "lobby")
    assert s.channels == {"news:a", "lobby"}
