"""The MessagesSource: backends publish with JSON-RPC 2.0 over HTTP (a WSGI app).

``POST /`` takes a JSON-RPC document (any content type, UTF-8 JSON) and answers 200
with the JSON-RPC response, or 204 when the document held only notifications.
``GET /health`` reports liveness.  Other methods on ``/``: 405; other paths: 404;
bodies over ``max_request_body``: 413 with a JSON-RPC error.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Iterable
from email.utils import formatdate
from typing import Any

from gevent.pywsgi import WSGIHandler

from .. import protocol, rpc
from ..codes import RpcCode
from ..config import Config
from ..node import Node

logger = logging.getLogger(__name__)

_JSON = "application/json"


class NoDelayHandler(WSGIHandler):
    """pywsgi's handler with TCP_NODELAY (no ~40 ms Nagle stall on keep-alive POSTs),
    an idle timeout between requests, no access log, and a cheaper response write."""

    def handle(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.socket.settimeout(self.server.idle_timeout)
        super().handle()

    def log_request(self) -> None:
        return None  # access logging is off; pywsgi would still format every line

    def _sendall(self, data: bytes) -> None:
        # A response almost always fits the socket buffer: one non-blocking write, and
        # gevent's sendall (a getsockopt per call, then waiting) only for the rest.
        try:
            sent = os.write(self.socket.fileno(), data)
        except BlockingIOError:
            sent = 0
        if sent < len(data):
            super()._sendall(memoryview(data)[sent:])
        self.response_length += sent


class _DateHeader:
    """The ``Date`` header value, formatted once per second instead of per response."""

    def __init__(self) -> None:
        self._second = -1
        self._value = ""

    def __call__(self) -> str:
        now = int(time.time())
        if now != self._second:
            self._second, self._value = now, formatdate(now, usegmt=True)
        return self._value


_date_header = _DateHeader()


def _json_response(
    start_response: Callable[..., Any], status: str, body: bytes, extra: Iterable[tuple[str, str]] = ()
) -> list[bytes]:
    headers = [("Content-Type", _JSON), ("Content-Length", str(len(body))),
               ("Date", _date_header()), *extra]
    start_response(status, headers)
    return [body]


class MessagesSourceApp:
    """WSGI app answering backend JSON-RPC calls with ``rpc.backend_methods``."""

    def __init__(self, node: Node, config: Config, methods: rpc.Methods | None = None) -> None:
        self.node = node
        self.config = config
        self.methods = methods if methods is not None else rpc.backend_methods
        self.context = rpc.BackendContext(node, config.max_channel_length)

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path == "/health":
            if method not in ("GET", "HEAD"):
                return _json_response(
                    start_response, "405 Method Not Allowed",
                    protocol.dumps({"error": "method not allowed"}), [("Allow", "GET, HEAD")],
                )
            return _json_response(start_response, "200 OK", self._health())
        if path != "/":
            return _json_response(start_response, "404 Not Found", protocol.dumps({"error": "not found"}))
        if method != "POST":
            return _json_response(
                start_response, "405 Method Not Allowed",
                protocol.dumps({"error": "use POST with a JSON-RPC 2.0 body"}), [("Allow", "POST")],
            )
        body = self._read_body(environ)
        if body is None:
            return self._too_large(start_response)
        response = rpc.dispatch(body, self.methods, self.context, self.config.max_batch_size)
        if response is None:
            start_response("204 No Content", [])
            return []
        return _json_response(start_response, "200 OK", response)

    def _read_body(self, environ: dict) -> bytes | None:
        """The request body, or None if it is over the limit (nothing more is read)."""
        limit = self.config.max_request_body
        stream = environ["wsgi.input"]
        length = environ.get("CONTENT_LENGTH")
        if length:
            try:
                size = int(length)
            except ValueError:
                size = -1
            if size > limit:
                return None
            if size >= 0:
                return stream.read(size)
        body = stream.read(limit + 1)
        return None if len(body) > limit else body

    def _too_large(self, start_response: Callable[..., Any]) -> list[bytes]:
        limit = self.config.max_request_body
        body = protocol.dumps(
            protocol.error_response(
                None,
                RpcCode.LIMIT_EXCEEDED,
                {"limit": "max_request_body", "max": limit, "reason": f"request body over {limit} bytes"},
            )
        )
        return _json_response(
            start_response, "413 Payload Too Large", body, [("Connection", "close")]
        )

    def _health(self) -> bytes:
        hub = self.node.hub
        return protocol.dumps(
            {"status": "ok", "connections": hub.connections, "channels": hub.channel_count}
        )
