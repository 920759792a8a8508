"""End to end: connection authentication against a real `manage.py runserver`.

Tokens are made here with PyJWT, RSA keys with ``cryptography``; the connect proxy is a
real HTTP application (``http.server`` in a thread) on an ephemeral port.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from .support import ServerProcess, free_port, recv_json, request, subscribe, wait_until, ws_connect
from .test_metrics import scrape, total

SECRET = "s3cret-for-tests-" + "x" * 32
AUDIENCE = "rocketws-tests"


def unsigned(payload: dict[str, Any]) -> str:
    """An ``alg: none`` token (which must be refused)."""
    # PyJWT's annotations leave out the None key that "none" takes.
    return jwt.encode(payload, None, algorithm="none")  # type: ignore[arg-type]


def hs256(claims: dict[str, Any], secret: str = SECRET, **headers: Any) -> str:
    return jwt.encode(claims, secret, algorithm="HS256", headers=headers or None)


def claims(sub: str = "alice", ttl: float = 3600, **more: Any) -> dict[str, Any]:
    return {"sub": sub, "exp": int(time.time() + ttl), "aud": AUDIENCE, **more}


def closed_code(ws: ClientConnection, timeout: float = 10.0) -> tuple[int, str]:
    """Read until the server closes; return its close code and reason."""
    deadline = time.monotonic() + timeout
    with pytest.raises(ConnectionClosed) as info:
        while time.monotonic() < deadline:
            ws.recv(timeout=max(0.01, deadline - time.monotonic()))
    rcvd = info.value.rcvd
    assert rcvd is not None, "closed without a close frame"
    return rcvd.code, rcvd.reason


def refused(url: str, token: str) -> tuple[dict[str, Any], int, str]:
    """connect with ``token``: the error answer, then the close code and reason."""
    with ws_connect(url) as ws:
        resp = request(ws, "connect", {"token": token})
        code, reason = closed_code(ws)
    assert "error" in resp, resp
    return resp["error"], code, reason


def no_secrets_logged(srv: ServerProcess, *secrets: str) -> None:
    log = srv.log()
    for secret in secrets:
        assert secret not in log


@pytest.fixture(scope="module")
def hs_server() -> Iterator[ServerProcess]:
    srv = ServerProcess(
        env={
            "ROCKETWS_TOKEN_HMAC_SECRET": SECRET,
            "ROCKETWS_TOKEN_AUDIENCE": AUDIENCE,
            "ROCKETWS_REFRESH_GRACE": "1",
        }
    ).start()
    yield srv
    no_secrets_logged(srv, SECRET)
    srv.kill()


# -- HS256 ------------------------------------------------------------------------------


def test_hs256_token_connects_with_identity_and_server_side_channels(hs_server: ServerProcess) -> None:
    token = hs256(claims("alice", info={"name": "Alice"}, meta={"plan": "pro"}, channels=["inbox:alice"]))
    with ws_connect(hs_server.ws_url) as ws:
        resp = request(ws, "connect", {"token": token, "name": "tests", "version": "1"})
        result = resp["result"]
        assert result["user"] == "alice" and result["channels"] == ["inbox:alice"]
        assert len(result["client"]) == 32 and result["ping_interval"] == 25.0
        assert 3590 <= result["expires_in"] <= 3600
        assert hs_server.result("total_subscribers", {"channel": "inbox:alice"}) == 1
        hs_server.call("emit", {"channel": "inbox:alice", "data": "hi"})
        assert recv_json(ws)["params"]["data"] == "hi"
        subscribe(ws, "chat")  # OPEN now: every client method
    no_secrets_logged(hs_server, token)


@pytest.mark.parametrize(
    ("make", "code", "close", "reason_part"),
    [
        (lambda: hs256(claims(ttl=-60)), -32012, 4502, "expired"),
        (lambda: hs256(claims(), secret="another-secret-" + "y" * 32), -32011, 4501, "Signature"),
        (lambda: hs256({**claims(), "aud": "someone-else"}), -32011, 4501, "audience"),
        (lambda: unsigned(claims()), -32011, 4501, "alg"),
        (lambda: hs256({k: v for k, v in claims().items() if k != "sub"}), -32011, 4501, "sub"),
        (lambda: "not.a.token", -32011, 4501, ""),
    ],
    ids=["expired", "wrong-signature", "wrong-aud", "alg-none", "missing-sub", "garbage"],
)
def test_hs256_bad_tokens_are_refused_with_named_codes(
    hs_server: ServerProcess, make: Any, code: int, close: int, reason_part: str
) -> None:
    error, close_code, _ = refused(hs_server.ws_url, make())
    assert error["code"] == code and reason_part.lower() in error["data"]["reason"].lower()
    assert close_code == close  # 4500-4999: do not reconnect with this token


def test_connecting_serves_only_connect_and_ping(hs_server: ServerProcess) -> None:
    with ws_connect(hs_server.ws_url) as ws:
        denied = request(ws, "subscribe", {"channel": "chat"})
        assert denied["error"]["code"] == -32010 and denied["error"]["data"]["reason"] == "call connect first"
        assert request(ws, "ping")["result"] == "pong"
        assert request(ws, "no_such_method")["error"]["code"] == -32601
        assert request(ws, "connect", {"token": hs256(claims())})["result"]["user"] == "alice"
        subscribe(ws, "chat")
        again = request(ws, "connect", {"token": hs256(claims())})
        assert again["error"]["code"] == -32015


def test_connect_without_a_token_is_refused_when_only_jwt_is_configured(hs_server: ServerProcess) -> None:
    with ws_connect(hs_server.ws_url) as ws:
        resp = request(ws, "connect", {})
        assert resp["error"]["code"] == -32011 and closed_code(ws)[0] == 4501


def test_token_in_the_query_string_accepts_at_the_upgrade(hs_server: ServerProcess) -> None:
    with ws_connect(hs_server.ws_url + "?token=" + hs256(claims("bob"))) as ws:
        subscribe(ws, "q-chat")  # no connect needed
    with ws_connect(hs_server.ws_url + "?token=" + hs256(claims(ttl=-60))) as ws:
        assert closed_code(ws)[0] == 4502


def test_token_in_the_authorization_header_accepts_at_the_upgrade(hs_server: ServerProcess) -> None:
    headers = {"Authorization": "Bearer " + hs256(claims("carol"))}
    with ws_connect(hs_server.ws_url, additional_headers=headers) as ws:
        subscribe(ws, "h-chat")
        assert request(ws, "connect", {"token": hs256(claims("carol"))})["error"]["code"] == -32015
    bad = {"Authorization": "Bearer " + hs256(claims(), secret="z" * 40)}
    with ws_connect(hs_server.ws_url, additional_headers=bad) as ws:
        assert closed_code(ws)[0] == 4501


# -- expiry and refresh -------------------------------------------------------------------


def _wait_refresh_required(ws: ClientConnection) -> dict[str, Any]:
    push: dict[str, Any] = recv_json(ws)
    assert push["method"] == "refresh_required" and "id" not in push, push
    return push


def test_refresh_before_the_grace_ends_keeps_the_connection(hs_server: ServerProcess) -> None:
    exp = int(time.time()) + 2
    with ws_connect(hs_server.ws_url) as ws:
        assert request(ws, "connect", {"token": hs256({**claims(), "exp": exp})})["result"]["expires_in"] <= 2
        _wait_refresh_required(ws)  # pushed up to 5 s before exp: here at once
        resp = request(ws, "refresh", {"token": hs256(claims(ttl=3600))})
        assert 3590 <= resp["result"]["expires_in"] <= 3600
        # the old exp + REFRESH_GRACE (1 s) passes: the connection stays open
        wait_until(lambda: time.time() > exp + 1 + 1, timeout=10, what="the old grace to pass")
        assert request(ws, "ping")["result"] == "pong"


def test_no_refresh_within_the_grace_closes_with_4011(hs_server: ServerProcess) -> None:
    exp = int(time.time()) + 1
    with ws_connect(hs_server.ws_url) as ws:
        request(ws, "connect", {"token": hs256({**claims(), "exp": exp})})
        _wait_refresh_required(ws)
        code, reason = closed_code(ws)
        assert (code, reason) == (4011, "token expired, no refresh")  # reconnect allowed
        assert time.time() >= exp + 1  # not before exp + REFRESH_GRACE


def test_refresh_with_another_users_token_is_refused_and_the_connection_stays(
    hs_server: ServerProcess,
) -> None:
    with ws_connect(hs_server.ws_url) as ws:
        request(ws, "connect", {"token": hs256(claims("alice"))})
        resp = request(ws, "refresh", {"token": hs256(claims("mallory"))})
        assert resp["error"]["code"] == -32011 and "sub" in resp["error"]["data"]["reason"]
        assert request(ws, "ping")["result"] == "pong"


# -- connect timeout ----------------------------------------------------------------------


def test_no_connect_within_connect_timeout_closes_with_4010(start_server: Any) -> None:
    srv = start_server(ROCKETWS_TOKEN_HMAC_SECRET=SECRET, ROCKETWS_CONNECT_TIMEOUT="0.5")
    with ws_connect(srv.ws_url) as ws:
        opened = time.monotonic()
        assert request(ws, "ping")["result"] == "pong"  # ping does not count as connect
        assert closed_code(ws) == (4010, "connect timeout")
        assert time.monotonic() - opened >= 0.4
    with ws_connect(srv.ws_url) as ws:  # a connected one stays
        request(ws, "connect", {"token": hs256({"sub": "a"})})
        wait_until(lambda: time.monotonic() - opened > 1.5, what="past the connect timeout")
        assert request(ws, "ping")["result"] == "pong"


# -- RS256 --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def rs_server(
    rsa_key: rsa.RSAPrivateKey, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    path = tmp_path_factory.mktemp("keys") / "public.pem"
    path.write_bytes(pem)
    srv = ServerProcess(
        env={
            "ROCKETWS_TOKEN_PUBLIC_KEY": str(path),
            "ROCKETWS_TOKEN_AUDIENCE": AUDIENCE,
            "ROCKETWS_TOKEN_REQUIRE_EXP": "1",
        }
    ).start()
    yield srv
    srv.kill()


def _pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _hs256_signed_with(secret: bytes, payload: dict[str, Any]) -> str:
    """An HS256 token made by hand (PyJWT refuses to use a PEM key as an HMAC secret)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing = (
        b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + b64(json.dumps(payload).encode())
    )
    return signing + "." + b64(hmac.new(secret, signing.encode(), hashlib.sha256).digest())


