"""The MessagesSource: backends publish with JSON-RPC 2.0 over HTTP.

``POST /`` takes a JSON-RPC document (any content type, UTF-8 JSON) and answers 200
with the JSON-RPC response, or 204 when the document held only notifications.
``GET /health`` reports liveness (503 when the broker is unreachable; ``status``
``"resubscribing"`` while the broker has not heard every subscribed channel again after
an outage), ``GET /ready`` readiness (the same body; 503 until the broker is reachable
and resubscribed) and ``GET /metrics`` the Prometheus text format, all from an
``Observer`` (``process/observer.py``; with ``--workers`` they cover every worker).
Other methods on ``/``: 405; other paths: 404;
bodies over ``max_request_body``: 413 with a JSON-RPC error.  HTTP/1.0 and 1.1 only
(others: 505); ``Upgrade`` is ignored (RFC 9110 section 7.8) except ``websocket`` (400:
the WebSocket endpoint has its own port); a request must arrive whole within
``request_timeout`` (else 408).  With an API key set,
``POST /`` needs ``Authorization: apikey KEY`` or ``X-API-Key: KEY`` (compared in
constant time); without it or with another key: 401 with a JSON-RPC error, decided
before the body is read.  ``/health`` and ``/ready`` stay open (docs/security.md says why);
``/metrics`` needs the key too unless METRICS_PUBLIC.

HTTP/1.1 framing (request line, headers, Content-Length and chunked bodies, keep-alive,
pipelining) is parsed by httptools (llhttp, the parser behind Node.js and uvicorn) on a
gevent StreamServer: pywsgi's per-request Python (email-based header parsing, environ
building, two writes per response) cost about 250 µs of CPU per request.  With TLS
(``https://``) each connection first finishes its TLS handshake within HANDSHAKE_TIMEOUT.
"""

from __future__ import annotations

import hmac
import logging
import os
import socket
import time
from dataclasses import dataclass
from email.utils import formatdate
from functools import cache
from importlib import resources
from typing import Any, Protocol

import gevent
import httptools
from gevent.server import StreamServer

from rocketws.config import Config
from rocketws.core import jsonrpc, rpc
from rocketws.core.codes import RpcCode
from rocketws.core.node import Node
from rocketws.transports.tls import TlsContext

logger = logging.getLogger(__name__)

