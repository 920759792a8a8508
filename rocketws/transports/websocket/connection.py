"""One WebSocket connection after the handshake: bytes and timers, driven by gevent.

Every decision (answer a ping, echo a close, ignore text after our close, when to close
the socket) is made by ``core.connection.ConnectionProtocol``; this module only moves
bytes and runs the actions it returns:

- reading: a libev io watcher calls ``Connection`` when the socket is readable; the bytes
  go to the protocol.  Requests are dispatched in order by a greenlet spawned for the
  purpose, which exits when no parsed request is left; while it runs the watcher is
  stopped, so a client that sends faster than it is served is held back by TCP;
- writing: frames queued to a ``Session`` are written by a loop callback (``Flusher``)
  without blocking; only what the socket refuses stays buffered, and an io watcher writes
  it when the socket can take more;
- liveness: one ``Sweeper`` timer per process counts ticks; a connection only notes the
  tick of its last received bytes (``seen``) and of its socket's last progress while
  bytes wait (``stuck_since``), and the sweep hands both to the protocol, which decides
  (pings, the pong timeout, the write timeout).  No timer per connection;
- authentication: the same sweep hands the Unix time to connections whose protocol has
  a ``deadline`` due (the connect timeout, a token's expiry); ``Connection`` is the
  ``core.auth.Admission`` the ``connect``/``refresh`` methods act on.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

import gevent

from rocketws.config import Config
from rocketws.core import deflate, disconnect, rpc
from rocketws.core.auth import ANONYMOUS_MODE, Authenticator
from rocketws.core.channels import validate_channel
from rocketws.core.codes import CloseCode, RpcCode
from rocketws.core.connection import (
    DEFAULT_TIMING,
    AuthTiming,
    ConnectionProtocol,
    Do,
    Input,
    Liveness,
    State,
    Step,
)
from rocketws.core.disconnect import Disconnect
from rocketws.core.exceptions import AuthFailed, RpcError, TooManyRequests
from rocketws.core.handshake import Extension
from rocketws.core.node import ChannelProxy, Node
from rocketws.core.proxy import NO_PROXIES, CallContext, Proxies
from rocketws.core.session import DeflateSession, Session
from rocketws.core.stats import OTHER_CODE, RpcStats
from rocketws.core.tokens import Identity
from rocketws.transports.tls import TlsStream

logger = logging.getLogger("rocketws.transports.websocket")

# Reads go through one buffer shared by every connection: watcher callbacks run one at a
# time in the hub and copy what they read into the connection's FrameReader before
# returning, so no connection keeps a receive buffer of its own.
_RECV_SIZE = 65536
_recv_buffer = bytearray(_RECV_SIZE)
_recv_view = memoryview(_recv_buffer)

_READ, _WRITE = 1, 2  # libev event masks (EV_READ, EV_WRITE)
_GONE = (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.EBADF, errno.ESHUTDOWN)
_NOT_STUCK = -1  # ``Connection.stuck_since`` when nothing waits for the socket

# TCP keepalive on accepted sockets: with pings off (or a peer that vanished while our
# close frame waits), the kernel still finds a dead peer: after 60 s without traffic,
# 6 probes 10 s apart, so within about 2 minutes.
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 60, 10, 6


NO_CLOSE_FRAME = 1006  # RFC 6455 7.1.5: the close code of a connection that ended without one
# Close codes counted by value in rocketws_disconnects_total: ours, and the common ones a
# peer sends; any other code a client picks is counted as "other" (bounded labels).
_COUNTED_CODES = frozenset(CloseCode) | {1000, 1001, 1005}

_TOO_MANY = TooManyRequests({"limit": "rate_limit", "reason": "too many requests: slow down"})


def configure_socket(sock: socket.socket | TlsStream, send_buffer: int) -> None:
    """Options for an accepted WebSocket: TCP keepalive; ``send_buffer`` > 0 caps the
    kernel's send buffer (SO_SNDBUF; Linux doubles it and stops autotuning)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_COUNT)
    if send_buffer > 0:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)


def _frame_end(buf: bytes | memoryview, pos: int) -> int:
    """Where the server frame starting at ``pos`` ends (RFC 6455 5.2: unmasked, so the
    header is 2, 4 or 10 bytes)."""
    n = buf[pos + 1] & 0x7F
    if n == 126:
        return pos + 4 + int.from_bytes(buf[pos + 2 : pos + 4], "big")
    if n == 127:
        return pos + 10 + int.from_bytes(buf[pos + 2 : pos + 10], "big")
    return pos + 2 + n