def test_rs256_token_connects(rs_server: ServerProcess, rsa_key: rsa.RSAPrivateKey) -> None:
    token = jwt.encode(claims("dave"), rsa_key, algorithm="RS256")
    with ws_connect(rs_server.ws_url) as ws:
        assert request(ws, "connect", {"token": token})["result"]["user"] == "dave"


def test_rs256_bad_tokens_are_refused(rs_server: ServerProcess, rsa_key: rsa.RSAPrivateKey) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cases = {
        "expired": (jwt.encode(claims(ttl=-60), rsa_key, algorithm="RS256"), 4502),
        "wrong signature": (jwt.encode(claims(), other, algorithm="RS256"), 4501),
        "wrong aud": (jwt.encode({**claims(), "aud": "x"}, rsa_key, algorithm="RS256"), 4501),
        "alg none": (unsigned(claims()), 4501),
        "missing sub": (
            jwt.encode({"exp": int(time.time()) + 60, "aud": AUDIENCE}, rsa_key, algorithm="RS256"),
            4501,
        ),
        "missing exp (required)": (
            jwt.encode({"sub": "a", "aud": AUDIENCE}, rsa_key, algorithm="RS256"),
            4501,
        ),
        # RS/HS confusion: the public key used as an HMAC secret
        "public key as HS256 secret": (_hs256_signed_with(_pem(rsa_key), claims()), 4501),
    }
    for name, (token, close) in cases.items():
        error, code, _ = refused(rs_server.ws_url, token)
        assert (error["code"], code) == ((-32012 if close == 4502 else -32011), close), name


