"""A small application behind RocketWS's proxies, for the end-to-end tests.

``ProxyApp`` is a real HTTP/1.1 server (``http.server``, a thread per connection, keep-alive)
on an ephemeral 127.0.0.1 port serving JSON-RPC methods whose behaviour the tests choose
by name.  It counts TCP connections and requests, records what it was sent, and can hold
``slow`` calls until released.  The functions at the bottom are in-process handlers
(``PROXY["RPC"]`` entries ``{"pattern": ..., "handler": "tests.proxy_app:now"}``), also an
example of the handler signature ``handler(params, context)``.
"""

from __future__ import annotations

import json
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import gevent

from rocketws.core.exceptions import ApplicationError
from rocketws.core.proxy import CallContext

BROWSER_COOKIE = "from-the-application-page"
HUGE = 2 * 1024 * 1024  # bytes of the `huge` answer (over the default MAX_RESPONSE_SIZE)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # RocketWS closed a connection
            super().handle_error(request, client_address)


class ProxyApp:
    """The application: ``url`` to configure, ``connections`` and ``requests`` counted,
    ``seen`` the requests (JSON body and lower-cased headers), ``release()`` ends the
    ``slow`` calls waiting."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        """``tls``: a server context to serve ``https://`` with."""
        self.connections = 0
        self.requests = 0
        self.seen: list[dict[str, Any]] = []
        self.waiting = 0  # slow calls being held
        self.lock = threading.Lock()
        self.gate = threading.Event()
        app = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive

            def setup(self) -> None:
                super().setup()
                # http.server writes an answer's head and body in two writes: without
                # TCP_NODELAY the body waits for the client's delayed ACK (40 ms).
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with app.lock:
                    app.connections += 1

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                """A page that gives the browser a session cookie (for the browser test)."""
                page = b"<!doctype html><title>app</title>"
                self.send_response(200)
                self.send_header("Set-Cookie", f"session={BROWSER_COOKIE}; Path=/; SameSite=Lax")
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = json.loads(body)
                with app.lock:
                    app.requests += 1
                    app.seen.append(
                        {"request": request, "headers": {k.lower(): v for k, v in self.headers.items()}}
                    )
                app.answer(self, request)

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.page_url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}/"
        self.url = self.page_url + "rpc"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def release(self) -> None:
        """End the slow calls waiting now (later ones wait for the next release)."""
        gate, self.gate = self.gate, threading.Event()
        gate.set()

    def close(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()

    def answer(self, handler: BaseHTTPRequestHandler, request: dict[str, Any]) -> None:
        method, params, rid = request["method"], request.get("params"), request["id"]
        behaviour = _BEHAVIOURS.get(method, _echo)
        status, body = behaviour(self, params, rid)
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
        except OSError:  # RocketWS gave up on this call (timeout) and closed the connection
            handler.close_connection = True

    def held(self) -> int:
        with self.lock:
            return self.waiting


def _result(rid: Any, result: Any) -> tuple[int, bytes]:
    return 200, json.dumps({"jsonrpc": "2.0", "result": result, "id": rid}).encode()


def _error(rid: Any, code: Any, message: str, data: Any = None, status: int = 200) -> tuple[int, bytes]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return status, json.dumps({"jsonrpc": "2.0", "error": error, "id": rid}).encode()


def _echo(app: ProxyApp, params: Any, rid: Any) -> tuple[int, bytes]:
    return _result(rid, {"echo": params})


def _slow(app: ProxyApp, params: Any, rid: Any) -> tuple[int, bytes]:
    gate = app.gate
    with app.lock:
        app.waiting += 1
    try:
        gate.wait(30)
    finally:
        with app.lock:
            app.waiting -= 1
    return _result(rid, "late")


def _subscribe(app: ProxyApp, params: Any, rid: Any) -> tuple[int, bytes]:
    if "deny" in params["channel"]:
        return _error(rid, 403, "not your channel", {"channel": params["channel"]})
    return _result(rid, {})


def _publish(app: ProxyApp, params: Any, rid: Any) -> tuple[int, bytes]:
    data = params["data"]
    if data == "deny":
        return _error(rid, 451, "not that")
    if data == "replace me":
        return _result(rid, {"data": {"replaced": True, "by": "the application"}})
    return _result(rid, {})


_BEHAVIOURS: dict[str, Callable[[ProxyApp, Any, Any], tuple[int, bytes]]] = {
    "echo": _echo,
    "app.fail": lambda app, params, rid: _error(rid, 1001, "insufficient funds", {"balance": 3}),
    "app.reserved": lambda app, params, rid: _error(rid, -32601, "Method not found"),
    "app.fail500": lambda app, params, rid: _error(rid, 4000, "failed loudly", status=500),
    "app.status500": lambda app, params, rid: (500, b"<html>Internal Server Error</html>"),
    "app.garbage": lambda app, params, rid: (200, b"this is not JSON {"),
    "app.notjsonrpc": lambda app, params, rid: (200, b'{"hello": "world"}'),
    "app.wrongid": lambda app, params, rid: _result("another", 1),
    "app.huge": lambda app, params, rid: _result(rid, "x" * HUGE),
    "app.slow": _slow,
    "subscribe": _subscribe,
    "publish": _publish,
}


# -- in-process handlers: handler(params, context) -> result ------------------------------


def now(params: Any, context: CallContext) -> dict[str, Any]:
    """``time.now``: the server's clock, and who asked."""
    return {"time": time.time(), "client": context.client, "method": context.method}


def refuse(params: Any, context: CallContext) -> None:
    """An application's deliberate error: code, message and data reach the client."""
    raise ApplicationError(1002, "not today", {"params": params})


def broken(params: Any, context: CallContext) -> None:
    """An application bug: the client gets -32045, the log one WARNING line."""
    raise ValueError("handler bug for the tests")


def sleepy(params: Any, context: CallContext) -> str:
    """Longer than any test's PROXY["TIMEOUT"]."""
    gevent.sleep(30)
    return "late"


def unencodable(params: Any, context: CallContext) -> object:
    """A result JSON cannot hold."""
    return object()
