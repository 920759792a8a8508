"""RocketWS benchmark: the same load against RocketWS and a ``websockets`` peer, side by side.

Scenarios (``--scenarios``, comma-separated):

- ``fanout``  N subscribers on one channel, M emits of a payload of S bytes, B emits per
  HTTP request: server CPU µs per delivery and deliveries/s.
- ``idle``    N subscribed connections on a fresh server: RSS per connection.
- ``ingress`` no subscribers; emits/s over HTTP, one emit per request and B per request.
- ``latency`` N subscribers, emits at a fixed rate: publish -> receipt p50/p99, and the
  time until the last subscriber has an emit (fan-out completion).
- ``slow``    N reading subscribers plus one that never reads: everyone else still gets
  every push, and the server's RSS growth stays bounded.
- ``compression`` RocketWS with permessage-deflate on vs off (``rocketws-deflate`` vs
  ``rocketws``), ~1 KB JSON pushes: CPU and bytes on the wire per delivery, idle RSS.
- ``recovery`` N clients reconnect and recover M publications (``subscribe {recover}``)
  vs a plain ``subscribe``, on ``rocketws-history`` and ``rocketws-redis-history``:
  server (and Redis) CPU and wall time.
- ``split``   one emit to N (10,000) idle subscribers: the server's CPU user vs kernel
  (utime/stime; with ``--split-perf`` the share of perf samples per DSO).
- ``scale``   N (100,000) subscribed connections to ``--workers`` processes on Redis, from
  several subscriber processes on several loopback source addresses: connect rate, RSS,
  one emit to everyone, steady fan-out at 10 emits/s (``--scale-*``; not in --quick).

This module is the command line only: each scenario is a module of
``benchmarks/scenarios/`` with its typed result, ``runner.run`` runs them, ``report``
summarises (medians, ratios, table, plot); ``benchmarks.micro`` times the core alone.

The server runs alone on one core (``sched_setaffinity``) when there are two or more; the
subscribers (``--workers`` processes of raw epoll clients) and the HTTP emitter (this
process) run on the others. Server CPU comes from /proc/<pid>/task/*/schedstat (ns), with
/proc/<pid>/stat utime+stime kept as a cross-check; RSS from /proc/<pid>/status VmRSS.
Runs are repeated (``--repeat``), interleaving the servers, and medians are reported with
RocketWS/peer ratios (< 1 means RocketWS is cheaper/faster for costs and slower for
rates). Results go to ``OUT/results.json`` and ``OUT/bench.png``.

``--servers rocketws,rocketws-redis,peer`` adds RocketWS on the Redis broker: each
``rocketws-redis`` server gets a private redis-server (127.0.0.1, ephemeral port, no
persistence) pinned to the server's core and stopped by PID afterwards. Its CPU is
reported separately (``redis_us_per_delivery``) and summed (``total_us_per_delivery``),
with ``rocketws-redis/rocketws`` ratios (Redis broker vs memory broker).

Usage::

    python -m benchmarks.bench                      # the issue-4 set, ~10 minutes
    python -m benchmarks.bench --quick              # small N/M, under a minute
    python -m benchmarks.bench --scenarios fanout --fanout-n 1000 --batches 1,10 --repeat 5
    python -m benchmarks.bench --scenarios fanout --servers rocketws,rocketws-redis,peer
    python -m benchmarks.bench --scenarios fanout --batches 1 --fanout-concurrency 8 \
        --fanout-rates 2000 --servers rocketws,rocketws-wd5   # B=1 at 2,000 emits/s, paced
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .config import SCENARIOS, Config
from .machine import describe
from .report import format_summary
from .runner import run
from .servers import KNOWN_SERVERS, SERVER_NAMES

__all__ = ["main", "parse_args"]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def parse_args(argv: Iterable[str] | None = None) -> Config:
    """Command line -> Config; with --quick the quick sizes apply to what is not given."""
    d = Config()
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench",
        description="Benchmark RocketWS against an asyncio websockets peer.",
        argument_default=argparse.SUPPRESS,
    )
    p.add_argument(
        "--scenarios", help=f"comma-separated, from {','.join(SCENARIOS)} (default {','.join(d.scenarios)})"
    )
    p.add_argument(
        "--servers",
        help=f"comma-separated, from {','.join(KNOWN_SERVERS)} (default {','.join(SERVER_NAMES)}); "
        "rocketws-redis is RocketWS with --broker=redis:// on a private redis-server "
        "started on 127.0.0.1 (ephemeral port, pinned to the server's core)",
    )
    p.add_argument("--repeat", type=int, help=f"runs per case (default {d.repeat})")
    p.add_argument("--workers", type=int, help=f"subscriber processes (default {d.workers})")
    p.add_argument("--size", type=int, help=f"emitted data string length (default {d.size})")
    p.add_argument("--fanout-n", type=int, help=f"subscribers (default {d.fanout_n})")
    p.add_argument("--fanout-m", type=int, help=f"emits per run (default {d.fanout_m})")
    p.add_argument("--batches", help="emits per request, comma-separated (default 1,10)")
    p.add_argument("--fanout-concurrency", help="emit requests in flight, comma-separated (default 1,4)")
    p.add_argument(
        "--fanout-rates",
        help="emits/s, comma-separated (default 0: unpaced); a rate > 0 paces the requests "
        "(rate / B per second over the C keep-alive connections) and samples latency",
    )
    p.add_argument(
        "--fanout-latency-every",
        type=int,
        help=f"paced fan-out: latency on every k-th subscriber (default {d.fanout_latency_every})",
    )
    p.add_argument(
        "--read-interval-ms",
        type=float,
        dest="read_interval_ms",
        help="subscribers that do not sample latency read every this many ms instead of on "
        "every event (default 0: at once); keeps the load generator's CPU small",
    )
    p.add_argument("--idle-n", type=int, help=f"connections (default {d.idle_n})")
    p.add_argument(
        "--idle-tls",
        action="store_true",
        help="idle: also measure RocketWS over wss:// (self-signed certificate from the openssl CLI)",
    )
    p.add_argument("--ingress-m", type=int, help=f"emits per run (default {d.ingress_m})")
    p.add_argument("--ingress-batch", type=int, help=f"default {d.ingress_batch}")
    p.add_argument("--ingress-concurrency", type=int, help=f"default {d.ingress_concurrency}")
    p.add_argument("--latency-n", help="subscribers, comma-separated (default 1000,10000)")
    p.add_argument("--latency-rate", type=float, help=f"emits/s (default {d.latency_rate:g})")
    p.add_argument(
        "--latency-budget",
        type=float,
        help=f"cap the rate at this many deliveries/s (default {d.latency_budget:g})",
    )
    p.add_argument("--latency-m", type=int, help=f"emits per run (default {d.latency_m})")
    p.add_argument("--slow-n", type=int, help=f"reading subscribers (default {d.slow_n})")
    p.add_argument("--slow-m", type=int, help=f"emits (default {d.slow_m})")
    p.add_argument("--slow-size", type=int, help=f"data bytes (default {d.slow_size})")
    p.add_argument("--compression-n", type=int, help=f"subscribers (default {d.compression_n})")
    p.add_argument("--compression-m", type=int, help=f"emits per run (default {d.compression_m})")
    p.add_argument("--compression-idle-n", type=int, help=f"connections (default {d.compression_idle_n})")
    p.add_argument("--recovery-n", type=int, help=f"reconnecting clients (default {d.recovery_n})")
    p.add_argument("--recovery-m", type=int, help=f"publications recovered (default {d.recovery_m})")
    p.add_argument("--recovery-concurrency", type=int, help=f"default {d.recovery_concurrency}")
    p.add_argument("--split-n", type=int, help=f"split: subscribers (default {d.split_n:,})")
    p.add_argument("--split-emits", type=int, help=f"split: emits per run (default {d.split_emits})")
    p.add_argument("--split-perf", action="store_true", help="split: also sample the server with perf record")
    p.add_argument("--scale-n", type=int, help=f"scale: subscribed connections (default {d.scale_n:,})")
    p.add_argument(
        "--scale-workers", type=int, help=f"scale: server processes on Redis (default {d.scale_workers})"
    )
    p.add_argument(
        "--scale-clients",
        type=int,
        help=f"scale: subscriber processes, each from its own 127.0.0.x (default {d.scale_clients})",
    )
    p.add_argument("--scale-emits", type=int, help=f"scale: single emits to all (default {d.scale_emits})")
    p.add_argument("--scale-rate", type=float, help=f"scale: steady emits/s (default {d.scale_rate:g})")
    p.add_argument("--scale-seconds", type=float, help=f"scale: steady seconds (default {d.scale_seconds:g})")
    p.add_argument(
        "--scale-write-delay", type=float, help="scale: the server's WRITE_DELAY in seconds (default 0)"
    )
    p.add_argument("--scale-repeat", type=int, help=f"scale: fresh servers (default {d.scale_repeat})")
    p.add_argument("--timeout", type=float, help="seconds without progress before giving up")
    p.add_argument("--out", help=f"directory for results.json and bench.png (default {d.out})")
    p.add_argument("--no-plot", dest="plot", action="store_false")
    p.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin to cores")
    p.add_argument("--quick", action="store_true", help="tiny sizes, all scenarios, one run")
    p.add_argument("-q", "--quiet", action="store_true")
    given: dict[str, Any] = vars(p.parse_args(list(argv) if argv is not None else None))
    quick = given.pop("quick", False)
    for key in ("servers", "scenarios"):
        if key in given:
            given[key] = [x for x in given[key].split(",") if x]
    for key in ("batches", "latency_n", "fanout_concurrency"):
        if key in given:
            given[key] = _ints(given[key])
    if "read_interval_ms" in given:
        given["read_interval"] = given.pop("read_interval_ms") / 1000.0
    if "fanout_rates" in given:
        given["fanout_rates"] = [float(x) for x in given["fanout_rates"].split(",") if x]
    return Config.quick(**given) if quick else Config(**given)


def main(argv: list[str] | None = None, report_hook: Callable[[dict[str, Any]], None] | None = None) -> int:
    """Parse, run, print the summary; ``report_hook`` gets the report (``manage.py bench``)."""
    try:
        cfg = parse_args(argv)
        report = run(cfg)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, RuntimeError, TimeoutError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    if report_hook is not None:
        report_hook(report)
    print(describe(report["machine"]))
    print(format_summary(report["summary"]))
    if cfg.out:
        print(f"results: {Path(cfg.out) / 'results.json'}")
        if report.get("plot"):
            print(f"plot: {report['plot']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