MAX_HEAD_BYTES = 64 * 1024  # request line + headers; more: 431
LINGER_SECONDS = 2.0  # after an early answer (413, 431, 400): time to discard input
LINGER_BYTES = 4 * 1024 * 1024  # ... and how much of it
_REASONS = {
    100: "Continue",
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Payload Too Large",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}
MAX_CONTENT_LENGTH_DIGITS = 19  # more cannot be a size (2**63 has 19): 400


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    close: bool = False


def _json(status: int, obj: Any, *headers: tuple[str, str]) -> Response:
    return Response(status, jsonrpc.dumps(obj), headers)


compare_digest = hmac.compare_digest  # the key comparison: constant time (tests check it is this)
_CHALLENGE = ("WWW-Authenticate", 'apikey realm="rocketws", header="X-API-Key"')


def _unauthorized(reason: str) -> Response:
    error = jsonrpc.ErrorResponse(None, RpcCode.UNAUTHORIZED, {"reason": reason})
    return Response(401, jsonrpc.encode(error), (_CHALLENGE,))


_NO_KEY = "missing API key: send Authorization: apikey KEY or X-API-Key: KEY"
_WRONG_KEY = "wrong API key"


class Observer(Protocol):
    """What ``/health`` and ``/metrics`` answer (``process.observer.Observer``)."""

    def health(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, a JSON object); may wait for other workers (cooperatively)."""

    def metrics(self) -> bytes:
        """The Prometheus text exposition; may wait for other workers (cooperatively)."""


_METRICS_TYPE = ("Content-Type", "text/plain; version=0.0.4; charset=utf-8")


# -- the admin dashboard (docs/admin.md) ----------------------------------------------------

ADMIN_PATH = "/admin"
_ADMIN_HEADERS = (
    ("Content-Type", "text/html; charset=utf-8"),
    ("Cache-Control", "no-cache"),
    # The page runs only its own script and talks only to this origin.
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self' 'unsafe-inline'; "
        "style-src 'unsafe-inline'; connect-src 'self'; img-src data:; frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
)


def admin_page(method: str) -> Response:
    """``GET /admin``: the dashboard page.  It holds no data: the figures and the console
    go through ``POST /`` (and ``/metrics``) with the API key the operator types in."""
    if method not in ("GET", "HEAD"):
        return _json(405, {"error": "method not allowed"}, ("Allow", "GET, HEAD"))
    return Response(200, _admin_html(), _ADMIN_HEADERS)


@cache
def _admin_html() -> bytes:
    return resources.files("rocketws").joinpath("static/admin.html").read_bytes()


class MessagesSourceApp:
    """Answers MessagesSource requests with ``rpc.backend_methods`` (no I/O here)."""

    def __init__(
        self,
        node: Node,
        config: Config,
        methods: rpc.Methods | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.node = node
        self.config = config
        self.methods = methods if methods is not None else rpc.backend_methods
        self.context = rpc.BackendContext(node, config.max_channel_length)
        self.observer = observer
        self.rpc_stats = node.stats.rpc["http"] if config.metrics else None
        self._key = None if config.api_key is None else config.api_key.encode("ascii")

    def route(
        self, method: str, path: str, key: bytes | None = None, *, render: bool = True
    ) -> Response | None:
        """The answer decided before the body is read, or None for ``POST /``.

        ``key``: the API key the request sent (``/metrics`` may need it); ``render``
        False: only decide (``/metrics``, ``/health`` and ``/ready`` are not computed).
        """
        if path == ADMIN_PATH and self.config.admin:
            return admin_page(method)
        if path in ("/health", "/ready"):
            if method not in ("GET", "HEAD"):
                return _json(405, {"error": "method not allowed"}, ("Allow", "GET, HEAD"))
            if not render:
                return Response(200)
            healthy, body = self.health()
            if path == "/ready":  # readiness: also resubscribed after a Redis outage
                healthy = healthy and body["broker"]["ready"] is True
                if not healthy:
                    body = {**body, "status": "not ready"}
            return _json(200 if healthy else 503, body)
        if path == "/metrics" and self.config.metrics and self.observer is not None:
            if method not in ("GET", "HEAD"):
                return _json(405, {"error": "method not allowed"}, ("Allow", "GET, HEAD"))
            if not self.config.metrics_public:
                denied = self.authorize(key)
                if denied is not None:
                    return denied
            if not render:
                return Response(200)
            return Response(200, self.observer.metrics(), (_METRICS_TYPE,))
        if path != "/":
            return _json(404, {"error": "not found"})
        if method != "POST":
            return _json(405, {"error": "use POST with a JSON-RPC 2.0 body"}, ("Allow", "POST"))
        return None

    def health(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, the ``/health`` body): the observer's, or without one this node's
        (status, connections, channels, broker kind/connected/ready)."""
        if self.observer is not None:
            return self.observer.health()
        hub, broker = self.node.hub, self.node.broker
        connected = broker.stats.connected
        ready = connected and broker.ready()
        status = "ok" if ready else "resubscribing" if connected else "broker unreachable"
        body = {
            "status": status,
            "connections": hub.connections,
            "channels": hub.channel_count,
            "broker": {"kind": broker.kind, "connected": connected, "ready": ready},
        }
        return connected, body

    def authorize(self, key: bytes | None) -> Response | None:
        """The 401 answer for a ``POST /`` that did not send the API key, else None.

        ``key`` is what the request sent (``X-API-Key``, or ``Authorization: apikey``).
        """
        expected = self._key
        if expected is None:
            return None
        if key is None:
            logger.info("MessagesSource: refused a request without an API key")
            return _unauthorized(_NO_KEY)  # a new Response: the caller may mark it close
        if not compare_digest(key, expected):
            logger.info("MessagesSource: refused a request with a wrong API key")
            return _unauthorized(_WRONG_KEY)
        return None

    def call(self, body: bytes) -> Response:
        """Dispatch a JSON-RPC body: 200 with the response, or 204 when none is due."""
        config = self.config
        answer = rpc.dispatch(
            body,
            self.methods,
            self.context,
            config.max_batch_size,
            config.max_nesting_depth,
            stats=self.rpc_stats,
        )
        return Response(204) if answer is None else Response(200, answer)

    def too_large(self) -> Response:
        limit = self.config.max_request_body
        error = jsonrpc.ErrorResponse(
            None,
            RpcCode.LIMIT_EXCEEDED,
            {"limit": "max_request_body", "max": limit, "reason": f"request body over {limit} bytes"},
        )
        return Response(413, jsonrpc.encode(error), close=True)


class _DateHeader:
    """The ``Date`` header value, formatted once per second instead of per response.

    ``ok_head`` is the head of a keep-alive 200 JSON response up to the Content-Length
    value, built in the same second: the common answer costs one bytes formatting.
    """

    def __init__(self) -> None:
        self._second = -1
        self._value = ""
        self._ok_head = b""

    def __call__(self) -> str:
        now = int(time.time())
        if now != self._second:
            self._second, self._value = now, formatdate(now, usegmt=True)
            self._ok_head = (
                f"HTTP/1.1 200 OK\r\nDate: {self._value}\r\n"
                "Content-Type: application/json\r\nContent-Length: "
            ).encode("latin-1")
        return self._value

    def ok_head(self) -> bytes:
        self()
        return self._ok_head


_date = _DateHeader()


def encode_response(
    response: Response, head_only: bool = False, keep_alive: bool = True, http10: bool = False
) -> bytes:
    """Status line, headers and body in one buffer (one write, one packet).

    ``http10``: the request was HTTP/1.0, whose connections close unless the answer says
    ``Connection: keep-alive`` (RFC 9112 section 9.3).
    """
    status = response.status
    if status == 200 and keep_alive and not (head_only or response.headers or response.close or http10):
        return b"%s%d\r\n\r\n%s" % (_date.ok_head(), len(response.body), response.body)
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, '')}", f"Date: {_date()}"]
    typed = any(name == "Content-Type" for name, _ in response.headers)
    if status != 204:
        if not typed:
            lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(response.body)}")
    lines.extend(f"{name}: {value}" for name, value in response.headers)
    if response.close or not keep_alive:
        lines.append("Connection: close")
    elif http10:
        lines.append("Connection: keep-alive")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only or status == 204 else head + response.body


