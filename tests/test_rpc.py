"""Unit tests of rocketws.core.rpc: method declarations, binding, dispatch (no sockets)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from rocketws.brokers import MemoryBroker
from rocketws.core import jsonrpc, rpc
from rocketws.core.exceptions import BrokerUnavailable, InvalidParams, NotSubscribed
from rocketws.core.hub import Hub
from rocketws.core.jsonrpc import ErrorResponse, Result
from rocketws.core.node import Node
from rocketws.core.rpc import Method, Param
from rocketws.core.session import Session
from rocketws.core.spec_examples import spec_example_methods

from .fakes import RecordingOutlet

MAX_BATCH = 8


@pytest.fixture
def node() -> Node:
    n = Node(Hub(), MemoryBroker(), clock=lambda: 42.0)
    n.start()
    return n


@pytest.fixture
def session(node: Node) -> Session:
    s = Session(RecordingOutlet(), 1 << 20)
    node.connect(s)
    return s


@pytest.fixture
def client(node: Node, session: Session) -> rpc.ClientContext:
    return rpc.ClientContext(node, session, 10)


@pytest.fixture
def backend(node: Node) -> rpc.BackendContext:
    return rpc.BackendContext(node, 10)


def call(methods: rpc.Methods, ctx: Any, doc: Any) -> Any:
    """Dispatch ``doc`` (JSON text, or an object to encode) and decode the answer."""
    text = doc if isinstance(doc, str) else json.dumps(doc)
    out = rpc.dispatch(text, methods, ctx, MAX_BATCH)
    return None if out is None else json.loads(out)


def req(method: str, params: Any = None, rid: Any = 1) -> dict[str, Any]:
    obj: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": rid}
    if params is not None:
        obj["params"] = params
    return obj


def note(method: str, params: Any = None) -> dict[str, Any]:
    obj = req(method, params)
    del obj["id"]
    return obj


def error(answer: dict[str, Any]) -> tuple[int, Any]:
    return answer["error"]["code"], answer["error"].get("data")


# -- binding ----------------------------------------------------------------------


def _two(_ctx: object, a: Any, b: Any) -> list[Any]:
    return [a, b]


def _opt(_ctx: object, a: Any, b: Any) -> list[Any]:
    return [a, b]


def _three(_ctx: object, a: Any, b: Any, c: Any) -> list[Any]:
    return [a, b, c]


TWO = Method("two", _two, (Param("a"), Param("b")))
OPT = Method("opt", _opt, (Param("a"), Param("b", required=False, default="dflt")))
# All optional, as connect {token?, name?, version?}
ALL_OPT = Method("all_opt", _three, tuple(Param(n, required=False, default=f"d{n}") for n in ("a", "b", "c")))


@pytest.mark.parametrize(
    ("method", "params", "args"),
    [
        (TWO, [1, 2], [1, 2]),
        (TWO, {"b": 2, "a": 1}, [1, 2]),
        (OPT, [1], [1, "dflt"]),
        (OPT, {"a": 1}, [1, "dflt"]),
        (OPT, {"a": 1, "b": None}, [1, None]),
        (OPT, [1, 2], [1, 2]),
        (ALL_OPT, {"b": 2}, ["da", 2, "dc"]),
        (ALL_OPT, {"c": 3, "a": 1}, [1, "db", 3]),
        (ALL_OPT, {}, ["da", "db", "dc"]),
        (ALL_OPT, {"a": None, "b": None, "c": None}, [None, None, None]),
    ],
)
def test_bind_by_position_and_by_name(method: Method, params: Any, args: list[Any]) -> None:
    assert list(method.bind(params)) == args


@pytest.mark.parametrize(
    ("method", "params", "reason"),
    [
        (TWO, [1], "missing required param 'b'"),
        (TWO, [], "missing required param 'a'"),
        (TWO, {"a": 1}, "missing required param 'b'"),
        (OPT, {"b": 1}, "missing required param 'a'"),
        (TWO, [1, 2, 3], "too many positional params: two takes at most 2, got 3"),
        (TWO, {"a": 1, "b": 2, "c": 3}, "unexpected param(s) for two: c"),
        (OPT, {"a": 1, "z": 3, "y": 4}, "unexpected param(s) for opt: y, z"),
        (OPT, {"b": 1, "z": 3}, "missing required param 'a'"),  # missing is named first
        (TWO, {"a": 1, "c": 3}, "missing required param 'b'"),  # as many as declared
        (ALL_OPT, {"b": 1, "token": "t"}, "unexpected param(s) for all_opt: token"),
    ],
)
def test_bind_rejects_with_reason(method: Method, params: Any, reason: str) -> None:
    with pytest.raises(InvalidParams) as info:
        method.bind(params)
    assert info.value.data is not None and info.value.data["reason"] == reason


def test_bind_missing_names_the_param() -> None:
    with pytest.raises(InvalidParams) as info:
        TWO.bind({"b": 1})
    assert info.value.data == {"param": "a", "reason": "missing required param 'a'"}


def test_bind_rest_takes_further_positional_params() -> None:
    total = spec_example_methods["sum"]
    assert list(total.bind([1, 2, 4])) == [1, 2, 4]
    assert list(total.bind([])) == []
    with pytest.raises(InvalidParams):
        total.bind({"numbers": [1]})


def test_method_declaration_must_match_the_function() -> None:
    with pytest.raises(TypeError, match="does not match"):
        Method("two", _two, (Param("a"),))
    with pytest.raises(TypeError, match="does not match"):
        Method("two", _two, (Param("b"), Param("a")))
    with pytest.raises(TypeError, match="does not match"):
        Method("two", _two, (Param("a"), Param("b")), rest=Param("more"))
    with pytest.raises(TypeError, match="before optional"):
        Method("two", _two, (Param("a", required=False), Param("b")))


# -- method outcomes ----------------------------------------------------------------


def test_client_methods_results(client: rpc.ClientContext) -> None:
    m = rpc.client_methods
    assert call(m, client, req("subscribe", ["c"]))["result"] == {"channel": "c", "subscribed": True}
    assert call(m, client, req("subscriptions"))["result"] == ["c"]
    assert call(m, client, req("unsubscribe", {"channel": "c"}))["result"] == {
        "channel": "c",
        "subscribed": False,
    }
    assert call(m, client, req("ping", rid="p")) == {"jsonrpc": "2.0", "result": "pong", "id": "p"}
    assert call(m, client, req("heartbeat"))["result"] == {"heartbeat": "ok"}


def test_backend_emit_pushes_and_counts(backend: rpc.BackendContext, node: Node, session: Session) -> None:
    node.subscribe(session, "c")
    assert call(rpc.backend_methods, backend, req("emit", ["c", {"x": 1}]))["result"] == {
        "channel": "c",
        "delivered": 1,
    }
    assert b'"data":{"x":1}' in session.take()


def test_backend_total_subscribers_channel_is_optional(
    backend: rpc.BackendContext, node: Node, session: Session
) -> None:
    node.subscribe(session, "c")
    m = rpc.backend_methods
    assert call(m, backend, req("total_subscribers"))["result"] == 1
    assert call(m, backend, req("total_subscribers", {"channel": None}))["result"] == 1
    assert call(m, backend, req("total_subscribers", ["c"]))["result"] == 1
    assert call(m, backend, req("total_subscribers", {"channel": "d"}))["result"] == 0


def test_method_raising_rpc_error_answers_its_code_and_data(client: rpc.ClientContext) -> None:
    answer = call(rpc.client_methods, client, req("send_data", ["c", 1], rid=4))
    assert answer == {
        "jsonrpc": "2.0",
        "id": 4,
        "error": {
            "code": -32001,
            "message": "Not subscribed",
            "data": {"channel": "c", "reason": "subscribe to the channel first"},
        },
    }


def test_invalid_channel_is_32602_with_param(backend: rpc.BackendContext) -> None:
    answer = call(rpc.backend_methods, backend, req("emit", {"channel": "x" * 11, "data": 1}))
    assert error(answer) == (-32602, {"param": "channel", "reason": "longer than 10 characters"})


def test_bad_params_over_the_wire_are_32602(client: rpc.ClientContext) -> None:
    answer = call(rpc.client_methods, client, req("subscribe", ["a", "b", None, "d"], rid="x"))
    assert answer["id"] == "x" and answer["error"]["message"] == "Invalid params"
    assert error(answer) == (
        -32602,
        {"reason": "too many positional params: subscribe takes at most 3, got 4"},
    )


def test_bug_in_a_method_is_32603_logged_not_sent(caplog: pytest.LogCaptureFixture) -> None:
    def broken(_ctx: object) -> None:
        raise KeyError("secret detail")

    methods = rpc.table(Method("broken", broken))
    with caplog.at_level(logging.ERROR, logger="rocketws.core.rpc"):
        answer = call(methods, None, req("broken", rid=9))
    assert answer == {
        "jsonrpc": "2.0",
        "id": 9,
        "error": {"code": -32603, "message": "Internal error", "data": {"reason": "internal server error"}},
    }
    assert "Traceback" in caplog.text and "secret detail" in caplog.text


def test_result_json_cannot_hold_is_32603_for_the_document(caplog: pytest.LogCaptureFixture) -> None:
    methods = rpc.table(Method("obj", lambda _ctx: object()))
    answer = call(methods, None, [req("obj"), req("obj", rid=2)])
    assert answer == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32603, "message": "Internal error", "data": {"reason": "internal server error"}},
    }
    assert "cannot encode" in caplog.text


# -- method not found ---------------------------------------------------------------


def test_unknown_method_is_32601_naming_it(backend: rpc.BackendContext) -> None:
    assert error(call(rpc.backend_methods, backend, req("nope"))) == (-32601, {"method": "nope"})
    # send_data is client-only (subscribe/unsubscribe are backend methods too, by user: issue 10)
    assert error(call(rpc.backend_methods, backend, req("send_data", ["c", 1]))) == (
        -32601,
        {"method": "send_data"},
    )


@pytest.mark.parametrize("method", ["emit", "notify_all", "available_channels", "total_subscribers"])
def test_backend_method_over_websocket_is_32601_with_reason(client: rpc.ClientContext, method: str) -> None:
    code, data = error(call(rpc.client_methods, client, req(method, {"channel": "x", "data": 1})))
    assert code == -32601 and data["method"] == method
    assert data["reason"].startswith("backend-only method")


# -- documents, batches, notifications, ids -----------------------------------------


def test_parse_error_is_32700_with_null_id(backend: rpc.BackendContext) -> None:
    answer = call(rpc.backend_methods, backend, '{"jsonrpc": "2.0", "method"')
    assert answer["id"] is None and answer["error"]["code"] == -32700
    assert answer["error"]["message"] == "Parse error" and answer["error"]["data"]["reason"]


def test_invalid_request_keeps_a_valid_id(backend: rpc.BackendContext) -> None:
    answer = call(rpc.backend_methods, backend, {"jsonrpc": "2.0", "method": 5, "id": "k"})
    assert answer["id"] == "k" and error(answer) == (-32600, {"reason": "method must be a string"})


def test_empty_batch_is_one_32600(backend: rpc.BackendContext) -> None:
    answer = call(rpc.backend_methods, backend, "[]")
    assert isinstance(answer, dict) and answer["id"] is None and answer["error"]["code"] == -32600


def test_batch_mix_answers_in_order_without_notifications(
    client: rpc.ClientContext, session: Session
) -> None:
    answer = call(
        rpc.client_methods,
        client,
        [
            req("subscribe", ["a"], rid="s"),
            note("subscribe", ["b"]),
            req("nope", rid=2),
            1,
            note("nope"),
            req("ping", rid=None),
        ],
    )
    assert [r["id"] for r in answer] == ["s", 2, None, None]
    assert answer[0]["result"]["subscribed"] is True
    assert [r.get("error", {}).get("code") for r in answer] == [None, -32601, -32600, None]
    assert answer[3]["result"] == "pong"
    assert session.channels == {"a", "b"}  # the notification ran


def test_notifications_run_and_get_nothing(client: rpc.ClientContext, session: Session) -> None:
    assert call(rpc.client_methods, client, note("subscribe", ["n"])) is None
    assert session.channels == {"n"}
    assert call(rpc.client_methods, client, note("subscribe", [""])) is None  # failed: still silent
    assert call(rpc.client_methods, client, note("nope")) is None
    assert call(rpc.client_methods, client, [note("ping"), note("unsubscribe", ["n"])]) is None
    assert session.channels == set()


def test_batch_over_limit_is_one_32003(backend: rpc.BackendContext) -> None:
    answer = call(rpc.backend_methods, backend, [req("ping", rid=i) for i in range(MAX_BATCH + 1)])
    assert answer["id"] is None
    assert error(answer) == (
        -32003,
        {"limit": "max_batch_size", "max": MAX_BATCH, "reason": "batch too large"},
    )
    assert (
        len(call(rpc.backend_methods, backend, [req("ping", rid=i) for i in range(MAX_BATCH)])) == MAX_BATCH
    )


@pytest.mark.parametrize("rid", ["abc", 0, -5, 1.5, None, 123456789012345678901234567890, "ü"])
def test_ids_are_echoed_exactly(backend: rpc.BackendContext, rid: Any) -> None:
    out = rpc.dispatch(json.dumps(req("ping", rid=rid)), rpc.backend_methods, backend, MAX_BATCH)
    assert out is not None
    assert f'"id":{json.dumps(rid, ensure_ascii=False)}'.encode() in out


def test_lone_surrogate_is_32700_on_the_big_integer_path(backend: rpc.BackendContext) -> None:
    doc = '{"jsonrpc":"2.0","method":"ping","id":"\\ud800 12345678901234567890"}'
    assert call(rpc.backend_methods, backend, doc)["error"]["code"] == -32700


def test_spec_section7_examples_unit() -> None:
    m = spec_example_methods
    assert call(m, None, req("subtract", [42, 23]))["result"] == 19
    assert call(m, None, req("subtract", {"subtrahend": 23, "minuend": 42}))["result"] == 19
    assert call(m, None, note("update", [1, 2, 3, 4, 5])) is None
    assert call(m, None, [req("sum", [1, 2, 4], rid="1"), req("get_data", rid="9")]) == [
        {"jsonrpc": "2.0", "result": 7, "id": "1"},
        {"jsonrpc": "2.0", "result": ["hello", 5], "id": "9"},
    ]


# -- the typed layer ----------------------------------------------------------------


def test_serve_returns_typed_outcomes_notifications_included(backend: rpc.BackendContext) -> None:
    parsed = jsonrpc.parse(json.dumps([note("ping"), note("emit", {"channel": ""}), 7]))
    outcomes = [rpc.serve(e, rpc.backend_methods, backend) for e in parsed.entries]
    assert outcomes[0] == Result(None, "pong")
    assert isinstance(outcomes[1], ErrorResponse) and outcomes[1].code == -32602
    assert isinstance(outcomes[2], ErrorResponse) and outcomes[2].code == -32600
    assert outcomes[2].message == "Invalid Request"


def test_dispatch_parsed_returns_the_responses_due(backend: rpc.BackendContext) -> None:
    parsed = jsonrpc.parse(json.dumps([note("ping"), req("ping", rid=3), 7]))
    responses = rpc.dispatch_parsed(parsed, rpc.backend_methods, backend)
    assert responses == [
        Result(3, "pong"),
        ErrorResponse(None, -32600, {"reason": "request must be an object, got int"}),
    ]


def test_rpc_error_is_typed(backend: rpc.BackendContext) -> None:
    def refuse(_ctx: object) -> None:
        raise NotSubscribed({"channel": "c"})

    (entry,) = jsonrpc.parse(json.dumps(req("refuse", rid=1))).entries
    assert rpc.serve(entry, rpc.table(Method("refuse", refuse)), None) == ErrorResponse(
        1, -32001, {"channel": "c"}, "Not subscribed"
    )


# -- describe -------------------------------------------------------------------------


def test_describe_lists_params_as_json_schema() -> None:
    described = {d["name"]: d for d in rpc.describe(rpc.backend_methods)}
    assert sorted(described) == [
        "available_channels",
        "disconnect",  # the control methods of issue 10
        "emit",
        "history",  # issue 11
        "info",  # issue 12
        "notify_all",
        "ping",
        "presence",  # issue 11
        "presence_stats",
        "refresh",
        "rpc.discover",  # issue 12
        "subscribe",
        "total_subscribers",
        "unsubscribe",
    ]
    emit = described["emit"]
    assert emit["summary"] and emit["paramStructure"] == "either"
    assert [(p["name"], p["required"]) for p in emit["params"]] == [
        ("channel", True),
        ("data", True),
        ("idempotency_key", False),
    ]
    assert emit["params"][0]["schema"] == {"type": "string", "minLength": 1}
    assert emit["params"][1]["schema"] == {}  # any JSON value
    assert all(p["summary"] for p in emit["params"])
    total = described["total_subscribers"]["params"]
    assert total == [
        {
            "name": "channel",
            "required": False,
            "schema": {"type": ["string", "null"]},
            "summary": "count this channel's subscribers; absent or null: open connections",
        }
    ]
    assert described["ping"]["params"] == [] and described["ping"]["result"]["schema"] == {"const": "pong"}
    json.dumps(rpc.describe(rpc.client_methods))  # JSON-ready


def test_describe_marks_variadic_params() -> None:
    (total,) = [d for d in rpc.describe(spec_example_methods) if d["name"] == "sum"]
    assert total["params"] == [
        {
            "name": "numbers",
            "required": False,
            "variadic": True,
            "schema": {"type": "number"},
            "summary": "the numbers to add",
        }
    ]


# -- a run of emits in a batch (issue 11: one broker round trip) ------------------------------


class CountingBroker(MemoryBroker):
    """Records each publish_many call's size; fails the emits to channel "down"."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def publish_many(self, emits: list[Any]) -> list[Any]:
        self.batches.append(len(emits))
        answers = super().publish_many(emits)
        return [
            BrokerUnavailable({"reason": "down"}) if e.publication.channel == "down" else a
            for e, a in zip(emits, answers, strict=True)
        ]


