"""End to end: the RPC, subscribe and publish proxies of a real `manage.py runserver`.

The application is real too (``tests/proxy_app.py``: ``http.server`` on an ephemeral
127.0.0.1 port, keep-alive); clients are real WebSockets; connections authenticate with
HS256 tokens so the application sees a user and ``meta``.
"""

from __future__ import annotations

import json
import ssl
import statistics
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import trustme
from websockets.sync.client import ClientConnection

from .proxy_app import BROWSER_COOKIE, ProxyApp
from .support import (
    RUNSERVER_EPHEMERAL,
    ServerProcess,
    free_port,
    manage,
    recv_json,
    request,
    subscribe,
    wait_until,
    ws_connect,
)

SECRET = "proxy-tests-secret-" + "z" * 32
APP_KEY = "app-key-for-the-tests-0123456789"  # PROXY["STATIC_HEADERS"]: a secret, never logged
HANDLERS = "tests.proxy_app"


def token(sub: str = "alice", **claims: Any) -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time()) + 3600, **claims}, SECRET, algorithm="HS256")


def routes(app_url: str, down_url: str) -> str:
    return json.dumps(
        [
            {"pattern": "time.now", "handler": f"{HANDLERS}:now"},
            {"pattern": "local.refuse", "handler": f"{HANDLERS}:refuse"},
            {"pattern": "local.broken", "handler": f"{HANDLERS}:broken"},
            {"pattern": "local.sleepy", "handler": f"{HANDLERS}:sleepy"},
            {"pattern": "local.unencodable", "handler": f"{HANDLERS}:unencodable"},
            {"pattern": "down.*", "url": down_url},
            {"pattern": "app.*", "url": app_url},
            {"pattern": "echo", "url": app_url},
        ]
    )


def proxy_env(app: ProxyApp, **more: str) -> dict[str, str]:
    return {
        "ROCKETWS_TOKEN_HMAC_SECRET": SECRET,
        "ROCKETWS_RPC_PROXY_ROUTES": routes(app.url, f"http://127.0.0.1:{free_port()}/rpc"),
        "ROCKETWS_SUBSCRIBE_PROXY_URL": app.url,
        "ROCKETWS_PUBLISH_PROXY_URL": app.url,
        "ROCKETWS_PROXY_TIMEOUT": "1",
        "ROCKETWS_PROXY_HEADERS": "Cookie,Authorization,X-Tenant",
        "ROCKETWS_PROXY_STATIC_HEADERS": json.dumps({"X-Api-Key": APP_KEY}),
        "ROCKETWS_NAMESPACES": json.dumps(
            [{"name": "guarded", "subscribe_proxy": True, "publish_proxy": True}]
        ),
        **more,
    }


@pytest.fixture(scope="module")
def app() -> Iterator[ProxyApp]:
    application = ProxyApp()
    yield application
    application.close()


@pytest.fixture(scope="module")
def srv(app: ProxyApp) -> Iterator[ServerProcess]:
    server = ServerProcess(env=proxy_env(app)).start()
    yield server
    assert APP_KEY not in server.log() and SECRET not in server.log()
    server.kill()  # fails the module's last test if any proxy case logged a traceback


def connected(srv: ServerProcess, sub: str = "alice", **kwargs: Any) -> tuple[ClientConnection, str]:
    """A WebSocket that has connected with a token for ``sub`` (meta: plan pro); its client id."""
    ws = ws_connect(srv.ws_url, **kwargs)
    result = request(ws, "connect", {"token": token(sub, meta={"plan": "pro"})})["result"]
    return ws, result["client"]


def call(ws: ClientConnection, method: str, params: Any = None, rid: Any = 1) -> dict[str, Any]:
    body: dict[str, Any] = {"method": method}
    if params is not None:
        body["params"] = params
    return request(ws, "rpc", body, rid)


