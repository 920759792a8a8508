"""WebSocket transport: gevent-websocket's handshake, then our own event-driven connection.

gevent-websocket 0.10.1 is kept for the HTTP upgrade only (``WebSocketHandler`` under
gevent's pywsgi).  Once the 101 response is written, the handler hands the socket over to
a ``Connection`` and its greenlet ends, so an idle connection holds no greenlet, no pywsgi
request state and no read buffer:

- reading: a libev io watcher calls ``Connection`` when the socket is readable; the bytes
  go to a ``framing.FrameReader`` (sans-I/O: size limit checked on the header, masked
  frames required, binary and invalid UTF-8 refused with 1003 / 1007).  Requests are
  dispatched in order by a greenlet spawned for the purpose, which exits when no parsed
  request is left; while it runs the watcher is stopped, so a client that sends faster
  than it is served is held back by TCP as before;
- writing: frames queued to a ``Session`` are written by a loop callback (``Flusher``)
  without blocking; only what the socket refuses stays buffered, and an io watcher writes
  it when the socket can take more.  Close frames carry real status codes and reasons.
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
from geventwebsocket.handler import WebSocketHandler

from rocketws.config import Config
from rocketws.core import framing, rpc
from rocketws.core.codes import CloseCode
from rocketws.core.exceptions import ProtocolViolation
from rocketws.core.node import Node
from rocketws.core.session import Session

logger = logging.getLogger(__name__)

# Reads go through one buffer shared by every connection: watcher callbacks run one at a
# time in the hub and copy what they read into the connection's FrameReader before
# returning, so no connection keeps a receive buffer of its own.
_RECV_SIZE = 65536
_recv_buffer = bytearray(_RECV_SIZE)
_recv_view = memoryview(_recv_buffer)

_READ, _WRITE = 1, 2  # libev event masks (EV_READ, EV_WRITE)


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
    """One WebSocket connection after the handshake: its Session, reading and writing.

    Everything runs in loop callbacks (readable, writable, flush, close timer) except
    request dispatch, which may block (a broker waiting for Redis) and so runs in a
    greenlet that exists only while parsed requests are waiting.  ``on_closed`` is
    called once, when the socket has been closed and everything released.
    """

    __slots__ = (
        "sock", "fd", "node", "flusher", "config", "session", "context", "reader",
        "_on_closed", "_loop", "_reader_watch", "_writer_watch", "_timer", "_backlog",
        "_dispatching", "_closing", "_reading_done", "_done",
    )

    def __init__(
        self, sock: socket.socket, node: Node, flusher: Flusher, config: Config,
        on_closed: Callable[[Connection], None],
    ) -> None:
        """``sock`` must be non-blocking; the connection owns it from now on."""
        self.sock = sock
        self.fd = sock.fileno()
        self.node = node
        self.flusher = flusher
        self.config = config
        self.session = Session(self, config.max_outbox_bytes)
        self.context = rpc.ClientContext(node, self.session, config.max_channel_length)
        self.reader = framing.FrameReader(config.max_message_size)
        self._on_closed = on_closed
        self._loop = gevent.get_hub().loop
        self._reader_watch = self._loop.io(self.fd, _READ)
        self._writer_watch: Any = None  # created the first time the socket refuses bytes
        self._timer: Any = None  # close_timeout, armed by begin_close
        self._backlog: bytes | memoryview = b""  # taken from the session, not yet written
        self._dispatching = False  # a dispatcher greenlet is running (reads paused)
        self._closing = False  # a close frame is queued; read only until the peer's reply
        self._reading_done = False  # no more frames will be read
        self._done = False  # socket closed, everything released

    def __repr__(self) -> str:
        return f"<Connection {self.session.id} fd={self.fd}>"

    def start(self, received: bytes = b"") -> None:
        """Register the session and start reading; ``received``: bytes read already."""
        self.node.connect(self.session)
        if received:
            self.reader.feed(received)
            self._handle_events()
        if not (self._dispatching or self._reading_done):
            self._reader_watch.start(self._on_readable)

    # -- reading ------------------------------------------------------------------------

    def _on_readable(self) -> None:
        try:
            n = self.sock.recv_into(_recv_buffer)
        except BlockingIOError:
            return
        except OSError as exc:
            self._lost(exc)
            return
        if not n:
            self._lost("EOF")
            return
        self.reader.feed(_recv_view[:n])
        self._handle_events()

    def _handle_events(self) -> None:
        """Act on every complete event the reader has, in order.

        In a loop callback, the first request hands the rest over to a dispatcher
        greenlet (reads pause until it is done); in that greenlet, requests are
        dispatched inline.  Never raises.
        """
        reader = self.reader
        try:
            while not self._reading_done:
                event = reader.next_event()
                if event is None:
                    return
                if isinstance(event, framing.TextMessage):
                    if self._closing:
                        continue  # after our close frame, only the peer's close matters
                    if not self._dispatching:
                        self._dispatching = True
                        self._reader_watch.stop()
                        gevent.spawn_raw(self._serve, event.text)
                        return
                    self._dispatch(event.text)
                elif isinstance(event, framing.Ping):
                    if not self._closing:  # 5.5.2: answer with the same payload
                        self.session.push(framing.encode_frame(event.payload, framing.OP_PONG))
                elif isinstance(event, framing.Close):
                    if not self._closing:  # 5.5.1: echo the peer's code (and reason)
                        if event.code is None:
                            self.begin_close(CloseCode.NORMAL, "", keep_queue=True)
                        else:
                            self.begin_close(event.code, event.reason, keep_queue=True)
                    self._end_reading()
        except ProtocolViolation as exc:
            logger.info("closing %s: %s", self.session.id, exc)
            self.begin_close(exc.close_code, exc.reason, keep_queue=True)
            self._end_reading()
        except Exception:
            logger.exception("bug while serving %s", self.session.id)
            self.begin_close(CloseCode.INTERNAL_ERROR, "internal error", keep_queue=False)
            self._end_reading()

    def _serve(self, text: str) -> None:
        """The dispatcher greenlet: this request, then whatever else is parsed, then exit."""
        try:
            self._dispatch(text)
        except Exception:
            logger.exception("bug while serving %s", self.session.id)
            self.begin_close(CloseCode.INTERNAL_ERROR, "internal error", keep_queue=False)
            self._end_reading()
        else:
            self._handle_events()
        finally:
            self._dispatching = False
            if not self._reading_done:
                self._reader_watch.start(self._on_readable)

    def _dispatch(self, text: str) -> None:
        response = rpc.dispatch(text, rpc.client_methods, self.context, self.config.max_batch_size)
        if response is not None:
            self.session.push(framing.text_frame(response))
        if self._closing or self._done:
            # Closed while a method was blocked (shutdown, slow consumer): whatever the
            # method subscribed after the disconnect must not outlive the connection.
            self.node.disconnect(self.session)

    def _end_reading(self) -> None:
        """No more frames will be read: close once what is queued is written."""
        if self._done:
            return
        self._reading_done = True
        self._reader_watch.stop()
        if not self._backlog:
            self._release()

    # -- closing ------------------------------------------------------------------------

    def begin_close(self, code: int, reason: str, *, keep_queue: bool) -> None:
        """Queue a close frame (after what is queued, if ``keep_queue``) and stop pushes.

        The socket is closed when the peer has answered with its close frame and ours is
        written, or after ``close_timeout`` regardless.
        """
        if self._closing or self._done:
            return
        self._closing = True
        self.node.disconnect(self.session)
        tail = self.session.take() if keep_queue else b""
        self.session.close()
        self._backlog = bytes(self._backlog) + tail + framing.close_frame(code, reason)
        self._timer = self._loop.timer(self.config.close_timeout)
        self._timer.start(self._on_close_timeout)
        self._write()

    def _on_close_timeout(self) -> None:
        logger.debug("connection %s: no close frame from the peer within %.1f s",
                     self.session.id, self.config.close_timeout)
        self._release()

    def _lost(self, why: object) -> None:
        """The TCP connection ended without a close frame (EOF, reset, I/O error)."""
        logger.debug("connection %s lost: %r", self.session.id, why)
        self._backlog = b""
        self._release()

    def abort(self) -> None:
        """Drop the connection now (I/O error on write, or our bug)."""
        self._lost("aborted")

    def _release(self) -> None:
        """Close the socket and release everything; idempotent."""
        if self._done:
            return
        self._done = self._reading_done = True
        self.node.disconnect(self.session)
        self.session.close()
        self._backlog = b""
        self._reader_watch.stop()
        self._reader_watch.close()
        for watcher in (self._writer_watch, self._timer):
            if watcher is not None:
                watcher.stop()
                watcher.close()
        self._writer_watch = self._timer = None
        try:
            # Unread bytes at close make the kernel send a reset, which can destroy our
            # close frame in flight; read out what is there, as pywsgi does.
            self.sock.recv_into(_recv_buffer)
        except OSError:
            pass
        self.sock.close()
        self._on_closed(self)

    # -- writing ------------------------------------------------------------------------

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
        if self._backlog:
            session.dirty = False  # the writer watcher takes the queue; wake us on the next push
        else:
            self._write()
        if session.over_limit and not self._done:
            logger.info("closing %s: slow consumer (%d bytes unsent, limit %d)",
                        session.id, session.pending, session.max_pending)
            self.begin_close(CloseCode.SLOW_CONSUMER, "slow consumer", keep_queue=False)

    def _write(self) -> None:
        """Write the backlog, then what is queued, until done or the socket would block.

        The connection's single writer: called by ``flush``, ``begin_close`` and the
        writer watcher, all in the hub, never concurrently.  On EAGAIN the rest stays in
        the backlog and the writer watcher waits for the socket to take more.
        """
        if self._done:
            return
        session, fd = self.session, self.fd
        data = self._backlog
        while True:
            if not data:
                data = session.take()
                if not data:
                    break
            try:
                n = os.write(fd, data)
            except BlockingIOError:
                n = 0
            except OSError as exc:
                self._write_failed(exc)
                return
            session.sent(n)
            if n < len(data):
                self._backlog = memoryview(data)[n:] if n else data
                if self._writer_watch is None:
                    self._writer_watch = self._loop.io(fd, _WRITE)
                if not self._writer_watch.active:
                    self._writer_watch.start(self._write)
                return
            data = b""
        self._backlog = b""
        if self._writer_watch is not None:
            self._writer_watch.stop()
        if self._reading_done:
            self._release()

    def _write_failed(self, exc: OSError) -> None:
        if exc.errno not in _GONE:
            logger.info("write to %s failed: %s", self.session.id, exc)
        self.abort()


# pywsgi's default read buffer is 8 KiB per connection; the upgrade request reads fine
# through a small one, and it is released with the handler after the handshake.
READ_BUFFER = 1024


class RocketWebSocketHandler(WebSocketHandler):
    """gevent-websocket's handler with TCP_NODELAY, a handshake timeout, ``/`` only and a
    small read buffer; after the upgrade it hands the socket to ``WebSocketApp.accept``
    and ends."""

    socket: Any  # gevent's socket until run_websocket takes the file descriptor over
    websocket: Any

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
            logger.info("handshake from %s not finished in %.1f s: dropped",
                        self.client_address, self.server.handshake_timeout)
            if self.socket is not None:  # not handed over: it is still ours to close
                self.socket.close()
        finally:
            deadline.close()

    def upgrade_websocket(self) -> Any:
        if self.environ.get("PATH_INFO", "") != "/":
            return None  # not ours: the WSGI app answers 404
        if not self.application.origin_allowed(self.environ.get("HTTP_ORIGIN")):
            body = b"This origin may not open WebSockets here.\n"
            self.start_response("403 Forbidden", [
                ("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
            ])
            logger.info("refused a WebSocket from origin %r (ALLOWED_ORIGINS)",
                        self.environ.get("HTTP_ORIGIN"))
            return [body]
        if self.application.full():
            body = b"Too many connections on this server; retry later.\n"
            self.start_response("503 Service Unavailable", [
                ("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
                ("Retry-After", "5"),
            ])
            logger.warning("refused a WebSocket: %d connections open (MAX_CONNECTIONS)",
                           len(self.application.connections))
            return [body]
        return super().upgrade_websocket()

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
        self.application.accept(sock, received, self.client_address)

    def log_request(self) -> None:
        return None  # access logging for WebSockets is noise; connects are DEBUG-logged


class WebSocketApp:
    """The WebSocket endpoint: a Connection per upgraded socket; plain HTTP gets 426/404."""

    def __init__(self, node: Node, config: Config) -> None:
        self.node = node
        self.config = config
        self.flusher = Flusher()
        self.connections: set[Connection] = set()
        self._idle = Event()
        self._idle.set()
        self._close_all: tuple[int, str] | None = None  # set by close_all (shutdown)

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> list[bytes]:
        """The WSGI app for requests that are not WebSocket upgrades."""
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

    def origin_allowed(self, origin: str | None) -> bool:
        """Whether a browser page of ``origin`` may connect (no Origin header: not a
        browser, always allowed)."""
        allowed = self.config.allowed_origins
        if origin is None or "*" in allowed:
            return True
        return origin.rstrip("/").lower() in allowed

    def full(self) -> bool:
        """True when ``max_connections`` WebSockets are open: new upgrades get 503."""
        return len(self.connections) >= self.config.max_connections

    def accept(self, sock: socket.socket, received: bytes, peer: Any) -> None:
        """Serve an upgraded, non-blocking socket (and the bytes already read from it)."""
        conn = Connection(sock, self.node, self.flusher, self.config, self._closed)
        self.connections.add(conn)
        self._idle.clear()
        logger.debug("connection %s opened from %s", conn.session.id, peer)
        conn.start(received)
        if self._close_all is not None:  # an upgrade that finished during shutdown
            conn.begin_close(*self._close_all, keep_queue=True)

    def _closed(self, conn: Connection) -> None:
        self.connections.discard(conn)
        if not self.connections:
            self._idle.set()
        logger.debug("connection %s closed", conn.session.id)

    def close_all(self, code: int, reason: str) -> None:
        """Begin closing every connection (queued frames are still delivered first);
        connections whose upgrade finishes later are closed the same way."""
        self._close_all = (code, reason)
        for conn in list(self.connections):
            conn.begin_close(code, reason, keep_queue=True)

    def wait_closed(self, timeout: float) -> bool:
        """Wait until no connection is open; return whether that happened in time."""
        return self._idle.wait(timeout)
