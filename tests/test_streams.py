"""Unit tests of rocketws/core/streams.py and the Node's history paths (memory broker)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rocketws.brokers import MemoryBroker, Publication
from rocketws.brokers.base import Position, Published, Stream, StreamLimits
from rocketws.brokers.memory_streams import ENTRY_OVERHEAD, STREAM_OVERHEAD, MemoryStreams
from rocketws.core import jsonrpc
from rocketws.core.channels import Namespace, Namespaces
from rocketws.core.codes import CloseCode
from rocketws.core.exceptions import InvalidParams, NotAllowed
from rocketws.core.hub import Hub
from rocketws.core.jsonrpc import encode_message_push
from rocketws.core.node import Node
from rocketws.core.session import Session
from rocketws.core.streams import (
    HistorySettings,
    idempotency_key_param,
    position_param,
    publication_fragment,
    publication_of,
    recover,
    with_position,
)

from .fakes import RecordingOutlet
from .wsraw import split_frames

# -- pure helpers -------------------------------------------------------------------------


def test_with_position_adds_offset_and_epoch_as_last_params() -> None:
    push = encode_message_push("c", {"x": [1, "}}"]}, 2.5)
    spliced = with_position(push, 7, "ab12")
    assert json.loads(spliced) == {
        "jsonrpc": "2.0",
        "method": "message",
        "params": {"channel": "c", "data": {"x": [1, "}}"]}, "ts": 2.5, "offset": 7, "epoch": "ab12"},
    }
    assert publication_of(spliced) == json.loads(spliced)["params"]


def test_publication_of_keeps_big_integers_exact() -> None:
    spliced = with_position(encode_message_push("c", 2**70, 1.0), 1, "e")
    assert publication_of(spliced)["data"] == 2**70


@pytest.mark.parametrize(
    "value",
    [None, 5, {"offset": 1}, {"offset": -1, "epoch": "e"}, {"offset": True, "epoch": "e"},
     {"offset": 1, "epoch": 3}, {"offset": 1, "epoch": "e" * 65}, {"offset": 1, "epoch": "e", "x": 1}],
)  # fmt: skip
def test_position_param_refuses_bad_values(value: Any) -> None:
    with pytest.raises(InvalidParams) as caught:
        position_param(value, "recover")
    data = caught.value.data
    assert data is not None and data["param"] == "recover" and data["reason"]


def test_position_param_and_idempotency_key_accept_good_values() -> None:
    assert position_param({"offset": 0, "epoch": ""}, "since") == Position(0, "")
    assert idempotency_key_param(None) is None and idempotency_key_param("k") == "k"
    for bad in ("", "x" * 256, 5):
        with pytest.raises(InvalidParams):
            idempotency_key_param(bad)


def _pubs(*offsets: int) -> list[tuple[int, bytes]]:
    return [(o, b"p%d" % o) for o in offsets]


def test_recover_merges_history_and_live_sorted_without_duplicates() -> None:
    live = [(4, "e", b"p4"), (5, "e", b"p5"), (3, "e", b"p3")]
    result = recover(Position(1, "e"), _pubs(2, 3, 4), 4, "e", live, cap=10)
    assert result.recovered and result.publications == _pubs(2, 3, 4, 5)
    assert (result.offset, result.epoch) == (5, "e")


def test_recover_nothing_missed_is_recovered_and_empty() -> None:
    assert recover(Position(4, "e"), [], 4, "e", [], cap=10) == (True, [], 4, "e")


@pytest.mark.parametrize(
    ("since", "history", "top", "live", "why"),
    [
        (Position(1, "e"), _pubs(3, 4), 4, [], "offset 2 trimmed away: a gap"),
        (Position(1, "old"), _pubs(2, 3), 3, [], "another epoch"),
        (Position(9, "e"), [], 4, [], "an offset beyond the top"),
        (Position(1, "e"), _pubs(2), 2, [(4, "e", b"p4")], "a gap between the read and the live stream"),
        (Position(0, "e"), _pubs(*range(1, 13)), 12, [], "more than the cap"),
    ],
)
def test_recover_is_never_partial(
    since: Position, history: list[tuple[int, bytes]], top: int, live: list[tuple[int, str, bytes]], why: str
) -> None:
    result = recover(since, history, top, "e", live, cap=10)
    assert not result.recovered and result.publications == [], why
    assert result.epoch == "e" and result.offset == max([top] + [o for o, _, _ in live])


def test_recover_epoch_change_during_the_read_is_not_recovered() -> None:
    result = recover(Position(1, "e"), _pubs(2), 2, "e", [(1, "new", b"n1")], cap=10)
    assert result == (False, [], 1, "new")


# -- the memory broker's store: bounds ----------------------------------------------------


def test_memory_streams_global_cap_drops_least_recently_published_first() -> None:
    payload = with_position(encode_message_push("c", "x" * 100, 1.0), 1, "e" * 8)  # epochs: 8 hex digits
    per_entry = len(payload) + ENTRY_OVERHEAD
    cap = 2 * STREAM_OVERHEAD + 6 * per_entry
    store = MemoryStreams(StreamLimits(memory_max_bytes=cap), clock=lambda: 0.0)
    options = Stream(100, 60.0)
    for _ in range(4):
        store.append("old", options, encode_message_push("c", "x" * 100, 1.0))
    for _ in range(4):
        store.append("new", options, encode_message_push("c", "x" * 100, 1.0))
    assert store.counted <= cap
    old = store.read("old", None, 100, False)
    assert [o for o, _ in old.publications] == [3, 4]  # its oldest went first
    assert len(store.read("new", None, 100, False).publications) == 4


def test_memory_streams_idempotency_keys_are_bounded_and_expire() -> None:
    now = [0.0]
    store = MemoryStreams(StreamLimits(idempotency_window=10.0, idempotency_max_keys=2), clock=lambda: now[0])
    for key in ("a", "b", "c"):
        store.remember("ch", key, Published(1))
    assert store.remembered("ch", "a") is None  # over the bound: the oldest forgotten
    assert store.remembered("ch", "c") == Published(1)
    now[0] = 11.0
    assert store.remembered("ch", "c") is None  # the window passed


# -- the Node (memory broker) ---------------------------------------------------------------

HISTORY_NS = Namespaces([Namespace("h", history_size=50, history_ttl=60.0)], allow_unknown=True)


@pytest.fixture
def node() -> Node:
    n = Node(
        Hub(), MemoryBroker(), namespaces=HISTORY_NS, clock=lambda: 1.0, history=HistorySettings(100, 200, 5)
    )
    n.start()
    return n


def session(node: Node) -> Session:
    s = Session(RecordingOutlet(), 1 << 20)
    node.connect(s)
    return s


def pushes(s: Session) -> list[Any]:
    parsed, rest = split_frames(s.take())
    assert rest == b""
    return [json.loads(payload)["params"] for _, payload in parsed]


def decoded(answer: dict[str, Any]) -> list[Any]:
    """The publications of a history or recovery answer (encoded JSON fragments)."""
    return [json.loads(jsonrpc.dumps(p)) for p in answer["publications"]]


def test_answer_fragments_are_copied_verbatim_and_survive_the_stdlib_fallback() -> None:
    push = with_position(encode_message_push("c", {"big": 2**70}, 1.0), 3, "e")
    answer = {"publications": [publication_fragment(push)], "n": 2**65}  # 2**65: orjson refuses
    assert json.loads(jsonrpc.dumps(answer)) == {
        "publications": [{"channel": "c", "data": {"big": 2**70}, "ts": 1.0, "offset": 3, "epoch": "e"}],
        "n": 2**65,
    }
    small = {"publications": [publication_fragment(with_position(encode_message_push("c", 1, 1.0), 1, "e"))]}
    assert (
        jsonrpc.dumps(small) == b'{"publications":[{"channel":"c","data":1,"ts":1.0,"offset":1,"epoch":"e"}]}'
    )


def test_node_channel_without_history_is_as_before(node: Node) -> None:
    s = session(node)
    assert node.subscribe_client(s, "plain") == {}
    assert node.publish("plain", 1) == (1, 0, "")
    assert pushes(s) == [{"channel": "plain", "data": 1, "ts": 1.0}]
    with pytest.raises(NotAllowed):
        node.subscribe_client(session(node), "plain2", recover=Position(0, "e"))
    with pytest.raises(NotAllowed):
        node.history("plain", None, None, False)


def test_node_subscribe_answers_position_and_pushes_carry_offsets(node: Node) -> None:
    first = node.publish("h:a", "before")
    s = session(node)
    answer = node.subscribe_client(s, "h:a")
    assert answer == {"epoch": first.epoch, "offset": 1}
    published = node.publish("h:a", "after")
    assert published.offset == 2 and published.delivered == 1
    assert pushes(s) == [{"channel": "h:a", "data": "after", "ts": 1.0, "offset": 2, "epoch": first.epoch}]


def test_node_send_data_on_a_history_channel_gets_an_offset(node: Node) -> None:
    sender, reader = session(node), session(node)
    epoch = node.subscribe_client(sender, "h:a")["epoch"]
    node.subscribe_client(reader, "h:a")
    assert node.send(sender, "h:a", "hi") == (1, 1, epoch)
    assert pushes(reader) == [{"channel": "h:a", "data": "hi", "ts": 1.0, "offset": 1, "epoch": epoch}]
    assert pushes(sender) == []  # the sender is skipped, as without history


def test_node_recovers_exactly_what_was_missed(node: Node) -> None:
    s = session(node)
    epoch = node.subscribe_client(s, "h:a")["epoch"]
    node.publish("h:a", 1)
    node.disconnect(s)
    for n in range(2, 5):
        node.publish("h:a", n)
    again = session(node)
    answer = node.subscribe_client(again, "h:a", recover=Position(1, epoch))
    assert answer["recovered"] is True and (answer["epoch"], answer["offset"]) == (epoch, 4)
    assert [p["data"] for p in decoded(answer)] == [2, 3, 4]
    assert [p["offset"] for p in decoded(answer)] == [2, 3, 4]
    node.publish("h:a", 5)
    assert [p["offset"] for p in pushes(again)] == [5]  # live from there on, nothing twice


def test_node_recovery_over_the_cap_or_other_epoch_is_not_recovered(node: Node) -> None:
    epoch = node.publish("h:a", 0).epoch
    for n in range(6):  # the cap is 5
        node.publish("h:a", n)
    answer = node.subscribe_client(session(node), "h:a", recover=Position(1, epoch))
    assert answer == {"recovered": False, "epoch": epoch, "offset": 7, "publications": []}
    other = node.subscribe_client(session(node), "h:a", recover=Position(6, "gone"))
    assert other == {"recovered": False, "epoch": epoch, "offset": 7, "publications": []}


def test_node_history_limits(node: Node) -> None:
    for n in range(3):
        node.publish("h:a", n)
    read = node.history("h:a", None, None, False)
    assert [p["data"] for p in decoded(read)] == [0, 1, 2] and read["offset"] == 3
    assert [p["data"] for p in decoded(node.history("h:a", None, 2, True))] == [2, 1]
    with pytest.raises(InvalidParams):
        node.history("h:a", None, 201, False)


def test_node_idempotent_emit_publishes_once(node: Node) -> None:
    s = session(node)
    node.subscribe_client(s, "h:a")
    first = node.publish("h:a", "x", "key-1")
    assert node.publish("h:a", "y", "key-1") == first
    assert [p["data"] for p in pushes(s)] == ["x"]
    many = node.publish_many([("h:a", "y", "key-1"), ("h:a", "z", "key-2"), ("plain", 1, None)])
    assert many == [first, Published(1, first.offset + 1, first.epoch), Published(0)]


def test_node_gap_in_offsets_closes_subscribers_with_4014(node: Node) -> None:
    outlet = RecordingOutlet()
    s = Session(outlet, 1 << 20)
    node.connect(s)
    epoch = node.subscribe_client(s, "h:a")["epoch"]
    node.publish("h:a", 1)
    node.deliver(
        Publication("h:a", with_position(encode_message_push("h:a", 9, 1.0), 5, epoch), None, 5, epoch)
    )
    assert node.gaps == 1
    assert [why.code for why in outlet.closed_with] == [CloseCode.INSUFFICIENT_STATE]


def test_node_mark_skips_a_late_delivery_the_answer_covered(node: Node) -> None:
    """On Redis a publication read by the recovery may reach the node after the read's
    answer; the recovered session must not get it a second time."""
    epoch = node.publish("h:a", 1).epoch
    node.publish("h:a", 2)
    s = session(node)
    node.subscribe_client(s, "h:a", recover=Position(0, epoch))
    late = with_position(encode_message_push("h:a", 2, 1.0), 2, epoch)
    node._tops.pop("h:a", None)  # as if the node had not delivered it yet
    node.deliver(Publication("h:a", late, None, 2, epoch))
    assert pushes(s) == []
    node.publish("h:a", 3)
    assert [p["offset"] for p in pushes(s)] == [3]
