"""The Broker contract (rocketws/brokers/base.py), run against every implementation.

Each test drives one broker with a FakeNode as its handler, the way Node does: it
subscribes a channel before expecting its publications.  Deliveries may be asynchronous
(Redis), so tests poll with a deadline; "exactly once" is checked by publishing a marker
afterwards: per-channel order is part of the contract, so a duplicate would arrive first.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from rocketws.brokers import Broker, Control, MemoryBroker, Publication, create_broker
from rocketws.brokers.base import ClientInfo, PresenceStats

from .fakes import FakeNode
from .redis_fixtures import RedisServer
from .support import wait_in_hub


@pytest.fixture(params=["memory", "redis"])
def broker_and_node(
    request: pytest.FixtureRequest,
) -> Iterator[tuple[Broker, FakeNode]]:
    if request.param == "memory":
        broker: Broker = MemoryBroker()
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        broker = create_broker(f"{server.url}?prefix=contract-{uuid.uuid4().hex[:8]}:")
    node = FakeNode()
    broker.start(node)
    try:
        yield broker, node
    finally:
        broker.close()


def _marker(broker: Broker, node: FakeNode, channel: str | None) -> None:
    """Publish a marker on ``channel`` and wait until it is delivered."""
    mark = b'{"marker":"%s"}' % uuid.uuid4().hex.encode()
    broker.publish(Publication(channel, mark))
    wait_in_hub(lambda: mark in node.payloads(), what="marker delivery")
    node.delivered.remove(next(p for p in node.delivered if p.payload == mark))


def test_broker_delivers_channel_publication_exactly_once(broker_and_node: tuple[Broker, FakeNode]) -> None:
    broker, node = broker_and_node
    broker.subscribe("chat")
    pub = Publication("chat", b'{"n":1}')
    broker.publish(pub)
    wait_in_hub(lambda: node.delivered, what="delivery")
    _marker(broker, node, "chat")
    assert node.delivered == [pub]


def test_broker_delivers_broadcast_exactly_once(broker_and_node: tuple[Broker, FakeNode]) -> None:
    broker, node = broker_and_node
    pub = Publication(None, b'{"b":1}')
    broker.publish(pub)
    wait_in_hub(lambda: node.delivered, what="delivery")
    _marker(broker, node, None)
    assert node.delivered == [pub]


def test_broker_keeps_payload_bytes_skip_and_channel_name_exact(
    broker_and_node: tuple[Broker, FakeNode],
) -> None:
    broker, node = broker_and_node
    channel = "caf\u00e9 room:*?[x] \U0001f680"
    payload = '{"data":"line\\nbreak \u00e9 \U0001f600","ts":1.5}'.encode()
    broker.subscribe(channel)
    broker.publish(Publication(channel, payload, skip="session-1"))
    wait_in_hub(lambda: node.delivered, what="delivery")
    assert node.delivered == [Publication(channel, payload, "session-1")]


def test_broker_keeps_publication_order_per_channel(broker_and_node: tuple[Broker, FakeNode]) -> None:
    broker, node = broker_and_node
    broker.subscribe("order")
    payloads = [b'{"i":%d}' % i for i in range(200)]
    for payload in payloads:
        broker.publish(Publication("order", payload))
    wait_in_hub(lambda: len(node.delivered) >= len(payloads), what="200 deliveries")
    assert node.payloads("order") == payloads


def test_broker_publish_counts_subscribers_reached(broker_and_node: tuple[Broker, FakeNode]) -> None:
    broker, node = broker_and_node
    node.channels = {"chat": 3}
    node.connections = 5
    broker.subscribe("chat")
    assert broker.publish(Publication("chat", b"{}")) == 3
    assert broker.publish(Publication("chat", b"{}", skip="sender")) == 2
    assert broker.publish(Publication(None, b"{}")) == 5
    assert broker.publish(Publication("nobody", b"{}")) == 0


def test_broker_counts_reflect_local_subscribers(broker_and_node: tuple[Broker, FakeNode]) -> None:
    broker, node = broker_and_node
    node.channels = {"b": 1, "a": 2}
    node.connections = 4
    broker.subscribe("a")
    broker.subscribe("b")
    assert broker.channels() == ["a", "b"]
    assert broker.subscribers("a") == 2
    assert broker.subscribers("missing") == 0
    assert broker.subscribers() == 4


def test_broker_resubscribe_after_unsubscribe_still_delivers(
    broker_and_node: tuple[Broker, FakeNode],
) -> None:
    broker, node = broker_and_node
    broker.subscribe("churn")
    broker.unsubscribe("churn")
    broker.subscribe("churn")
    pub = Publication("churn", b'{"again":true}')
    broker.publish(pub)
    wait_in_hub(lambda: node.delivered, what="delivery")
    _marker(broker, node, "churn")
    assert node.delivered == [pub]


def test_broker_control_reaches_the_node_once_and_returns_its_count(
    broker_and_node: tuple[Broker, FakeNode],
) -> None:
    broker, node = broker_and_node
    node.users = {"alice": 2}
    control = Control("disconnect", "alice", code=4503, reason="bye")
    assert broker.control(control) == 2
    assert node.controls == [control]
    assert broker.control(Control("refresh", "nobody", expire_at=1.5)) == 0
    assert node.controls[1:] == [Control("refresh", "nobody", expire_at=1.5)]


# -- presence (namespaces with presence / join_leave) -------------------------------------

ALICE = ClientInfo("c-alice", "alice", {"name": "Alice", "n": 2**70}, None)
ALICE_2 = ClientInfo("c-alice-2", "alice", None, {"role": "mod"})
BOB = ClientInfo("c-bob", "bob", ["any", "json", 1.5], None)
ANON = ClientInfo("c-anon", "", None, None)


def _join(broker: Broker, node: FakeNode, channel: str, *entries: ClientInfo) -> None:
    for entry in entries:
        node.presence.setdefault(channel, {})[entry.client] = entry
        broker.presence_update(channel, entry.client)


def test_broker_presence_is_the_subscribers_with_their_info(broker_and_node: tuple[Broker, FakeNode]) -> None:
    broker, node = broker_and_node
    _join(broker, node, "room", ALICE, BOB, ANON)
    assert broker.presence("room") == {e.client: e for e in (ALICE, BOB, ANON)}
    assert broker.presence("elsewhere") == {}
    assert broker.presence_stats("elsewhere") == PresenceStats(0, 0)


def test_broker_presence_stats_counts_clients_and_distinct_users(
    broker_and_node: tuple[Broker, FakeNode],
) -> None:
    broker, node = broker_and_node
    _join(broker, node, "room", ALICE, ALICE_2, BOB, ANON)
    assert broker.presence_stats("room") == PresenceStats(num_clients=4, num_users=2)


def test_broker_presence_forgets_a_client_that_left(broker_and_node: tuple[Broker, FakeNode]) -> None:
    broker, node = broker_and_node
    _join(broker, node, "room", ALICE, BOB)
    del node.presence["room"][ALICE.client]
    broker.presence_update("room", ALICE.client)
    assert broker.presence("room") == {BOB.client: BOB}
    assert broker.presence_stats("room") == PresenceStats(1, 1)


def test_broker_publish_later_delivers_once_in_order(broker_and_node: tuple[Broker, FakeNode]) -> None:
    broker, node = broker_and_node
    broker.subscribe("room")
    later = [Publication("room", b'{"join":%d}' % i, skip="joiner") for i in range(3)]
    for publication in later:
        broker.publish_later(publication)
    wait_in_hub(lambda: len(node.delivered) >= 3, what="3 deliveries")
    _marker(broker, node, "room")
    assert node.delivered == later


# -- create_broker (rocketws/brokers/__init__.py) ---------------------------------------


def test_broker_reports_its_kind_id_and_state(broker_and_node: tuple[Broker, FakeNode]) -> None:
    broker, _ = broker_and_node
    assert broker.kind in ("memory", "redis") and broker.node_id
    assert broker.stats.connected is True
    broker.subscribe("observed")
    broker.publish(Publication("observed", b'{"n":1}'))
    assert broker.stats.errors == 0
    # A single node: no other node's info record (this node's own is left out).
    assert wait_in_hub(lambda: broker.nodes_info() == [] or None, what="no other node") is True


def test_create_broker_rejects_unknown() -> None:
    assert isinstance(create_broker("memory"), MemoryBroker)
    with pytest.raises(ValueError, match="unsupported broker"):
        create_broker("nats://x")