def rest_of_partial_frame(backlog: bytes | memoryview) -> bytes:
    """What is left to write of a frame the socket took only part of; b"" when the
    backlog starts on a frame boundary.

    The backlog is whole frames (one ``Session.take``), or a tail of them: a memoryview
    of the taken bytes after a partial write.  5.2: a frame cannot be cut short, so
    dropping the backlog keeps this part or gives up on sending anything more.
    """
    if not isinstance(backlog, memoryview):
        return b""
    base = backlog.obj
    assert isinstance(base, bytes)
    offset = len(base) - len(backlog)
    pos = 0
    while pos < offset:
        pos = _frame_end(base, pos)
    return base[offset:pos]


class Flusher:
    """Writes every connection that has queued frames, once per event-loop turn.

    A publication only appends to outboxes; the writes happen here, after the publishing
    greenlet yields, so several publications (a batch) leave in one write per socket.
    ``add_later`` (a ``write_delay``): the connection is written when a timer of that
    delay fires, one timer per delay value for every connection woken meanwhile, so
    publications arriving one by one within the delay leave in one write.
    """

    def __init__(self) -> None:
        self._dirty: list[Connection] = []
        self._scheduled = False
        self._loop = gevent.get_hub().loop
        self._later: dict[float, list[Connection]] = {}  # delay -> connections, timer running

    def add(self, conn: Connection) -> None:
        self._dirty.append(conn)
        if not self._scheduled:
            self._scheduled = True
            self._loop.run_callback(self._flush)

    def add_later(self, conn: Connection, delay: float) -> None:
        waiting = self._later.get(delay)
        if waiting is None:
            waiting = self._later[delay] = []
            # libev times from the loop turn's cached clock: after a busy turn the timer
            # would fire early by that turn's length
            self._loop.update_now()
            timer = self._loop.timer(delay)
            timer.start(self._flush_later, delay, timer)
        waiting.append(conn)

    def _flush_later(self, delay: float, timer: Any) -> None:
        timer.close()
        self._write_all(self._later.pop(delay, []))

    def _flush(self) -> None:
        self._scheduled = False
        dirty, self._dirty = self._dirty, []
        self._write_all(dirty)

    def _write_all(self, dirty: list[Connection]) -> None:
        for conn in dirty:
            try:
                conn.flush()
            except Exception:
                logger.exception("bug while flushing %r", conn)
                conn.abort()


LINGER_SECONDS = 1.0
LINGER_BYTES = 1 << 20


class Linger:
    """The socket's end after a clean close: our close frame is written, so send FIN
    (``shutdown``) and read and drop what the peer still sends until its EOF, at most
    ``LINGER_SECONDS`` and ``LINGER_BYTES``, then close.

    Closing at once would make the kernel answer the peer's close frame (or the rest of
    a message we refused, 1009) with a reset, which browsers report as an unclean close
    (``wasClean`` false) and which can destroy our close frame before it is read.
    """

    def __init__(self, loop: Any, sock: socket.socket) -> None:
        self._sock = sock
        self._left = LINGER_BYTES
        self._reader: Any = None
        self._timer: Any = None
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # the peer is gone already
            self.close()
            return
        self._reader = loop.io(sock.fileno(), _READ)
        self._timer = loop.timer(LINGER_SECONDS)
        self._reader.start(self._on_readable)
        self._timer.start(self.close)

    def _on_readable(self) -> None:
        try:
            n = self._sock.recv_into(_recv_buffer)
        except BlockingIOError:
            return
        except OSError:
            n = 0
        self._left -= n
        if not n or self._left <= 0:
            self.close()

    def close(self) -> None:
        for watcher in (self._reader, self._timer):
            if watcher is not None:
                watcher.stop()
                watcher.close()
        self._reader = self._timer = None
        self._sock.close()


