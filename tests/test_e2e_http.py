"""End to end: the MessagesSource (backend JSON-RPC over HTTP) of a real server."""

from __future__ import annotations

import json
import select
import socket
import statistics
import threading
import time
from typing import Any

import pytest
import requests

from .support import (
    DECODER_PATHS,
    TOO_DEEP,
    ServerProcess,
    StartServer,
    emit_doc,
    nested,
    recv_json,
    request,
    subscribe,
    ws_connect,
)

# -- backend methods ----------------------------------------------------------------


def test_backend_ping(server: ServerProcess) -> None:
    assert server.call("ping") == {"jsonrpc": "2.0", "result": "pong", "id": 1}


def test_backend_emit_reaches_subscribers_only(server: ServerProcess) -> None:
    with ws_connect(server.ws_url) as a, ws_connect(server.ws_url) as b, ws_connect(server.ws_url) as other:
        subscribe(a, "emit-ch")
        subscribe(b, "emit-ch")
        subscribe(other, "elsewhere")
        before = time.time()
        resp = server.call("emit", {"channel": "emit-ch", "data": {"n": [1, 2.5, None, "ü"]}})
        assert resp["result"] == {"channel": "emit-ch", "delivered": 2}
        for ws in (a, b):
            push = recv_json(ws)
            assert set(push) == {"jsonrpc", "method", "params"}
            assert push["method"] == "message"
            assert push["params"]["channel"] == "emit-ch"
            assert push["params"]["data"] == {"n": [1, 2.5, None, "ü"]}
            assert before - 1 <= push["params"]["ts"] <= time.time() + 1
        assert request(other, "ping", rid="o") == {"jsonrpc": "2.0", "result": "pong", "id": "o"}


def test_backend_emit_positional_params_and_no_subscribers(server: ServerProcess) -> None:
    assert server.call("emit", ["empty-ch", 1])["result"] == {"channel": "empty-ch", "delivered": 0}


def test_backend_notify_all_reaches_every_connection_once(server: ServerProcess) -> None:
    with ws_connect(server.ws_url) as a, ws_connect(server.ws_url) as b:
        subscribe(a, "x1")
        subscribe(a, "x2")  # two subscriptions, still one broadcast
        n = server.health()["connections"]
        before = time.time()
        assert server.call("notify_all", {"data": "hello"})["result"] == {"delivered": n}
        for ws in (a, b):
            push = recv_json(ws)
            assert push["method"] == "broadcast"
            assert push["params"]["data"] == "hello"
            assert isinstance(push["params"]["ts"], float)
            assert before <= push["params"]["ts"] <= time.time()
            assert set(push["params"]) == {"data", "ts"}
            assert request(ws, "ping", rid=2)["id"] == 2  # nothing else was queued


def test_backend_available_channels_and_total_subscribers(server: ServerProcess) -> None:
    with ws_connect(server.ws_url) as a, ws_connect(server.ws_url) as b:
        subscribe(a, "zeta")
        subscribe(a, "alpha")
        subscribe(b, "alpha")
        channels = server.result("available_channels")
        assert channels == sorted(channels)
        assert {"alpha", "zeta"} <= set(channels)
        assert server.result("total_subscribers", {"channel": "alpha"}) == 2
        assert server.result("total_subscribers", {"channel": "zeta"}) == 1
        assert server.result("total_subscribers", {"channel": "none"}) == 0
        assert server.result("total_subscribers") == server.health()["connections"]
        request(a, "unsubscribe", {"channel": "zeta"})
        assert "zeta" not in server.result("available_channels")


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("emit", {"channel": "a"}),
        ("emit", {"channel": 1, "data": 1}),
        ("emit", {"channel": "", "data": 1}),
        ("emit", {"channel": "a\x00", "data": 1}),
        ("emit", {"channel": "a", "data": 1, "x": 2}),
        ("notify_all", {}),
        ("total_subscribers", {"channel": ["a"]}),
        ("ping", {"x": 1}),
    ],
)
def test_backend_bad_params_is_32602_with_data(
    server: ServerProcess, method: str, params: dict[str, Any]
) -> None:
    error = server.call(method, params)["error"]
    assert error["code"] == -32602
    assert isinstance(error["data"], dict) and error["data"]


