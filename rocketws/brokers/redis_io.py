"""gevent-cooperative Redis I/O on redis-py's connection and protocol layer.

redis-py is imported lazily (``pip install 'rocketws[redis]'``).  Its sockets are made
with :mod:`gevent.socket` whether or not the process is monkey-patched, so every
connect, send and read yields to the hub.  Nothing here retries on its own: every call
is bounded by the socket timeouts and fails with :class:`RedisDown`.

``Client`` runs commands over a small pool of connections; ``Subscriber`` keeps one
pub/sub connection alive, reconnecting with capped backoff and resubscribing.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import gevent
import gevent.event
import gevent.select
from gevent import socket as gsocket

from rocketws.core.exceptions import ConfigError

logger = logging.getLogger(__name__)

INSTALL_HINT = "the Redis broker needs redis-py: pip install 'rocketws[redis]'"


class RedisDown(Exception):
    """Redis could not be reached, or did not answer within the timeout."""


def import_redis() -> Any:
    """The ``redis`` package.  Raises ConfigError with an install hint if it is missing."""
    try:
        import redis
    except ImportError:
        raise ConfigError("broker", "redis://", INSTALL_HINT) from None
    return redis


_connection_class: Any = None


def connection_class() -> Any:
    """redis-py's TCP ``Connection`` with its socket made by gevent."""
    global _connection_class
    if _connection_class is None:
        redis = import_redis()

        # redis is imported lazily (optional), so its classes are Any; "misc" (subclassing
        # Any) is reported only under --strict, hence unused-ignore for plain `make lint`
        class GeventConnection(redis.connection.Connection):  # type: ignore[misc, name-defined, unused-ignore]
            """A redis-py connection whose socket is a gevent socket."""

            def _connect(self) -> Any:
                sock = gsocket.create_connection((self.host, self.port), timeout=self.socket_connect_timeout)
                sock.setsockopt(gsocket.IPPROTO_TCP, gsocket.TCP_NODELAY, 1)
                if self.socket_keepalive:
                    sock.setsockopt(gsocket.SOL_SOCKET, gsocket.SO_KEEPALIVE, 1)
                    for option, value in self.socket_keepalive_options.items():
                        sock.setsockopt(gsocket.IPPROTO_TCP, option, value)
                sock.settimeout(self.socket_timeout)
                return sock

        _connection_class = GeventConnection
    return _connection_class


def connection_kwargs(url: str) -> dict[str, Any]:
    """redis-py connection arguments for a ``redis://host:port/db`` URL.

    Raises ConfigError for other schemes or a malformed URL.
    """
    redis = import_redis()
    if not url.startswith("redis://"):
        raise ConfigError("broker", url, "expected redis://[:password@]host[:port][/db]")
    try:
        kwargs: dict[str, Any] = redis.connection.parse_url(url)
    except ValueError as exc:
        raise ConfigError("broker", url, str(exc)) from None
    return kwargs


def _no_retry() -> Any:
    redis = import_redis()
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    del redis
    return Retry(NoBackoff(), 0)


def make_connection(kwargs: dict[str, Any], timeout: float | None, connect_timeout: float) -> Any:
    """One unconnected gevent connection (``timeout``: socket read/write timeout).

    RESP2 always: pub/sub messages then come back from ``read_response`` as plain
    replies instead of going to redis-py's RESP3 push handlers.
    """
    return connection_class()(
        **{**kwargs, "protocol": 2},
        socket_timeout=timeout,
        socket_connect_timeout=connect_timeout,
        retry=_no_retry(),
    )