class Sweeper:
    """The process's one liveness timer: a pass over every connection each period.

    Counts ticks; connections note the current tick when they receive bytes and when
    their socket takes bytes while more wait.  Each sweep hands the quiet and stalled tick
    counts of the connections where something may be due to their protocol, which
    decides (``Liveness``).  Costs nothing per connection beyond those two slots.
    """

    def __init__(
        self,
        liveness: Liveness,
        connections: Collection[Connection],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.liveness = liveness
        self.tick = 0
        self._connections = connections
        self._timer: Any = None
        self.clock = clock  # Unix time, for the protocols' auth deadlines

    @property
    def running(self) -> bool:
        return self._timer is not None

    def start(self) -> None:
        """Start sweeping (nothing to do when every check is off)."""
        period = self.liveness.period
        if period and self._timer is None:
            self._timer = gevent.get_hub().loop.timer(period, period)
            self._timer.start(self.sweep)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer.close()
            self._timer = None

    def sweep(self) -> None:
        """One pass: count a tick, check the connections where something may be due."""
        self.tick = tick = self.tick + 1
        first = self.liveness.first
        now = self.clock()
        for conn in list(self._connections):  # a check may close (and remove) conn
            stuck = conn.stuck_since
            stalled = 0 if stuck < 0 else tick - stuck
            quiet = tick - conn.seen
            if quiet >= first or stalled or conn.protocol.deadline <= now:
                try:
                    conn.check(quiet, stalled, now)
                except Exception:
                    logger.exception("bug while sweeping %r", conn)
                    conn.abort()


class Connection:
    """Runs one connection's ``ConnectionProtocol`` over its socket.

    Everything runs in loop callbacks (readable, writable, flush, close timer) except
    request dispatch, which may block (a broker waiting for Redis) and so runs in a
    greenlet that exists only while parsed requests are waiting.  ``on_closed`` is
    called once, when the socket has been closed and everything released.
    """

    __slots__ = (
        "sock",
        "fd",
        "node",
        "flusher",
        "sweeper",
        "config",
        "session",
        "subprotocol",
        "extensions",
        "auth",
        "protocol",
        "_on_closed",
        "_loop",
        "_reader_watch",
        "_writer_watch",
        "_timer",
        "_backlog",
        "_dispatcher",
        "_tls",
        "seen",
        "stuck_since",
        "_upgrade_headers",
        "_refusal",
        "_bucket",
        "_bucket_at",
        "_refusals",
        "proxies",
        "_proxy_headers",
        "_calls",
    )

    def __init__(
        self,
        sock: socket.socket | TlsStream,
        node: Node,
        flusher: Flusher,
        sweeper: Sweeper,
        config: Config,
        on_closed: Callable[[Connection], None],
        *,
        subprotocol: str | None = None,
        extensions: tuple[Extension, ...] = (),
        auth: Authenticator = ANONYMOUS_MODE,
        timing: AuthTiming = DEFAULT_TIMING,
        upgrade_headers: tuple[tuple[str, str], ...] = (),
        proxies: Proxies = NO_PROXIES,
        proxy_headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """``sock`` must be non-blocking; the connection owns it from now on.  A
        ``TlsStream`` is read the same way and written through its ``send`` (plain TCP
        keeps ``os.write``).  ``subprotocol`` and ``extensions``: what the opening
        handshake agreed; ``auth``, ``timing``: how it authenticates; ``upgrade_headers``:
        what the upgrade sent that the connect proxy is given; ``proxies``,
        ``proxy_headers``: the RPC/subscribe/publish proxies and the upgrade's headers
        forwarded to them for the connection's life."""
        self.sock = sock
        self.fd = sock.fileno()
        self._tls = sock if isinstance(sock, TlsStream) else None
        self.node = node
        self.flusher = flusher
        self.sweeper = sweeper
        self.seen = sweeper.tick  # the sweep tick of the last bytes received
        self.stuck_since = _NOT_STUCK  # the tick of the socket's last progress while bytes wait
        self.config = config
        compressed = any(ext.name == deflate.NAME for ext in extensions)  # RFC 7692
        self.session = (DeflateSession if compressed else Session)(self, config.max_outbox_bytes)
        self.subprotocol = subprotocol
        self.extensions = extensions
        self.auth = auth  # with node, session, max_channel_length, link: an rpc.Caller
        self.protocol = ConnectionProtocol(
            config.max_message_size, deflate.Inflater if compressed else None, timing
        )
        self._upgrade_headers = upgrade_headers  # dropped once accepted
        self._refusal: Disconnect | None = None  # a refused connect: close after its answer
        self._on_closed = on_closed
        self._loop = gevent.get_hub().loop
        self._reader_watch = self._loop.io(self.fd, _READ)
        self._writer_watch: Any = None  # created the first time the socket refuses bytes
        self._timer: Any = None  # close_timeout, armed by the CLOSE action
        self._backlog: bytes | memoryview = b""  # taken from the session, not yet written
        self._dispatcher: Any = None  # the greenlet serving requests (reads paused)
        # The command rate limit's token bucket (RATE_LIMIT, RATE_BURST): messages left,
        # when it was last filled, refusals since the last accepted message.
        self._bucket = float(config.rate_burst)
        self._bucket_at = time.monotonic()
        self._refusals = 0
        self.proxies = proxies
        self._proxy_headers = proxy_headers
        self._calls = 0  # `rpc` calls served apart and not answered yet

    # -- rpc.Caller: what client methods see ---------------------------------------------

    @property
    def channel_proxy(self) -> ChannelProxy:
        return self

    def proxy_call(self, method: str, params: Any) -> Any:
        return self.proxies.call(self._call_context(method), params)

    # -- core.node.ChannelProxy ------------------------------------------------------------

    def allow_subscribe(self, channel: str) -> None:
        self.proxies.subscribe(self._call_context("subscribe"), channel)

    def allow_publish(self, channel: str, data: Any) -> Any:
        return self.proxies.publish(self._call_context("publish"), channel, data)

    def _call_context(self, method: str) -> CallContext:
        headers: dict[str, str] = {}
        for name, value in self._proxy_headers:
            if name in headers:  # repeated: one field, as RFC 9110 5.3 (cookies with "; ")
                value = headers[name] + ("; " if name == "cookie" else ", ") + value
            headers[name] = value
        session = self.session
        return CallContext(method, session.id, session.user, session.meta, headers)

    def _defer(self, serve: Callable[[], bytes | None]) -> RpcError | None:
        """rpc.Defer: serve a call in a greenlet of its own, up to
        PROXY["MAX_IN_FLIGHT_PER_CONNECTION"] at once."""
        most = self.config.proxy_max_in_flight_per_connection
        if self._calls >= most:
            return RpcError(
                {
                    "limit": "max_in_flight_per_connection",
                    "max": most,
                    "reason": "too many rpc calls waiting on this connection",
                },
                code=RpcCode.TOO_MANY_CALLS,
            )
        self._calls += 1
        gevent.spawn_raw(self._serve_apart, serve)
        return None

    def _serve_apart(self, serve: Callable[[], bytes | None]) -> None:
        try:
            response = serve()  # rpc.serve: never raises for the call's own failures
            session = self.session
            if response is not None and not session.closed:
                self.node.stats.responses_sent += 1  # as _dispatch counts its answers
                session.push(self.node.reply_frame(session, response))
        except Exception:
            logger.exception("bug while serving a call of %s", self.session.id)
        finally:
            self._calls -= 1

    @property
    def max_channel_length(self) -> int:
        return self.config.max_channel_length

    @property
    def link(self) -> Connection:
        return self

    @property
    def rpc_stats(self) -> RpcStats | None:
        """Where this endpoint's JSON-RPC calls are counted and timed (None: METRICS off)."""
        return self.node.stats.rpc["websocket"] if self.config.metrics else None

    def __repr__(self) -> str:
        return f"<Connection {self.session.id} fd={self.fd} {self.protocol.state.value}>"

    def start(self, received: bytes = b"", token: str | None = None) -> None:
        """Register the session, accept it (or wait for ``connect`` when authentication
        is on), and start reading; ``received``: bytes read already (pipelined after the
        upgrade request); ``token``: one the upgrade carried (query or Authorization)."""
        self.node.connect(self.session)
        auth = self.auth
        if not auth.required:
            self._run(self.protocol.accept())  # anonymous mode: accepted at once
        else:
            self.protocol.await_connect(self.sweeper.clock())
            if token is not None:
                self._upgrade_token(auth, token)
        if received:
            self.protocol.receive_data(received)
            self._handle_events()
        if self._dispatcher is None and self.protocol.reading:
            self._reader_watch.start(self._on_readable)

    def _upgrade_token(self, auth: Authenticator, token: str) -> None:
        try:
            self.admit(auth.accept_upgrade_token(token))
        except AuthFailed as exc:
            logger.info("refused the upgrade token of %s: %s", self.session.id, exc.reason)
            if exc.close is not None:
                self._run(self.protocol.reject(exc.close))

    # -- core.auth.Admission ------------------------------------------------------------

    @property
    def connecting(self) -> bool:
        return self.protocol.state is State.CONNECTING

    def upgrade_headers(self) -> Sequence[tuple[str, str]]:
        return self._upgrade_headers

    def admit(self, identity: Identity) -> list[str]:
        """Accept with ``identity`` and subscribe its channels (those refused are logged).
        Raises AuthFailed when the user is at MAX_CONNECTIONS_PER_USER (nothing changed)."""
        session = self.session
        self.node.admit_user(session, identity.user)  # the hub indexes sessions by user
        session.info, session.meta = identity.info, identity.meta
        self._upgrade_headers = ()
        self._run(self.protocol.accept(identity.expires_at))
        subscribed = []
        for channel in identity.channels:
            try:
                self.node.subscribe(session, validate_channel(channel, self.config.max_channel_length))
            except RpcError as exc:
                logger.info("connection %s: not subscribed to %r at connect: %s", session.id, channel, exc)
            else:
                subscribed.append(channel)
        return subscribed

    def refuse(self, why: Disconnect) -> None:
        self._refusal = why

    def extend(self, expires_at: float) -> None:
        self._run(self.protocol.refreshed(expires_at))

    def close(self, why: Disconnect, *, keep_queue: bool = True) -> None:
        """Close from the server side (shutdown: queued frames are delivered first)."""
        self._run(self.protocol.server_close(why, keep_queue=keep_queue))

    def abort(self) -> None:
        """Drop the connection now (our bug while flushing)."""
        self._run(self.protocol.lost("aborted"))

    def check(self, quiet: int, stalled: int, now: float = 0.0) -> None:
        """The sweep: quiet for ``quiet`` ticks, the socket stuck for ``stalled`` (0: not);
        ``now``: the Unix time, for the protocol's auth deadline."""
        if self._dispatcher is not None:
            # Reads pause while a request is served: the peer's silence is ours, and what
            # it sent (its pong) waits in the kernel.  Count from when reading resumes.
            self.seen = self.sweeper.tick
            quiet = 0
        self._run(self.protocol.check(self.sweeper.liveness, quiet, stalled))
        if self.protocol.deadline <= now:
            self._run(self.protocol.tick(now))

    # -- running the protocol's actions -------------------------------------------------

    def _run(self, step: Step) -> None:
        for action in step.actions:
            if action is Do.DISPATCH:
                self._dispatch(step.text or "")
            elif action is Do.PONG or action is Do.PING or action is Do.NOTIFY:
                self.session.push(step.frame)
            elif action is Do.STOP_READING:
                self._reader_watch.stop()
            elif action is Do.CLOSE:
                if step.detail:
                    logger.info("closing %s: %s", self.session.id, step.detail)
                self._queue_close(step.frame, step.keep_queue)
            elif action is Do.CLOSE_NOW:
                logger.info("closing %s: %s", self.session.id, step.detail)
                self._close_now(step.frame)
            elif action is Do.WRITE:
                self._write()
            elif action is Do.FORGET:
                # A request that finished after the close began (shutdown, slow consumer):
                # what it subscribed meanwhile must not outlive the connection.
                self.node.disconnect(self.session)
            elif action is Do.RELEASE:
                self._release()

    def _queue_close(self, frame: bytes, keep_queue: bool) -> None:
        """Stop pushes, queue the close frame, arm the close timer, start writing.

        Without ``keep_queue`` (a slow consumer, our bug, no pong) the close frame does
        not wait behind the backlog: only the rest of a frame the socket took part of
        goes first (5.2: frames cannot be cut short).
        """
        self.node.disconnect(self.session)
        if keep_queue:
            ahead = bytes(self._backlog) + self.session.take()
        else:
            ahead = self._unfinished()
        self.session.close()
        self._backlog = ahead + frame
        self._timer = self._loop.timer(self.config.close_timeout)
        self._timer.start(self._on_close_timeout)
        self._write()

    def _close_now(self, frame: bytes) -> None:
        """Stop pushes and drop everything unwritten; write the close frame only if no
        frame is partly written and the socket takes all of it at once (then RELEASE)."""
        self.node.disconnect(self.session)
        self.session.close()
        partial = self._unfinished()
        self._backlog = b""
        if not partial:
            try:  # a part of it is cut off by the close: 1006 then
                if self._tls is None:
                    sent = os.write(self.fd, frame)
                else:
                    sent = self._tls.send(frame)
                self.node.stats.bytes_sent += sent
            except OSError:
                pass

    def _unfinished(self) -> bytes:
        """What of the backlog must still go out before anything else: the rest of a frame
        the socket took part of (5.2); over TLS, also the bytes of a record OpenSSL has in
        flight, which the next write must repeat."""
        tls = self._tls
        if tls is None or not tls.committed:
            return rest_of_partial_frame(self._backlog)
        backlog = self._backlog
        view = backlog if isinstance(backlog, memoryview) else memoryview(backlog)
        return bytes(view[: tls.committed]) + rest_of_partial_frame(view[tls.committed :])

    def _on_close_timeout(self) -> None:
        logger.debug(
            "connection %s: closing handshake not finished within %.1f s",
            self.session.id,
            self.config.close_timeout,
        )
        self._run(self.protocol.timeout())

    def _release(self) -> None:
        """The one exit: close the socket and release everything."""
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
        exit_ = self.protocol.exit
        sock = self.sock
        if isinstance(sock, socket.socket) and exit_ is not None and exit_.ended is Input.SENT:
            Linger(self._loop, sock)  # our close frame is out: close after the peer
        else:
            try:
                # Unread bytes at close make the kernel send a reset, which can destroy
                # our close frame in flight; read out what is there, as pywsgi does.
                sock.recv_into(_recv_buffer)
            except OSError:
                pass
            sock.close()
        logger.debug("connection %s ended: %s", self.session.id, self.protocol.exit)
        self._count_exit()
        self._on_closed(self)

    def _count_exit(self) -> None:
        """Count the close code (1006: no close frame) and slow-consumer closes."""
        stats, sent = self.node.stats, None if self.protocol.exit is None else self.protocol.exit.sent
        if sent is None:
            stats.disconnected(NO_CLOSE_FRAME)
            return
        stats.disconnected(sent.code if sent.code in _COUNTED_CODES else OTHER_CODE)
        if sent.code == CloseCode.SLOW_CONSUMER:
            reason = "write_timeout" if sent == disconnect.WRITE_STALLED else "outbox"
            stats.slow_consumers[reason] += 1

    # -- reading ------------------------------------------------------------------------

    def _on_readable(self) -> None:
        try:
            n = self.sock.recv_into(_recv_buffer)
        except BlockingIOError:
            return
        except OSError as exc:
            self._run(self.protocol.lost(str(exc)))
            return
        if not n:
            self._run(self.protocol.lost("EOF"))
            return
        self.seen = self.sweeper.tick  # any frame, pong or not, shows the peer is there
        self.node.stats.bytes_received += n
        self.protocol.receive_data(_recv_view[:n])
        self._handle_events()

    def _handle_events(self) -> None:
        """Run the step of every complete frame received, in order; never raises.

        In a loop callback, the first request hands the rest over to a dispatcher
        greenlet (reads pause until it is done); in that greenlet, requests are
        dispatched inline.
        """
        protocol = self.protocol
        try:
            while (step := protocol.next_step()) is not None:
                if step.text is not None and self._dispatcher is None:
                    self._reader_watch.stop()
                    self._dispatcher = gevent.spawn_raw(self._serve, step)
                    return
                self._run(step)
        except Exception:
            logger.exception("bug while serving %s", self.session.id)
            self._run(protocol.failed("bug while serving"))

    def _serve(self, step: Step) -> None:
        """The dispatcher greenlet: this request, then whatever else is parsed, then exit."""
        try:
            self._run(step)
            self._handle_events()
        except Exception:
            logger.exception("bug while serving %s", self.session.id)
            self._run(self.protocol.failed("bug while serving"))
        finally:
            self._dispatcher = None
            if self.protocol.reading:
                self._reader_watch.start(self._on_readable)

    def _within_rate(self) -> bool:
        """Take one message from the token bucket; False when it is empty."""
        rate = self.config.rate_limit
        if not rate:
            return True
        now = time.monotonic()
        tokens = min(float(self.config.rate_burst), self._bucket + (now - self._bucket_at) * rate)
        self._bucket_at = now
        if tokens >= 1.0:
            self._bucket, self._refusals = tokens - 1.0, 0
            return True
        self._bucket = tokens
        self._refusals += 1
        return False

    def _dispatch(self, text: str) -> None:
        stats = self.node.stats
        stats.messages_received += 1
        if not self._within_rate():
            if self._refusals >= self.config.rate_refusals:
                logger.info(
                    "closing %s: over the rate limit after %d refusals", self.session.id, self._refusals
                )
                self._run(self.protocol.server_close(disconnect.RATE_LIMITED, keep_queue=True))
                return
            response = rpc.refuse(text, _TOO_MANY)
            if response is not None:
                stats.responses_sent += 1
                self.session.push(self.node.reply_frame(self.session, response))
            self._run(self.protocol.served())
            return
        # Before connect succeeds only connect and ping are served (-32010 for the rest).
        methods = rpc.connecting_methods if self.protocol.state is State.CONNECTING else rpc.client_methods
        config = self.config
        response = rpc.dispatch(
            text,
            methods,
            self,
            config.max_batch_size,
            config.max_nesting_depth,
            self._defer,
            self.rpc_stats,
        )
        if response is not None:
            stats.responses_sent += 1
            self.session.push(self.node.reply_frame(self.session, response))
        if self._refusal is not None:  # a refused connect: its error answer goes first
            why, self._refusal = self._refusal, None
            self._run(self.protocol.reject(why))
        self._run(self.protocol.served())

    # -- writing ------------------------------------------------------------------------

    def wake(self) -> None:
        """Session callback: frames were queued."""
        self.flusher.add(self)

    def wake_later(self, delay: float) -> None:
        """Session callback: frames that may wait ``delay`` seconds were queued."""
        self.flusher.add_later(self, delay)

    def flush(self) -> None:
        """Offer what is queued to the socket without blocking (called by the Flusher).

        Then, with the socket's answer known, a connection over its outbox limit is a
        slow consumer: closed with 4008, its queue dropped.
        """
        session = self.session
        if session.closed:
            return  # closing: the backlog is written by the close path
        if self._backlog:
            session.rearm()  # the writer watcher takes the queue; wake us on the next push
        else:
            self._write()
        if session.over_limit:
            logger.info(
                "closing %s: slow consumer (%d bytes unsent, limit %d)",
                session.id,
                session.pending,
                session.max_pending,
            )
            self._run(self.protocol.server_close(disconnect.SLOW_CONSUMER, keep_queue=False))

    def _write(self) -> None:
        """Write the backlog, then what is queued, until done or the socket would block.

        The connection's single writer: called by ``flush``, the close path and the
        writer watcher, all in the hub, never concurrently.  On EAGAIN the rest stays in
        the backlog and the writer watcher waits for the socket to take more.  Once all
        is written while closing, the protocol is told (``sent``).
        """
        if self.protocol.state is State.CLOSED:
            return
        session, fd, tls = self.session, self.fd, self._tls
        data = self._backlog
        moved = False  # the socket took bytes in this call
        queued = False  # data is what take() returned (else the backlog, the queue next)
        while True:
            if not data:
                data = session.take()
                if not data:
                    break
                queued = True
            try:
                n = os.write(fd, data) if tls is None else tls.send(data)
            except BlockingIOError:
                n = 0
            except OSError as exc:
                if exc.errno not in _GONE:
                    logger.info("write to %s failed: %s", session.id, exc)
                self._run(self.protocol.lost(f"write failed: {exc}"))
                return
            session.sent(n)
            self.node.stats.bytes_sent += n
            moved = moved or n > 0
            if n < len(data):
                self._backlog = memoryview(data)[n:] if n else data
                if moved or self.stuck_since == _NOT_STUCK:  # (re)start the stall clock
                    self.stuck_since = self.sweeper.tick
                if self._writer_watch is None:
                    self._writer_watch = self._loop.io(fd, _WRITE)
                if not self._writer_watch.active:
                    self._writer_watch.start(self._write)
                return
            if queued:
                break  # nothing can be queued between take() and here: no greenlet switch
            data = b""
        self._backlog = b""
        self.stuck_since = _NOT_STUCK
        if self._writer_watch is not None:
            self._writer_watch.stop()
        if session.closed:
            self._run(self.protocol.sent())
