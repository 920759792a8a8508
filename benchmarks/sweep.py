"""The liveness sweep's cost with N idle subscribed connections (docs/benchmarks.md).

One RocketWS ``Server`` runs in this process (so its ``Sweeper`` can be timed directly);
the benchmark's subscriber processes open N subscribed connections to it and answer its
pings (RFC 6455 5.5.2), as browsers do.  The sweep timer is stopped and the sweeps are
run by hand, each timed in this thread's CPU time:

- ``quiet``: a sweep in which nothing is due (every sweep but one per ping interval);
- ``ping``: the sweep that finds every connection due and queues N pings, plus the
  Flusher's loop turn that writes them;
- ``pongs``: this process's CPU time until every pong has been read (N reads).

Usage::

    python -m benchmarks.sweep                  # N=10,000, PING_INTERVAL 25 s
    python -m benchmarks.sweep --n 1000 --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from types import SimpleNamespace

import gevent

from rocketws.config import Address, Config
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="idle connections (default 10000)")
    parser.add_argument("--ping-interval", type=float, default=25.0, help="seconds (default 25)")
    parser.add_argument("--sweeps", type=int, default=50, help="quiet sweeps timed (default 50)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args(argv)
    result = measure(args.n, args.ping_interval, args.sweeps)
    if args.json:
        print(json.dumps(asdict(result), indent=2))
    else:
        for key, value in asdict(result).items():
            print(f"{key:26} {value:,.4g}" if isinstance(value, float) else f"{key:26} {value:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