def _path(url: bytes) -> str:
    """The path of a request target ("" when it has none, e.g. ``*``)."""
    if url == b"/":
        return "/"  # what backends send: no URL parsing needed
    try:
        path = httptools.parse_url(url).path
    except httptools.HttpParserInvalidURLError:
        return ""
    return path.decode("latin-1", "replace") if path else ""


class _Refused(Exception):
    """Raised from a parser callback to stop parsing; the answer is ``_Request.refusal``."""


class _Request:
    """httptools callbacks for one connection: collects each request in turn."""

    __slots__ = (
        "url",
        "body",
        "body_size",
        "done",
        "head_size",
        "headers_complete",
        "expect_continue",
        "too_large",
        "raw_head",
        "limit",
        "key",
        "refusal",
        "started",
        "http10",
        "upgrade",
        "framing",
    )

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.done: list[
            tuple[str, str, bytes | None, bool, bool, bytes | None]
        ] = []  # ..., keep-alive, HTTP/1.0, API key
        self.reset()

    def reset(self) -> None:
        self.url = b""
        self.body: list[bytes] = []
        self.body_size = 0
        self.head_size = 0
        self.raw_head = 0
        self.headers_complete = False
        self.expect_continue = False
        self.too_large = False
        self.key: bytes | None = None  # the API key the request sent
        self.refusal: Response | None = None
        self.started: float | None = None  # monotonic time of the request's first byte
        self.http10 = False
        self.upgrade: bytes | None = None  # the Upgrade header's value
        self.framing: list[bytes] = []  # Content-Length, Transfer-Encoding, Connection lines

    def refuse(self, status: int, error: str) -> None:
        """Stop parsing: answer ``status`` and close."""
        self.refusal = _json(status, {"error": error})
        raise _Refused

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.started = time.monotonic()

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value)
        n = len(name)  # most headers are neither: skip lowering them
        if n == 14 and name.lower() == b"content-length":
            digits = value.strip()
            if len(digits) > MAX_CONTENT_LENGTH_DIGITS:  # int() of 4,300+ digits raises
                self.refuse(400, f"bad request: Content-Length over {MAX_CONTENT_LENGTH_DIGITS} digits")
            if digits.isdigit() and int(digits) > self.limit:
                self.too_large = True
            self.framing.append(b"Content-Length: " + value)
        elif n == 6 and name.lower() == b"expect" and value.strip().lower() == b"100-continue":
            self.expect_continue = True
        elif n == 9 and name.lower() == b"x-api-key":
            self.key = value.strip()
        elif n == 13 and name.lower() == b"authorization":
            scheme, _, credentials = value.strip().partition(b" ")
            if scheme.lower() == b"apikey":  # RFC 9110 11.1: the scheme is case-insensitive
                self.key = credentials.strip()
        elif n in _FRAMING_LENGTHS:
            self.on_framing_header(name, value)

    def on_framing_header(self, name: bytes, value: bytes) -> None:
        """Keep what frames and persists the request, to parse it again without Upgrade."""
        lowered = name.lower()
        if lowered == b"upgrade":
            self.upgrade = value
        elif lowered in (b"transfer-encoding", b"connection"):
            self.framing.append(name + b": " + value)

    def on_headers_complete(self, version: str) -> None:
        self.headers_complete = True
        if self.head_size > MAX_HEAD_BYTES:
            self.refuse(431, "request head too large")
        if version != "1.1":
            if version != "1.0":
                self.refuse(505, f"HTTP/{version} is not supported: use HTTP/1.1 (or 1.0)")
            self.http10 = True

    def head_without_upgrade(self, method: bytes) -> bytes:
        """This request's head as llhttp needs it to read the body: no Upgrade header."""
        version = b"1.0" if self.http10 else b"1.1"
        lines = [b"%s %s HTTP/%s" % (method, self.url, version), *self.framing]
        if self.expect_continue:
            lines.append(b"Expect: 100-continue")
        return b"\r\n".join(lines) + b"\r\n\r\n"

    def on_body(self, data: bytes) -> None:
        self.body_size += len(data)
        if self.body_size > self.limit:
            self.too_large = True
            self.body.clear()
        elif not self.too_large:
            self.body.append(data)