def test_backend_client_method_is_32601(server: ServerProcess) -> None:
    # send_data is client-only (subscribe/unsubscribe are backend methods too, by user: issue 10)
    error = server.call("send_data", {"channel": "x", "data": 1})["error"]
    assert error["code"] == -32601 and error["data"]["method"] == "send_data"


# -- HTTP rules ---------------------------------------------------------------------


def test_http_response_is_json_utf8(server: ServerProcess) -> None:
    resp = server.post({"jsonrpc": "2.0", "method": "emit", "params": {"channel": "ü", "data": "é"}, "id": 1})
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/json"
    assert json.loads(resp.content.decode("utf-8"))["result"]["channel"] == "ü"


def test_http_any_content_type_is_parsed(server: ServerProcess) -> None:
    body = b'{"jsonrpc":"2.0","method":"ping","id":1}'
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "application/json"):
        resp = server.http.post(server.ms_url, data=body, headers={"Content-Type": ctype}, timeout=10)
        assert resp.json()["result"] == "pong"


def test_http_errors_are_http_200(server: ServerProcess) -> None:
    for body, code in (
        (b"{oops", -32700),
        (b"\xff\xfe", -32700),
        (b"[]", -32600),
        (b'{"jsonrpc":"2.0","method":"nope","id":1}', -32601),
    ):
        resp = server.post(body)
        assert resp.status_code == 200
        assert resp.json()["error"]["code"] == code


def test_http_notifications_only_is_204(server: ServerProcess) -> None:
    resp = server.post({"jsonrpc": "2.0", "method": "emit", "params": {"channel": "n", "data": 1}})
    assert resp.status_code == 204 and resp.content == b""
    resp = server.post([{"jsonrpc": "2.0", "method": "ping"}, {"jsonrpc": "2.0", "method": "nope"}])
    assert resp.status_code == 204 and resp.content == b""


def test_http_notification_emit_is_still_delivered(server: ServerProcess) -> None:
    with ws_connect(server.ws_url) as ws:
        subscribe(ws, "notif")
        assert (
            server.post(
                {"jsonrpc": "2.0", "method": "emit", "params": {"channel": "notif", "data": 9}}
            ).status_code
            == 204
        )
        assert recv_json(ws)["params"]["data"] == 9


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_http_other_methods_are_405(server: ServerProcess, method: str) -> None:
    resp = server.http.request(method, server.ms_url, timeout=10)
    assert resp.status_code == 405
    assert resp.headers["Allow"] == "POST"


def test_http_unknown_path_is_404(server: ServerProcess) -> None:
    resp = server.http.post(server.ms_url + "rpc", data=b"{}", timeout=10)
    assert resp.status_code == 404
    assert resp.headers["Content-Type"] == "application/json"


def test_http_body_over_limit_is_413(start_server: StartServer) -> None:
    srv = start_server(ROCKETWS_MAX_REQUEST_BODY="1000")
    big = json.dumps(
        {"jsonrpc": "2.0", "method": "emit", "params": {"channel": "a", "data": "x" * 1000}, "id": 1}
    )
    resp = requests.post(srv.ms_url, data=big, timeout=10)
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == -32003
    assert resp.json()["error"]["data"]["max"] == 1000
    # a chunked body (no Content-Length) over the limit too
    resp = requests.post(srv.ms_url, data=iter([big.encode()]), timeout=10)
    assert resp.status_code == 413
    # and the server still serves
    assert srv.result("ping") == "pong"


def test_http_health(server: ServerProcess) -> None:
    with ws_connect(server.ws_url) as ws:
        subscribe(ws, "health-ch")
        health = server.health()
        assert health["status"] == "ok"
        assert health["connections"] >= 1 and health["channels"] >= 1
        assert set(health) == {"status", "connections", "users", "channels", "broker", "workers"}
        assert health["broker"] == {"kind": "memory", "connected": True, "ready": True}
        assert (health["workers"]["up"], health["workers"]["expected"]) == (1, 1)