def _errors() -> tuple[type[BaseException], ...]:
    redis = import_redis()
    return (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


def _encode(arg: Any) -> bytes:
    if isinstance(arg, str):
        return arg.encode()
    if isinstance(arg, int) and not isinstance(arg, bool):
        return b"%d" % arg
    if isinstance(arg, float):
        return repr(arg).encode()
    raise TypeError(f"a Redis argument must be bytes, str, int or float, not {type(arg).__name__}")


def pack_commands(commands: list[tuple[Any, ...]]) -> bytes:
    """The RESP bytes of ``commands`` (each a command name, one word, and its args).

    Written here rather than redis-py's ``pack_commands``, which builds each command by
    re-joining a growing buffer per argument: for a pipeline of 100 history scripts
    (18 arguments each) that packing was about half of the publish's CPU.
    """
    parts: list[bytes] = []
    append = parts.append
    for args in commands:
        append(b"*%d\r\n" % len(args))
        for arg in args:
            data = arg if type(arg) is bytes else _encode(arg)
            append(b"$%d\r\n" % len(data))
            append(data)
            append(b"\r\n")
    return b"".join(parts)


MAX_IDLE = 64
"""Connections a Client keeps for reuse: as many as publications in flight at a busy
moment, so a burst does not open new ones (a connect from a hub busy writing to
thousands of sockets can outlast its timeout: measured, 3 of 100 emits refused at
60,000 subscribers with 8 kept)."""


class Client:
    """Runs commands over a pool of gevent connections; bounded, never retried.

    ``execute`` and ``pipeline`` raise RedisDown when Redis is unreachable or slow,
    and redis-py's ResponseError when Redis rejects a command.
    """

    def __init__(
        self, kwargs: dict[str, Any], *, timeout: float, connect_timeout: float, max_idle: int = MAX_IDLE
    ) -> None:
        self._kwargs = kwargs
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._idle: list[Any] = []
        self._max_idle = max_idle
        self._errors = _errors()
        self._shas: dict[str, str] = {}

    def execute(self, *args: Any) -> Any:
        """Run one command and return its reply (a rejected command raises ResponseError)."""
        reply = self.pipeline([args])[0]
        if isinstance(reply, Exception):
            raise reply
        return reply

    def pipeline(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Send ``commands`` in one write and return their replies in order.

        A command that Redis rejects makes its reply the ResponseError instance.
        """
        conn = (
            self._idle.pop()
            if self._idle
            else make_connection(self._kwargs, self._timeout, self._connect_timeout)
        )
        redis = import_redis()
        try:
            try:
                conn.connect()
            except redis.exceptions.TimeoutError:
                # A hub busy for longer than the timeout (writing to thousands of sockets)
                # fires it even when the kernel connected at once; nothing was sent yet,
                # so one more try is safe, and bounded like the first.
                conn.disconnect()
                conn.connect()
            conn.send_packed_command([pack_commands(commands)])
            replies = []
            for _ in commands:
                try:
                    replies.append(_read_reply(conn, redis))
                except redis.exceptions.ResponseError as exc:
                    replies.append(exc)
        except self._errors as exc:
            conn.disconnect()
            raise RedisDown(str(exc)) from None
        except BaseException:
            conn.disconnect()  # a half-read reply must not be left for the next caller
            raise
        if len(self._idle) < self._max_idle:
            self._idle.append(conn)
        else:
            conn.disconnect()
        return replies

    def script(self, source: str, *args: Any) -> Any:
        """Run the Lua ``source`` with ``args`` as ARGV (EVALSHA, then EVAL if unknown)."""
        sha = self._shas.get(source)
        if sha is None:
            sha = self._shas[source] = hashlib.sha1(source.encode()).hexdigest()
        try:
            return self.execute("EVALSHA", sha, 0, *args)
        except import_redis().exceptions.NoScriptError:
            return self.execute("EVAL", source, 0, *args)

    def scripts(self, calls: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        """Run each (Lua source, ARGV) in order in one pipeline (one round trip); return
        each reply (a rejected one as its ResponseError).  Scripts Redis does not know
        (NOSCRIPT, e.g. after a restart) are sent again with EVAL in a second pipeline:
        a NOSCRIPT reply means that script did not run.  Raises RedisDown.
        """
        commands = []
        for source, args in calls:
            sha = self._shas.get(source)
            if sha is None:
                sha = self._shas[source] = hashlib.sha1(source.encode()).hexdigest()
            commands.append(("EVALSHA", sha, 0, *args))
        replies = self.pipeline(commands)
        missing = import_redis().exceptions.NoScriptError
        again = [i for i, reply in enumerate(replies) if isinstance(reply, missing)]
        if again:
            retried = self.pipeline([("EVAL", calls[i][0], 0, *calls[i][1]) for i in again])
            for i, reply in zip(again, retried, strict=True):
                replies[i] = reply
        return replies

    def close(self) -> None:
        """Disconnect every idle connection."""
        for conn in self._idle:
            conn.disconnect()
        self._idle.clear()


MessageHandler = Callable[[bytes, bytes], None]

_SOCKET_BACKSTOP = 30.0  # s: the pub/sub socket's timeout; liveness is the PINGs' business


def _shut(conn: Any) -> None:
    """End ``conn``'s socket both ways so its reader gets EOF (closing the descriptor
    under a greenlet blocked reading it would give that reader a bad-descriptor error)."""
    sock = getattr(conn, "_sock", None)
    try:
        if sock is not None:
            sock.shutdown(gsocket.SHUT_RDWR)
            return
    except OSError:
        pass
    conn.disconnect()


def _read_reply(conn: Any, redis: Any) -> Any:
    """One reply.  A read that timed out while the reply was already waiting (the hub was
    busy past the timeout, Redis was not slow) reads it: the command ran, and answering
    the caller "unreachable" would be false."""
    try:
        return conn.read_response(disconnect_on_error=False)
    except redis.exceptions.TimeoutError:
        if not _readable(conn):
            raise
        return conn.read_response(disconnect_on_error=False)


def _readable(conn: Any) -> bool:
    """Whether bytes from Redis wait to be read on ``conn`` (so it is alive, only not read
    yet because the hub was busy)."""
    sock = getattr(conn, "_sock", None)
    if sock is None:
        return False
    try:
        readable, _, _ = gevent.select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return bool(readable)


class Subscriber:
    """One pub/sub connection that stays subscribed to the wanted channels.

    A greenlet connects, subscribes every wanted channel, and hands each message to
    ``on_message(channel, data)`` (which must not block).  When the connection fails
    it reconnects with exponential backoff capped at ``backoff_cap`` seconds and
    subscribes everything again.  A PING every ``ping_interval`` seconds detects a dead
    peer: when a PING has gone unanswered for ``3 * ping_interval`` and nothing is waiting
    to be read, the connection is dropped.  Liveness is judged by the answers to PINGs
    that were actually sent, not by silence on the socket: a hub kept busy for seconds
    (a worker writing to thousands of sockets on a loaded machine) sends no PING, and
    Redis is not dropped for it, which would lose the publications sent meanwhile.
    Channel names are bytes.
    """

    def __init__(
        self,
        kwargs: dict[str, Any],
        on_message: MessageHandler,
        *,
        name: str = "redis subscriber",
        connect_timeout: float = 1.0,
        ping_interval: float = 1.0,
        backoff_first: float = 0.05,
        backoff_cap: float = 0.5,
    ) -> None:
        self._kwargs = kwargs
        self._on_message = on_message
        self._name = name
        self._connect_timeout = connect_timeout
        self._ping_interval = ping_interval
        self._backoff = (backoff_first, backoff_cap)
        self._wanted: set[bytes] = set()
        self._drop_at: dict[bytes, float] = {}
        self._subscribed: set[bytes] = set()
        self._inflight: set[bytes] = set()
        self._catching_up: set[bytes] = set()  # wanted at connect, not confirmed yet
        self._waiters: dict[bytes, gevent.event.Event] = {}
        self._wake = gevent.event.Event()
        self._greenlet: gevent.Greenlet | None = None
        self._closed = False
        self._last_reply = 0.0  # monotonic time of the last reply read
        self.connected = gevent.event.Event()
        self.reconnects = 0

    # -- caller side (never does I/O) -------------------------------------------------

    def start(self) -> None:
        """Spawn the connection greenlet.  Called once."""
        self._greenlet = gevent.spawn(self._run)

    def add(self, channel: bytes, wait: float = 0.0) -> None:
        """Want ``channel``; if connected, wait up to ``wait`` s for Redis to confirm."""
        self._wanted.add(channel)
        self._drop_at.pop(channel, None)
        if channel in self._subscribed:
            return
        self._wake.set()
        if wait > 0 and self.connected.is_set():
            waiter = self._waiters.get(channel)
            if waiter is None:
                waiter = self._waiters[channel] = gevent.event.Event()
            waiter.wait(wait)

    def remove(self, channel: bytes, delay: float = 0.0) -> None:
        """Stop wanting ``channel``; unsubscribe after ``delay`` s unless re-added."""
        self._wanted.discard(channel)
        self._catching_up.discard(channel)
        self._drop_at[channel] = time.monotonic() + delay
        self._wake.set()

    def is_subscribed(self, channel: bytes) -> bool:
        """Whether Redis has confirmed ``channel`` on the current connection."""
        return channel in self._subscribed

    def caught_up(self) -> bool:
        """Connected, and every channel wanted when the connection was made is confirmed
        (after a reconnect: resubscribed).  Channels added later do not count: a new
        subscription's wait is its own (``add(wait=...)``)."""
        return self.connected.is_set() and not self._catching_up

    def close(self) -> None:
        """Stop the greenlet and drop the connection.  Called once."""
        self._closed = True
        if self._greenlet is not None:
            self._greenlet.kill(block=True, timeout=2)

    # -- the connection greenlet --------------------------------------------------------

    def _run(self) -> None:
        errors = _errors()
        attempt = 0
        down_since: float | None = None
        while not self._closed:
            # The socket timeout is only a backstop (a send that cannot complete): the
            # unanswered PINGs of _write bound how long a dead peer goes unnoticed.
            conn = make_connection(self._kwargs, _SOCKET_BACKSTOP, self._connect_timeout)
            writer: gevent.Greenlet | None = None
            try:
                conn.connect()
                self._catching_up = set(self._wanted)
                self._last_reply = time.monotonic()
                writer = gevent.spawn(self._write_loop, conn)
                self.connected.set()
                if down_since is not None:
                    logger.info(
                        "%s: reconnected to Redis after %.2f s", self._name, time.monotonic() - down_since
                    )
                    self.reconnects += 1
                    down_since = None
                attempt = 0
                self._read_loop(conn)
            except errors as exc:
                if down_since is None:
                    down_since = time.monotonic()
                    logger.warning("%s: Redis connection lost (%s); reconnecting", self._name, exc)
                else:
                    logger.debug("%s: reconnect failed: %s", self._name, exc)
            except Exception:
                logger.exception("%s: unexpected error; reconnecting", self._name)
                down_since = down_since or time.monotonic()
            finally:
                self._reset(conn, writer)
            if self._closed:
                break
            first, cap = self._backoff
            gevent.sleep(min(cap, first * (2**attempt)))
            attempt = min(attempt + 1, 16)

    def _reset(self, conn: Any, writer: gevent.Greenlet | None) -> None:
        self.connected.clear()
        if writer is not None:
            writer.kill(block=False)
        conn.disconnect()
        self._subscribed.clear()
        self._inflight.clear()
        waiters, self._waiters = self._waiters, {}
        for waiter in waiters.values():
            waiter.set()  # the subscription is still wanted; it is made on reconnect

    def _read_loop(self, conn: Any) -> None:
        while True:
            reply = conn.read_response()
            self._last_reply = time.monotonic()
            kind = reply[0]
            if kind == b"message":
                try:
                    self._on_message(reply[1], reply[2])
                except Exception:
                    logger.exception("%s: message handler failed", self._name)
            elif kind == b"subscribe":
                channel = reply[1]
                if channel in self._inflight:
                    self._inflight.discard(channel)
                    self._subscribed.add(channel)
                self._catching_up.discard(channel)
                waiter = self._waiters.pop(channel, None)
                if waiter is not None:
                    waiter.set()

    def _write_loop(self, conn: Any) -> None:
        try:
            self._write(conn)
        except _errors() as exc:
            if isinstance(exc, TimeoutError):
                logger.warning("%s: %s; reconnecting", self._name, exc)
            else:
                logger.debug("%s: write failed: %s", self._name, exc)
            _shut(conn)  # the reader sees the end of the stream and reconnects

    def _write(self, conn: Any) -> None:
        last_write = time.monotonic()
        ping_sent = 0.0  # when the oldest PING not followed by a reply was sent (0: none)
        while True:
            now = time.monotonic()
            if ping_sent and self._last_reply >= ping_sent:
                ping_sent = 0.0  # answered (or something else came back since)
            if ping_sent and now - ping_sent > 3 * self._ping_interval and not _readable(conn):
                raise TimeoutError(f"no answer from Redis to a PING for {now - ping_sent:.1f} s")
            due = [ch for ch, at in self._drop_at.items() if at <= now]
            drop = [ch for ch in due if ch in self._subscribed or ch in self._inflight]
            for ch in due:
                del self._drop_at[ch]
            if drop:
                self._subscribed.difference_update(drop)
                self._inflight.difference_update(drop)
                conn.send_command("UNSUBSCRIBE", *drop)
                last_write = now
            todo = self._wanted - self._subscribed - self._inflight
            if todo:
                self._inflight.update(todo)
                conn.send_command("SUBSCRIBE", *todo)
                last_write = now
            if now - last_write >= self._ping_interval:
                conn.send_command("PING")
                last_write = now
                if not ping_sent:
                    ping_sent = now
            timeout = self._ping_interval - (now - last_write)
            if self._drop_at:
                timeout = min(timeout, max(0.0, min(self._drop_at.values()) - now))
            self._wake.wait(max(timeout, 0.005))
            self._wake.clear()


def channels_arg(channels: Iterable[str]) -> list[bytes]:
    """Channel names as the bytes Redis sees."""
    return [ch.encode() for ch in channels]