def error(ws: ClientConnection, method: str, params: Any = None) -> dict[str, Any]:
    resp = call(ws, method, params)
    assert "error" in resp, resp
    failure: dict[str, Any] = resp["error"]
    return failure


# -- the RPC proxy over HTTP -------------------------------------------------------------


def test_rpc_returns_the_applications_result_with_who_calls_and_forwarded_headers(
    srv: ServerProcess, app: ProxyApp
) -> None:
    headers = {
        "Cookie": "session=abc",
        "Authorization": "Basic YXBwOnNlY3JldA==",
        "X-Tenant": "t1",
        "X-Other": "no",
    }
    ws, client = connected(srv, "alice@example.com", additional_headers=headers)
    with ws:
        assert call(ws, "echo", {"a": [1, 2]})["result"] == {"echo": {"a": [1, 2]}}
        assert call(ws, "echo", ["by", "position"], rid="s")["result"] == {"echo": ["by", "position"]}
        assert call(ws, "echo")["result"] == {"echo": None}
    named, positional, absent = app.seen[-3:]
    request_sent = named["request"]
    assert request_sent["jsonrpc"] == "2.0" and request_sent["method"] == "echo"
    assert request_sent["params"] == {"a": [1, 2]} and isinstance(request_sent["id"], int)
    assert positional["request"]["params"] == ["by", "position"] and "params" not in absent["request"]
    seen = named["headers"]
    assert seen["x-rocketws-client"] == client
    assert seen["x-rocketws-user"] == "alice@example.com"
    assert json.loads(seen["x-rocketws-meta"]) == {"plan": "pro"}
    assert seen["cookie"] == "session=abc" and seen["authorization"] == "Basic YXBwOnNlY3JldA=="
    assert seen["x-tenant"] == "t1" and "x-other" not in seen
    assert seen["content-type"] == "application/json" and seen["x-api-key"] == APP_KEY


def test_startup_log_says_what_is_proxied(srv: ServerProcess) -> None:
    assert (
        "INFO rocketws.server: proxies: rpc time.now, local.refuse, local.broken, "
        "local.sleepy, local.unencodable, down.*, app.*, echo; subscribe; publish"
    ) in srv.log()


def test_rpc_passes_the_applications_own_error_through(srv: ServerProcess) -> None:
    ws, _ = connected(srv)
    with ws:
        assert error(ws, "app.fail") == {
            "code": 1001,
            "message": "insufficient funds",
            "data": {"balance": 3},
        }
        # Sent with HTTP 500, still a JSON-RPC error: the application's.
        assert error(ws, "app.fail500") == {"code": 4000, "message": "failed loudly"}
        # A code in JSON-RPC's reserved range is not the application's to send: wrapped.
        assert error(ws, "app.reserved") == {
            "code": -32045,
            "message": "Application error",
            "data": {"code": -32601, "message": "Method not found"},
        }


def test_rpc_timeout_is_named_and_leaves_the_connection_usable(srv: ServerProcess) -> None:
    ws, _ = connected(srv)
    with ws:
        started = time.monotonic()
        failure = error(ws, "app.slow")
        took = time.monotonic() - started
        assert failure["code"] == -32042 and failure["message"] == "Application timeout"
        assert failure["data"] == {"method": "app.slow", "reason": "no answer within 1 s"}
        assert 0.9 <= took < 3.0
        assert call(ws, "echo", [1])["result"] == {"echo": [1]}
    srv.wait_log(r"WARNING rocketws.proxy: proxy http://127\.0\.0\.1:\d+/rpc, app.slow for \w+: no answer")


def test_rpc_to_an_application_that_is_down_is_unavailable(srv: ServerProcess) -> None:
    ws, _ = connected(srv)
    with ws:
        failure = error(ws, "down.anything")
        assert failure["code"] == -32041 and failure["message"] == "Application unavailable"
        assert failure["data"]["reason"] == "unreachable: Connection refused"


