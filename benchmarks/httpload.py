"""A lean HTTP/1.1 keep-alive client for the MessagesSource: raw sockets, no parsing beyond
the status line and Content-Length, C connections each with one request in flight.
"""

from __future__ import annotations

import selectors
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .wsclient import RECV_SIZE


class HTTPError(Exception):
    """The server answered something the load generator cannot use."""


def request_bytes(host: str, port: int, body: bytes, path: str = "/") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def _exchange(host: str, port: int, request: bytes, timeout: float) -> tuple[int, bytes]:
    """Send ``request`` on a fresh connection; returns the response's (status, body)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(request)
        parser = _ResponseParser()
        while not parser.done:
            data = sock.recv(65536)
            if not data:
                raise HTTPError("connection closed before the response ended")
            parser.feed(data)
        return parser.status, parser.body


def get(host: str, port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """One GET on a fresh connection; returns (status, body)."""
    return _exchange(host, port, f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode(), timeout)


def post(host: str, port: int, body: bytes, timeout: float = 10.0) -> tuple[int, bytes]:
    """One POST on a fresh connection; returns (status, body)."""
    return _exchange(host, port, request_bytes(host, port, body), timeout)


class _ResponseParser:
    """Incremental parser for one response with Content-Length (or none, for 204/304)."""

    def __init__(self) -> None:
        self.buf = b""
        self.status = 0
        self.body = b""
        self.done = False
        self.rest = b""
        self._need: int | None = None
        self._head_end = -1

    def feed(self, data: bytes) -> None:
        self.buf += data
        if self._need is None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].decode("latin-1")
            lines = head.split("\r\n")
            self.status = int(lines[0].split(" ", 2)[1])
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                lname = name.strip().lower()
                if lname == "content-length":
                    length = int(value.strip())
                elif lname == "transfer-encoding" and "chunked" in value.lower():
                    raise HTTPError("chunked responses are not supported by the load generator")
            self._need = length
            self._head_end = end + 4
        if len(self.buf) - self._head_end >= self._need:
            stop = self._head_end + self._need
            self.body = self.buf[self._head_end : stop]
            self.rest = self.buf[stop:]
            self.done = True


@dataclass
class LoadResult:
    requests: int = 0
    errors: int = 0
    elapsed: float = 0.0
    first_body: bytes = b""
    statuses: dict[int, int] = field(default_factory=dict)
    # answers that carry a JSON-RPC error (HTTP 200 all the same), and the first of them
    rpc_errors: int = 0
    first_error: bytes = b""
    send_ns: list[int] = field(default_factory=list)


def run_requests(
    host: str,
    port: int,
    make_body: Callable[[int], bytes],
    total: int,
    concurrency: int = 1,
    rate: float | None = None,
    timeout: float = 120.0,
    progress: Callable[[int], None] | None = None,
) -> LoadResult:
    """Send ``total`` POSTs, body ``make_body(i)``, over ``concurrency`` keep-alive
    connections, each with one request in flight; with ``rate`` (requests/s) request i is
    not sent before ``start + i / rate``. Returns counts and the elapsed wall time.
    """
    sel = selectors.DefaultSelector()
    socks = []
    for _ in range(max(1, concurrency)):
        s = socket.create_connection((host, port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        socks.append(s)
    res = LoadResult()
    head = f"POST / HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
    head_b = head.encode()
    sent = 0
    done = 0
    idle = list(socks)
    parsers: dict[socket.socket, _ResponseParser] = {}
    start = time.monotonic()
    deadline = start + timeout

    def send(s: socket.socket, i: int) -> None:
        body = make_body(i)
        data = head_b + b"Content-Length: %d\r\n\r\n" % len(body) + body
        n = s.send(data)
        if n < len(data):  # rare: the request did not fit the socket buffer
            s.setblocking(True)
            s.sendall(data[n:])
            s.setblocking(False)
        parsers[s] = _ResponseParser()
        sel.register(s, selectors.EVENT_READ, s)

    try:
        while done < total:
            now = time.monotonic()
            if now > deadline:
                raise TimeoutError(f"{done}/{total} responses after {timeout:.0f} s")
            while idle and sent < total:
                if rate is not None and now < start + sent / rate:
                    break
                if rate is not None:
                    res.send_ns.append(time.monotonic_ns())
                send(idle.pop(), sent)
                sent += 1
            wait = 0.5
            if rate is not None and idle and sent < total:
                wait = max(0.0, start + sent / rate - time.monotonic())
            for key, _ in sel.select(wait):
                s = key.data
                data = s.recv(RECV_SIZE)
                if not data:
                    raise HTTPError("server closed a keep-alive connection")
                p = parsers[s]
                p.feed(data)
                if p.done:
                    if p.rest:
                        raise HTTPError("unexpected bytes after a response")
                    sel.unregister(s)
                    res.statuses[p.status] = res.statuses.get(p.status, 0) + 1
                    if p.status not in (200, 204):
                        res.errors += 1
                    if done == 0:
                        res.first_body = p.body
                    if b'"error"' in p.body:
                        res.rpc_errors += 1
                        res.first_error = res.first_error or p.body
                    done += 1
                    idle.append(s)
                    if progress is not None and done % 256 == 0:
                        progress(done)
        res.elapsed = time.monotonic() - start
        res.requests = done
        return res
    finally:
        sel.close()
        for s in socks:
            s.close()
