"""The liveness sweep's cost with N idle subscribed connections (docs/benchmarks.md).

One RocketWS ``Server`` runs in this process (so its ``Sweeper`` can be timed directly);
the benchmark's subscriber processes open N subscribed connections to it and answer its
pings (RFC 6455 5.5.2), as browsers do.  The sweep timer is stopped and the sweeps are
run by hand, each timed in this thread's CPU time:

- ``quiet``: a sweep in which nothing is due (every sweep but one per ping interval);
- ``ping``: the sweep that finds every connection due and queues N pings, plus the
  Flusher's loop turn that writes them;
- ``pongs``: this process's CPU time until every pong has been read (N reads).

``--send-buffers 0,16384,65536`` measures something else: how many bytes the kernel
takes for one client that stopped reading (4 KiB receive buffer) before the server's
socket refuses more, for each ``SEND_BUFFER`` value (0 = autotuning).

Usage::

    python -m benchmarks.sweep                  # N=10,000, PING_INTERVAL 25 s
    python -m benchmarks.sweep --n 1000 --json
    python -m benchmarks.sweep --send-buffers 0,16384,65536
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from types import SimpleNamespace

import gevent
import gevent.socket

from rocketws.config import Address, Config
from rocketws.core import framing
from rocketws.process.server import Server

from .harness import Subscribers
from .wsclient import raise_nofile_limit


@dataclass
class SweepResult:
    n: int
    period_s: float
    ping_after: int
    quiet_sweep_ms: float  # median
    quiet_us_per_connection: float
    ping_sweep_ms: float  # the sweep that pings everyone + the flush that writes the pings
    pongs_ms: float  # reading every pong
    cpu_share_pct: float  # (quiet sweeps + one ping round) per ping interval, of one core


def measure(n: int, ping_interval: float, quiet_sweeps: int) -> SweepResult:
    raise_nofile_limit()
    config = Config(
        websocket=Address("127.0.0.1", 0),
        backend=Address("127.0.0.1", 0),
        ping_interval=ping_interval,
        max_connections=max(n + 10, 16000),
    )
    server = Server(config)
    server.start()
    subs = Subscribers(2, None)
    try:
        target = SimpleNamespace(
            name="rocketws", host="127.0.0.1", ws_port=server.ws_server.server_port, log_tail=lambda: ""
        )
        # the subscribers are driven over blocking pipes: from a thread, so the hub runs
        gevent.get_hub().threadpool.apply(subs.connect, ("idle", target, n))
        sweeper = server.ws_app.sweeper
        sweeper.stop()  # we sweep by hand from here
        conns = server.ws_app.connections
        assert len(conns) == n, len(conns)
        live = sweeper.liveness
        # connected over several real sweeps: line them up as if all answered at one tick
        base = sweeper.tick
        for conn in conns:
            conn.seen = base
        quiet: list[float] = []
        while len(quiet) < quiet_sweeps:
            if sweeper.tick + 1 - base >= live.ping_after:
                sweeper.tick = base  # stay short of the ping
            t0 = time.thread_time()
            sweeper.sweep()
            quiet.append(time.thread_time() - t0)
            gevent.sleep(0)
        sweeper.tick = base + live.ping_after - 1
        t0 = time.thread_time()
        sweeper.sweep()  # every connection is due: n pings queued
        gevent.sleep(0)  # the Flusher's callback writes them
        ping = time.thread_time() - t0
        tick = sweeper.tick
        t0 = time.thread_time()
        deadline = time.monotonic() + 60
        while any(conn.seen != tick for conn in conns):
            assert time.monotonic() < deadline, "pongs did not come back"
            gevent.sleep(0.001)
        pongs = time.thread_time() - t0
        median = statistics.median(quiet)
        per_interval = median * (live.ping_after - 1) + ping + pongs
        return SweepResult(
            n=n,
            period_s=live.period,
            ping_after=live.ping_after,
            quiet_sweep_ms=median * 1e3,
            quiet_us_per_connection=median * 1e6 / n,
            ping_sweep_ms=ping * 1e3,
            pongs_ms=pongs * 1e3,
            cpu_share_pct=100 * per_interval / ping_interval,
        )
    finally:
        gevent.get_hub().threadpool.apply(subs.ask, ("close", "idle"))
        gevent.get_hub().threadpool.apply(subs.close)
        server.shutdown()


def _stalled_client(port: int) -> socket.socket:
    """A gevent socket upgraded by hand, with a 4 KiB receive buffer; it never reads."""
    sock: socket.socket = gevent.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def kernel_absorbs(send_buffer: int, frame_size: int = 16000) -> int:
    """Bytes the kernel takes for a client that stopped reading, before refusing more."""
    config = Config(
        websocket=Address("127.0.0.1", 0),
        backend=Address("127.0.0.1", 0),
        send_buffer=send_buffer,
        ping_interval=0,
    )
    server = Server(config)
    server.start()
    try:
        client = _stalled_client(server.ws_server.server_port)
        while not server.ws_app.connections:
            gevent.sleep(0.001)
        (conn,) = server.ws_app.connections
        frame = framing.text_frame(b"x" * frame_size)
        pushed, written, unchanged = 0, -1, 0
        while unchanged < 20:  # 20 flushes in a row without a byte taken
            conn.session.push(frame)
            pushed += len(frame)
            gevent.sleep(0.01)
            now = pushed - conn.session.pending
            unchanged = unchanged + 1 if now == written else 0
            written = now
        client.close()
        server.ws_app.wait_closed(10)
        return written
    finally:
        server.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="idle connections (default 10000)")
    parser.add_argument("--ping-interval", type=float, default=25.0, help="seconds (default 25)")
    parser.add_argument("--sweeps", type=int, default=50, help="quiet sweeps timed (default 50)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--send-buffers", help="comma-separated SEND_BUFFER values: measure those instead")
    args = parser.parse_args(argv)
    if args.send_buffers:
        for value in (int(v) for v in args.send_buffers.split(",")):
            print(f"SEND_BUFFER={value:<8} the kernel took {kernel_absorbs(value) / 1024:,.0f} KiB")
        return 0
    result = measure(args.n, args.ping_interval, args.sweeps)
    if args.json:
        print(json.dumps(asdict(result), indent=2))
    else:
        for key, value in asdict(result).items():
            print(f"{key:26} {value:,.4g}" if isinstance(value, float) else f"{key:26} {value:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