@pytest.mark.parametrize(
    ("method", "code", "reason"),
    [
        ("app.garbage", -32043, "the answer is not JSON"),
        ("app.notjsonrpc", -32043, 'the answer is not a JSON-RPC response (one of "result" or "error")'),
        ("app.wrongid", -32043, "the answer's id is not the request's"),
        ("app.huge", -32043, "the answer is over 1048576 bytes"),
        ("app.status500", -32041, "the application answered HTTP 500"),
    ],
)
def test_rpc_garbage_and_oversized_answers_are_named_errors(
    srv: ServerProcess, method: str, code: int, reason: str
) -> None:
    ws, _ = connected(srv)
    with ws:
        assert error(ws, method) == {
            "code": code,
            "message": {-32043: "Bad application answer", -32041: "Application unavailable"}[code],
            "data": {"method": method, "reason": reason},
        }
        assert call(ws, "echo", [2])["result"] == {"echo": [2]}  # the pool is not poisoned


def test_rpc_without_a_route_and_with_bad_params(srv: ServerProcess) -> None:
    ws, _ = connected(srv)
    with ws:
        assert error(ws, "nowhere.to.go") == {
            "code": -32040,
            "message": "No such proxied method",
            "data": {"method": "nowhere.to.go", "reason": "no PROXY route matches this method"},
        }
        assert error(ws, "")["code"] == -32602
        assert request(ws, "rpc", {"method": 5})["error"]["data"]["param"] == "method"
        assert request(ws, "rpc", {"method": "echo", "params": "text"})["error"]["code"] == -32602
    with ws_connect(srv.ws_url) as fresh:  # before connect: -32010, like every other method
        assert request(fresh, "rpc", {"method": "echo"})["error"]["code"] == -32010


def test_rpc_in_a_batch_is_answered_in_the_batch(srv: ServerProcess) -> None:
    ws, _ = connected(srv)
    with ws:
        ws.send(
            json.dumps(
                [
                    {"jsonrpc": "2.0", "method": "rpc", "params": {"method": "echo", "params": [1]}, "id": 1},
                    {"jsonrpc": "2.0", "method": "ping", "id": 2},
                    {"jsonrpc": "2.0", "method": "rpc", "params": {"method": "app.fail"}, "id": 3},
                ]
            )
        )
        answers = {a["id"]: a for a in recv_json(ws)}
        assert answers[1]["result"] == {"echo": [1]} and answers[2]["result"] == "pong"
        assert answers[3]["error"]["code"] == 1001


def test_browser_session_cookie_reaches_the_application_through_rpc(
    srv: ServerProcess, app: ProxyApp
) -> None:
    """Real Chromium: a page of the application sets a session cookie; the WebSocket's
    upgrade carries it (same site: ports do not count), RocketWS forwards it with rpc."""
    from .browser import Browser

    browser = Browser()
    try:
        browser.navigate(app.page_url)
        out = browser.evaluate(f"""
          new Promise((resolve, reject) => {{
            const ws = new WebSocket({json.dumps(srv.ws_url)});
            const call = (method, params, id) => ws.send(JSON.stringify({{ jsonrpc: "2.0", method, params, id }}));
            ws.onopen = () => call("connect", {{ token: {json.dumps(token("browser"))} }}, 1);
            ws.onmessage = (event) => {{
              const msg = JSON.parse(event.data);
              if (msg.id === 1) call("rpc", {{ method: "echo", params: {{ from: "chromium" }} }}, 2);
              if (msg.id === 2) {{ resolve(msg); ws.close(1000); }}
            }};
            setTimeout(() => reject(new Error("no answer within 15 s")), 15000);
          }})""")
    finally:
        browser.close()
    assert out["result"] == {"echo": {"from": "chromium"}}
    seen = next(s for s in reversed(app.seen) if s["request"]["params"] == {"from": "chromium"})
    assert seen["headers"]["cookie"] == f"session={BROWSER_COOKIE}"
    assert seen["headers"]["x-rocketws-user"] == "browser"


