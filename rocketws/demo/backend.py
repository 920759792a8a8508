"""The demo's backend: an ordinary Python HTTP server (standard library and PyJWT only).

It is what an application puts beside RocketWS, small enough to copy:

- ``GET /`` and ``/static/...``: the single-page app (the first page over HTTP; every
  later page, sign-in token refresh and update travel over the open WebSocket);
- ``POST /api/sign-in`` ``{"user": NAME}``: a connection token (HS256 JWT) for one of
  the demo users, signed with the secret RocketWS verifies with.  This token endpoint
  exists only in the demo: ``manage.py demo`` starts it; ``runserver`` never does;
- ``POST /rocketws/rpc``: the RPC proxy's JSON-RPC requests (``rpc {method, params}``
  from a browser, forwarded by RocketWS): ``page.get`` answers the HTML of a page,
  ``chat.send`` publishes a chat message (``emit`` on the MessagesSource, so it is in
  the room's history with an offset, and every subscriber, the sender too, gets it);
- ``POST /api/send``: ``chat.send`` over plain HTTP (``Authorization: Bearer TOKEN``),
  for a server without the RPC proxy.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import unquote

import jwt

logger = logging.getLogger("rocketws.demo")

USERS = ("alice", "bob", "carol", "dave")
ROOMS = ("lobby", "random", "dev")
ROOM_NAMESPACE = "room"
TOKEN_TTL = 600  # seconds; the page refreshes it over the WebSocket before it expires
MAX_BODY = 64 * 1024
MAX_TEXT = 2000
# RocketWS sends this header (PROXY["STATIC_HEADERS"]) with every proxied call: it tells
# the backend the call is RocketWS's, so X-RocketWS-User can be trusted.
PROXY_KEY_HEADER = "X-Demo-Proxy-Key"
_STATIC = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}

PAGES = {
    "about": (
        "About this demo",
        "<p>This page came over the open WebSocket: the browser called <code>rpc "
        "{method: 'page.get'}</code>, RocketWS forwarded it to the demo backend (its RPC "
        "proxy) and returned the answer. Only the first page was loaded over HTTP.</p>"
        "<p>Chat messages go to channels <code>room:NAME</code>, which keep history: a "
        "client that loses its connection recovers what it missed when it comes back.</p>",
    ),
    "help": (
        "How to try it",
        "<ol><li>Open this page in two windows and sign in as two users.</li>"
        "<li>Chat in a room; the list on the right shows who is there.</li>"
        "<li>Cut one window's network (or stop the server and start it again): when it "
        "comes back it says how many messages it recovered.</li></ol>",
    ),
}


class DemoBackend(ThreadingHTTPServer):
    """The demo's HTTP server; ``config`` (the WebSocket URL etc.) goes to the page."""

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], secret: str, page_config: dict[str, Any], proxy_key: str = ""
    ) -> None:
        super().__init__(address, _Handler)
        self.secret = secret
        self.proxy_key = proxy_key
        self.page_config = page_config
        self.messages_source = ""  # RocketWS's backend URL, set once it listens

    def emit(self, channel: str, data: Any) -> Any:
        """``emit`` on RocketWS's MessagesSource; its JSON-RPC answer."""
        body = json.dumps(
            {"jsonrpc": "2.0", "method": "emit", "params": {"channel": channel, "data": data}, "id": 1}
        )
        request = urllib.request.Request(
            self.messages_source, body.encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            return json.load(resp)

    def user_of(self, token: str) -> str | None:
        """The user a connection token was issued to, or None if it is not valid."""
        try:
            claims = jwt.decode(token, self.secret, algorithms=["HS256"])
        except jwt.InvalidTokenError:
            return None
        user = claims.get("sub")
        return user if user in USERS else None

    def rpc(self, method: str, params: Any, user: str) -> Any:
        """One proxied ``rpc`` call; raises RpcFailure for the application's errors."""
        if method == "page.get":
            name = params.get("name") if isinstance(params, dict) else None
            if name not in PAGES:
                raise RpcFailure(404, "No such page", {"name": name, "pages": sorted(PAGES)})
            title, html = PAGES[name]
            return {"name": name, "title": title, "html": html, "for": user or "guest"}
        if method == "rooms.list":
            return [f"{ROOM_NAMESPACE}:{room}" for room in ROOMS]
        if method == "chat.send":
            return self.send(params, user)
        raise RpcFailure(-32601, "Method not found", {"method": method})

    def send(self, params: Any, user: str) -> Any:
        """``chat.send {room, text, id}`` from ``user``: emitted to the room."""
        if user not in USERS:
            raise RpcFailure(403, "Sign in first", None)
        if not isinstance(params, dict):
            raise RpcFailure(-32602, "Invalid params", {"reason": "{room, text, id} expected"})
        room, text, mid = params.get("room"), params.get("text"), params.get("id")
        if room not in [f"{ROOM_NAMESPACE}:{r}" for r in ROOMS]:
            raise RpcFailure(404, "No such room", {"room": room})
        if not isinstance(text, str) or not 0 < len(text) <= MAX_TEXT or not isinstance(mid, str):
            raise RpcFailure(
                -32602, "Invalid params", {"reason": f"text: 1 to {MAX_TEXT} characters; id: a string"}
            )
        answer = self.emit(room, {"id": mid[:100], "user": user, "text": text})
        if "error" in answer:
            raise RpcFailure(503, "Not published", answer["error"])
        return answer["result"]

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/"

    def token(self, user: str) -> str:
        now = int(time.time())
        claims = {"sub": user, "iat": now, "exp": now + TOKEN_TTL, "info": {"name": user.title()}}
        return jwt.encode(claims, self.secret, algorithm="HS256")

    def serve_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="demo-backend", daemon=True)
        thread.start()
        return thread


