"""Lean WebSocket subscribers for load generation: raw sockets, epoll, no per-frame objects.

A ``SubscriberPool`` runs in its own process (``subscriber_main``) and holds many client
connections, grouped by name (one group per server under test). It is driven over a
``multiprocessing`` pipe with small command tuples; see ``SubscriberPool.handle``.

Frames from the server are unmasked (RFC 6455 5.1), so counting them only needs each
frame's header (a compressed one, RFC 7692, is counted and never inflated); client
frames are masked with the all-zero key, which makes masking a no-op (5.3) and keeps the
subscriber cheap.

Over TLS (``wss://``) each socket is a non-blocking ``ssl.SSLSocket`` whose handshake is
driven by the same epoll loop (state ``tls``); the server's certificate is not checked.

Two ways to keep the subscribers' own CPU small next to the server's (both share its
cores here):

- once a connection has received a push (a text frame whose JSON starts with ``PUSH``),
  chunks are counted with a few C-level scans (``count_pushes``), not frame by frame: one
  count of ``PUSH``, and the last push's header to know where the chunk's last frame
  ends; a chunk that could hold anything else (a close or ping frame, a frame that is not
  a push) is parsed frame by frame as before;
- with a ``read_interval`` (seconds, 0 = off) the subscribed connections are read only
  that often, from an epoll set of their own, so one ``recv`` takes every frame that
  arrived meanwhile and no server ``write`` has to wake this process.  Connections that
  sample latency stay in the eager set.
"""

from __future__ import annotations

import errno
import os
import re
import resource
import select
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from rocketws.core.framing import unmask

HANDSHAKE_TEMPLATE = (
    "GET / HTTP/1.1\r\n"
    "Host: {host}:{port}\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "{extensions}"
    "\r\n"
)
OP_TEXT = 0x1
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
_LATENCY_RE = re.compile(rb'"i":(\d+),"t":(\d+)')
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)  # Linux 4.2+
# at most this much per recv: CPython allocates the whole size first, and 256 KiB takes
# glibc's mmap path (measured: 13.5 µs per recv against 1.6 µs at 64 KiB)
RECV_SIZE = 65536
_WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


def _client_tls_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # a benchmark of the server's cost, not of trust
    return context


ZERO_KEY = b"\0\0\0\0"


def client_frame(payload: bytes, opcode: int = OP_TEXT, key: bytes = ZERO_KEY) -> bytes:
    """A masked client frame; the zero mask ``key`` (default) leaves the payload unchanged."""
    n = len(payload)
    first = bytes((0x80 | opcode,))
    if n < 126:
        head = first + bytes((0x80 | n,))
    elif n <= 0xFFFF:
        head = first + bytes((0x80 | 126,)) + n.to_bytes(2, "big")
    else:
        head = first + bytes((0x80 | 127,)) + n.to_bytes(8, "big")
    return head + key + (payload if key == ZERO_KEY else unmask(payload, key))  # XOR both ways


def subscribe_frame(channel: str, rid: int = 1) -> bytes:
    body = orjson.dumps({"jsonrpc": "2.0", "method": "subscribe", "params": {"channel": channel}, "id": rid})
    return client_frame(body)


