"""rocketws.js in a real Chromium (Playwright), imported from the server's own
``/rocketws.js``: subscribe and receive, reconnect and resubscribe across a server restart
(SIGTERM, started again) and across a connection cut by a TCP relay, and a rejected token
ending in the closed state without reconnecting."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jwt
import pytest

from .browser import Browser, js
from .relay import Relay
from .support import ServerProcess, StartServer, wait_until

SECRET = "browser-client-tests-hmac-secret-0123456789"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    b = Browser()
    yield b
    b.close()


def _start(browser: Browser, http_base: str, ws_url: str, channel: str, **options: Any) -> None:
    """Import rocketws.js from ``http_base`` in the page and subscribe to ``channel``;
    what happens is recorded in ``window.log``."""
    browser.evaluate(f"""
      (async () => {{
        const {{ RocketWS }} = await import({js(http_base + "rocketws.js")});
        const log = window.log = {{ events: [], messages: [], delays: [], subscribed: [] }};
        const rws = window.rws = new RocketWS({js(ws_url)}, {{ minReconnectDelay: 200, maxReconnectDelay: 2000, ...{js(options)} }});
        rws.on("disconnected", (d) => log.events.push(["disconnected", d.code, d.reason]));
        rws.on("reconnecting", (r) => log.delays.push(r.delay));
        rws.on("connected", () => log.events.push(["connected"]));
        rws.on("closed", (c) => log.events.push(["closed", c.code, c.reason]));
        const sub = window.sub = rws.subscribe({js(channel)}, {{
          onMessage: (m) => log.messages.push(m.data),
          onSubscribed: (ctx) => log.subscribed.push(ctx),
        }});
        return true;
      }})()""")


def _log(browser: Browser) -> dict[str, Any]:
    log: dict[str, Any] = browser.evaluate("window.log")
    return log


def _http(server: ServerProcess) -> str:
    return server.ws_url.replace("ws://", "http://", 1)


def _subscribed(server: ServerProcess, channel: str, n: int = 1) -> bool:
    return bool(server.result("total_subscribers", {"channel": channel}) == n)


def test_browser_imports_rocketws_js_and_gets_pushes(browser: Browser, server: ServerProcess) -> None:
    _start(browser, _http(server), server.ws_url, "browser-client")
    wait_until(lambda: _subscribed(server, "browser-client"), timeout=15)
    server.call("emit", {"channel": "browser-client", "data": {"text": "hi ü"}})
    server.call("notify_all", {"data": "everyone"})
    wait_until(lambda: _log(browser)["messages"], timeout=10)
    assert _log(browser)["messages"] == [{"text": "hi ü"}]
    assert browser.evaluate("window.rws.call('ping')") == "pong"
    answers = browser.evaluate(
        "window.rws.batch([['ping'], ['nope']]).then(a => a.map(x => x.error ? x.error.code : x.result))"
    )
    assert answers == ["pong", -32601]
    browser.evaluate("window.rws.close()")


def test_browser_client_reconnects_with_backoff_after_a_restart(browser: Browser) -> None:
    first = ServerProcess().start()
    port = first.ws_port
    second = ServerProcess(args=[f"--ws-conn=127.0.0.1:{port}", "--ms-conn=127.0.0.1:0"])
    try:
        _start(browser, _http(first), first.ws_url, "restart-room")
        wait_until(lambda: _subscribed(first, "restart-room"), timeout=15)
        assert first.terminate() == 0
        # Down: the client retries, each delay within its doubling ceiling (full jitter).
        wait_until(lambda: len(_log(browser)["delays"]) >= 3, timeout=15, what="three reconnect attempts")
        second.start()
        wait_until(lambda: _subscribed(second, "restart-room"), timeout=15, what="resubscribed after restart")
        second.call("emit", {"channel": "restart-room", "data": "after restart"})
        wait_until(lambda: _log(browser)["messages"] == ["after restart"], timeout=10)
        log = _log(browser)
        assert log["events"][0] == ["connected"]
        assert log["events"][1] == ["disconnected", 1001, "server shutting down"]
        assert log["events"][-1] == ["connected"]
        for attempt, delay in enumerate(log["delays"]):
            assert 0 <= delay < min(2000, 200 * 2**attempt), log["delays"]
        assert [ctx["wasRecovering"] for ctx in log["subscribed"]] == [False, False]
        browser.evaluate("window.rws.close()")
    finally:
        first.kill()
        second.kill()


def test_browser_client_comes_back_after_the_network_path_is_cut(
    browser: Browser, server: ServerProcess
) -> None:
    relay = Relay(server.ws_port)
    try:
        _start(browser, _http(server), f"ws://127.0.0.1:{relay.port}/", "relay-room")
        wait_until(lambda: _subscribed(server, "relay-room"), timeout=15)
        relay.cut()
        wait_until(lambda: _subscribed(server, "relay-room", 0), timeout=10, what="the server saw the reset")
        server.call("emit", {"channel": "relay-room", "data": "while cut"})
        wait_until(lambda: len(_log(browser)["delays"]) >= 2, timeout=15, what="refused reconnects")
        relay.restore()
        wait_until(
            lambda: _subscribed(server, "relay-room"), timeout=15, what="resubscribed through the relay"
        )
        server.call("emit", {"channel": "relay-room", "data": "after"})
        wait_until(lambda: _log(browser)["messages"] == ["after"], timeout=10)
        assert ["disconnected", 1006, ""] in _log(browser)["events"]
        browser.evaluate("window.rws.close()")
    finally:
        relay.close()


def test_browser_client_with_a_rejected_token_does_not_reconnect(
    browser: Browser, start_server: StartServer
) -> None:
    srv = start_server(ROCKETWS_TOKEN_HMAC_SECRET=SECRET)
    bad = jwt.encode({"sub": "mallory"}, "another-secret-that-is-32-bytes-long", algorithm="HS256")
    _start(browser, _http(srv), srv.ws_url, "vault", token=bad)
    wait_until(lambda: ["closed", 4501, "invalid token"] in _log(browser)["events"], timeout=15)
    log = _log(browser)
    assert log["delays"] == [] and browser.evaluate("window.rws.state") == "closed"
    assert browser.evaluate("window.sub.state") != "subscribed"
    good = jwt.encode({"sub": "alice"}, SECRET, algorithm="HS256")
    assert (
        browser.evaluate(f"""
      (async () => {{
        const {{ RocketWS }} = await import({js(_http(srv) + "rocketws.js")});
        const rws = new RocketWS({js(srv.ws_url)}, {{ token: {js(good)} }});
        await rws.ready(10000);
        const user = rws.user;
        rws.close();
        return user;
      }})()""")
        == "alice"
    )


def test_browser_client_waits_while_offline_and_reconnects_when_online(
    browser: Browser, server: ServerProcess
) -> None:
    _start(
        browser,
        _http(server),
        server.ws_url,
        "offline-room",
        minReconnectDelay=60000,
        maxReconnectDelay=60000,
    )
    wait_until(lambda: _subscribed(server, "offline-room"), timeout=15)
    browser.context.set_offline(True)
    try:
        wait_until(lambda: ["disconnected", 1006, "offline"] in _log(browser)["events"], timeout=10)
        # Paused: no reconnect timer runs while the browser is offline.
        assert browser.evaluate(
            "[window.rws.state, window.rws._reconnectTimer, window.rws._reconnectDue]"
        ) == [
            "connecting",
            None,
            True,
        ]
    finally:
        browser.context.set_offline(False)
    # Online again: at once, not after the 60 s backoff.
    wait_until(
        lambda: _log(browser)["events"][-1] == ["connected"], timeout=10, what="reconnected when online"
    )
    wait_until(lambda: _subscribed(server, "offline-room"), timeout=10)
    server.call("emit", {"channel": "offline-room", "data": "back"})
    wait_until(lambda: _log(browser)["messages"] == ["back"], timeout=10)
    browser.evaluate("window.rws.close()")