def test_http_batch_of_emits(server: ServerProcess) -> None:
    with ws_connect(server.ws_url) as ws:
        subscribe(ws, "batch-ch")
        batch = [
            {"jsonrpc": "2.0", "method": "emit", "params": {"channel": "batch-ch", "data": i}, "id": i}
            for i in range(50)
        ]
        resp = server.post(batch).json()
        assert [r["result"]["delivered"] for r in resp] == [1] * 50
        assert [recv_json(ws)["params"]["data"] for _ in range(50)] == list(range(50))


def test_http_batch_over_limit_is_32003(start_server: StartServer) -> None:
    srv = start_server(ROCKETWS_MAX_BATCH_SIZE="3")
    resp = srv.post([{"jsonrpc": "2.0", "method": "ping", "id": i} for i in range(4)]).json()
    assert resp["error"]["code"] == -32003 and resp["id"] is None
    assert len(srv.post([{"jsonrpc": "2.0", "method": "ping", "id": i} for i in range(3)]).json()) == 3


def test_http_keepalive_posts_do_not_stall(server: ServerProcess) -> None:
    """TCP_NODELAY: without it, every keep-alive POST waits ~40 ms for a delayed ACK."""
    body = b'{"jsonrpc":"2.0","method":"ping","id":1}'
    host, port = server.ms_url.split("//")[1].rstrip("/").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rounds = []
        for _ in range(15):
            start = time.perf_counter()
            # headers and body in two writes, as many HTTP clients send them
            sock.sendall(f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode())
            sock.sendall(body)
            data = b""
            while not data.endswith(b'"id":1}'):
                data += sock.recv(4096)
            rounds.append(time.perf_counter() - start)
    assert statistics.median(rounds) < 0.030, rounds


# -- JSON-RPC 2.0 specification, section 7, verbatim ------------------------------------