def raise_nofile_limit() -> int:
    """Raise the open-files soft limit to the hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


@dataclass
class Conn:
    sock: socket.socket
    group: str
    channel: str
    state: str = "connecting"  # connecting -> [tls ->] handshake -> subscribing -> ready | closed
    tls: bool = False
    buf: bytes = b""
    frames: int = 0
    wire_bytes: int = 0  # of the text frames counted in ``frames``, headers included
    close_code: int | None = None
    stalled: bool = False
    latencies: list[tuple[int, int]] | None = field(default=None)
    seq: int = 0  # its place in its group: ("latency", group, True, k) samples seq % k == 0
    pushes: bool = False  # has received a push: chunks may be counted by count_pushes
    lazy: bool = False  # registered in the pool's lazy epoll set (read every read_interval)


PUSH = b'{"jsonrpc":"2.0","method":"message",'  # how both servers' pushes start (orjson)


def count_pushes(buf: bytes) -> tuple[int, int] | None:
    """``buf`` starting on a frame boundary: (pushes, bytes of whole frames) when it is
    pushes only, the last possibly cut short; None when it may hold anything else.

    A close (0x88) or ping (0x89) first byte anywhere, a last push whose header is not
    where its ``PUSH`` says, or more than a frame header after the last push's end: None.
    ``PUSH`` occurs once per push and nowhere else (the benchmark's data never holds it).
    """
    if b"\x88" in buf or b"\x89" in buf:
        return None
    p = buf.rfind(PUSH)
    if p < 2:
        return None
    if p >= 4 and buf[p - 4] == 0x81 and buf[p - 3] == 126:
        head, end = p - 4, p + ((buf[p - 2] << 8) | buf[p - 1])
    elif buf[p - 2] == 0x81 and buf[p - 1] < 126:
        head, end = p - 2, p + buf[p - 1]
    else:
        return None
    n = len(buf)
    count = buf.count(PUSH)
    if end > n:  # the last push is cut short: it is counted when it is whole
        return count - 1, head
    if n - end > 3:  # what follows the last push is not just the start of a header
        return None
    return count, end


class SubscriberPool:
    """Many subscriber connections in one process, multiplexed with epoll."""

    def __init__(self, read_interval: float = 0.0) -> None:
        self.ep = select.epoll()
        self.read_interval = read_interval
        self.lazy_ep = select.epoll()  # ready connections read every read_interval
        self._next_lazy = 0.0
        self.conns: dict[int, Conn] = {}
        self.groups: dict[str, list[Conn]] = {}
        self.pending: list[tuple[str, str, int, str, bool, bool, int, str, str]] = []  # connect jobs
        self._tls_context: ssl.SSLContext | None = None
        self.inflight = 0
        self.connect_reply: Any = None
        self.last_frame_ns: dict[str, int] = {}
        # frames of ready, reading connections per group since its last reset, kept as
        # they arrive so that polling progress costs nothing per connection
        self.group_frames: dict[str, int] = {}
        self.latency_groups: dict[str, int] = {}  # group -> sample every k-th connection

    # -- connection state machine --------------------------------------------------

    def _start_connect(
        self,
        group: str,
        host: str,
        port: int,
        channel: str,
        stalled: bool,
        tls: bool = False,
        extensions: str = "",
        source: str = "",
    ) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if source:  # another loopback address: a port range of its own towards the server
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)  # port chosen at connect
            try:
                sock.bind((source, 0))
            except OSError:
                sock.close()
                self._failed(group)
                return
        if stalled:  # a consumer that never reads: keep its receive window small
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        err = sock.connect_ex((host, port))
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            self._failed(group)
            return
        members = self.groups.setdefault(group, [])
        conn = Conn(sock=sock, group=group, channel=channel, stalled=stalled, tls=tls, seq=len(members))
        self.conns[sock.fileno()] = conn
        members.append(conn)
        self.ep.register(sock.fileno(), select.EPOLLOUT)
        self.inflight += 1
        offer = f"Sec-WebSocket-Extensions: {extensions}\r\n" if extensions else ""
        conn.buf = HANDSHAKE_TEMPLATE.format(host=host, port=port, extensions=offer).encode()

    def _failed(self, group: str) -> None:
        self.connect_reply["failed"] += 1

    def _on_writable(self, conn: Conn) -> None:
        err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._drop(conn, failed=True)
            return
        if conn.tls:
            if self._tls_context is None:
                self._tls_context = _client_tls_context()
            # same fd: the SSLSocket takes over the socket's descriptor
            conn.sock = self._tls_context.wrap_socket(conn.sock, do_handshake_on_connect=False)
            conn.state = "tls"
            self._tls_step(conn)
            return
        self._send_upgrade(conn)

    def _send_upgrade(self, conn: Conn) -> None:
        conn.sock.send(conn.buf)
        conn.buf = b""
        conn.state = "handshake"
        self.ep.modify(conn.sock.fileno(), select.EPOLLIN)

    def _tls_step(self, conn: Conn) -> None:
        """Advance the TLS handshake; on completion send the upgrade request."""
        assert isinstance(conn.sock, ssl.SSLSocket)
        try:
            conn.sock.do_handshake()
        except ssl.SSLWantReadError:
            self.ep.modify(conn.sock.fileno(), select.EPOLLIN)
            return
        except ssl.SSLWantWriteError:
            self.ep.modify(conn.sock.fileno(), select.EPOLLOUT)
            return
        except OSError:
            self._drop(conn, failed=True)
            return
        self._send_upgrade(conn)

    def _drop(self, conn: Conn, failed: bool = False) -> None:
        """Forget ``conn``; one that had not finished subscribing counts as failed."""
        fd = conn.sock.fileno()
        if fd in self.conns:
            (self.lazy_ep if conn.lazy else self.ep).unregister(fd)
            del self.conns[fd]
        if conn.state not in ("ready", "closed"):
            self.inflight -= 1
            self._failed(conn.group)
        conn.state = "closed"
        conn.sock.close()

    def _on_readable(self, conn: Conn, now_ns: int) -> None:
        try:
            data = conn.sock.recv(RECV_SIZE)
            if conn.tls:  # decrypted bytes OpenSSL holds are not signalled by epoll again
                while conn.sock.pending():  # type: ignore[attr-defined]
                    data += conn.sock.recv(RECV_SIZE)
        except _WOULD_BLOCK:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(conn)
            return
        if conn.state == "ready":
            self._feed(conn, data, now_ns)
            return
        buf = conn.buf + data
        if conn.state == "handshake":
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                conn.buf = buf
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                self._drop(conn, failed=True)
                return
            conn.buf = buf[end + 4 :]
            conn.state = "subscribing"
            conn.sock.send(subscribe_frame(conn.channel))
            buf, conn.buf = conn.buf, b""
            if not buf:
                return
        # subscribing: wait for the reply frame, then count everything after it
        conn.buf = b""
        conn.frames = 0
        self._feed(conn, buf, now_ns)
        if conn.frames:
            conn.frames -= 1  # the subscribe reply itself
            conn.wire_bytes = 0
            conn.state = "ready"
            self.inflight -= 1
            self.connect_reply["ok"] += 1
            if conn.stalled:
                self.ep.unregister(conn.sock.fileno())
            elif self.read_interval > 0 and not self._samples(conn):
                self._set_lazy(conn, True)

    def _samples(self, conn: Conn) -> bool:
        every = self.latency_groups.get(conn.group, 0)
        return every > 0 and conn.seq % every == 0

    def _set_lazy(self, conn: Conn, lazy: bool) -> None:
        """Move a ready connection between the eager and the lazy epoll set."""
        if conn.lazy == lazy or conn.state != "ready" or conn.stalled:
            return
        fd = conn.sock.fileno()
        (self.ep if lazy else self.lazy_ep).unregister(fd)
        (self.lazy_ep if lazy else self.ep).register(fd, select.EPOLLIN)
        conn.lazy = lazy

    def _feed(self, conn: Conn, data: bytes, now_ns: int) -> None:
        """Count complete frames; a close frame records its status code."""
        every = self.latency_groups.get(conn.group, 0)
        keep = every > 0 and conn.state == "ready" and conn.seq % every == 0
        if conn.pushes and not keep:
            buf = conn.buf + data if conn.buf else data
            counted = count_pushes(buf)
            if counted is not None:
                count, whole = counted
                conn.buf = buf[whole:]
                if count:
                    self._counted(conn, count, whole, now_ns)
                return
        buf = conn.buf + data if conn.buf else data
        n = len(buf)
        i = 0
        count = 0
        wire = 0
        pushes = False
        while n - i >= 2:
            b1 = buf[i + 1] & 0x7F
            if b1 < 126:
                start = i + 2
            elif b1 == 126:
                if n - i < 4:
                    break
                start = i + 4
                b1 = (buf[i + 2] << 8) | buf[i + 3]
            else:
                if n - i < 10:
                    break
                start = i + 10
                b1 = int.from_bytes(buf[i + 2 : i + 10], "big")
            end = start + b1
            if end > n:
                break
            op = buf[i] & 0x0F
            if op == OP_TEXT:
                count += 1
                wire += end - i
                if not pushes and buf.startswith(PUSH, start):
                    pushes = True
                if keep:
                    m = _LATENCY_RE.search(buf, start, end)
                    if m is not None:
                        if conn.latencies is None:
                            conn.latencies = []
                        conn.latencies.append((int(m.group(1)), now_ns - int(m.group(2))))
            elif op == OP_CLOSE and b1 >= 2:
                conn.close_code = (buf[start] << 8) | buf[start + 1]
            elif op == OP_PING:  # answer keepalive pings (RFC 6455 5.5.2) or servers drop us
                try:
                    conn.sock.send(client_frame(buf[start:end], OP_PONG))
                except OSError:
                    pass
            i = end
        conn.buf = buf[i:] if i < n else b""
        if pushes and conn.state == "ready":
            conn.pushes = True
        if count:
            self._counted(conn, count, wire, now_ns)

    def _counted(self, conn: Conn, count: int, wire: int, now_ns: int) -> None:
        conn.frames += count
        conn.wire_bytes += wire
        self.last_frame_ns[conn.group] = now_ns
        if conn.state == "ready" and not conn.stalled:
            self.group_frames[conn.group] = self.group_frames.get(conn.group, 0) + count

    # -- commands --------------------------------------------------------------------

    def handle(self, cmd: tuple[Any, ...]) -> Any:
        """Run one command; returns the reply, or None when the reply comes later."""
        op = cmd[0]
        if (
            op == "connect"
        ):  # ("connect", group, host, port, count, channel, stalled, tls[, extensions[, source]])
            _, group, host, port, count, channel, stalled, tls, *rest = cmd
            extensions = rest[0] if rest else ""
            source = rest[1] if len(rest) > 1 else ""
            self.connect_reply = {"ok": 0, "failed": 0, "target": count}
            self.pending = [(group, host, port, channel, stalled, tls, count, extensions, source)]
            return None
        if op == "stats":
            return self._stats(cmd[1])
        if op == "reset":
            for c in self.groups.get(cmd[1], []):
                c.frames = 0
                c.wire_bytes = 0
                c.latencies = None
            self.last_frame_ns.pop(cmd[1], None)
            self.group_frames.pop(cmd[1], None)
            return True
        if op == "progress":  # ("progress", group): (frames since reset, last frame ns), cheap
            return self.group_frames.get(cmd[1], 0), self.last_frame_ns.get(cmd[1], 0)
        if op == "latency":  # ("latency", group, on[, every]): record on every k-th connection
            if cmd[2]:
                self.latency_groups[cmd[1]] = max(1, int(cmd[3])) if len(cmd) > 3 else 1
            else:
                self.latency_groups.pop(cmd[1], None)
            if self.read_interval > 0:  # samplers are read at once, the others lazily
                for c in self.groups.get(cmd[1], []):
                    self._set_lazy(c, not self._samples(c))
            return True
        if op == "latencies":
            out: list[tuple[int, int]] = []
            for c in self.groups.get(cmd[1], []):
                if c.latencies:
                    out.extend(c.latencies)
            return out
        if op == "drain_stalled":  # read what stalled connections hold, up to a deadline
            return self._drain_stalled(cmd[1], cmd[2])
        if op == "close":
            for c in self.groups.pop(cmd[1], []):
                if c.state != "closed":
                    fd = c.sock.fileno()
                    if fd in self.conns:
                        if not c.stalled or c.state != "ready":
                            (self.lazy_ep if c.lazy else self.ep).unregister(fd)
                        del self.conns[fd]
                    c.sock.close()
                    c.state = "closed"
            self.last_frame_ns.pop(cmd[1], None)
            return True
        raise ValueError(f"unknown command {op!r}")

    def _stats(self, group: str) -> dict[str, Any]:
        """Frames, ready, closed-by-server and close codes of ``group``."""
        conns = self.groups.get(group, [])
        codes: dict[str, int] = {}  # str keys: the report is JSON
        for c in conns:
            if c.close_code is not None:
                key = str(c.close_code)
                codes[key] = codes.get(key, 0) + 1
        return {
            "frames": sum(c.frames for c in conns if not c.stalled),
            "wire_bytes": sum(c.wire_bytes for c in conns if not c.stalled),
            "stalled_frames": sum(c.frames for c in conns if c.stalled),
            "ready": sum(1 for c in conns if c.state == "ready"),
            "closed": sum(1 for c in conns if c.state == "closed"),
            "close_codes": codes,
            "last_frame_ns": self.last_frame_ns.get(group, 0),
        }

    def _drain_stalled(self, group: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for c in self.groups.get(group, []):
            if not c.stalled or c.state != "ready":
                continue
            c.sock.setblocking(True)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                c.sock.settimeout(min(left, 1.0))  # 1 s of silence: nothing more is coming
                try:
                    data = c.sock.recv(RECV_SIZE)
                except OSError:
                    break
                if not data:
                    break
                self._feed(c, data, time.monotonic_ns())
                if c.close_code is not None:
                    break
        return self._stats(group)

    def pump(self, timeout: float) -> None:
        """Start queued connects (bounded in flight) and process socket events once."""
        while self.pending and self.inflight < 64:
            group, host, port, channel, stalled, tls, left, extensions, source = self.pending[0]
            self._start_connect(group, host, port, channel, stalled, tls, extensions, source)
            if left <= 1:
                self.pending.pop(0)
            else:
                self.pending[0] = (group, host, port, channel, stalled, tls, left - 1, extensions, source)
        if self.read_interval > 0:
            now = time.monotonic()
            if now >= self._next_lazy:
                self._next_lazy = now + self.read_interval
                while True:  # every lazy connection with bytes waiting, once
                    events = self.lazy_ep.poll(0, 4096)
                    self._dispatch(events)
                    if len(events) < 4096:
                        break
            timeout = min(timeout, max(0.0, self._next_lazy - time.monotonic()))
        self._dispatch(self.ep.poll(timeout, 4096))

    def _dispatch(self, events: list[tuple[int, int]]) -> None:
        if not events:
            return
        now_ns = time.monotonic_ns()
        conns = self.conns
        for fd, _ev in events:
            conn = conns.get(fd)
            if conn is None:
                continue
            if conn.state == "connecting":
                self._on_writable(conn)
            elif conn.state == "tls":
                self._tls_step(conn)
            else:
                self._on_readable(conn, now_ns)

    def connect_done(self) -> bool:
        r = self.connect_reply
        return r is not None and not self.pending and r["ok"] + r["failed"] >= r["target"]


def subscriber_main(pipe: Any, cpus: set[int] | None, read_interval: float = 0.0) -> None:
    """Process entry point: serve commands from ``pipe`` until ("quit",); ``read_interval``:
    see ``SubscriberPool``."""
    if cpus:
        try:
            os.sched_setaffinity(0, cpus)
        except OSError:
            pass
    raise_nofile_limit()
    pool = SubscriberPool(read_interval)
    pipe_fd = pipe.fileno()
    pool.ep.register(pipe_fd, select.EPOLLIN)
    pool.conns.pop(pipe_fd, None)
    while True:
        # the pipe is registered in the same epoll set; pool.pump skips unknown fds
        pool.pump(0.05 if not pool.pending else 0.001)
        if pool.connect_reply is not None and pool.connect_done():
            pipe.send(pool.connect_reply)
            pool.connect_reply = None
        while pipe.poll():
            cmd = pipe.recv()
            if cmd[0] == "quit":
                for group in list(pool.groups):
                    pool.handle(("close", group))
                pipe.send(True)
                return
            reply = pool.handle(cmd)
            if reply is not None:
                pipe.send(reply)