# -- anonymous mode -----------------------------------------------------------------------


def test_anonymous_mode_connect_answers_an_anonymous_identity(server: ServerProcess) -> None:
    with ws_connect(server.ws_url) as ws:
        subscribe(ws, "anon")  # accepted at once, as RocketWS 0.2
        result = request(ws, "connect", {})["result"]
        assert (result["user"], result["expires_in"], result["channels"]) == ("", None, [])
    assert "anonymous mode" in server.log()


# -- connect proxy ------------------------------------------------------------------------


class ProxyApp:
    """A tiny application: answers by the ``session`` cookie; records what it got."""

    def __init__(self) -> None:
        self.seen: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.release = threading.Event()
        app = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                app.seen.append((dict(self.headers), body))
                cookie = self.headers.get("Cookie", "")
                if "session=slow" in cookie:
                    app.release.wait(10)  # the application is slow (not test synchronisation)
                answer: Any = {"error": {"message": "not signed in"}}
                if "session=good" in cookie:
                    answer = {
                        "result": {
                            "user": "erin",
                            "info": {"name": "Erin"},
                            "meta": {"role": "admin"},
                            "channels": ["proxy:erin"],
                            "expire_at": int(time.time()) + 600,
                        }
                    }
                elif "session=banned" in cookie:
                    answer = {"disconnect": {"code": 4601, "reason": "banned"}}
                elif "session=nonsense" in cookie:
                    answer = {"result": {"user": 42}}
                data = json.dumps(answer).encode()
                status = 500 if "session=broken" in cookie else 200
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/rocketws/connect"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def proxy_app() -> Iterator[ProxyApp]:
    app = ProxyApp()
    yield app
    app.close()


