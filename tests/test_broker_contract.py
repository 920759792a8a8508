"""The Broker contract (rocketws/brokers/base.py), run against every implementation.

Each test drives one broker with a FakeNode as its handler, the way Node does: it
subscribes a channel before expecting its publications.  Deliveries may be asynchronous
(Redis), so tests poll with a deadline; "exactly once" is checked by publishing a marker
afterwards: per-channel order is part of the contract, so a duplicate would arrive first.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from rocketws.brokers import Broker, Control, MemoryBroker, Publication, create_broker
from rocketws.brokers.base import ClientInfo, Emit, Position, PresenceStats, Published, Stream
from rocketws.core import jsonrpc
from rocketws.core.channels import Namespace, Namespaces
from rocketws.core.hub import Hub
from rocketws.core.jsonrpc import encode_message_push
from rocketws.core.node import Node
from rocketws.core.session import Session
from rocketws.core.streams import HistorySettings, publication_of

from .fakes import FakeNode, RecordingOutlet
from .redis_fixtures import RedisServer
from .support import wait_in_hub
from .wsraw import split_frames


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


def test_broker_mixed_batch_keeps_its_order_and_answers_each(
    broker_and_node: tuple[Broker, FakeNode],
) -> None:
    broker, node = broker_and_node
    node.channels = {"p": 2, "h": 1}
    node.connections = 3
    broker.subscribe("p")
    broker.subscribe("h")
    emits = [
        _emit("p", 0, stream=None),
        _emit("p", 1, stream=None),
        _emit("h", 2),
        Emit(Publication(None, b'{"b":3}')),
        _emit("p", 4, stream=None),
    ]
    answers = _published(broker, emits)
    assert [a.delivered for a in answers] == [2, 2, 1, 3, 2]
    assert [a.offset for a in answers] == [0, 0, 1, 0, 0]
    wait_in_hub(lambda: len(node.delivered) == 5, what="5 deliveries")
    order = [
        p.payload if p.channel is None else publication_of(p.payload)["data"]["n"] for p in node.delivered
    ]
    assert order == [0, 1, 2, b'{"b":3}', 4]  # one order across channels: the batch's


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


# -- recovery through a real Node, on both brokers (core/node.py _join_stream) ---------------


@pytest.fixture(params=["memory", "redis"])
def history_node(request: pytest.FixtureRequest) -> Iterator[Node]:
    if request.param == "memory":
        broker: Broker = MemoryBroker()
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        broker = create_broker(f"{server.url}?prefix=recover-{uuid.uuid4().hex[:8]}:")
    namespaces = Namespaces([Namespace("h", history_size=100, history_ttl=60.0)], allow_unknown=True)
    node = Node(Hub(), broker, namespaces=namespaces, history=HistorySettings(100, 1000, 5))
    node.start()
    try:
        yield node
    finally:
        node.close()


def _pushed(session: Session) -> list[Any]:
    frames, rest = split_frames(session.take())
    assert rest == b""
    return [json.loads(payload)["params"] for _, payload in frames]


def test_node_recovery_is_exact_on_every_broker(history_node: Node) -> None:
    node = history_node
    first = node.publish("h:r", 1)
    for n in range(2, 6):
        node.publish("h:r", n)
    session = Session(RecordingOutlet(), 1 << 20)
    node.connect(session)
    answer = node.subscribe_client(session, "h:r", recover=Position(2, first.epoch))
    assert answer["recovered"] is True and (answer["offset"], answer["epoch"]) == (5, first.epoch)
    assert [json.loads(jsonrpc.dumps(p))["data"] for p in answer["publications"]] == [3, 4, 5]
    node.publish("h:r", 6)
    got: list[Any] = []

    def received(count: int) -> bool:
        got.extend(_pushed(session))
        return len(got) >= count

    wait_in_hub(lambda: received(1), what="the live push after the recovery")
    node.publish("h:r", 7)
    wait_in_hub(lambda: received(2), what="a second live push")
    assert [(p["offset"], p["data"]) for p in got] == [(6, 6), (7, 7)]  # nothing twice, nothing skipped
    # too many missed (the cap is 5), or another epoch: never a partial answer
    late = Session(RecordingOutlet(), 1 << 20)
    node.connect(late)
    assert node.subscribe_client(late, "h:r", recover=Position(1, first.epoch)) == {
        "recovered": False,
        "epoch": first.epoch,
        "offset": 7,
        "publications": [],
    }
