"""Unit tests of the Node with the memory broker (pure core)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rocketws.brokers import Control, MemoryBroker, Publication
from rocketws.core.channels import Namespace, Namespaces
from rocketws.core.codes import RpcCode
from rocketws.core.deflate import Deflater
from rocketws.core.exceptions import AuthFailed, LimitExceeded, NotAllowed, NotSubscribed, PermissionDenied
from rocketws.core.framing import text_frame
from rocketws.core.hub import Hub
from rocketws.core.node import Node
from rocketws.core.session import DeflateSession, Session

from .fakes import RecordingOutlet
from .wsraw import inflate_message, split_frames, split_frames_with_bits


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


# -- permessage-deflate: a publication is compressed once, and only when someone can use it --


class CountingDeflater(Deflater):
    """The real Deflater, counting the messages it compresses."""

    def __init__(self) -> None:
        super().__init__()
        self.compressed = 0

    def compress(self, payload: bytes) -> bytes:
        self.compressed += 1
        return super().compress(payload)


def deflate_node() -> tuple[Node, CountingDeflater]:
    deflater = CountingDeflater()
    n = Node(Hub(), RecordingBroker(), max_channels_per_connection=2, clock=lambda: 42.0, deflater=deflater)
    n.start()
    return n, deflater


def sessions(node: Node, count: int, *, deflate: bool, channel: str | None = "c") -> list[Session]:
    out = []
    for _ in range(count):
        s = (DeflateSession if deflate else Session)(RecordingOutlet(), 1 << 20)
        node.connect(s)
        if channel is not None:
            node.subscribe(s, channel)
        out.append(s)
    return out


BIG = {"rows": [{"id": i, "name": f"item {i}", "price": 10.5 + i} for i in range(30)]}


def test_node_compresses_a_publication_once_for_1000_compressed_subscribers() -> None:
    node, deflater = deflate_node()
    subs = sessions(node, 1000, deflate=True)
    assert node.emit("c", BIG) == 1000
    assert deflater.compressed == 1
    queued = [s.take() for s in subs]
    assert len({id(frame) for frame in queued}) == 1  # the very same bytes in every outbox
    ((first, payload),), _ = split_frames_with_bits(queued[0])
    assert first == 0xC1 and json.loads(inflate_message(payload))["params"]["data"] == BIG


def test_node_never_compresses_for_uncompressed_subscribers() -> None:
    node, deflater = deflate_node()
    plain = sessions(node, 1000, deflate=False)
    sessions(node, 3, deflate=True, channel="other")  # compressed, but not subscribed to c
    assert node.emit("c", BIG) == 1000
    assert deflater.compressed == 0
    assert frames(plain[0])[0]["params"]["data"] == BIG


def test_node_mixed_subscribers_get_the_frame_they_negotiated() -> None:
    node, deflater = deflate_node()
    (plain,) = sessions(node, 1, deflate=False)
    (packed,) = sessions(node, 1, deflate=True)
    assert node.emit("c", BIG) == 2
    assert deflater.compressed == 1
    assert frames(plain)[0]["params"]["data"] == BIG
    ((first, payload),), rest = split_frames_with_bits(packed.take())
    assert first == 0xC1 and rest == b""  # FIN, RSV1 (RFC 7692 6), text
    assert json.loads(inflate_message(payload))["params"]["data"] == BIG


def test_node_notify_all_compresses_once_and_only_with_compressed_sessions() -> None:
    node, deflater = deflate_node()
    plain = sessions(node, 5, deflate=False, channel=None)
    assert node.notify_all(BIG) == 5 and deflater.compressed == 0
    packed = sessions(node, 5, deflate=True, channel=None)
    assert node.notify_all(BIG) == 10 and deflater.compressed == 1
    assert split_frames_with_bits(packed[0].take())[0][0][0] == 0xC1
    assert all(opcode == 0x1 for opcode, _ in split_frames(plain[0].take())[0])
    for s in packed:
        node.disconnect(s)
    assert node.notify_all(BIG) == 5 and deflater.compressed == 1  # none left: not compressed


def test_node_stops_compressing_when_the_last_compressed_subscriber_leaves() -> None:
    node, deflater = deflate_node()
    sessions(node, 2, deflate=False)
    packed = sessions(node, 2, deflate=True)
    node.unsubscribe(packed[0], "c")
    node.disconnect(packed[1])
    node.subscribe(packed[0], "c")
    node.unsubscribe(packed[0], "c")
    assert node.emit("c", BIG) == 2 and deflater.compressed == 0


def test_node_reply_frame_is_compressed_for_compressed_sessions_only() -> None:
    node, deflater = deflate_node()
    (plain,) = sessions(node, 1, deflate=False)
    (packed,) = sessions(node, 1, deflate=True)
    body = json.dumps({"jsonrpc": "2.0", "result": BIG, "id": 1}).encode()
    assert node.reply_frame(plain, body) == text_frame(body)
    first, payload = split_frames_with_bits(node.reply_frame(packed, body))[0][0]
    assert first == 0xC1 and inflate_message(payload) == body


# -- presence and join/leave (issue 11) ---------------------------------------------------

PRESENCE_NAMESPACES = Namespaces(
    (
        Namespace("room", presence=True, join_leave=True),
        Namespace("quiet", presence=True),
        Namespace("feed", join_leave=True),
        Namespace("staff", presence=True, allow_presence="authenticated"),
        Namespace("backend", presence=True, allow_presence=False),
    ),
    allow_unknown=True,
)


@pytest.fixture
def pnode() -> Node:
    n = Node(Hub(), MemoryBroker(), namespaces=PRESENCE_NAMESPACES, clock=lambda: 42.0)
    n.start()
    return n


def person(node: Node, user: str, info: Any = None) -> Session:
    s = session(node)
    node.identify(s, user)
    s.info = info
    return s


def test_node_presence_lists_subscribers_with_user_and_info(pnode: Node) -> None:
    alice, anon = person(pnode, "alice", {"name": "Alice"}), person(pnode, "")
    pnode.subscribe(alice, "room:1")
    pnode.subscribe(anon, "room:1")
    entries = pnode.presence("room:1")
    assert {c: e.as_json() for c, e in entries.items()} == {
        alice.id: {"client": alice.id, "user": "alice", "info": {"name": "Alice"}, "chan_info": None},
        anon.id: {"client": anon.id, "user": "", "info": None, "chan_info": None},
    }
    assert tuple(pnode.presence_stats("room:1", alice)) == (2, 1)
    pnode.unsubscribe(alice, "room:1")
    assert list(pnode.presence("room:1")) == [anon.id]
    pnode.disconnect(anon)
    assert pnode.presence("room:1") == {}


def test_node_join_and_leave_reach_the_others_not_the_mover(pnode: Node) -> None:
    alice, bob = person(pnode, "alice", {"n": 1}), person(pnode, "bob")
    pnode.subscribe(alice, "room:1")
    pnode.subscribe(bob, "room:1")
    assert frames(alice) == [
        {
            "jsonrpc": "2.0",
            "method": "join",
            "params": {"channel": "room:1", "client": bob.id, "user": "bob", "info": None, "chan_info": None},
        }
    ]
    assert frames(bob) == []  # the joiner has its subscribe answer
    pnode.unsubscribe(bob, "room:1")
    assert [f["method"] for f in frames(alice)] == ["leave"]
    pnode.subscribe(bob, "room:1")
    frames(alice)
    pnode.disconnect(alice)  # a disconnect leaves every channel
    assert [(f["method"], f["params"]["client"]) for f in frames(bob)] == [("leave", alice.id)]


def test_node_join_leave_without_presence_and_presence_without_pushes(pnode: Node) -> None:
    alice, bob = person(pnode, "alice"), person(pnode, "bob")
    for channel in ("feed:x", "quiet:x", "plain"):
        pnode.subscribe(alice, channel)
        pnode.subscribe(bob, channel)
    assert [(f["method"], f["params"]["channel"]) for f in frames(alice)] == [("join", "feed:x")]
    with pytest.raises(NotAllowed):
        pnode.presence("feed:x")  # join_leave alone keeps no presence
    with pytest.raises(NotAllowed):
        pnode.presence("plain")
    assert len(pnode.presence("quiet:x")) == 2


def test_node_server_side_subscriptions_join_too(pnode: Node) -> None:
    alice, bob = person(pnode, "alice"), person(pnode, "bob")
    pnode.subscribe(alice, "room:1")
    assert pnode.control(Control("subscribe", "bob", "room:1")) == 1
    assert [f["method"] for f in frames(alice)] == ["join"]
    assert bob.id in pnode.presence("room:1")
    assert pnode.control(Control("unsubscribe", "bob", "room:1")) == 1
    assert [f["method"] for f in frames(alice)] == ["leave"]


def test_node_client_presence_follows_allow_presence(pnode: Node) -> None:
    alice, anon = person(pnode, "alice"), person(pnode, "")
    with pytest.raises(NotSubscribed):
        pnode.presence("room:1", alice)  # subscribers only, by default
    pnode.subscribe(alice, "room:1")
    assert list(pnode.presence("room:1", alice)) == [alice.id]
    assert pnode.presence("staff:x", alice) == {}  # authenticated: no subscription needed
    with pytest.raises(PermissionDenied):
        pnode.presence_stats("staff:x", anon)
    pnode.subscribe(alice, "backend:x")
    with pytest.raises(NotAllowed):
        pnode.presence("backend:x", alice)  # backends only
    assert list(pnode.presence("backend:x")) == [alice.id]


def test_node_channels_without_presence_track_nothing(pnode: Node) -> None:
    alice = person(pnode, "alice")
    pnode.subscribe(alice, "plain")
    assert pnode.presence_channels() == [] and pnode.local_presence("plain") == {}
    pnode.disconnect(alice)


def test_node_admit_user_limits_each_users_connections_not_anonymous_ones() -> None:
    node = Node(Hub(), MemoryBroker(), max_connections_per_user=2)
    node.start()
    first, second, third = session(node), session(node), session(node)
    node.admit_user(first, "alice")
    node.admit_user(second, "alice")
    with pytest.raises(AuthFailed) as info:
        node.admit_user(third, "alice")
    assert info.value.code == RpcCode.TOO_MANY_CONNECTIONS and int(info.value.code) == -32016
    assert info.value.close is not None and info.value.close.code == 4013 and info.value.close.reconnect
    assert third.user == "" and node.hub.user_connections("alice") == 2  # nothing changed
    node.admit_user(third, "bob")  # another user has slots of their own
    for _ in range(3):
        node.admit_user(session(node), "")  # anonymous: never limited
    node.disconnect(first)  # a released connection frees its slot
    node.admit_user(session(node), "alice")
    assert node.hub.user_connections("alice") == 2


def test_node_without_a_per_user_limit_admits_any_number() -> None:
    node = Node(Hub(), MemoryBroker())
    for _ in range(50):
        node.admit_user(session(node), "alice")
    assert node.hub.user_connections("alice") == 50


# -- write_delay -------------------------------------------------------------------------


def test_node_write_delay_per_namespace_and_global_reach_sessions() -> None:
    namespaces = Namespaces(
        [Namespace("slow", write_delay=0.02), Namespace("now", write_delay=0.0)],
        allow_unknown=True,
        write_delay=0.005,
    )
    n = Node(Hub(), MemoryBroker(), namespaces=namespaces, clock=lambda: 42.0)
    n.start()
    expected = {"slow:a": 0.02, "now:a": None, "other:a": 0.005, "plain": 0.005}
    for channel, delay in expected.items():
        s = session(n)
        outlet = s._outlet
        assert isinstance(outlet, RecordingOutlet)
        n.subscribe(s, channel)
        n.emit(channel, 1)
        n.emit(channel, 2)
        if delay is None:
            assert outlet.wakes == 1 and outlet.later == [], channel
        else:
            assert outlet.wakes == 0 and outlet.later == [delay], channel
        assert [f["params"]["data"] for f in frames(s)] == [1, 2]
        n.disconnect(s)
    s = session(n)
    n.notify_all("all")
    outlet = s._outlet
    assert isinstance(outlet, RecordingOutlet) and outlet.later == [0.005]


def test_node_write_delay_default_off_wakes_at_once() -> None:
    n = Node(Hub(), MemoryBroker(), clock=lambda: 42.0)
    n.start()
    assert not n.namespaces.delays
    s = session(n)
    n.subscribe(s, "c")
    n.emit("c", 1)
    outlet = s._outlet
    assert isinstance(outlet, RecordingOutlet) and outlet.wakes == 1 and outlet.later == []


def test_node_write_delay_with_deflate_queues_each_session_its_frame() -> None:
    namespaces = Namespaces([], allow_unknown=True, write_delay=0.005)
    n = Node(Hub(), MemoryBroker(), namespaces=namespaces, clock=lambda: 42.0, deflater=Deflater())
    n.start()
    plain, packed = session(n), DeflateSession(RecordingOutlet(), 1 << 20)
    n.connect(packed)
    for s in (plain, packed):
        n.subscribe(s, "c")
    n.emit("c", "x" * 500)
    assert frames(plain)[0]["params"]["data"] == "x" * 500
    parsed, rest = split_frames_with_bits(packed.take())
    assert len(parsed) == 1 and parsed[0][0] & 0x40 and rest == b""  # RSV1: compressed
    assert json.loads(inflate_message(parsed[0][1]))["params"]["data"] == "x" * 500
