"""Unit tests of rocketws.core.proxy (routes, the request, the answer), of the ``rpc``
method's dispatch (served apart through ``defer``), and of the Node's subscribe/publish
proxy hooks.  Pure core: plain fakes, no sockets (tests/test_e2e_proxy.py runs it all
against a real server and application)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from rocketws.brokers import MemoryBroker
from rocketws.core import rpc
from rocketws.core.channels import Namespace, Namespaces
from rocketws.core.codes import RpcCode
from rocketws.core.exceptions import ApplicationError, NotSubscribed, RpcError
from rocketws.core.hub import Hub
from rocketws.core.node import Node
from rocketws.core.proxy import (
    NO_PROXIES,
    CallContext,
    Route,
    Routes,
    application_error,
    context_headers,
    read_answer,
    request_body,
    validate_method,
)
from rocketws.core.session import Session

from .fakes import RecordingOutlet

# -- routes ---------------------------------------------------------------------------


def test_route_takes_exactly_one_of_url_and_handler() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Route("db.*")
    with pytest.raises(ValueError, match="exactly one"):
        Route("db.*", url="http://a/", handler="m:f")


def test_routes_first_glob_match_wins_then_the_catch_all() -> None:
    routes = Routes(
        [
            Route("db.*", url="http://db/"),
            Route("time.now", handler="app:now"),
            Route("d?.x", url="http://d/"),
        ],
        catch_all="http://rest/",
    )
    assert routes.route("db.query").url == "http://db/"
    assert routes.route("db.x").url == "http://db/"  # before d?.x: order decides
    assert routes.route("dc.x").url == "http://d/"
    assert routes.route("time.now").handler == "app:now"
    assert routes.route("time.nowhere").url == "http://rest/"
    assert routes.patterns() == ["db.*", "time.now", "d?.x", "*"]


def test_routes_without_a_match_or_catch_all_answer_32040() -> None:
    routes = Routes([Route("db.*", url="http://db/")])
    assert routes and not Routes()
    with pytest.raises(RpcError) as info:
        routes.route("dbquery")
    assert info.value.code == RpcCode.PROXY_METHOD_NOT_FOUND and int(info.value.code) == -32040
    assert info.value.data == {"method": "dbquery", "reason": "no PROXY route matches this method"}
    assert routes.patterns() == ["db.*"]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "non-empty string"),
        ("", "non-empty string"),
        (5, "non-empty"),
        ("a" * 256, "longer"),
        ("a\nb", "control"),
    ],
)
def test_validate_method_refuses_bad_names(value: Any, reason: str) -> None:
    with pytest.raises(RpcError) as info:
        validate_method(value)
    assert info.value.code == RpcCode.INVALID_PARAMS and reason in info.value.data["reason"]  # type: ignore[index]


# -- the request --------------------------------------------------------------------------


def test_request_body_is_one_json_rpc_request() -> None:
    assert json.loads(request_body(7, "db.query", {"q": 1})) == {
        "jsonrpc": "2.0",
        "method": "db.query",
        "params": {"q": 1},
        "id": 7,
    }
    assert "params" not in json.loads(request_body(8, "x", None))


def test_context_headers_say_who_calls_then_the_forwarded_ones() -> None:
    ctx = CallContext("m", "c0ffee", "zoë/1", {"plan": "pro", "name": "Zoë"}, {"cookie": "s=1"})
    assert context_headers(ctx) == [
        ("X-RocketWS-Client", "c0ffee"),
        ("X-RocketWS-User", "zo%C3%AB/1"),  # percent-encoded UTF-8
        ("X-RocketWS-Meta", '{"plan":"pro","name":"Zo\\u00eb"}'),  # ASCII JSON
        ("cookie", "s=1"),
    ]
    assert context_headers(CallContext("m", "c0ffee", "")) == [("X-RocketWS-Client", "c0ffee")]


# -- the answer ---------------------------------------------------------------------------


def test_read_answer_returns_the_result() -> None:
    assert read_answer(b'{"jsonrpc":"2.0","result":{"a":1},"id":3}', 3, "m") == {"a": 1}
    assert read_answer(b'{"result":null}', 3, "m") is None  # no id: lenient


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<html>", "the answer is not JSON"),
        (b"[1]", "not a JSON-RPC response"),
        (b'{"id": 3}', "not a JSON-RPC response"),
        (b'{"result": 1, "error": {}, "id": 3}', "not a JSON-RPC response"),
        (b'{"result": 1, "id": 4}', "id is not the request's"),
        (b'{"error": "no", "id": 3}', "error is not an object"),
    ],
)
def test_read_answer_refuses_what_is_not_a_response_to_the_request(body: bytes, reason: str) -> None:
    with pytest.raises(RpcError) as info:
        read_answer(body, 3, "m")
    assert info.value.code == RpcCode.BAD_APPLICATION_ANSWER and int(info.value.code) == -32043
    assert info.value.data["method"] == "m" and reason in info.value.data["reason"]  # type: ignore[index]
    assert "html" not in str(info.value)  # the body is never echoed


def test_application_errors_pass_through_outside_the_reserved_range() -> None:
    with pytest.raises(ApplicationError) as info:
        read_answer(b'{"error": {"code": 1001, "message": "no funds", "data": [1]}, "id": 3}', 3, "m")
    assert (info.value.code, info.value.message, info.value.data) == (1001, "no funds", [1])
    error = application_error(-31999, None)
    assert isinstance(error, ApplicationError) and error.message == "Application error"


@pytest.mark.parametrize("code", [-32601, -32000, -32768, True, "1001", None, 1.5])
def test_reserved_or_malformed_codes_are_wrapped_in_32045(code: Any) -> None:
    error = application_error(code, "Method not found", {"x": 1})
    assert (
        error.code == RpcCode.APPLICATION_ERROR
        and int(error.code) == -32045
        and error.message == "Application error"
    )
    assert error.data == {"code": code, "message": "Method not found", "data": {"x": 1}}


def test_no_proxies_refuse_everything() -> None:
    ctx = CallContext("db.query", "c", "")
    for run in (lambda: NO_PROXIES.call(ctx, None), lambda: NO_PROXIES.subscribe(ctx, "c")):
        with pytest.raises(RpcError):
            run()
    assert not NO_PROXIES.routes


# -- the rpc method: served apart through defer -----------------------------------------


class FakeProxies:
    """Records calls; answers ``result`` or raises ``error``."""

    routes = Routes([Route("*", url="http://app/")])

    def __init__(self, result: Any = None, error: RpcError | None = None) -> None:
        self.result, self.error = result, error
        self.calls: list[tuple[str, Any, Any]] = []

    def call(self, context: CallContext, params: Any) -> Any:
        self.calls.append(("rpc", context, params))
        if self.error is not None:
            raise self.error
        return self.result

    def subscribe(self, context: CallContext, channel: str) -> None:
        self.calls.append(("subscribe", context, channel))
        if self.error is not None:
            raise self.error

    def publish(self, context: CallContext, channel: str, data: Any) -> Any:
        self.calls.append(("publish", context, data))
        if self.error is not None:
            raise self.error
        return self.result


@pytest.fixture
def node() -> Node:
    namespaces = Namespaces(
        [
            Namespace("g", subscribe_proxy=True, publish_proxy=True),
            Namespace("closed", allow_send_data="nobody"),
        ],
        allow_unknown=True,
    )
    n = Node(Hub(), MemoryBroker(), namespaces=namespaces, clock=lambda: 42.0)
    n.start()
    return n


def session(node: Node, user: str = "ann") -> Session:
    s = Session(RecordingOutlet(), 1 << 20)
    node.connect(s)
    node.identify(s, user)
    s.meta = {"plan": "pro"}
    return s


def rpc_doc(rid: Any = 1, **params: Any) -> str:
    doc: dict[str, Any] = {"jsonrpc": "2.0", "method": "rpc", "params": params}
    if rid is not None:
        doc["id"] = rid
    return json.dumps(doc)


def test_rpc_is_a_declared_client_method_not_served_before_connect() -> None:
    method = rpc.client_methods["rpc"]
    assert method.concurrent and method.summary
    assert [p.name for p in method.params] == ["method", "params"] and all(p.doc for p in method.params)
    assert "rpc" not in rpc.connecting_methods


def test_rpc_calls_the_proxies_with_who_calls(node: Node) -> None:
    proxies = FakeProxies(result={"rows": 2})
    s = session(node)
    ctx = rpc.ClientContext(node, s, 10, proxies=proxies)
    out = rpc.dispatch(rpc_doc(method="db.query", params=[1]), rpc.client_methods, ctx, 8)
    assert out is not None and json.loads(out) == {"jsonrpc": "2.0", "result": {"rows": 2}, "id": 1}
    ((kind, context, params),) = proxies.calls
    assert (kind, params) == ("rpc", [1])
    assert context == CallContext("db.query", s.id, "ann", {"plan": "pro"})


def test_rpc_answers_the_proxies_error(node: Node) -> None:
    proxies = FakeProxies(error=ApplicationError(7, "seven", None))
    ctx = rpc.ClientContext(node, session(node), 10, proxies=proxies)
    out = rpc.dispatch(rpc_doc(method="x"), rpc.client_methods, ctx, 8)
    assert out is not None and json.loads(out)["error"] == {"code": 7, "message": "seven"}


@pytest.mark.parametrize(
    ("params", "param"), [({"method": 1}, "method"), ({"method": "x", "params": "s"}, "params")]
)
def test_rpc_bad_params_are_32602(node: Node, params: dict[str, Any], param: str) -> None:
    ctx = rpc.ClientContext(node, session(node), 10, proxies=FakeProxies())
    out = rpc.dispatch(rpc_doc(**params), rpc.client_methods, ctx, 8)
    assert out is not None and json.loads(out)["error"]["data"]["param"] == param


def test_lone_rpc_call_is_deferred_and_answered_by_the_deferred_function(node: Node) -> None:
    proxies = FakeProxies(result="later")
    ctx = rpc.ClientContext(node, session(node), 10, proxies=proxies)
    deferred: list[Callable[[], bytes | None]] = []

    def defer(serve: Callable[[], bytes | None]) -> RpcError | None:
        deferred.append(serve)
        return None

    assert rpc.dispatch(rpc_doc(rid="a", method="m"), rpc.client_methods, ctx, 8, defer=defer) is None
    assert not proxies.calls  # nothing ran yet: the caller runs it apart
    (serve,) = deferred
    answer = serve()
    assert answer is not None and json.loads(answer) == {"jsonrpc": "2.0", "result": "later", "id": "a"}
    # A notification is run apart too, and answered by nothing.
    assert rpc.dispatch(rpc_doc(rid=None, method="m"), rpc.client_methods, ctx, 8, defer=defer) is None
    assert deferred[1]() is None and len(proxies.calls) == 2


def test_refused_deferral_is_answered_at_once_with_its_error(node: Node) -> None:
    ctx = rpc.ClientContext(node, session(node), 10, proxies=FakeProxies())
    busy = RpcError({"limit": "max_in_flight_per_connection", "max": 1}, code=RpcCode.TOO_MANY_CALLS)
    out = rpc.dispatch(rpc_doc(rid=9, method="m"), rpc.client_methods, ctx, 8, defer=lambda serve: busy)
    assert out is not None and json.loads(out) == {
        "jsonrpc": "2.0",
        "error": {
            "code": -32044,
            "message": "Too many concurrent calls",
            "data": {"limit": "max_in_flight_per_connection", "max": 1},
        },
        "id": 9,
    }
    assert (
        rpc.dispatch(rpc_doc(rid=None, method="m"), rpc.client_methods, ctx, 8, defer=lambda s: busy) is None
    )


def test_rpc_in_a_batch_and_other_methods_are_served_inline(node: Node) -> None:
    proxies = FakeProxies(result=1)
    ctx = rpc.ClientContext(node, session(node), 10, proxies=proxies)

    def never(serve: Callable[[], bytes | None]) -> RpcError | None:
        raise AssertionError("deferred")

    batch = json.dumps(
        [json.loads(rpc_doc(rid=1, method="m")), {"jsonrpc": "2.0", "method": "ping", "id": 2}]
    )
    out = rpc.dispatch(batch, rpc.client_methods, ctx, 8, defer=never)
    assert out is not None and [a["result"] for a in json.loads(out)] == [1, "pong"]
    out = rpc.dispatch('{"jsonrpc":"2.0","method":"ping","id":3}', rpc.client_methods, ctx, 8, defer=never)
    assert out is not None and json.loads(out)["result"] == "pong"


# -- the Node's subscribe and publish proxy hooks ---------------------------------------


class FakeChannelProxy:
    def __init__(self, refuse: RpcError | None = None, data: Any = None) -> None:
        self.refuse, self.data = refuse, data
        self.asked: list[tuple[str, str, Any]] = []

    def allow_subscribe(self, channel: str) -> None:
        self.asked.append(("subscribe", channel, None))
        if self.refuse is not None:
            raise self.refuse

    def allow_publish(self, channel: str, data: Any) -> Any:
        self.asked.append(("publish", channel, data))
        if self.refuse is not None:
            raise self.refuse
        return data if self.data is None else self.data


def test_subscribe_proxy_is_asked_only_in_its_namespace_and_only_once(node: Node) -> None:
    s, proxy = session(node), FakeChannelProxy()
    node.subscribe_client(s, "g:room", proxy=proxy)
    node.subscribe_client(s, "g:room", proxy=proxy)  # subscribed: not asked again
    node.subscribe_client(s, "free", proxy=proxy)
    assert proxy.asked == [("subscribe", "g:room", None)] and s.channels == {"g:room", "free"}


def test_subscribe_proxy_refusal_leaves_the_session_unsubscribed(node: Node) -> None:
    s = session(node)
    with pytest.raises(ApplicationError):
        node.subscribe_client(s, "g:room", proxy=FakeChannelProxy(ApplicationError(403, "no")))
    assert not s.channels and node.local_subscribers("g:room") == 0
    with pytest.raises(RpcError) as info:
        node.subscribe_client(s, "g:room")  # no proxy here at all: unavailable, not allowed
    assert info.value.code == RpcCode.APPLICATION_UNAVAILABLE and not s.channels


def test_publish_proxy_may_replace_the_data_after_the_namespace_rules(node: Node) -> None:
    sender, listener = session(node), session(node, "bo")
    for s in (sender, listener):
        node.subscribe_client(s, "g:pub", proxy=FakeChannelProxy())
    listener.take()
    proxy = FakeChannelProxy(data={"clean": True})
    assert node.send_data(sender, "g:pub", "dirty", proxy) == 1
    assert proxy.asked == [("publish", "g:pub", "dirty")]
    assert b'"data":{"clean":true}' in listener.take()
    with pytest.raises(NotSubscribed):  # the rules first: the application is not asked
        node.send_data(session(node, "cy"), "g:pub", "x", proxy)
    assert len(proxy.asked) == 1
    with pytest.raises(ApplicationError):
        node.send_data(sender, "g:pub", "x", FakeChannelProxy(ApplicationError(451, "no")))
    assert listener.take() == b""