_FRAMING_LENGTHS = frozenset((len(b"upgrade"), len(b"transfer-encoding"), len(b"connection")))


class HttpConnection:
    """One keep-alive HTTP/1.1 connection of the MessagesSource."""

    def __init__(self, sock: Any, app: MessagesSourceApp, idle_timeout: float, *, tls: bool = False) -> None:
        self.sock = sock
        self.tls = tls  # a TLS socket: written with sendall (os.write would bypass TLS)
        self.app = app
        self.idle_timeout = idle_timeout
        self.request_timeout = app.config.request_timeout
        self.state = _Request(app.config.max_request_body)
        self.parser = httptools.HttpRequestParser(self)

    # httptools calls these on the connection; they are forwarded to the request state
    def on_message_begin(self) -> None:
        self.state.on_message_begin()

    def on_url(self, url: bytes) -> None:
        self.state.on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.state.on_header(name, value)

    def on_headers_complete(self) -> None:
        self.state.on_headers_complete(self.parser.get_http_version())

    def on_body(self, data: bytes) -> None:
        self.state.on_body(data)

    def on_message_complete(self) -> None:
        st = self.state
        if st.upgrade is not None and self.parser.should_upgrade():
            return  # llhttp stops here (HttpParserUpgrade): see _without_upgrade
        method = self.parser.get_method().decode("latin-1")
        path = _path(st.url)
        body = None if st.too_large else b"".join(st.body)
        st.done.append((method, path, body, self.parser.should_keep_alive(), st.http10, st.key))
        st.reset()

    def run(self) -> None:
        sock = self.sock
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self.idle_timeout)
        deadline: float | None = None  # of the request in progress (REQUEST_TIMEOUT)
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    return
                if not self._feed(data):
                    self._linger()
                    return
                if self.state.started is not None or deadline is not None:
                    deadline = self._set_deadline()
                # recv returns at once while a backend keeps requests coming (pipelined
                # or back to back): let the hub run, so that the pushes these requests
                # queued are written and other connections are served, before the next
                gevent.sleep(0)
        except TimeoutError:
            if self.state.started is not None:  # a request in progress: a slow client
                self._timed_out()
        except (ConnectionError, OSError):
            return  # idle timeout, reset or EOF: normal life for a keep-alive connection
        finally:
            sock.close()

    def _set_deadline(self) -> float | None:
        """Bound the next read by what is left of REQUEST_TIMEOUT for the request in
        progress (a byte-at-a-time drip must not extend it), or by the idle timeout."""
        started = self.state.started
        if started is None:
            self.sock.settimeout(self.idle_timeout)
            return None
        deadline = started + self.request_timeout
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        self.sock.settimeout(min(self.idle_timeout, remaining))
        return deadline

    def _timed_out(self) -> None:
        """408 and close: the request did not arrive whole within REQUEST_TIMEOUT."""
        logger.info("MessagesSource request not received within %s s: 408", self.request_timeout)
        error = f"request not received within {self.request_timeout} s"
        response = Response(408, jsonrpc.dumps({"error": error}), close=True)
        try:
            self._write(encode_response(response, keep_alive=False))
            self._linger()
        except OSError:
            pass

    def _linger(self) -> None:
        """Close gracefully after an answer sent before the request was read in full.

        Closing with unread input makes the kernel send a reset, which can destroy the
        answer before the client reads it; so stop writing and discard what the client
        still sends, for at most LINGER_SECONDS or LINGER_BYTES.
        """
        self.sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + LINGER_SECONDS
        discarded = 0
        while discarded < LINGER_BYTES:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(65536)
            if not chunk:
                return
            discarded += len(chunk)

    def _feed(self, data: bytes) -> bool:
        """Parse ``data`` and answer, in order, every request it completes; False to close.

        Requests completed before a malformed one are answered first (HTTP pairs answers
        with requests by order); then the error, and the connection closes.
        """
        st = self.state
        if not st.headers_complete:
            st.raw_head += len(data)  # bounds a head that never ends
        failure: Response | None = None
        try:
            self._parse(data)
        except httptools.HttpParserCallbackError:
            if st.refusal is None:
                raise
            failure = st.refusal
        except httptools.HttpParserError as exc:
            logger.info("bad HTTP request from a backend: %s", exc)
            failure = _json(400, {"error": f"bad request: {exc}"})
        if failure is None and not st.headers_complete and st.raw_head > MAX_HEAD_BYTES:
            failure = _json(431, {"error": "request head too large"})
        out = bytearray()
        keep = True
        for method, path, body, keep_alive, http10, key in st.done:
            response = self.app.route(method, path, key) or self.app.authorize(key)
            if response is None:
                response = self.app.too_large() if body is None else self.app.call(body)
            keep = keep_alive and not response.close
            out += encode_response(response, head_only=method == "HEAD", keep_alive=keep, http10=http10)
            if not keep:
                break
        st.done.clear()
        if keep and failure is None and st.headers_complete:
            # The request in progress: decide what we can before reading its body (no
            # need to receive 1 GB to refuse it), or invite the body (100-continue).
            failure = self._early_answer()
            if failure is None and st.expect_continue:
                st.expect_continue = False
                out += b"HTTP/1.1 100 Continue\r\n\r\n"
        if keep and failure is not None:
            failure.close = True
            out += encode_response(failure, keep_alive=False)
            keep = False
        if out:
            self._write(out)
        return keep

    def _parse(self, data: bytes) -> None:
        """Feed the parser; an upgrade other than WebSocket is ignored (RFC 9110 7.8)."""
        while True:
            try:
                self.parser.feed_data(data)
                return
            except httptools.HttpParserUpgrade as exc:
                st = self.state
                if st.upgrade is None:  # CONNECT: answered as routed (404), then closed
                    if st.done:
                        method, path, body, _, http10, key = st.done[-1]
                        st.done[-1] = (method, path, body, False, http10, key)
                    return
                if b"websocket" in st.upgrade.lower():
                    st.refusal = _json(400, {"error": "no WebSocket upgrade here: use the WebSocket port"})
                    raise httptools.HttpParserCallbackError from None
                data = self._without_upgrade() + data[exc.args[0] :]

    def _without_upgrade(self) -> bytes:
        """Parse the upgrade request again as a plain one: llhttp stopped at its head,
        body unread.  A fresh parser is given the same request line and framing
        headers (without Upgrade), then what follows the head."""
        st = self.state
        head = st.head_without_upgrade(self.parser.get_method())
        key = st.key  # the API key header is not among the framing headers parsed again
        self.parser = httptools.HttpRequestParser(self)
        st.reset()
        st.key = key
        return head

    def _early_answer(self) -> Response | None:
        method = self.parser.get_method().decode("latin-1")
        routed = self.app.route(method, _path(self.state.url), self.state.key, render=False)
        if routed is not None and method not in ("GET", "HEAD"):
            return routed  # a body may follow that we will not read: answered, then closed
        if routed is None:
            denied = self.app.authorize(self.state.key)
            if denied is not None:
                return denied  # no body read for a caller without the key
        if self.state.too_large:
            return self.app.too_large()
        return None

    def _write(self, data: bytes | bytearray) -> None:
        # A response almost always fits the socket buffer: one non-blocking write first,
        # gevent's sendall (which waits cooperatively) only for what is left.
        if self.tls:
            self.sock.sendall(data)
            return
        try:
            sent = os.write(self.sock.fileno(), data)
        except BlockingIOError:
            sent = 0
        if sent < len(data):
            self.sock.sendall(memoryview(data)[sent:])


class MessagesSourceServer(StreamServer):  # type: ignore[misc, unused-ignore]  # untyped in --strict
    """gevent StreamServer running an HttpConnection per accepted socket."""

    def __init__(
        self, listener: Any, app: MessagesSourceApp, idle_timeout: float, tls: TlsContext | None = None
    ) -> None:
        super().__init__(listener, self._serve)
        self.app = app
        self.idle_timeout = idle_timeout
        self.tls = tls

    def _serve(self, sock: Any, address: Any) -> None:
        try:
            if self.tls is not None:
                sock = self.tls.handshake(sock, self.app.config.handshake_timeout, address)
                if sock is None:
                    return
            HttpConnection(sock, self.app, self.idle_timeout, tls=self.tls is not None).run()
        except Exception:
            logger.exception("bug while serving a MessagesSource connection")