def test_batch_of_emits_is_one_broker_call_answered_per_entry() -> None:
    broker = CountingBroker()
    node = Node(Hub(), broker)
    node.start()
    backend = rpc.BackendContext(node, 10)
    doc = [
        req("emit", {"channel": "a", "data": 1}, rid=1),
        req("emit", {"channel": "x" * 11, "data": 2}, rid=2),  # bad channel: its own error
        {"jsonrpc": "2.0", "method": "emit", "params": {"channel": "a", "data": 3}},  # notification
        req("emit", {"channel": "down", "data": 4}, rid=4),
        req("emit", {"channel": "a", "data": 5, "idempotency_key": ""}, rid=5),  # bad key
        req("ping", rid=6),
        req("emit", ["a", 7], rid=7),
    ]
    answers = {a["id"]: a for a in call(rpc.backend_methods, backend, doc)}
    assert sorted(answers) == [1, 2, 4, 5, 6, 7]
    assert answers[1]["result"] == {"channel": "a", "delivered": 0}
    assert error(answers[2])[0] == -32602 and error(answers[5])[0] == -32602
    assert error(answers[4]) == (-32002, {"reason": "down"})
    assert answers[6]["result"] == "pong" and answers[7]["result"] == {"channel": "a", "delivered": 0}
    assert broker.batches == [3]  # 1, 3 and 4 in one call; 7 alone comes after the ping (a single emit)