@pytest.fixture(scope="module")
def proxy_server(proxy_app: ProxyApp) -> Iterator[ServerProcess]:
    srv = ServerProcess(
        env={"ROCKETWS_CONNECT_PROXY_URL": proxy_app.url, "ROCKETWS_CONNECT_PROXY_TIMEOUT": "1"}
    ).start()
    yield srv
    srv.kill()


def _cookie(value: str) -> dict[str, str]:
    return {"Cookie": f"session={value}", "X-Not-Forwarded": "1"}


def test_connect_proxy_accepts_with_the_applications_identity(
    proxy_server: ServerProcess, proxy_app: ProxyApp
) -> None:
    with ws_connect(proxy_server.ws_url, additional_headers=_cookie("good")) as ws:
        result = request(ws, "connect", {"name": "web", "version": "2.0"})["result"]
        assert result["user"] == "erin" and result["channels"] == ["proxy:erin"]
        assert 590 <= result["expires_in"] <= 600
        assert proxy_server.result("total_subscribers", {"channel": "proxy:erin"}) == 1
        subscribe(ws, "after-proxy")
    headers, body = proxy_app.seen[-1]
    assert body == {"client": result["client"], "name": "web", "version": "2.0"}
    names = {name.lower(): value for name, value in headers.items()}
    assert names["cookie"] == "session=good" and "x-not-forwarded" not in names


def test_connect_proxy_refusal_and_disconnect_are_passed_on(proxy_server: ServerProcess) -> None:
    with ws_connect(proxy_server.ws_url, additional_headers=_cookie("nobody")) as ws:
        resp = request(ws, "connect", {})
        assert resp["error"]["code"] == -32013 and resp["error"]["data"]["reason"] == "not signed in"
        assert closed_code(ws) == (4503, "connect refused")
    with ws_connect(proxy_server.ws_url, additional_headers=_cookie("banned")) as ws:
        assert request(ws, "connect", {})["error"]["code"] == -32013
        assert closed_code(ws) == (4601, "banned")


@pytest.mark.parametrize("cookie", ["broken", "nonsense"])
def test_connect_proxy_mistakes_are_unavailable_without_a_traceback(
    proxy_server: ServerProcess, cookie: str
) -> None:
    with ws_connect(proxy_server.ws_url, additional_headers=_cookie(cookie)) as ws:
        assert request(ws, "connect", {})["error"]["code"] == -32014
        assert closed_code(ws)[0] == 4012  # reconnect allowed
    proxy_server.assert_no_traceback()


