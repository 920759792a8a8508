"""WebSocket transport: gevent-websocket's handshake, our own frame reading and writing.

gevent-websocket 0.10.1 is kept for the HTTP upgrade (``WebSocketHandler``) and header
decoding (``Header.decode_header``).  Narrowly replaced, because 0.10.1 gets them wrong:

- reading (``RocketWebSocket.read_text``): a message size limit checked before the
  payload is read, a fast unmask, masked client frames required, binary frames and
  invalid UTF-8 refused with 1003 / 1007;
- writing (``Connection``): close frames with real status codes and reasons, and a
  non-blocking write path: frames queued to a ``Session`` are written by a loop callback
  without blocking; only what the socket refuses stays buffered, drained by the single
  writer greenlet of that connection.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

import gevent
from gevent.event import Event
from gevent.socket import wait_write
from geventwebsocket.exceptions import ProtocolError, WebSocketError
from geventwebsocket.handler import WebSocketHandler
from geventwebsocket.websocket import Header, Stream, WebSocket

from .. import framing, rpc
from ..codes import CloseCode
from ..config import Config
from ..exceptions import PeerClosed, ProtocolViolation
from ..node import Node
from ..session import Session

logger = logging.getLogger(__name__)


class ConnectionLost(Exception):
    """The TCP connection ended without a close frame (EOF, reset, or I/O error)."""


class RocketWebSocket(WebSocket):
    """gevent-websocket's WebSocket with the reading side fixed and writing disabled.

    All writes go through ``Connection``; ``close`` only marks the object closed, so
    gevent-websocket's own cleanup cannot write a bad close frame.
    """

    __slots__ = ("max_message_size", "on_control")

    def __init__(self, environ: dict, stream: Any, handler: Any) -> None:
        super().__init__(environ, stream, handler)
        self.max_message_size = handler.server.max_message_size
        self.on_control: Callable[[int, bytes], None] = _ignore_control

    def close(self, code: int = 1000, message: bytes = b"") -> None:
        self.closed = True  # type: ignore[misc]  # declared in the parent's __slots__

    def _frame(self) -> tuple[Any, bytes]:
        try:
            header = Header.decode_header(self.stream)
        except ProtocolError as exc:  # fragmented or oversized control frame
            raise ProtocolViolation(str(exc) or "invalid control frame") from None
        except WebSocketError as exc:  # EOF inside a header
            raise ConnectionLost(str(exc)) from None
        if header.flags:
            raise ProtocolViolation("reserved bits set (no extension was negotiated)")
        if not header.mask:
            raise ProtocolViolation("client frames must be masked (RFC 6455 5.1)")
        if header.opcode == framing.OP_BINARY:
            raise ProtocolViolation(
                "binary frames are not supported; send JSON-RPC as text",
                close_code=CloseCode.UNSUPPORTED_DATA,
            )
        if header.length > self.max_message_size:
            raise ProtocolViolation(
                f"message over {self.max_message_size} bytes", close_code=CloseCode.MESSAGE_TOO_BIG
            )
        if not header.length:
            return header, b""
        payload = self.raw_read(header.length)
        if len(payload) != header.length:
            raise ConnectionLost("EOF inside a frame payload")
        return header, framing.unmask(payload, header.mask)

    def read_text(self) -> str:
        """Block until one whole text message arrives and return it.

        Control frames in between are answered through ``on_control``.  Raises PeerClosed
        on a close frame, ProtocolViolation for a bad frame or a limit, ConnectionLost.
        """
        parts: list[bytes] = []
        size = 0
        while True:
            header, payload = self._frame()
            opcode = header.opcode
            if opcode == framing.OP_CLOSE:
                code, reason = framing.parse_close(payload)
                raise PeerClosed(reason, close_code=code)
            if opcode in (framing.OP_PING, framing.OP_PONG):
                self.on_control(opcode, payload)
                continue
            if opcode == framing.OP_TEXT:
                if parts:
                    raise ProtocolViolation("new message inside a fragmented message")
            elif opcode == framing.OP_CONTINUATION:
                if not parts:
                    raise ProtocolViolation("continuation frame without a message")
            else:
                raise ProtocolViolation(f"unknown opcode {opcode}")
            size += len(payload)
            if size > self.max_message_size:
                raise ProtocolViolation(
                    f"message over {self.max_message_size} bytes",
                    close_code=CloseCode.MESSAGE_TOO_BIG,
                )
            parts.append(payload)
            if header.fin:
                break
        try:
            return (parts[0] if len(parts) == 1 else b"".join(parts)).decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolViolation(
                "text message is not valid UTF-8", close_code=CloseCode.INVALID_PAYLOAD
            ) from None


def _ignore_control(opcode: int, payload: bytes) -> None:
    return None


class Flusher:
    """Writes every connection that has queued frames, once per event-loop turn.

    A publication only appends to outboxes; the writes happen here, after the publishing
    greenlet yields, so several publications (a batch) leave in one write per socket.
    """

    def __init__(self) -> None:
        self._dirty: list[Connection] = []
        self._scheduled = False
        self._loop = gevent.get_hub().loop

    def add(self, conn: Connection) -> None:
        self._dirty.append(conn)
        if not self._scheduled:
            self._scheduled = True
            self._loop.run_callback(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        dirty, self._dirty = self._dirty, []
        for conn in dirty:
            try:
                conn.flush()
            except Exception:
                logger.exception("bug while flushing %r", conn)
                conn.abort()


_GONE = (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.EBADF, errno.ESHUTDOWN)


class Connection:
    """One WebSocket connection: its Session, its reader loop and its write path."""

    def __init__(
        self, sock: Any, ws: RocketWebSocket, node: Node, flusher: Flusher, config: Config
    ) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.ws = ws
        self.node = node
        self.flusher = flusher
        self.config = config
        self.session = Session(self, config.max_outbox_bytes)
        self.context = rpc.ClientContext(node, self.session, config.max_channel_length)
        self._backlog: bytes | memoryview = b""
        self._writer: gevent.Greenlet | None = None
        self._closing = False  # a close frame is queued; read only until the peer's reply
        self._done = False
        self._timer: gevent.Greenlet | None = None
        ws.on_control = self._on_control

    def __repr__(self) -> str:
        return f"<Connection {self.session.id} fd={self.fd}>"

    # -- reading (runs in the pywsgi handler greenlet) -------------------------------

    def run(self) -> None:
        """Serve the connection until it closes.  Never raises for client behaviour."""
        self.node.connect(self.session)
        try:
            self._read_loop()
        except PeerClosed as exc:
            if not self._closing:  # echo the peer's code (RFC 6455 5.5.1)
                self.begin_close(exc.close_code, "", keep_queue=True)
        except ProtocolViolation as exc:
            logger.info("closing %s: %s", self.session.id, exc)
            if not self._closing:
                self.begin_close(exc.close_code, exc.reason, keep_queue=True)
        except (ConnectionLost, OSError, gevent.GreenletExit) as exc:
            logger.debug("connection %s lost: %r", self.session.id, exc)
            self._lost()
        except Exception:
            logger.exception("bug while serving %s", self.session.id)
            if not self._closing:
                self.begin_close(CloseCode.INTERNAL_ERROR, "internal error", keep_queue=False)
        finally:
            self._finish()

    def _read_loop(self) -> None:
        push, dispatch = self.session.push, rpc.dispatch
        methods, context = rpc.client_methods, self.context
        max_batch = self.config.max_batch_size
        text: str | None
        response: bytes | None
        while True:
            text = self.ws.read_text()
            if self._closing:
                continue  # after our close frame, only the peer's close matters
            response = dispatch(text, methods, context, max_batch)
            if response is not None:
                push(framing.text_frame(response))
            # Drop both before blocking in the next read: an idle connection should not
            # keep its last request and reply alive (several KB each, per connection).
            text = response = None

    def _on_control(self, opcode: int, payload: bytes) -> None:
        if opcode == framing.OP_PING and not self._closing:
            self.session.push(framing.encode_frame(payload, framing.OP_PONG))

    # -- closing ----------------------------------------------------------------------

    def begin_close(self, code: int, reason: str, *, keep_queue: bool) -> None:
        """Queue a close frame (after what is queued, if ``keep_queue``) and stop pushes.

        The socket is shut down if the peer has not finished the closing handshake
        within ``close_timeout``.
        """
        if self._closing or self._done:
            return
        self._closing = True
        self.node.disconnect(self.session)
        tail = self.session.take() if keep_queue else b""
        self.session.close()
        frame = framing.close_frame(code, reason) if code is not None else framing.close_frame()
        self._backlog = bytes(self._backlog) + tail + frame
        self._timer = gevent.spawn_later(self.config.close_timeout, self._shutdown_socket)
        self._start_writer()

    def _lost(self) -> None:
        self.session.close()
        self.node.disconnect(self.session)
        self._backlog = b""

    def abort(self) -> None:
        """Drop the connection now (I/O error on write, or our bug)."""
        self._lost()
        self._shutdown_socket()

    def _shutdown_socket(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _finish(self) -> None:
        """Runs when the reader ends: let the writer finish, then release everything."""
        self.node.disconnect(self.session)
        writer = self._writer
        if writer is not None and self._closing:
            writer.join(timeout=self.config.close_timeout)
        if self._writer is not None:
            self._writer.kill(block=True)
        if self._timer is not None:
            self._timer.kill(block=False)
        self.session.close()
        self._done = True
        self.ws.close()

    # -- writing ----------------------------------------------------------------------

    def wake(self) -> None:
        """Session callback: frames were queued."""
        self.flusher.add(self)

    def flush(self) -> None:
        """Offer what is queued to the socket without blocking (called by the Flusher).

        Then, with the socket's answer known, a connection over its outbox limit is a
        slow consumer: closed with 4008, its queue dropped.
        """
        if self._done or self._closing:
            return
        session = self.session
        if self._writer is None:
            data = session.take()
            if data:
                try:
                    n = os.write(self.fd, data)
                except BlockingIOError:
                    n = 0
                except OSError as exc:
                    self._write_failed(exc)
                    return
                session.sent(n)
                if n < len(data):
                    self._backlog = memoryview(data)[n:]
                    self._start_writer()
        else:
            session.dirty = False  # the writer takes the queue; wake us on the next push
        if session.over_limit:
            logger.info("closing %s: slow consumer (%d bytes unsent, limit %d)",
                        session.id, session.pending, session.max_pending)
            self.begin_close(CloseCode.SLOW_CONSUMER, "slow consumer", keep_queue=False)

    def _start_writer(self) -> None:
        if self._writer is None and not self._done:
            self._writer = gevent.spawn(self._drain)

    def _drain(self) -> None:
        """The connection's single writer: write until nothing is left, then exit."""
        session, fd = self.session, self.fd
        try:
            while True:
                if not self._backlog:
                    data = session.take()
                    if not data:
                        break
                    self._backlog = data
                try:
                    n = os.write(fd, self._backlog)
                except BlockingIOError:
                    wait_write(fd)
                    continue
                session.sent(n)
                self._backlog = self._backlog[n:]
        except OSError as exc:
            self._write_failed(exc)
        finally:
            self._writer = None

    def _write_failed(self, exc: OSError) -> None:
        if exc.errno not in _GONE:
            logger.info("write to %s failed: %s", self.session.id, exc)
        self.abort()