SPEC_EXAMPLES = [
    (
        '{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}',
        {"jsonrpc": "2.0", "result": 19, "id": 1},
    ),
    (
        '{"jsonrpc": "2.0", "method": "subtract", "params": [23, 42], "id": 2}',
        {"jsonrpc": "2.0", "result": -19, "id": 2},
    ),
    (
        '{"jsonrpc": "2.0", "method": "subtract", "params": {"subtrahend": 23, "minuend": 42}, "id": 3}',
        {"jsonrpc": "2.0", "result": 19, "id": 3},
    ),
    (
        '{"jsonrpc": "2.0", "method": "subtract", "params": {"minuend": 42, "subtrahend": 23}, "id": 4}',
        {"jsonrpc": "2.0", "result": 19, "id": 4},
    ),
    ('{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}', None),
    ('{"jsonrpc": "2.0", "method": "foobar"}', None),
    (
        '{"jsonrpc": "2.0", "method": "foobar", "id": "1"}',
        {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": "1"},
    ),
    (
        '{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]',
        {"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": None},
    ),
    (
        '{"jsonrpc": "2.0", "method": 1, "params": "bar"}',
        {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": None},
    ),
    (
        '[{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},{"jsonrpc": "2.0", "method"]',
        {"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": None},
    ),
    ("[]", {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": None}),
    ("[1]", [{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": None}]),
    (
        "[1,2,3]",
        [{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": None}] * 3,
    ),
    (
        """[
        {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},
        {"jsonrpc": "2.0", "method": "subtract", "params": [42,23], "id": "2"},
        {"foo": "boo"},
        {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
        {"jsonrpc": "2.0", "method": "get_data", "id": "9"}
    ]""",
        [
            {"jsonrpc": "2.0", "result": 7, "id": "1"},
            {"jsonrpc": "2.0", "result": 19, "id": "2"},
            {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": None},
            {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": "5"},
            {"jsonrpc": "2.0", "result": ["hello", 5], "id": "9"},
        ],
    ),
    (
        """[
        {"jsonrpc": "2.0", "method": "notify_sum", "params": [1,2,4]},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}
    ]""",
        None,
    ),
]


def _without_data(obj: Any) -> Any:
    """The spec's examples omit the optional error ``data`` member; so do we, to compare."""
    if isinstance(obj, list):
        return [_without_data(o) for o in obj]
    if "error" in obj:
        obj = {**obj, "error": {k: v for k, v in obj["error"].items() if k != "data"}}
    return obj


@pytest.mark.parametrize(("body", "expected"), SPEC_EXAMPLES, ids=range(len(SPEC_EXAMPLES)))
def test_spec_section7_example(server: ServerProcess, body: str, expected: object) -> None:
    resp = server.post(body.encode())
    if expected is None:
        assert resp.status_code == 204 and resp.content == b""
        return
    assert resp.status_code == 200
    assert _without_data(resp.json()) == expected


# -- HTTP/1.1 framing (httptools on a gevent StreamServer) -----------------------------


def _raw(server: ServerProcess, data: bytes, until_close: bool = True) -> bytes:
    host, port = server.ms_url.split("//")[1].rstrip("/").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(data)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
            if not until_close and out.endswith(b"}"):
                break
        return out


def test_http_pipelined_requests_are_answered_in_order(server: ServerProcess) -> None:
    reqs = (
        b"".join(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(b), b)
            for b in (
                b'{"jsonrpc":"2.0","method":"ping","id":1}',
                b'{"jsonrpc":"2.0","method":"ping","id":2}',
            )
        )
        + b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    out = _raw(server, reqs)
    assert out.count(b"HTTP/1.1 200 OK") == 3
    assert out.index(b'"id":1') < out.index(b'"id":2') < out.index(b'"status":"ok"')
    assert b"Connection: close" in out


def test_http_expect_100_continue(server: ServerProcess) -> None:
    body = json.dumps(
        {"jsonrpc": "2.0", "method": "emit", "params": {"channel": "e", "data": "x" * 2000}, "id": 1}
    ).encode()
    host, port = server.ms_url.split("//")[1].rstrip("/").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        assert sock.recv(1024) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        out = b""
        while not out.endswith(b"}"):
            out += sock.recv(65536)
        assert out.startswith(b"HTTP/1.1 200 OK") and b'"delivered":0' in out


def test_http_10_and_chunked_bodies(server: ServerProcess) -> None:
    out = _raw(
        server, b'POST / HTTP/1.0\r\nContent-Length: 40\r\n\r\n{"jsonrpc":"2.0","method":"ping","id":1}'
    )
    assert out.startswith(b"HTTP/1.1 200 OK") and out.endswith(b'"id":1}')  # then the server closes
    chunked = (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b'14\r\n{"jsonrpc":"2.0","me\r\n14\r\nthod":"ping","id":7}\r\n0\r\n\r\n'
    )
    assert _raw(server, chunked).endswith(b'{"jsonrpc":"2.0","result":"pong","id":7}')


def test_http_malformed_request_is_400_and_server_keeps_serving(server: ServerProcess) -> None:
    out = _raw(server, b"THIS IS NOT HTTP\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 ")
    out = _raw(server, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 ")
    assert server.result("ping") == "pong"


def test_http_huge_head_is_431(server: ServerProcess) -> None:
    out = _raw(server, b"POST / HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 70000 + b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 431 ")
    # a head that never ends is cut off too, without waiting for its end
    out = _raw(server, b"POST / HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 140000)
    assert out.startswith(b"HTTP/1.1 431 ")


def test_http_head_and_query_on_health(server: ServerProcess) -> None:
    head = server.http.head(server.ms_url + "health", timeout=10)
    assert head.status_code == 200 and head.content == b"" and int(head.headers["Content-Length"]) > 0
    assert server.http.get(server.ms_url + "health?verbose=1", timeout=10).json()["status"] == "ok"
    assert server.http.post(server.ms_url + "health", timeout=10).status_code == 405


def test_http_requests_before_a_malformed_one_are_answered_first(server: ServerProcess) -> None:
    good = b'{"jsonrpc":"2.0","method":"ping","id":"first"}'
    out = _raw(
        server, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%sBAD\r\n\r\n" % (len(good), good)
    )
    assert out.startswith(b"HTTP/1.1 200 OK") and b'"id":"first"' in out
    assert out.index(b'"id":"first"') < out.index(b"HTTP/1.1 400 ")
    upgrade = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    out = _raw(
        server, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s%s" % (len(good), good, upgrade)
    )
    assert out.count(b"HTTP/1.1 ") == 2 and b"HTTP/1.1 400 " in out.split(b'"id":"first"}', 1)[1]


def test_http_pipelined_expect_100_continue(server: ServerProcess) -> None:
    ping = b'{"jsonrpc":"2.0","method":"ping","id":1}'
    body = b'{"jsonrpc":"2.0","method":"ping","id":2}'
    host, port = server.ms_url.split("//")[1].rstrip("/").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(ping), ping)
            + b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        out = b""
        while b"100 Continue" not in out:
            out += sock.recv(65536)
        assert out.index(b'"id":1') < out.index(b"HTTP/1.1 100 Continue")
        sock.sendall(body)
        while not out.endswith(b'"id":2}'):
            out += sock.recv(65536)


@pytest.mark.parametrize("where", ["id", "channel", "data"])
def test_lone_surrogates_are_parse_errors_on_both_paths(server: ServerProcess, where: str) -> None:
    """orjson refuses lone surrogates; the big-integer (stdlib) path must as well."""
    bad = '"\\ud800 12345678901234567890"'  # a 20-digit run takes the stdlib decoder path
    params = {"channel": "c", "data": 1}
    doc = json.dumps({"jsonrpc": "2.0", "method": "emit", "params": params, "id": 1})
    doc = {
        "id": doc.replace('"id": 1', f'"id": {bad}'),
        "channel": doc.replace('"channel": "c"', f'"channel": {bad}'),
        "data": doc.replace('"data": 1', f'"data": {bad}'),
    }[where]
    resp = server.post(doc.encode())
    assert resp.status_code == 200 and resp.json()["error"]["code"] == -32700
    with ws_connect(server.ws_url) as ws:
        ws.send(doc.replace('"emit"', '"subscribe"'))
        assert recv_json(ws)["error"]["code"] == -32700
        assert request(ws, "ping")["result"] == "pong"
    assert "Traceback" not in server.log()


# -- bad input the fuzzing found: nesting, numbers, HTTP framing ---------------------------


@pytest.mark.parametrize("path", DECODER_PATHS)
def test_nesting_limit_on_both_endpoints_and_decoder_paths(server: ServerProcess, path: str) -> None:
    """64 levels are served (and pushed intact); deeper is one -32600 on HTTP and WebSocket."""
    leaf = DECODER_PATHS[path]
    channel = f"deep-{path}"
    with ws_connect(server.ws_url) as listener, ws_connect(server.ws_url) as sender:
        subscribe(listener, channel)
        subscribe(sender, channel)
        for kind in ("array", "object"):
            data = nested(62, leaf, kind)  # 64 levels in the document: the default limit
            resp = server.post(emit_doc(data, channel=channel)).json()
            assert resp == {"jsonrpc": "2.0", "result": {"channel": channel, "delivered": 2}, "id": 1}
            sender.send(emit_doc(data, rid="2", method="send_data", channel=channel))
            assert recv_json(sender)["params"]["data"] == json.loads(data)  # the emit's push
            assert recv_json(sender) == {
                "jsonrpc": "2.0",
                "result": {"channel": channel, "delivered": 1},
                "id": 2,
            }
            for _ in range(2):
                assert recv_json(listener)["params"]["data"] == json.loads(data)
            for depth in (63, 325, 1000, 1030):
                doc = emit_doc(nested(depth, leaf, kind), channel=channel)
                assert server.post(doc).json() == TOO_DEEP
                sender.send(doc.replace('"emit"', '"send_data"'))
                assert recv_json(sender) == TOO_DEEP
                assert request(sender, "ping", rid=depth) == {"jsonrpc": "2.0", "result": "pong", "id": depth}
        assert request(listener, "ping", rid="end")["id"] == "end"  # nothing else was pushed
    server.assert_no_traceback()


def test_http_deep_document_keeps_pipelined_answers(server: ServerProcess) -> None:
    """A too-deep stdlib-path document between two pipelined requests: all three answered."""
    bodies = [
        b'{"jsonrpc":"2.0","method":"ping","id":1}',
        emit_doc(nested(400, DECODER_PATHS["stdlib"])).encode(),
        b'{"jsonrpc":"2.0","method":"ping","id":2}',
    ]
    reqs = b"".join(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(b), b) for b in bodies
    )
    out = _raw(server, reqs + b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    answers = [json.loads(part.split(b"\r\n\r\n", 1)[1]) for part in out.split(b"HTTP/1.1 ")[1:]]
    assert answers[:3] == [
        {"jsonrpc": "2.0", "result": "pong", "id": 1},
        TOO_DEEP,
        {"jsonrpc": "2.0", "result": "pong", "id": 2},
    ]
    assert answers[3]["status"] == "ok"
    server.assert_no_traceback()


@pytest.mark.parametrize("path", DECODER_PATHS)
def test_numbers_beyond_double_range_are_parse_errors_on_both_endpoints(
    server: ServerProcess, path: str
) -> None:
    doc = emit_doc(f"[1e400, {DECODER_PATHS[path]}]")
    parse_error = server.post(doc).json()
    assert parse_error["error"]["code"] == -32700 and parse_error["id"] is None
    with ws_connect(server.ws_url) as ws:
        ws.send(doc.replace('"emit"', '"send_data"'))
        assert recv_json(ws)["error"]["code"] == -32700
        assert request(ws, "ping")["result"] == "pong"


def _head_and_body(sock: socket.socket) -> tuple[bytes, bytes]:
    """Read one response (with a Content-Length) from ``sock``."""
    out = b""
    while b"\r\n\r\n" not in out:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a whole head: {out!r}"
        out += chunk
    head, body = out.split(b"\r\n\r\n", 1)
    length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed before the whole body"
        body += chunk
    return head, body


def _connect(server: ServerProcess, timeout: float = 10) -> socket.socket:
    host, port = server.ms_url.split("//")[1].rstrip("/").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=timeout)


PING = b'{"jsonrpc":"2.0","method":"ping","id":1}'
PONG = b'{"jsonrpc":"2.0","result":"pong","id":1}'


def _post_ping() -> bytes:
    return b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n" + PING


def test_http_content_length_of_4300_digits_is_400(server: ServerProcess) -> None:
    for digits in (b"0" * 4300 + b"40", b"9" * 5000, b"0" * 18 + b"40"):
        out = _raw(server, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %s\r\n\r\n%s" % (digits, PING))
        if len(digits) > 19:
            assert out.startswith(b"HTTP/1.1 400 ") and b"Connection: close" in out
            assert b'{"error":"bad request: Content-Length ' in out  # over 19 digits; overflow
        else:  # leading zeros within 19 digits: the value counts (RFC 9110 section 8.6)
            assert out.startswith(b"HTTP/1.1 200 OK") and out.endswith(PONG)
    assert server.result("ping") == "pong"
    server.assert_no_traceback()


@pytest.mark.parametrize(
    ("request_line", "status"),
    [
        (b"POST / HTTP/2.0", b"505 HTTP Version Not Supported"),
        (b"POST / HTTP/0.9", b"505 HTTP Version Not Supported"),
        (b"GET /health", b"505 HTTP Version Not Supported"),  # HTTP/0.9: no version at all
        (b"POST / HTTP/3.1", b"400 Bad Request"),  # not a version llhttp knows: not HTTP/1.x syntax
    ],
)
def test_http_versions_other_than_1x_are_refused(
    server: ServerProcess, request_line: bytes, status: bytes
) -> None:
    out = _raw(server, request_line + b"\r\nContent-Length: 40\r\n\r\n" + PING)
    assert out.startswith(b"HTTP/1.1 " + status + b"\r\n"), out
    assert b"Connection: close" in out and PONG not in out
    assert server.result("ping") == "pong"


def test_http_10_keep_alive_is_announced_and_kept(server: ServerProcess) -> None:
    with _connect(server) as sock:
        for _ in range(2):
            sock.sendall(b"POST / HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 40\r\n\r\n" + PING)
            head, body = _head_and_body(sock)
            assert head.startswith(b"HTTP/1.1 200 OK") and b"\r\nConnection: keep-alive" in head
            assert body == PONG
        sock.sendall(b"GET /health HTTP/1.0\r\n\r\n")  # no keep-alive: answered, then closed
        head, _ = _head_and_body(sock)
        assert b"Connection: close" in head and sock.recv(1) == b""


def test_http_upgrade_other_than_websocket_is_ignored(server: ServerProcess) -> None:
    """``curl --http2`` on http:// asks for h2c: answered in HTTP/1.1 (RFC 9110 7.8)."""
    h2c = (
        b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"
    )
    chunked = b"14\r\n" + PING[:20] + b"\r\n14\r\n" + PING[20:] + b"\r\n0\r\n\r\n"
    reqs = (
        b"POST / HTTP/1.1\r\nHost: x\r\n"
        + h2c
        + b"Content-Length: 40\r\n\r\n"
        + PING
        + b"POST / HTTP/1.1\r\nHost: x\r\n"
        + h2c
        + b"Transfer-Encoding: chunked\r\n\r\n"
        + chunked
        + b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, close\r\nUpgrade: h2c\r\n\r\n"
    )
    out = _raw(server, reqs)
    assert out.count(b"HTTP/1.1 200 OK\r\n") == 3 and out.count(PONG) == 2, out
    assert b"Upgrade" not in out and b"101" not in out
    assert out.endswith(b'"channels":0}') or b'"status":"ok"' in out
    with _connect(server) as sock:  # Expect: 100-continue with an ignored upgrade
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\n" + h2c + b"Expect: 100-continue\r\nContent-Length: 40\r\n\r\n"
        )
        assert sock.recv(1024) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(PING)
        assert _head_and_body(sock)[1] == PONG
    # CONNECT (a tunnel): answered as routed, then closed; what follows is not HTTP
    out = _raw(server, _post_ping() + b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\nxyz")
    assert out.count(b"HTTP/1.1 ") == 2 and out.endswith(b'Connection: close\r\n\r\n{"error":"not found"}')
    # a WebSocket upgrade is still refused here: the WebSocket endpoint has its own port
    out = _raw(server, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 ") and b"use the WebSocket port" in out
    server.assert_no_traceback()


def test_http_request_must_arrive_within_request_timeout(start_server: StartServer) -> None:
    """A byte-at-a-time drip does not extend REQUEST_TIMEOUT: 408, then the server closes."""
    server = start_server(ROCKETWS_REQUEST_TIMEOUT="1")
    request_bytes = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n" + PING
    with _connect(server) as sock:
        started = time.monotonic()
        out = b""
        for i in range(len(request_bytes)):  # one byte per 0.1 s: 7 s for the whole request
            sock.sendall(request_bytes[i : i + 1])
            readable, _, _ = select.select([sock], [], [], 0.1)  # paces the drip
            if readable:
                break
        while chunk := sock.recv(65536):
            out += chunk
        elapsed = time.monotonic() - started
    assert out.startswith(b"HTTP/1.1 408 Request Timeout\r\n") and b"Connection: close" in out
    assert 1.0 <= elapsed < 3.0, elapsed
    with _connect(server) as sock:  # an idle keep-alive connection is not a request in progress
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n" + PING)
        assert _head_and_body(sock)[1] == PONG
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n")  # head, no body
        head, _ = _head_and_body(sock)
        assert head.startswith(b"HTTP/1.1 408 ")
    assert server.result("ping") == "pong"


def test_http_pipelined_emits_do_not_hold_back_their_pushes(server: ServerProcess) -> None:
    """A backend that pipelines many emits: the pushes of the first ones are written while
    the later ones are still being answered, not after the last (the connection yields to
    the hub between chunks)."""
    host, port = server.ms_url.split("//")[1].rstrip("/").rsplit(":", 1)
    k = 3000
    bodies = (emit_doc(str(i), str(i), channel="pipe").encode() for i in range(k))
    reqs = b"".join(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(b), b) for b in bodies
    )
    with ws_connect(server.ws_url) as ws, socket.create_connection((host, int(port)), timeout=10) as backend:
        subscribe(ws, "pipe")
        started = time.monotonic()
        sender = threading.Thread(target=backend.sendall, args=(reqs,), daemon=True)
        sender.start()  # the answers come back while the requests are still being sent
        first = recv_json(ws)
        first_push_s = time.monotonic() - started
        out = b""
        while out.count(b"HTTP/1.1 200 OK") < k:
            chunk = backend.recv(1 << 20)
            assert chunk, "backend connection closed early"
            out += chunk
        all_answered_s = time.monotonic() - started
        sender.join(10)
    assert first["params"]["data"] == 0
    assert first_push_s < all_answered_s / 2, (first_push_s, all_answered_s)
