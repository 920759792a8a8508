"""What every scenario shares: the run context, subscriber processes, request bodies,
progress output and the base of the typed per-run results.
"""

from __future__ import annotations

import multiprocessing
import socket
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, ClassVar

import orjson

from . import httpload
from .config import Config
from .procstat import schedstat_ns
from .servers import Server
from .wsclient import subscriber_main

CHANNEL = "bench"

# -- typed results -----------------------------------------------------------------------


@dataclass
class RunResult:
    """One measured run of one scenario against one server; ``as_dict`` is its JSON form.

    Subclasses name their scenario (``SCENARIO``), the fields that identify a case
    (``CASE``) and the metrics the report takes medians of (``METRICS``).
    """

    SCENARIO: ClassVar[str] = ""
    CASE: ClassVar[tuple[str, ...]] = ()
    METRICS: ClassVar[tuple[str, ...]] = ()
    # the summary row says whether every run of the case delivered every frame
    REPORTS_COMPLETE: ClassVar[bool] = False

    server: str
    rep: int

    def as_dict(self) -> dict[str, Any]:
        return {"scenario": self.SCENARIO, **asdict(self)}

    @classmethod
    def summary_extras(cls, by_server: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        """Scenario-specific fields of a summary row, from the runs of one case."""
        if cls.REPORTS_COMPLETE:
            return {"complete": all(r["complete"] for rs in by_server.values() for r in rs)}
        return {}


def merge_counts(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    """Sum of several ``key -> count`` maps (close codes from each subscriber process)."""
    out: dict[str, int] = {}
    for c in counts:
        for key, n in c.items():
            out[key] = out.get(key, 0) + n
    return out


# -- progress ---------------------------------------------------------------------------


class Progress:
    """A live status line on a terminal, plain lines otherwise (or nothing when quiet)."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.prefix = ""
        self.stage = ""  # e.g. "(2/4) ": which scenario of how many
        self.start = time.monotonic()
        self._last_live = 0.0

    def step(self, label: str) -> None:
        if self.quiet:
            return
        self.prefix = f"[{time.monotonic() - self.start:6.1f}s] {self.stage}{label}"
        if self.tty:
            sys.stderr.write("\r\x1b[K" + self.prefix)
        else:
            sys.stderr.write(self.prefix + "\n")
        sys.stderr.flush()

    def live(self, detail: str) -> None:
        if self.quiet or not self.tty:
            return
        now = time.monotonic()
        if now - self._last_live < 0.1:
            return
        self._last_live = now
        sys.stderr.write("\r\x1b[K" + self.prefix + "  " + detail)
        sys.stderr.flush()

    def count(self, total: int, done: int) -> None:
        self.live(f"{done:,}/{total:,}")

    def bar(self, done: int, total: int, unit: str, width: int = 24) -> None:
        """A live progress bar: ``[#####-----]  52%  520,000/1,000,000 unit``."""
        frac = min(1.0, done / total) if total > 0 else 1.0
        filled = int(frac * width)
        self.live(f"[{'#' * filled}{'-' * (width - filled)}] {frac:4.0%}  {done:,}/{total:,} {unit}")

    def done(self) -> None:
        if not self.quiet and self.tty:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


# -- subscriber processes ------------------------------------------------------------


class Subscribers:
    """``workers`` processes of raw WebSocket subscribers, driven over pipes."""

    def __init__(self, workers: int, cpus: set[int] | None, read_interval: float = 0.0) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pipes: list[Connection] = []
        self.procs: list[BaseProcess] = []
        for _ in range(max(1, workers)):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=subscriber_main, args=(child, cpus, read_interval), daemon=True)
            p.start()
            child.close()
            self.pipes.append(parent)
            self.procs.append(p)

    def _ask_all(self, cmds: list[tuple[Any, ...]], timeout: float) -> list[Any]:
        for pipe, cmd in zip(self.pipes, cmds, strict=True):
            pipe.send(cmd)
        out = []
        deadline = time.monotonic() + timeout
        for pipe in self.pipes:
            if not pipe.poll(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"subscriber worker did not answer {cmds[0][0]!r}")
            out.append(pipe.recv())
        return out

    def ask(self, *cmd: Any, timeout: float = 60.0) -> list[Any]:
        return self._ask_all([cmd] * len(self.pipes), timeout)

    def cpu_ns(self) -> int:
        """CPU ns so far of the subscriber processes (the load generator's receiving side)."""
        return sum(schedstat_ns(p.pid) for p in self.procs if p.pid is not None)

    def connect(
        self,
        group: str,
        server: Server,
        n: int,
        channel: str = CHANNEL,
        stalled: int = 0,
        timeout: float = 300.0,
        tls: bool = False,
        extensions: str = "",
        sources: Sequence[str] = (),
        require: bool = True,
    ) -> int:
        """Open ``n`` subscribed connections (plus ``stalled`` that never read); return how
        many are subscribed, or (``require``) raise unless all of them are;
        ``tls``: over wss:// (the server's certificate is not checked); ``extensions``: a
        ``Sec-WebSocket-Extensions`` offer each one sends; ``sources``: loopback addresses
        the processes bind to before connecting (process i: ``sources[i % len]``), each a
        port range of its own, to get past the ~28,000 ephemeral ports of one address."""
        k = len(self.pipes)
        shares = [n // k + (1 if i < n % k else 0) for i in range(k)]
        cmds = [
            (
                "connect",
                group,
                server.host,
                server.ws_port,
                s,
                channel,
                False,
                tls,
                extensions,
                sources[i % len(sources)] if sources else "",
            )
            for i, s in enumerate(shares)
        ]
        replies = self._ask_all(cmds, timeout)
        if stalled:
            self.pipes[0].send(("connect", group, server.host, server.ws_port, stalled, channel, True, tls))
            if not self.pipes[0].poll(timeout):
                raise TimeoutError("stalled subscribers did not connect")
            replies.append(self.pipes[0].recv())
        ok = sum(r["ok"] for r in replies)
        if require and ok != n + stalled:
            raise RuntimeError(
                f"{server.name}: {ok}/{n + stalled} subscribers connected; "
                f"server log tail:\n{server.log_tail()}"
            )
        return int(ok)

    def stats(self, group: str) -> dict[str, Any]:
        rs = self.ask("stats", group)
        return {
            "frames": sum(r["frames"] for r in rs),
            "wire_bytes": sum(r["wire_bytes"] for r in rs),
            "stalled_frames": sum(r["stalled_frames"] for r in rs),
            "ready": sum(r["ready"] for r in rs),
            "closed": sum(r["closed"] for r in rs),
            "close_codes": merge_counts(r["close_codes"] for r in rs),
            "last_frame_ns": max(r["last_frame_ns"] for r in rs),
        }

    def wait_frames(
        self, group: str, expected: int, stall_timeout: float, progress: Progress, poll: float = 0.005
    ) -> dict[str, Any]:
        """Poll (every ``poll`` s) until ``expected`` frames arrived, or none arrived for
        ``stall_timeout``."""
        last = -1
        last_change = time.monotonic()
        while True:
            frames = sum(n for n, _ in self.ask("progress", group))  # counters, no pass over connections
            if frames >= expected:
                return self.stats(group)
            now = time.monotonic()
            if frames != last:
                last, last_change = frames, now
            elif now - last_change > stall_timeout:
                return self.stats(group)
            progress.bar(frames, expected, "delivered")
            time.sleep(poll)  # a poll interval, not synchronisation: the loop has a deadline

    def close(self) -> None:
        for pipe in self.pipes:
            try:
                pipe.send(("quit",))
            except OSError:
                pass
        for p in self.procs:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join(5)


# -- request bodies ------------------------------------------------------------------


def emit_body(channel: str, data: Any, rid: int, batch: int) -> bytes:
    """One ``emit`` request (``batch`` <= 1) or a batch of ``batch`` emits, as bytes."""
    if batch <= 1:
        return orjson.dumps(
            {"jsonrpc": "2.0", "method": "emit", "params": {"channel": channel, "data": data}, "id": rid}
        )
    return orjson.dumps(
        [
            {
                "jsonrpc": "2.0",
                "method": "emit",
                "params": {"channel": channel, "data": data},
                "id": rid * batch + j,
            }
            for j in range(batch)
        ]
    )


def emit_bodies(channel: str, data: Any, batch: int) -> Callable[[int], bytes]:
    """Request ``i`` -> its body, for ``httpload.run_requests``."""

    def body(i: int) -> bytes:
        return emit_body(channel, data, i, batch)

    return body


def send_emits(
    srv: Server, data: Any, batch: int, requests: int, concurrency: int, timeout: float
) -> httpload.LoadResult:
    """Send ``requests`` emit requests to ``srv`` (each ``batch`` emits of ``data`` to
    CHANNEL), ``concurrency`` in flight."""
    return httpload.run_requests(
        srv.host,
        srv.http_port,
        emit_bodies(CHANNEL, data, batch),
        requests,
        concurrency=concurrency,
        timeout=timeout,
    )


def push_frame_bytes(channel: str, data: Any) -> int:
    """Size on the wire of one push (frame header included), as both servers encode it."""
    payload = orjson.dumps(
        {
            "jsonrpc": "2.0",
            "method": "message",
            "params": {"channel": channel, "data": data, "ts": 1767225600.123456},
        }
    )
    n = len(payload)
    return n + (2 if n < 126 else 4 if n < 65536 else 10)


def check_emit_response(body: bytes, batch: int, expected_delivered: int | None) -> None:
    msg = orjson.loads(body)
    first = msg[0] if batch > 1 else msg
    if batch > 1 and (not isinstance(msg, list) or len(msg) != batch):
        raise RuntimeError(f"batch response has the wrong shape: {body[:200]!r}")
    if "result" not in first:
        raise RuntimeError(f"emit failed: {body[:300]!r}")
    if expected_delivered is not None and first["result"].get("delivered") != expected_delivered:
        raise RuntimeError(f"emit delivered {first['result']} , expected {expected_delivered}")


def _resp(*parts: bytes) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


def redis_publish(srv: Server, data: Any, batch: int, requests: int, prefix: str = "rocketws:") -> int:
    """PUBLISH ``requests`` x ``batch`` emits of ``data`` to CHANNEL straight into
    ``srv``'s redis-server, each request's ``batch`` in one pipeline (one write), as
    RocketWS's own envelope; returns how many nodes received the last one."""
    from rocketws.brokers.base import Publication
    from rocketws.brokers.envelope import encode
    from rocketws.core.jsonrpc import encode_message_push

    assert srv.redis is not None
    channel = f"{prefix}ch:{CHANNEL}".encode()
    with socket.create_connection(("127.0.0.1", srv.redis.port), timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        received = 0
        for _ in range(requests):
            pipeline = b"".join(
                _resp(
                    b"PUBLISH",
                    channel,
                    encode(Publication(CHANNEL, encode_message_push(CHANNEL, data, time.time()))),
                )
                for _ in range(batch)
            )
            sock.sendall(pipeline)
            buf = b""
            while buf.count(b"\r\n") < batch:
                chunk = sock.recv(65536)
                if not chunk:
                    raise RuntimeError("redis-server closed the connection")
                buf += chunk
            received = int(buf.split(b"\r\n")[batch - 1][1:])
    return received


def redis_seconds(srv: Server, before_ns: int | None) -> float | None:
    """CPU seconds of ``srv``'s redis-server since ``before_ns`` (None without one)."""
    now = srv.redis_cpu_ns()
    if before_ns is None or now is None:
        return None
    return (now - before_ns) / 1e9


# -- the run context -------------------------------------------------------------------


@dataclass
class Bench:
    """What a scenario runs with: the config, progress output and the CPU plan."""

    cfg: Config
    progress: Progress
    server_cpus: set[int] | None
    load_cpus: set[int] | None
    runs: list[RunResult] = field(default_factory=list)

    def start_server(self, name: str, tls: bool = False) -> Server:
        return Server(name, cpus=self.server_cpus if self.cfg.pin else None, tls=tls).start()

    def subscribers(self) -> Subscribers:
        return Subscribers(self.cfg.workers, self.load_cpus if self.cfg.pin else None, self.cfg.read_interval)

    def with_servers(self, fn: Callable[[dict[str, Server], Subscribers], None]) -> None:
        """Start every configured server and the subscribers, run ``fn``, stop them all."""
        servers: dict[str, Server] = {}
        subs = self.subscribers()
        try:
            for name in self.cfg.servers:
                servers[name] = self.start_server(name)
            fn(servers, subs)
        finally:
            subs.close()
            for s in servers.values():
                s.cleanup()