class RpcFailure(Exception):
    """The application's error answer: ``code``, ``message``, ``data``."""

    def __init__(self, code: int, message: str, data: Any) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


class _Handler(BaseHTTPRequestHandler):
    server: DemoBackend
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (the base's name)
        logger.debug("%s %s", self.address_string(), format % args)

    def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, value: Any) -> None:
        self._send(status, json.dumps(value).encode(), "application/json")

    def do_GET(self) -> None:  # noqa: N802  (http.server's name)
        path = self.path.split("?", 1)[0]
        static = resources.files("rocketws.demo").joinpath("static")
        if path in ("/", "/index.html"):
            html = static.joinpath("index.html").read_text(encoding="utf-8")
            config = json.dumps(self.server.page_config).replace("<", "\\u003c")
            body = html.replace("{{CONFIG}}", config).encode()
            self._send(200, body, "text/html; charset=utf-8")
        elif path.startswith("/static/") and path[len("/static/") :] in _STATIC:
            name = path[len("/static/") :]
            self._send(200, static.joinpath(name).read_bytes(), _STATIC[name])
        else:
            self._json(404, {"error": "not found"})

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 <= length <= MAX_BODY:
            raise ValueError("body too large")
        return json.loads(self.rfile.read(length) or b"null")

    def do_POST(self) -> None:  # noqa: N802
        routes: dict[str, Callable[[Any], None]] = {
            "/api/sign-in": self._sign_in,
            "/api/send": self._send_message,
            "/rocketws/rpc": self._rpc,
        }
        route = routes.get(self.path.split("?", 1)[0])
        if route is None:
            self._json(404, {"error": "not found"})
            return
        try:
            body = self._body()
        except (ValueError, UnicodeDecodeError):
            self._json(400, {"error": "a JSON body of at most 64 KiB"})
            return
        route(body)

    def _sign_in(self, body: Any) -> None:
        user = body.get("user") if isinstance(body, dict) else None
        if user not in USERS:
            self._json(HTTPStatus.FORBIDDEN, {"error": f"demo users: {', '.join(USERS)}"})
            return
        self._json(200, {"user": user, "token": self.server.token(user), "expires_in": TOKEN_TTL})

    def _send_message(self, body: Any) -> None:
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        user = self.server.user_of(token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            self._json(HTTPStatus.UNAUTHORIZED, {"error": "Authorization: Bearer TOKEN (from /api/sign-in)"})
            return
        try:
            self._json(200, {"result": self.server.send(body, user)})
        except RpcFailure as exc:
            self._json(
                HTTPStatus.BAD_REQUEST,
                {"error": {"code": exc.code, "message": exc.message, "data": exc.data}},
            )

    def _rpc(self, body: Any) -> None:
        # A JSON-RPC request from RocketWS's RPC proxy; who calls is in X-RocketWS-* headers.
        if not isinstance(body, dict) or not isinstance(body.get("method"), str):
            self._json(
                200, {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": None}
            )
            return
        key = self.headers.get(PROXY_KEY_HEADER, "")
        if not self.server.proxy_key or not hmac.compare_digest(key.encode(), self.server.proxy_key.encode()):
            self._json(HTTPStatus.FORBIDDEN, {"error": f"RocketWS's {PROXY_KEY_HEADER} expected"})
            return
        user = unquote(self.headers.get("X-RocketWS-User", ""))
        try:
            result = self.server.rpc(body["method"], body.get("params"), user)
            answer: dict[str, Any] = {"jsonrpc": "2.0", "result": result, "id": body.get("id")}
        except RpcFailure as exc:
            error = {"code": exc.code, "message": exc.message, "data": exc.data}
            answer = {"jsonrpc": "2.0", "error": error, "id": body.get("id")}
        self._json(200, answer)
