"""End to end in a real browser: headless Chromium against a real server.

The README's browser example, and close codes as a browser sees them (gevent-websocket
0.10.1 alone made browsers see 1005 for every close).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from .browser import Browser
from .support import ServerProcess, StartServer, wait_until
from .wsraw import RawWebSocket


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    b = Browser()
    yield b
    b.close()


def test_browser_readme_example_subscribes_and_receives_emit(browser: Browser, server: ServerProcess) -> None:
    rid = browser.start_eval(f"""
      new Promise((resolve, reject) => {{
        const ws = new WebSocket({json.dumps(server.ws_url)});
        const seen = [];
        let nextId = 1;
        const call = (method, params) =>
          ws.send(JSON.stringify({{ jsonrpc: "2.0", method, params, id: nextId++ }}));
        ws.onopen = () => call("subscribe", {{ channel: "browser-chat" }});
        ws.onmessage = (event) => {{
          const msg = JSON.parse(event.data);
          seen.push(msg);
          if (msg.method === "message") ws.close(1000, "done");
        }};
        ws.onclose = (event) => resolve({{ seen, code: event.code, reason: event.reason, clean: event.wasClean }});
        setTimeout(() => reject(new Error("no push within 15 s")), 15000);
      }})""")
    wait_until(lambda: server.result("total_subscribers", {"channel": "browser-chat"}) == 1, timeout=15)
    server.call("emit", {"channel": "browser-chat", "data": {"text": "hi ü"}})
    out = browser.result(rid)
    reply, push = out["seen"]
    assert reply == {"jsonrpc": "2.0", "result": {"channel": "browser-chat", "subscribed": True}, "id": 1}
    assert push["method"] == "message" and push["params"]["data"] == {"text": "hi ü"}
    assert (out["code"], out["reason"], out["clean"]) == (1000, "done", True)


@pytest.mark.parametrize(
    ("send", "code", "reason"),
    [
        ("ws.send('x'.repeat(70000))", 1009, "message over 65536 bytes"),
        (
            "ws.send(new Uint8Array([1, 2, 3]))",
            1003,
            "binary frames are not supported; send JSON-RPC as text",
        ),
    ],
)
def test_browser_sees_real_close_codes_and_reasons(
    browser: Browser, server: ServerProcess, send: str, code: int, reason: str
) -> None:
    out = browser.evaluate(f"""
      new Promise((resolve, reject) => {{
        const ws = new WebSocket({json.dumps(server.ws_url)});
        ws.onopen = () => {send};
        ws.onclose = (event) => resolve({{ code: event.code, reason: event.reason, clean: event.wasClean }});
        setTimeout(() => reject(new Error("not closed within 15 s")), 15000);
      }})""")
    assert out == {"code": code, "reason": reason, "clean": True}


def test_browser_sees_1001_when_the_server_shuts_down(browser: Browser, start_server: StartServer) -> None:
    srv = start_server()
    rid = browser.start_eval(f"""
      new Promise((resolve, reject) => {{
        const ws = new WebSocket({json.dumps(srv.ws_url)});
        ws.onopen = () => ws.send(JSON.stringify({{ jsonrpc: "2.0", method: "subscribe", params: ["bye"], id: 1 }}));
        ws.onclose = (event) => resolve({{ code: event.code, reason: event.reason }});
        setTimeout(() => reject(new Error("not closed within 15 s")), 15000);
      }})""")
    wait_until(lambda: srv.result("total_subscribers", {"channel": "bye"}) == 1, timeout=15)
    assert srv.terminate() == 0
    assert browser.result(rid) == {"code": 1001, "reason": "server shutting down"}


def test_browser_offering_rocketws_gets_it_and_pings(browser: Browser, server: ServerProcess) -> None:
    out = browser.evaluate(f"""
      new Promise((resolve, reject) => {{
        const ws = new WebSocket({json.dumps(server.ws_url)}, ["rocketws"]);
        ws.onopen = () => ws.send(JSON.stringify({{ jsonrpc: "2.0", method: "ping", id: 1 }}));
        ws.onmessage = (event) => {{
          resolve({{ reply: JSON.parse(event.data), protocol: ws.protocol, extensions: ws.extensions }});
          ws.close(1000);
        }};
        ws.onerror = () => reject(new Error("connection failed"));
        setTimeout(() => reject(new Error("no reply within 15 s")), 15000);
      }})""")
    # Chromium offers permessage-deflate; it is declined: COMPRESSION is off by default
    assert out == {
        "reply": {"jsonrpc": "2.0", "result": "pong", "id": 1},
        "protocol": "rocketws",
        "extensions": "",
    }


def test_browser_offering_only_unknown_subprotocols_fails(browser: Browser, server: ServerProcess) -> None:
    # Accepted without Sec-WebSocket-Protocol (RFC 6455 4.2.2); a browser then fails the
    # connection, as protocol.md's Handshake section says.
    out = browser.evaluate(f"""
      new Promise((resolve, reject) => {{
        const ws = new WebSocket({json.dumps(server.ws_url)}, ["x-unknown"]);
        let opened = false, errored = false;
        ws.onopen = () => {{ opened = true; }};
        ws.onerror = () => {{ errored = true; }};
        ws.onclose = (event) => resolve({{ opened, errored, code: event.code }});
        setTimeout(() => reject(new Error("not closed within 15 s")), 15000);
      }})""")
    assert out == {"opened": False, "errored": True, "code": 1006}


def test_browser_answers_server_pings_and_stays_connected(
    browser: Browser, start_server: StartServer
) -> None:
    # A client that does not answer a ping is closed 0.8 s after it goes quiet (4009).
    srv = start_server(ROCKETWS_PING_INTERVAL="0.3", ROCKETWS_PONG_TIMEOUT="0.5")
    rid = browser.start_eval(f"""
      new Promise((resolve, reject) => {{
        const ws = new WebSocket({json.dumps(srv.ws_url)});
        ws.onopen = () => ws.send(JSON.stringify({{ jsonrpc: "2.0", method: "subscribe", params: ["tab"], id: 1 }}));
        ws.onmessage = (event) => {{
          const msg = JSON.parse(event.data);
          if (msg.method === "message") resolve({{ closed: false, data: msg.params.data }});
        }};
        ws.onclose = (event) => resolve({{ closed: true, code: event.code, reason: event.reason }});
        setTimeout(() => reject(new Error("no push within 30 s")), 30000);
      }})""")
    wait_until(lambda: srv.result("total_subscribers", {"channel": "tab"}) == 1, timeout=15)
    quiet_since = time.monotonic()
    # Meanwhile the tab sends nothing; three raw clients that never answer are dropped one
    # after the other, each after its ping went unanswered: as long again as the tab idles.
    for _ in range(3):
        control = RawWebSocket(srv.ws_port)
        assert control.read_until_close()[1:] == (4009, "no pong")
        control.close()
    assert time.monotonic() - quiet_since >= 3 * (0.3 + 0.5) - 0.3
    assert srv.result("total_subscribers", {"channel": "tab"}) == 1
    srv.call("emit", {"channel": "tab", "data": "still connected"})
    assert browser.result(rid) == {"closed": False, "data": "still connected"}


BROWSER_PUSH = """
  new Promise((resolve, reject) => {{
    const ws = new WebSocket({url});
    ws.onopen = () => ws.send(JSON.stringify({{ jsonrpc: "2.0", method: "subscribe", params: ["{channel}"], id: 1 }}));
    ws.onmessage = (event) => {{
      const msg = JSON.parse(event.data);
      if (msg.method === "message") {{ ws.close(1000, "done"); resolve({{ extensions: ws.extensions, data: msg.params.data }}); }}
    }};
    ws.onclose = (event) => reject(new Error("closed before a push: " + event.code));
    setTimeout(() => reject(new Error("no push within 15 s")), 15000);
  }})"""


@pytest.mark.parametrize("compression", [True, False])
def test_browser_receives_pushes_with_compression_on_and_off(
    browser: Browser, start_server: StartServer, compression: bool
) -> None:
    # Chromium offers permessage-deflate on every WebSocket; ws.extensions is what the
    # server accepted.
    srv = start_server(ROCKETWS_COMPRESSION="1" if compression else "0")
    channel = f"browser-deflate-{compression}"
    rid = browser.start_eval(BROWSER_PUSH.format(url=json.dumps(srv.ws_url), channel=channel))
    wait_until(lambda: srv.result("total_subscribers", {"channel": channel}) == 1, timeout=15)
    data = {"rows": [{"id": i, "text": "hi ü " * 5} for i in range(20)]}
    srv.call("emit", {"channel": channel, "data": data})
    out = browser.result(rid)
    expected = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    assert out == {"extensions": expected if compression else "", "data": data}
    assert "Traceback" not in srv.log()