# -- in-process handlers ------------------------------------------------------------------


def test_handler_success_error_bug_timeout_and_bad_result(srv: ServerProcess) -> None:
    ws, client = connected(srv)
    with ws:
        now = call(ws, "time.now")["result"]
        assert abs(now["time"] - time.time()) < 5 and now == {**now, "client": client, "method": "time.now"}
        assert error(ws, "local.refuse", {"x": 1}) == {
            "code": 1002,
            "message": "not today",
            "data": {"params": {"x": 1}},
        }
        assert error(ws, "local.broken") == {
            "code": -32045,
            "message": "Application error",
            "data": {"method": "local.broken", "reason": "the handler raised ValueError"},
        }
        started = time.monotonic()
        assert error(ws, "local.sleepy")["code"] == -32042
        assert 0.9 <= time.monotonic() - started < 3.0
        assert error(ws, "local.unencodable")["code"] == -32043
        assert call(ws, "time.now")["result"]["client"] == client
    # The application's bug is one WARNING line that says where; no traceback (kill checks).
    srv.wait_log(
        r"WARNING rocketws.handlers: handler tests.proxy_app:broken for local.broken raised "
        r"ValueError: handler bug for the tests \(at \S+proxy_app\.py:\d+ in broken\)"
    )


# -- subscribe and publish proxies ---------------------------------------------------------


def test_subscribe_proxy_allows_and_denies_only_in_its_namespace(srv: ServerProcess, app: ProxyApp) -> None:
    ws, client = connected(srv, "bob")
    with ws:
        subscribe(ws, "guarded:room")
        asked = app.seen[-1]
        assert asked["request"]["method"] == "subscribe"
        assert asked["request"]["params"] == {"channel": "guarded:room"}
        assert (
            asked["headers"]["x-rocketws-user"] == "bob" and asked["headers"]["x-rocketws-client"] == client
        )
        denied = request(ws, "subscribe", {"channel": "guarded:deny-me"})["error"]
        assert denied == {"code": 403, "message": "not your channel", "data": {"channel": "guarded:deny-me"}}
        assert srv.result("total_subscribers", {"channel": "guarded:deny-me"}) == 0
        before = app.requests
        subscribe(ws, "open-room")  # no subscribe_proxy in the default namespace
        subscribe(ws, "guarded:room")  # subscribed already: not asked again
        assert app.requests == before
        assert request(ws, "subscriptions")["result"] == ["guarded:room", "open-room"]


def test_publish_proxy_allows_denies_and_replaces_data(srv: ServerProcess, app: ProxyApp) -> None:
    sender, _ = connected(srv, "carol")
    listener, _ = connected(srv, "dave")
    with sender, listener:
        subscribe(sender, "guarded:pub")
        subscribe(listener, "guarded:pub")
        assert (
            request(sender, "send_data", {"channel": "guarded:pub", "data": "hello"})["result"]["delivered"]
            == 1
        )
        assert recv_json(listener)["params"]["data"] == "hello"
        assert app.seen[-1]["request"]["params"] == {"channel": "guarded:pub", "data": "hello"}
        denied = request(sender, "send_data", {"channel": "guarded:pub", "data": "deny"})["error"]
        assert denied == {"code": 451, "message": "not that"}
        replaced = request(sender, "send_data", {"channel": "guarded:pub", "data": "replace me"})
        assert replaced["result"]["delivered"] == 1
        # The denied publication never reached the listener: the next push is the replaced one.
        assert recv_json(listener)["params"]["data"] == {"replaced": True, "by": "the application"}


