"""The WebSocket upgrade: gevent-websocket's handshake under gevent's pywsgi.

gevent-websocket 0.10.1 is kept for the HTTP upgrade only.  Once the 101 response is
written, the handler hands the socket over to ``WebSocketApp.accept`` and its greenlet
ends, so an idle connection holds no greenlet, no pywsgi request state and no read
buffer.

Extensions: the offers in ``Sec-WebSocket-Extensions`` go to ``core.deflate.negotiate``
(interim: gevent-websocket knows no extensions, so the response header is added in
``start_response``; the handshake of our own replaces both).
"""

from __future__ import annotations

import logging
import socket
from typing import Any

import gevent
from geventwebsocket.handler import WebSocketHandler

from rocketws.core import deflate

logger = logging.getLogger("rocketws.transports.websocket")

# pywsgi's default read buffer is 8 KiB per connection; the upgrade request reads fine
# through a small one, and it is released with the handler after the handshake.
READ_BUFFER = 1024


class RocketWebSocketHandler(WebSocketHandler):  # type: ignore[misc,unused-ignore]  # untyped library
    """gevent-websocket's handler with TCP_NODELAY, a handshake timeout, ``/`` only and a
    small read buffer; after the upgrade it hands the socket to ``WebSocketApp.accept``
    and ends."""

    socket: Any  # gevent's socket until run_websocket takes the file descriptor over
    websocket: Any
    agreement: deflate.Agreement | None = None  # permessage-deflate, once negotiated

    def __init__(self, sock: Any, address: Any, server: Any, rfile: Any = None) -> None:
        super().__init__(sock, address, server, rfile or sock.makefile("rb", READ_BUFFER))

    def handle(self) -> None:
        """Serve the upgrade; a client that has not finished it in ``handshake_timeout``
        (in total, not per read: a slow drip of header bytes does not extend it) is
        dropped."""
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.socket.settimeout(self.server.handshake_timeout)
        deadline = gevent.Timeout(self.server.handshake_timeout)
        deadline.start()
        try:
            super().handle()
        except gevent.Timeout as exc:
            if exc is not deadline:
                raise
            logger.info(
                "handshake from %s not finished in %.1f s: dropped",
                self.client_address,
                self.server.handshake_timeout,
            )
            if self.socket is not None:  # not handed over: it is still ours to close
                self.socket.close()
        finally:
            deadline.close()

    def upgrade_websocket(self) -> Any:
        if self.environ.get("PATH_INFO", "") != "/":
            return None  # not ours: the WSGI app answers 404
        if not self.application.origin_allowed(self.environ.get("HTTP_ORIGIN")):
            body = b"This origin may not open WebSockets here.\n"
            self.start_response(
                "403 Forbidden",
                [
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("Content-Length", str(len(body))),
                ],
            )
            logger.info(
                "refused a WebSocket from origin %r (ALLOWED_ORIGINS)", self.environ.get("HTTP_ORIGIN")
            )
            return [body]
        if self.application.full():
            body = b"Too many connections on this server; retry later.\n"
            self.start_response(
                "503 Service Unavailable",
                [
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("Content-Length", str(len(body))),
                    ("Retry-After", "5"),
                ],
            )
            logger.warning(
                "refused a WebSocket: %d connections open (MAX_CONNECTIONS)",
                len(self.application.connections),
            )
            return [body]
        self.agreement = deflate.negotiate(
            deflate.parse_offers(self.environ.get("HTTP_SEC_WEBSOCKET_EXTENSIONS")),
            self.application.config.compression,
        )
        return super().upgrade_websocket()

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        """Add the accepted extension to the 101 response (RFC 6455 9.1, RFC 7692 5)."""
        if self.agreement is not None and status.startswith("101"):
            headers = [*headers, ("Sec-WebSocket-Extensions", self.agreement.response)]
        return super().start_response(status, headers, exc_info)

    def run_websocket(self) -> None:
        """Called once the 101 response is written: give the socket to the app.

        Bytes the client sent right after its upgrade request (pipelined frames) may sit
        in this handler's read buffer; they go along.  pywsgi then finds no socket to
        close, and this greenlet ends with the handler and its request state.
        """
        ws, self.websocket = self.websocket, None
        ws.closed = True  # gevent-websocket's __del__ would otherwise write a close frame
        self.environ["wsgi.websocket"] = None
        gsock = self.socket
        gsock.settimeout(0.0)
        try:
            received = self.rfile.read1(READ_BUFFER)  # what is buffered; never blocks
        except OSError:
            received = b""  # EOF or reset: the connection's first read sees it again
        sock = socket.socket(fileno=gsock.detach())
        sock.setblocking(False)
        self.socket = None
        self.application.accept(sock, received, self.client_address, self.agreement)

    def log_request(self) -> None:
        return None  # access logging for WebSockets is noise; connects are DEBUG-logged
