"""The WebSocket upgrade on a gevent StreamServer: read the request head, let
``core.handshake.decide`` answer, send that answer.

Each accepted socket gets a greenlet that reads the head (httptools checks its syntax;
``MAX_HEAD_BYTES`` bounds it) within ``HANDSHAKE_TIMEOUT`` in total, then either writes
the refusal and closes, or writes the 101 and hands the socket, with any bytes the client
sent after its head, to ``WebSocketApp.accept``.  The greenlet then ends, so an idle
connection holds no greenlet and no buffer of the handshake.  With TLS the TLS handshake
comes first, under the same deadline, and the upgraded connection is a ``TlsStream``.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from email.utils import formatdate
from typing import Any

import gevent
import httptools
from gevent.server import StreamServer

from rocketws.core import handshake
from rocketws.core.handshake import Accept, Reject
from rocketws.transports.tls import TlsContext, TlsStream, describe
from rocketws.transports.websocket.app import WebSocketApp

logger = logging.getLogger("rocketws.transports.websocket")

_RECV_SIZE = 4096
_END = b"\r\n\r\n"
LINGER_SECONDS = 2.0  # after a refusal: time to discard what the client still sends
LINGER_BYTES = 256 * 1024  # ... and how much of it


class _Head:
    """httptools callbacks: the target and header fields of one request head."""

    __slots__ = ("url", "headers", "complete")

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[str, str]] = []
        self.complete = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.complete = True


class _Closed(Exception):
    """The client went away before its request head was complete."""


def read_head(sock: Any) -> tuple[handshake.Request, bytes] | Reject:
    """Read one request head from ``sock``: (the request, the bytes after it), or the
    refusal of a head that is malformed or over ``MAX_HEAD_BYTES``.

    Raises _Closed on EOF before the head ends, OSError on a socket error.  Each chunk is
    parsed as it arrives, so garbage (a TLS hello on a ws:// port) is refused at once.
    """
    head = _Head()
    parser = httptools.HttpRequestParser(head)
    buf = bytearray()
    while True:
        chunk = sock.recv(_RECV_SIZE)
        if not chunk:
            raise _Closed
        searched = max(0, len(buf) - 3)
        buf += chunk
        end = buf.find(_END, searched)
        if end >= 0:
            end += len(_END)
            if end > handshake.MAX_HEAD_BYTES:
                return handshake.head_too_large()
            chunk = chunk[: len(chunk) - (len(buf) - end)]
        elif len(buf) > handshake.MAX_HEAD_BYTES:
            return handshake.head_too_large()
        try:
            parser.feed_data(chunk)
        except httptools.HttpParserUpgrade:
            pass  # llhttp stops at the end of an upgrade request's head: it is ours
        except httptools.HttpParserError as exc:
            return handshake.bad_request(f"malformed HTTP request ({exc})")
        if end >= 0:
            break
    if not head.complete:  # the bytes up to CRLF CRLF did not end a head for llhttp
        return handshake.bad_request("malformed HTTP request head")
    request = handshake.Request(
        parser.get_method().decode("latin-1"),
        head.url.decode("latin-1"),
        parser.get_http_version(),
        tuple(head.headers),
    )
    return request, bytes(buf[end:])


class WebSocketServer(StreamServer):  # type: ignore[misc,unused-ignore]  # gevent is untyped
    """Accepts TCP connections, does the opening handshake, gives upgraded sockets to
    ``app``.  Every refusal is a complete HTTP response, then the connection is closed.
    With ``tls``, every connection is TLS (``wss://``)."""

    def __init__(
        self, listener: Any, app: WebSocketApp, handshake_timeout: float, tls: TlsContext | None = None
    ) -> None:
        super().__init__(listener, self._serve)
        self.app = app
        self.handshake_timeout = handshake_timeout
        self.tls = tls

    def _serve(self, sock: Any, address: Any) -> None:
        try:
            self._handshake(sock, address)
        except Exception:
            logger.exception("bug in the WebSocket handshake with %s", address)
            sock.close()

    def _handshake(self, sock: Any, address: Any) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # One deadline for the TLS handshake and the whole head (a slow drip of bytes
        # does not extend it).
        deadline = gevent.Timeout(self.handshake_timeout)
        deadline.start()
        request: handshake.Request | None = None
        try:
            if self.tls is not None:
                sock = self.tls.wrap(sock)
                sock.do_handshake()
            outcome = read_head(sock)
            if isinstance(outcome, Reject):
                decision: handshake.Decision = outcome
                received = b""
            else:
                request, received = outcome
                decision = handshake.decide(
                    request, self.app.config, full=self.app.full(), assets=self.app.assets
                )
            if isinstance(decision, Accept):
                sock.sendall(decision.response)
        except gevent.Timeout as exc:
            if exc is not deadline:
                raise
            logger.info("handshake from %s not finished in %.1f s: dropped", address, self.handshake_timeout)
            sock.close()
            return
        except _Closed:
            logger.debug("%s closed the connection before finishing its handshake", address)
            sock.close()
            return
        except ssl.SSLError as exc:
            logger.info("TLS handshake with %s failed: %s", address, describe(exc))
            sock.close()
            return
        except OSError as exc:
            logger.debug("handshake with %s failed: %s", address, exc)
            sock.close()
            return
        finally:
            deadline.close()
        if isinstance(decision, Reject):
            self._refuse(sock, address, decision)
            return
        upgraded: socket.socket | TlsStream
        if self.tls is not None:
            upgraded = TlsStream(sock)
        else:
            sock.settimeout(0.0)
            upgraded = socket.socket(fileno=sock.detach())
            upgraded.setblocking(False)
        self.app.accept(
            upgraded,
            received,
            address,
            subprotocol=decision.subprotocol,
            extensions=decision.extensions,
            request=request,
        )

    def _refuse(self, sock: Any, address: Any, refusal: Reject) -> None:
        """Send the refusal, then close without losing it to a TCP reset.

        Closing with unread input makes the kernel send a reset, which can destroy the
        response before the client reads it: so stop writing and discard what the
        client still sends, for at most LINGER_SECONDS or LINGER_BYTES.
        """
        if refusal.status < 400:  # a static file (core.assets)
            logger.log(
                refusal.level, "answered %s without upgrade: %d, %s", address, refusal.status, refusal.detail
            )
        else:
            logger.log(
                refusal.level, "refused a handshake from %s: %d, %s", address, refusal.status, refusal.detail
            )
        try:
            sock.settimeout(LINGER_SECONDS)
            sock.sendall(refusal.encode(formatdate(usegmt=True)))
            sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + LINGER_SECONDS
            discarded = 0
            while discarded < LINGER_BYTES:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                sock.settimeout(remaining)
                chunk = sock.recv(65536)
                if not chunk:
                    break
                discarded += len(chunk)
        except OSError:
            pass  # timeout, reset: the client is gone or not listening; nothing to do
        finally:
            sock.close()