def refused_start(**env: str) -> str:
    """Run ``runserver`` with ``env``; it must exit 2 with one error line, no traceback."""
    done = manage(*RUNSERVER_EPHEMERAL, env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    return done.stderr


def test_namespace_proxy_options_need_their_url() -> None:
    namespaces = json.dumps([{"name": "g", "subscribe_proxy": True}])
    assert "ROCKETWS_SUBSCRIBE_PROXY_URL" in refused_start(ROCKETWS_NAMESPACES=namespaces)


# -- concurrency, limits, connection reuse (a patient server: TIMEOUT 10) -----------------


@pytest.fixture(scope="module")
def slow_app() -> Iterator[ProxyApp]:
    application = ProxyApp()
    yield application
    application.close()


@pytest.fixture(scope="module")
def patient(slow_app: ProxyApp) -> Iterator[ServerProcess]:
    env = {
        "ROCKETWS_RPC_PROXY_URL": slow_app.url,  # the catch-all: every method goes there
        "ROCKETWS_PROXY_TIMEOUT": "10",
        "ROCKETWS_PROXY_MAX_IN_FLIGHT_PER_CONNECTION": "4",
    }
    server = ServerProcess(env=env).start()
    yield server
    slow_app.release()
    server.kill()


def test_keep_alive_reuses_a_few_connections_for_many_calls(
    patient: ServerProcess, slow_app: ProxyApp
) -> None:
    with ws_connect(patient.ws_url) as ws:
        before = slow_app.connections
        for i in range(50):
            assert call(ws, "any.method", [i], rid=i)["result"] == {"echo": [i]}
    assert slow_app.connections - before <= 2  # one TCP connection, or one more if it closed


def test_calls_are_concurrent_per_connection_up_to_the_limit(
    patient: ServerProcess, slow_app: ProxyApp
) -> None:
    with ws_connect(patient.ws_url) as ws:
        held = slow_app.held()
        for i in range(4):
            ws.send(
                json.dumps({"jsonrpc": "2.0", "method": "rpc", "params": {"method": "app.slow"}, "id": i})
            )
        wait_until(lambda: slow_app.held() == held + 4, what="4 calls held by the application")
        over = request(ws, "rpc", {"method": "echo"}, rid="over")
        assert over["id"] == "over" and over["error"]["code"] == -32044
        assert over["error"]["data"]["limit"] == "max_in_flight_per_connection"
        assert over["error"]["message"] == "Too many concurrent calls"
        assert request(ws, "ping", rid="p") == {"jsonrpc": "2.0", "result": "pong", "id": "p"}
        slow_app.release()
        answers = {recv_json(ws)["id"]: None for _ in range(4)}
        assert sorted(answers) == [0, 1, 2, 3]


def test_a_connection_closing_while_its_calls_wait_loses_only_their_answers(
    patient: ServerProcess, slow_app: ProxyApp
) -> None:
    held = slow_app.held()
    with ws_connect(patient.ws_url) as ws:
        for i in range(3):
            ws.send(
                json.dumps({"jsonrpc": "2.0", "method": "rpc", "params": {"method": "app.slow"}, "id": i})
            )
        wait_until(lambda: slow_app.held() == held + 3, what="3 calls held by the application")
    wait_until(lambda: patient.result("total_subscribers") == 0, what="the connection gone")
    slow_app.release()  # the answers come back for a connection that is gone: dropped
    wait_until(lambda: slow_app.held() == held, what="the calls answered")
    with ws_connect(patient.ws_url) as ws:
        assert call(ws, "echo", [4])["result"] == {"echo": [4]}
    patient.assert_no_traceback()


def _latencies(srv: ServerProcess, ws: ClientConnection, n: int) -> list[float]:
    out = []
    for i in range(n):
        started = time.monotonic()
        assert srv.result("emit", {"channel": "fan", "data": i})["delivered"] == 1
        push = recv_json(ws)
        out.append(time.monotonic() - started)
        assert push["params"]["data"] == i
    return out


def test_fan_out_is_not_delayed_while_many_calls_hang(patient: ServerProcess, slow_app: ProxyApp) -> None:
    callers = [ws_connect(patient.ws_url) for _ in range(10)]
    listener = ws_connect(patient.ws_url)
    try:
        subscribe(listener, "fan")
        idle = _latencies(patient, listener, 30)
        held = slow_app.held()
        for ws in callers:
            for i in range(4):
                ws.send(
                    json.dumps({"jsonrpc": "2.0", "method": "rpc", "params": {"method": "app.slow"}, "id": i})
                )
        wait_until(lambda: slow_app.held() == held + 40, what="40 calls held by the application")
        busy = _latencies(patient, listener, 30)
        assert request(callers[0], "ping")["result"] == "pong"  # a caller is not blocked either
        print(
            f"\nemit -> push latency, median/max ms: idle {statistics.median(idle) * 1e3:.1f}/"
            f"{max(idle) * 1e3:.1f}, with 40 calls hanging {statistics.median(busy) * 1e3:.1f}/"
            f"{max(busy) * 1e3:.1f}"
        )
        assert statistics.median(busy) < max(0.05, 3 * statistics.median(idle))
        assert max(busy) < 0.5
        slow_app.release()
        for ws in callers:
            assert sorted(recv_json(ws)["id"] for _ in range(4)) == [0, 1, 2, 3]
    finally:
        for ws in [*callers, listener]:
            ws.close()


def test_per_process_limit_refuses_calls_beyond_it(slow_app: ProxyApp) -> None:
    env = {"ROCKETWS_RPC_PROXY_URL": slow_app.url, "ROCKETWS_PROXY_MAX_IN_FLIGHT": "3"}
    srv = ServerProcess(env=env).start()
    try:
        first, second = ws_connect(srv.ws_url), ws_connect(srv.ws_url)
        with first, second:
            held = slow_app.held()
            for i in range(3):
                first.send(
                    json.dumps({"jsonrpc": "2.0", "method": "rpc", "params": {"method": "app.slow"}, "id": i})
                )
            wait_until(lambda: slow_app.held() == held + 3, what="3 calls held")
            over = request(second, "rpc", {"method": "echo"})["error"]
            assert over["code"] == -32044 and over["data"]["limit"] == "max_in_flight"
            slow_app.release()
            assert sorted(recv_json(first)["id"] for _ in range(3)) == [0, 1, 2]
            assert request(second, "rpc", {"method": "echo"})["result"] == {"echo": None}
    finally:
        slow_app.release()
        srv.kill()


@pytest.mark.parametrize(
    ("handler", "reason"),
    [
        ("tests.no_such_module:f", "cannot import: ModuleNotFoundError"),
        ("tests.proxy_app:HUGE", "is not callable"),
    ],
)
def test_a_handler_that_cannot_be_loaded_stops_the_start(handler: str, reason: str) -> None:
    error = refused_start(ROCKETWS_RPC_PROXY_ROUTES=json.dumps([{"pattern": "x", "handler": handler}]))
    assert f"invalid PROXY[\"RPC\"] handler='{handler}': {reason}" in error


def test_rpc_over_https_trusts_the_system_store(tmp_path: Any) -> None:
    """The CA comes from SSL_CERT_FILE (as a private CA installed in the system store
    would); without it, the certificate is not trusted: -32041, no traceback."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    app = ProxyApp(tls=context)
    try:
        assert app.url.startswith("https://")
        for env, expected in (({"SSL_CERT_FILE": str(ca_file)}, True), ({}, False)):
            srv = ServerProcess(env={"ROCKETWS_RPC_PROXY_URL": app.url, **env}).start()
            try:
                with ws_connect(srv.ws_url) as ws:
                    answer = call(ws, "echo", [3])
                if expected:
                    assert answer["result"] == {"echo": [3]}
                else:
                    assert answer["error"]["code"] == -32041
                    assert "CERTIFICATE_VERIFY_FAILED" in answer["error"]["data"]["reason"]
            finally:
                srv.kill()
    finally:
        app.close()
