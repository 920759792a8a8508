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
from rocketws.brokers.base import Emit, Position, Published, Stream
from rocketws.core.jsonrpc import encode_message_push
from rocketws.core.streams import publication_of

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


# -- history, recovery and idempotency (issue 11) ----------------------------------------

STREAM = Stream(size=5, ttl=60.0)


def _emit(channel: str, n: int, key: str | None = None, stream: Stream | None = STREAM) -> Emit:
    return Emit(Publication(channel, encode_message_push(channel, {"n": n}, 1.5)), stream, key)


def _published(broker: Broker, emits: list[Emit]) -> list[Published]:
    answers = broker.publish_many(emits)
    assert not [a for a in answers if isinstance(a, Exception)], answers
    return [a for a in answers if isinstance(a, Published)]


def test_broker_stream_gives_offsets_in_order_and_pushes_carry_them(
    broker_and_node: tuple[Broker, FakeNode],
) -> None:
    broker, node = broker_and_node
    node.channels = {"h": 2}
    broker.subscribe("h")
    answers = _published(broker, [_emit("h", i) for i in range(3)])  # one batch
    epoch = answers[0].epoch
    assert epoch and [a.offset for a in answers] == [1, 2, 3]
    assert {a.epoch for a in answers} == {epoch} and all(a.delivered == 2 for a in answers)
    wait_in_hub(lambda: len(node.delivered) == 3, what="3 deliveries")
    assert [(p.offset, p.epoch) for p in node.delivered] == [(1, epoch), (2, epoch), (3, epoch)]
    first = publication_of(node.delivered[0].payload)
    assert first == {"channel": "h", "data": {"n": 0}, "ts": 1.5, "offset": 1, "epoch": epoch}
    assert _published(broker, [_emit("h", 3)])[0].offset == 4  # a later round trip continues


def test_broker_channel_without_stream_is_delivered_byte_for_byte(
    broker_and_node: tuple[Broker, FakeNode],
) -> None:
    broker, node = broker_and_node
    broker.subscribe("plain")
    emit = _emit("plain", 1, stream=None)
    assert _published(broker, [emit]) == [Published(0)]
    wait_in_hub(lambda: node.delivered, what="delivery")
    assert node.delivered == [emit.publication]  # offset 0, epoch "": the payload untouched


def test_broker_history_reads_since_limit_and_reverse(broker_and_node: tuple[Broker, FakeNode]) -> None:
    broker, _node = broker_and_node
    answers = _published(broker, [_emit("h", i) for i in range(4)])
    epoch = answers[0].epoch
    full = broker.history("h", None, 100)
    assert (full.offset, full.epoch) == (4, epoch)
    assert [o for o, _ in full.publications] == [1, 2, 3, 4]
    assert publication_of(full.publications[2][1])["data"] == {"n": 2}
    assert [o for o, _ in broker.history("h", Position(2, epoch), 100).publications] == [3, 4]
    assert [o for o, _ in broker.history("h", Position(1, epoch), 2).publications] == [2, 3]
    assert [o for o, _ in broker.history("h", None, 2, reverse=True).publications] == [4, 3]
    assert [o for o, _ in broker.history("h", Position(2, epoch), 9, reverse=True).publications] == [4, 3]
    top = broker.history("h", None, 0)
    assert (top.publications, top.offset, top.epoch) == ([], 4, epoch)
    other = broker.history("h", Position(1, "another-epoch"), 100)
    assert (other.publications, other.offset, other.epoch) == ([], 4, epoch)


def test_broker_history_keeps_at_most_size(broker_and_node: tuple[Broker, FakeNode]) -> None:
    broker, _node = broker_and_node
    _published(broker, [_emit("h", i) for i in range(STREAM.size + 3)])
    read = broker.history("h", None, 100)
    assert [o for o, _ in read.publications] == [4, 5, 6, 7, 8] and read.offset == 8


def test_broker_history_expires_after_ttl_but_offsets_continue(
    broker_and_node: tuple[Broker, FakeNode],
) -> None:
    broker, _node = broker_and_node
    short = Stream(size=10, ttl=0.3)
    first = _published(broker, [_emit("h", 1, stream=short)])[0]
    wait_in_hub(lambda: not broker.history("h", None, 10).publications, timeout=5, what="expiry")
    read = broker.history("h", None, 10)
    assert (read.offset, read.epoch) == (1, first.epoch)  # the meta outlives the publications
    assert _published(broker, [_emit("h", 2, stream=short)])[0][1:] == (2, first.epoch)


def test_broker_epoch_is_fixed_by_a_read_before_any_publication(
    broker_and_node: tuple[Broker, FakeNode],
) -> None:
    broker, _node = broker_and_node
    before = broker.history("fresh", None, 0)
    assert before.offset == 0 and before.epoch
    assert _published(broker, [_emit("fresh", 1)])[0][1:] == (1, before.epoch)
    assert broker.history("fresh", None, 0).epoch == before.epoch
    assert broker.history("another", None, 0).epoch != before.epoch  # per channel


def test_broker_idempotency_key_publishes_once_and_answers_the_first_result(
    broker_and_node: tuple[Broker, FakeNode],
) -> None:
    broker, node = broker_and_node
    node.channels = {"h": 1, "plain": 1}
    broker.subscribe("h")
    broker.subscribe("plain")
    first = _published(broker, [_emit("h", 1, key="k1"), _emit("plain", 1, key="k1", stream=None)])
    node.channels = {"h": 7, "plain": 7}  # a repeat answers the first count, not a new one
    again = _published(
        broker, [_emit("h", 99, key="k1"), _emit("plain", 99, key="k1", stream=None), _emit("h", 2, key="k2")]
    )
    assert again[:2] == first and first[0] == Published(1, 1, first[0].epoch) and first[1] == Published(1)
    assert again[2].offset == 2
    _marker(broker, node, "h")
    _marker(broker, node, "plain")
    data = [publication_of(p.payload)["data"] for p in node.delivered]
    assert sorted(data, key=str) == sorted([{"n": 1}, {"n": 1}, {"n": 2}], key=str)  # 99 never published
    assert [o for o, _ in broker.history("h", None, 10).publications] == [1, 2]


# -- create_broker (rocketws/brokers/__init__.py) ---------------------------------------


def test_create_broker_rejects_unknown() -> None:
    assert isinstance(create_broker("memory"), MemoryBroker)
    with pytest.raises(ValueError, match="unsupported broker"):
        create_broker("nats://x")