# pywsgi's default read buffer is 8 KiB per connection, kept for the connection's life;
# the upgrade request and WebSocket frames read fine through a small one.
READ_BUFFER = 1024


class RocketWebSocketHandler(WebSocketHandler):
    """gevent-websocket's handler with TCP_NODELAY, a handshake timeout, ``/`` only,
    a small read buffer, and our RocketWebSocket class."""

    def __init__(self, sock: Any, address: Any, server: Any, rfile: Any = None) -> None:
        super().__init__(sock, address, server, rfile or sock.makefile("rb", READ_BUFFER))

    def handle(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.socket.settimeout(self.server.handshake_timeout)
        super().handle()

    def upgrade_websocket(self) -> Any:
        if self.environ.get("PATH_INFO", "") != "/":
            return None  # not ours: the WSGI app answers 404
        return super().upgrade_websocket()

    def upgrade_connection(self) -> Any:
        result = super().upgrade_connection()
        original = getattr(self, "websocket", None)
        if original is not None:
            original.closed = True  # its __del__ would otherwise write a close frame
            self.websocket = RocketWebSocket(self.environ, Stream(self), self)
            self.environ["wsgi.websocket"] = self.websocket
        return result

    def log_request(self) -> None:
        return None  # access logging for WebSockets is noise; connects are DEBUG-logged


class WebSocketApp:
    """The WSGI app of the WebSocket endpoint: runs a Connection per upgraded socket."""

    def __init__(self, node: Node, config: Config) -> None:
        self.node = node
        self.config = config
        self.flusher = Flusher()
        self.connections: set[Connection] = set()
        self._idle = Event()
        self._idle.set()

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> list[bytes]:
        ws = environ.get("wsgi.websocket")
        if ws is None:
            if environ.get("PATH_INFO") == "/":
                body = b"This is a WebSocket endpoint: connect with a WebSocket client.\n"
                start_response(
                    "426 Upgrade Required",
                    [("Upgrade", "websocket"), ("Content-Type", "text/plain; charset=utf-8"),
                     ("Content-Length", str(len(body)))],
                )
                return [body]
            body = b"Not found\n"
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8"),
                                             ("Content-Length", str(len(body)))])
            return [body]
        handler = ws.handler
        handler.socket.settimeout(None)  # the handshake is over; idle connections are fine
        handler.headers = None  # parsed request headers: not needed after the upgrade
        conn = Connection(handler.socket, ws, self.node, self.flusher, self.config)
        self.connections.add(conn)
        self._idle.clear()
        logger.debug("connection %s opened from %s", conn.session.id, environ.get("REMOTE_ADDR"))
        try:
            conn.run()
        finally:
            self.connections.discard(conn)
            if not self.connections:
                self._idle.set()
            logger.debug("connection %s closed", conn.session.id)
        return []

    def close_all(self, code: int, reason: str) -> None:
        """Begin closing every connection (queued frames are still delivered first)."""
        for conn in list(self.connections):
            conn.begin_close(code, reason, keep_queue=True)

    def wait_closed(self, timeout: float) -> bool:
        """Wait until no connection is open; return whether that happened in time."""
        return self._idle.wait(timeout)