def test_connect_proxy_timeout_does_not_block_other_connections(proxy_server: ServerProcess) -> None:
    with (
        ws_connect(proxy_server.ws_url, additional_headers=_cookie("slow")) as slow,
        ws_connect(proxy_server.ws_url) as other,
    ):
        started = time.monotonic()
        slow.send(json.dumps({"jsonrpc": "2.0", "method": "connect", "params": {}, "id": 1}))
        assert request(other, "ping")["result"] == "pong"  # served while the proxy call waits
        assert time.monotonic() - started < 0.9
        resp = recv_json(slow)
        assert resp["error"]["code"] == -32014 and "within 1 s" in resp["error"]["data"]["reason"]
        assert closed_code(slow)[0] == 4012


def test_connect_proxy_calls_are_counted_in_metrics(proxy_server: ServerProcess) -> None:
    before = scrape(proxy_server)
    for cookie, code in (("good", None), ("nobody", -32013), ("broken", -32014), ("good", None)):
        with ws_connect(proxy_server.ws_url, additional_headers=_cookie(cookie)) as ws:
            resp = request(ws, "connect", {})
            assert (resp["error"]["code"] if code is not None else resp["result"]["user"]) == (code or "erin")
    after = scrape(proxy_server)

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert delta("rocketws_proxy_calls_total", kind="connect", pattern="connect") == 4
    assert delta("rocketws_proxy_calls_total") == 4
    assert delta("rocketws_proxy_errors_total", kind="connect", pattern="connect", code="-32013") == 1
    assert delta("rocketws_proxy_errors_total", kind="connect", pattern="connect", code="-32014") == 1
    assert delta("rocketws_proxy_errors_total") == 2
    assert delta("rocketws_proxy_call_duration_seconds_count", kind="connect") == 4


def test_connect_proxy_down_is_unavailable(start_server: Any) -> None:
    srv = start_server(ROCKETWS_CONNECT_PROXY_URL=f"http://127.0.0.1:{free_port()}/connect")
    with ws_connect(srv.ws_url) as ws:
        resp = request(ws, "connect", {})
        assert resp["error"]["code"] == -32014 and "unreachable" in resp["error"]["data"]["reason"]
        assert closed_code(ws)[0] == 4012


def test_startup_log_says_how_connections_authenticate(
    hs_server: ServerProcess, proxy_server: ServerProcess
) -> None:
    assert "connections must authenticate: JWT (HS256, HS384, HS512)" in hs_server.log()
    assert "connections must authenticate: connect proxy" in proxy_server.log()


def test_settings_path_of_a_missing_key_file_is_a_config_error(tmp_path: Path, start_server: Any) -> None:
    with pytest.raises(RuntimeError, match="TOKEN_PUBLIC_KEY"):
        start_server(ROCKETWS_TOKEN_PUBLIC_KEY=str(tmp_path / "missing.pem"))


# -- a real browser -----------------------------------------------------------------------


def test_browser_connects_with_a_token_then_subscribes(hs_server: ServerProcess) -> None:
    from .browser import Browser

    token = hs256(claims("browser-user", channels=["browser:inbox"]))
    browser = Browser()
    try:
        out = browser.evaluate(f"""
          new Promise((resolve, reject) => {{
            const ws = new WebSocket({json.dumps(hs_server.ws_url)});
            const seen = [];
            const call = (method, params, id) => ws.send(JSON.stringify({{ jsonrpc: "2.0", method, params, id }}));
            ws.onopen = () => {{ call("subscribe", {{ channel: "early" }}, 1); call("connect", {{ token: {json.dumps(token)} }}, 2); }};
            ws.onmessage = (event) => {{
              const msg = JSON.parse(event.data);
              seen.push(msg);
              if (msg.id === 2) call("subscribe", {{ channel: "late" }}, 3);
              if (msg.id === 3) ws.close(1000, "done");
            }};
            ws.onclose = (event) => resolve({{ seen, code: event.code }});
            setTimeout(() => reject(new Error("not done within 15 s")), 15000);
          }})""")
    finally:
        browser.close()
    early, connected, late = out["seen"]
    assert early["error"]["code"] == -32010
    assert connected["result"]["user"] == "browser-user" and connected["result"]["channels"] == [
        "browser:inbox"
    ]
    assert late["result"] == {"channel": "late", "subscribed": True} and out["code"] == 1000
