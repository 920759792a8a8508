"""Server-side control by user (core): Node.apply_control, the hub's user index, the
backend methods' params, and the control envelope.  No I/O: fake sessions, memory broker.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from rocketws.brokers import Control, MemoryBroker, Publication, envelope
from rocketws.core import rpc
from rocketws.core.channels import Namespace, Namespaces
from rocketws.core.codes import CloseCode
from rocketws.core.disconnect import Disconnect
from rocketws.core.framing import text_frame
from rocketws.core.hub import Hub
from rocketws.core.node import Node
from rocketws.core.session import Session


class ClosingOutlet:
    """An Outlet that records the closes and expiries it was asked for."""

    def __init__(self) -> None:
        self.closed_with: list[Disconnect] = []
        self.extended: list[float] = []

    def wake(self) -> None:
        pass

    def wake_later(self, delay: float) -> None:
        pass

    def close(self, why: Disconnect) -> None:
        self.closed_with.append(why)

    def extend(self, expires_at: float) -> None:
        self.extended.append(expires_at)


def _node(**kwargs: Any) -> Node:
    node = Node(Hub(), MemoryBroker(), **kwargs)
    node.start()
    return node


def _session(node: Node, user: str = "") -> tuple[Session, ClosingOutlet]:
    outlet = ClosingOutlet()
    session = Session(outlet, 1 << 20)
    node.connect(session)
    if user:
        node.identify(session, user)
    return session, outlet


def _pushes(session: Session) -> list[dict[str, Any]]:
    data = session.take()
    out = []
    while data:  # unmasked server text frames with a payload under 126 bytes
        n = data[1]
        out.append(json.loads(data[2 : 2 + n]))
        data = data[2 + n :]
    return out


def _call(node: Node, method: str, params: dict[str, Any]) -> dict[str, Any]:
    body = json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": 1})
    answer = rpc.dispatch(body, rpc.backend_methods, rpc.BackendContext(node, 255), 10)
    assert answer is not None
    response: dict[str, Any] = json.loads(answer)
    return response


# -- the user index ----------------------------------------------------------------------


def test_hub_indexes_identified_sessions_by_user_and_forgets_them_on_disconnect() -> None:
    node = _node()
    a1, _ = _session(node, "alice")
    a2, _ = _session(node, "alice")
    anon, _ = _session(node)
    assert sorted(s.id for s in node.hub.user_sessions("alice")) == sorted([a1.id, a2.id])
    assert node.hub.user_sessions("") == [] and anon.user == ""
    node.identify(a2, "bob")
    assert node.hub.user_sessions("alice") == [a1] and node.hub.user_sessions("bob") == [a2]
    node.disconnect(a1)
    node.disconnect(a2)
    assert node.hub.user_sessions("alice") == node.hub.user_sessions("bob") == []
    assert node.hub.user_count == 0


# -- apply_control -----------------------------------------------------------------------


def test_disconnect_closes_every_connection_of_the_user_through_its_outlet() -> None:
    node = _node()
    (_, o1), (_, o2), (_, other) = _session(node, "alice"), _session(node, "alice"), _session(node, "bob")
    assert _call(node, "disconnect", {"user": "alice"})["result"] == {"user": "alice", "reached": 2}
    assert o1.closed_with == o2.closed_with == [Disconnect(4504, "disconnected by the server", False)]
    assert int(CloseCode.DISCONNECTED) == 4504 and other.closed_with == []


def test_disconnect_with_a_reconnect_code_and_reason() -> None:
    node = _node()
    _, outlet = _session(node, "alice")
    reply = _call(node, "disconnect", {"user": "alice", "code": 4100, "reason": "moved"})
    assert reply["result"]["reached"] == 1
    assert outlet.closed_with == [Disconnect(4100, "moved", reconnect=True)]


def test_subscribe_by_user_subscribes_and_tells_each_connection_once() -> None:
    node = _node()
    s1, _ = _session(node, "alice")
    s2, _ = _session(node, "alice")
    reply = _call(node, "subscribe", {"user": "alice", "channel": "news"})
    assert reply["result"] == {"user": "alice", "channel": "news", "reached": 2}
    assert node.hub.count("news") == 2
    expected = {"jsonrpc": "2.0", "method": "subscribed", "params": {"channel": "news"}}
    assert _pushes(s1) == _pushes(s2) == [expected]
    # again: still reached, nothing changed, nothing pushed
    assert _call(node, "subscribe", {"user": "alice", "channel": "news"})["result"]["reached"] == 2
    assert _pushes(s1) == []


def test_subscribe_by_user_skips_a_connection_at_its_channel_limit() -> None:
    node = _node(max_channels_per_connection=1)
    full, _ = _session(node, "alice")
    node.subscribe(full, "other")
    free, _ = _session(node, "alice")
    assert _call(node, "subscribe", {"user": "alice", "channel": "news"})["result"]["reached"] == 1
    assert full.channels == {"other"} and free.channels == {"news"}


def test_unsubscribe_by_user_tells_only_connections_that_were_subscribed() -> None:
    node = _node()
    subscribed, _ = _session(node, "alice")
    node.subscribe(subscribed, "news")
    other, _ = _session(node, "alice")
    reply = _call(node, "unsubscribe", {"user": "alice", "channel": "news"})
    assert reply["result"] == {"user": "alice", "channel": "news", "reached": 2}
    assert subscribed.channels == set() and node.hub.count("news") == 0
    assert _pushes(subscribed) == [
        {"jsonrpc": "2.0", "method": "unsubscribed", "params": {"channel": "news"}}
    ]
    assert _pushes(other) == []


def test_refresh_moves_the_expiry_of_the_users_connections() -> None:
    node = _node(clock=lambda: 1_800_000_000.0)
    s1, alice1 = _session(node, "alice")
    s2, alice2 = _session(node, "alice")
    anon, anonymous = _session(node)
    assert _call(node, "refresh", {"user": "alice", "expire_at": 1900000000})["result"] == {
        "user": "alice",
        "expire_at": 1900000000,
        "reached": 2,
    }
    assert alice1.extended == alice2.extended == [1900000000.0] and anonymous.extended == []
    # absent or null: never (0 to the transport)
    assert _call(node, "refresh", {"user": "alice"})["result"]["reached"] == 2
    assert _call(node, "refresh", {"user": "alice", "expire_at": None})["result"]["reached"] == 2
    assert alice1.extended[1:] == [0.0, 0.0]
    # a time past, 0 included, expires them now (the node's clock), never "never"
    for past in (1_700_000_000, 0):
        assert _call(node, "refresh", {"user": "alice", "expire_at": past})["result"]["reached"] == 2
    assert alice1.extended[3:] == alice2.extended[3:] == [1_800_000_000.0, 1_800_000_000.0]


def test_control_of_an_unknown_user_or_a_closed_session_reaches_nobody() -> None:
    node = _node()
    session, outlet = _session(node, "alice")
    session.close()  # closing already: not counted, not closed twice
    assert _call(node, "disconnect", {"user": "alice"})["result"]["reached"] == 0
    assert _call(node, "disconnect", {"user": "nobody"})["result"]["reached"] == 0
    assert outlet.closed_with == []


# -- params ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "params", "param"),
    [
        ("disconnect", {"user": ""}, "user"),
        ("disconnect", {"user": 7}, "user"),
        ("disconnect", {"user": "u" * 256}, "user"),
        ("disconnect", {"user": "a", "code": 1000}, "code"),
        ("disconnect", {"user": "a", "code": 3999}, "code"),
        ("disconnect", {"user": "a", "code": 5000}, "code"),
        ("disconnect", {"user": "a", "code": True}, "code"),
        ("disconnect", {"user": "a", "code": 4100.0}, "code"),
        ("disconnect", {"user": "a", "reason": "x" * 124}, "reason"),
        ("disconnect", {"user": "a", "reason": "two\nlines"}, "reason"),
        ("subscribe", {"user": "a", "channel": ""}, "channel"),
        ("unsubscribe", {"user": "a", "channel": 3}, "channel"),
        ("refresh", {"user": "a", "expire_at": -1}, "expire_at"),
        ("refresh", {"user": "a", "expire_at": "soon"}, "expire_at"),
        ("refresh", {"user": "a", "expire_at": True}, "expire_at"),
    ],
)
def test_control_methods_refuse_bad_params_with_32602(
    method: str, params: dict[str, Any], param: str
) -> None:
    node = _node()
    _, outlet = _session(node, "a")
    error = _call(node, method, params)["error"]
    assert error["code"] == -32602 and error["data"]["param"] == param, error
    assert outlet.closed_with == []


def test_subscribe_by_user_to_an_unknown_namespace_is_refused_before_publishing() -> None:
    node = _node(namespaces=Namespaces([Namespace("chat")], allow_unknown=False))
    session, _ = _session(node, "a")
    assert _call(node, "subscribe", {"user": "a", "channel": "x:room"})["error"]["code"] == -32005
    assert session.channels == set()


# -- the control envelope (Redis) -------------------------------------------------------


def test_control_envelope_round_trips_and_refuses_what_is_not_one() -> None:
    control = Control("disconnect", "al\u00efce\n", code=4100, reason="r")
    data = envelope.encode_control(control, "req-1", "node-a")
    assert envelope.decode_control(data) == (control, "req-1", "node-a")
    assert envelope.decode_reply(envelope.encode_reply("req-1", 3)) == ("req-1", 3)
    with pytest.raises(envelope.EnvelopeError):
        envelope.decode_control(envelope.encode(Publication("c", b"{}")))
    with pytest.raises(envelope.EnvelopeError):
        envelope.decode_control(data.replace(b'"disconnect"', b'"explode"'))
    with pytest.raises(envelope.EnvelopeError):
        envelope.decode_reply(b'{"v":1,"kind":"reply","req":"x","n":-1}')


def test_frame_of_a_subscription_push_is_built_once_per_node() -> None:
    node = _node()
    sessions = [_session(node, "alice")[0] for _ in range(3)]
    node.apply_control(Control("subscribe", "alice", "c"))
    frames = [s.take() for s in sessions]
    assert frames[0] == text_frame(b'{"jsonrpc":"2.0","method":"subscribed","params":{"channel":"c"}}')
    assert frames[0] is frames[1] is frames[2]  # the same bytes object queued to each
