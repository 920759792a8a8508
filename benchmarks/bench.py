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
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from . import httpload
from .redisproc import redis_server_binary
from .servers import KNOWN_SERVERS, REPO, SERVER_NAMES, Server, cpu_plan
from .wsclient import raise_nofile_limit, subscriber_main

SCENARIOS = ("fanout", "idle", "ingress", "latency", "slow")
CHANNEL = "bench"


@dataclass
class Config:
    servers: list[str] = field(default_factory=lambda: list(SERVER_NAMES))
    scenarios: list[str] = field(default_factory=lambda: ["fanout", "idle", "ingress", "latency"])
    repeat: int = 3
    workers: int = 2
    size: int = 100  # bytes of the emitted data string (~184-byte push frame at 100)
    fanout_n: int = 1000
    fanout_m: int = 1000
    batches: list[int] = field(default_factory=lambda: [1, 10])
    fanout_concurrency: list[int] = field(default_factory=lambda: [1, 4])
    idle_n: int = 10000
    ingress_m: int = 20000
    ingress_batch: int = 100
    ingress_concurrency: int = 4
    latency_n: list[int] = field(default_factory=lambda: [1000, 10000])
    latency_rate: float = 50.0  # emits/s, capped by latency_budget / N
    latency_budget: float = 20000.0  # deliveries/s the subscriber processes can take in
    latency_m: int = 40
    slow_n: int = 100
    slow_m: int = 4000
    slow_size: int = 2000
    timeout: float = 120.0  # seconds without progress before a run is given up
    out: str | None = "benchmarks/results"
    plot: bool = True
    pin: bool = True
    quiet: bool = False

    @classmethod
    def quick(cls, **kw: Any) -> Config:
        """Tiny sizes: every scenario, both servers, in well under a minute."""
        base = dict(
            repeat=1,
            workers=1,
            fanout_n=20,
            fanout_m=40,
            fanout_concurrency=[1, 2],
            idle_n=50,
            ingress_m=200,
            ingress_batch=20,
            latency_n=[20],
            latency_rate=200.0,
            latency_m=20,
            slow_n=5,
            slow_m=200,
            slow_size=200,
            timeout=20.0,
            scenarios=list(SCENARIOS),
        )
        base.update(kw)
        return cls(**base)  # type: ignore[arg-type]


# -- progress ---------------------------------------------------------------------------


class Progress:
    """A live status line on a terminal, plain lines otherwise (or nothing when quiet)."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.prefix = ""
        self.start = time.monotonic()
        self._last_live = 0.0

    def step(self, label: str) -> None:
        if self.quiet:
            return
        self.prefix = f"[{time.monotonic() - self.start:6.1f}s] {label}"
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

    def done(self) -> None:
        if not self.quiet and self.tty:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


# -- subscriber processes ------------------------------------------------------------


class Subscribers:
    """``workers`` processes of raw WebSocket subscribers, driven over pipes."""

    def __init__(self, workers: int, cpus: set[int] | None) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pipes = []
        self.procs = []
        for _ in range(max(1, workers)):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=subscriber_main, args=(child, cpus), daemon=True)
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

    def connect(
        self,
        group: str,
        server: Server,
        n: int,
        channel: str = CHANNEL,
        stalled: int = 0,
        timeout: float = 300.0,
    ) -> None:
        """Open ``n`` subscribed connections (plus ``stalled`` that never read) or raise."""
        k = len(self.pipes)
        shares = [n // k + (1 if i < n % k else 0) for i in range(k)]
        cmds = [("connect", group, server.host, server.ws_port, s, channel, False) for s in shares]
        replies = self._ask_all(cmds, timeout)
        if stalled:
            self.pipes[0].send(("connect", group, server.host, server.ws_port, stalled, channel, True))
            if not self.pipes[0].poll(timeout):
                raise TimeoutError("stalled subscribers did not connect")
            replies.append(self.pipes[0].recv())
        ok = sum(r["ok"] for r in replies)
        if ok != n + stalled:
            raise RuntimeError(
                f"{server.name}: {ok}/{n + stalled} subscribers connected; "
                f"server log tail:\n{server.log_tail()}"
            )

    def stats(self, group: str) -> dict[str, Any]:
        rs = self.ask("stats", group)
        codes: dict[str, int] = {}
        for r in rs:
            for code, count in r["close_codes"].items():
                codes[code] = codes.get(code, 0) + count
        return {
            "frames": sum(r["frames"] for r in rs),
            "stalled_frames": sum(r["stalled_frames"] for r in rs),
            "ready": sum(r["ready"] for r in rs),
            "closed": sum(r["closed"] for r in rs),
            "close_codes": codes,
            "last_frame_ns": max(r["last_frame_ns"] for r in rs),
        }

    def wait_frames(
        self, group: str, expected: int, stall_timeout: float, progress: Progress
    ) -> dict[str, Any]:
        """Poll until ``expected`` frames arrived, or none arrived for ``stall_timeout``."""
        last = -1
        last_change = time.monotonic()
        while True:
            st = self.stats(group)
            if st["frames"] >= expected:
                return st
            now = time.monotonic()
            if st["frames"] != last:
                last, last_change = st["frames"], now
            elif now - last_change > stall_timeout:
                return st
            progress.live(f"{st['frames']:,}/{expected:,} delivered")
            time.sleep(0.005)  # a poll interval, not synchronisation: the loop has a deadline

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


def _emit_i(channel: str, data: Any, batch: int, i: int) -> bytes:
    return emit_body(channel, data, i, batch)


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


# -- scenarios -----------------------------------------------------------------------


@dataclass
class Bench:
    cfg: Config
    progress: Progress
    server_cpus: set[int] | None
    load_cpus: set[int] | None
    runs: list[dict[str, Any]] = field(default_factory=list)

    def _live_count(self, total: int, done: int) -> None:
        self.progress.live(f"{done:,}/{total:,}")

    def start_server(self, name: str) -> Server:
        return Server(name, cpus=self.server_cpus if self.cfg.pin else None).start()

    def with_servers(self, fn: Callable[[dict[str, Server], Subscribers], None]) -> None:
        servers: dict[str, Server] = {}
        subs = Subscribers(self.cfg.workers, self.load_cpus if self.cfg.pin else None)
        try:
            for name in self.cfg.servers:
                servers[name] = self.start_server(name)
            fn(servers, subs)
        finally:
            subs.close()
            for s in servers.values():
                s.cleanup()

    # fan-out ---------------------------------------------------------------------

    def fanout(self) -> None:
        cfg = self.cfg

        def body(servers: dict[str, Server], subs: Subscribers) -> None:
            for name, srv in servers.items():
                self.progress.step(f"fanout: connecting {cfg.fanout_n:,} subscribers to {name}")
                subs.connect(name, srv, cfg.fanout_n)
            data = "x" * cfg.size
            frame = push_frame_bytes(CHANNEL, data)
            cases = [(c, b) for c in cfg.fanout_concurrency for b in cfg.batches]
            for rep in range(cfg.repeat):
                for c, b in cases:
                    requests = max(1, -(-cfg.fanout_m // b))
                    m = requests * b
                    for name, srv in servers.items():
                        self.progress.step(
                            f"fanout {name} N={cfg.fanout_n:,} M={m:,} B={b} C={c} rep {rep + 1}/{cfg.repeat}"
                        )
                        subs.ask("reset", name)
                        cpu0, redis0 = srv.cpu(), srv.redis_cpu_ns()
                        t0 = time.monotonic_ns()
                        res = httpload.run_requests(
                            srv.host,
                            srv.http_port,
                            partial(_emit_i, CHANNEL, data, b),
                            requests,
                            concurrency=c,
                            timeout=cfg.timeout * 10,
                        )
                        expected = cfg.fanout_n * m
                        st = subs.wait_frames(name, expected, cfg.timeout, self.progress)
                        cpu = srv.cpu() - cpu0
                        redis_s = _redis_seconds(srv, redis0)
                        check_emit_response(res.first_body, b, cfg.fanout_n)
                        wall = max(1, st["last_frame_ns"] - t0) / 1e9
                        delivered = st["frames"]
                        per = 1e6 / max(1, delivered)
                        self.runs.append(
                            {
                                "scenario": "fanout",
                                "server": name,
                                "rep": rep,
                                "n": cfg.fanout_n,
                                "m": m,
                                "b": b,
                                "c": c,
                                "size": cfg.size,
                                "frame_bytes": frame,
                                "expected": expected,
                                "deliveries": delivered,
                                "complete": delivered == expected,
                                "http_errors": res.errors,
                                "emit_wall_s": res.elapsed,
                                "wall_s": wall,
                                "cpu_s": cpu.seconds,
                                "cpu_stat_s": cpu.stat_seconds,
                                "us_per_delivery": cpu.seconds * per,
                                # rocketws-redis: its redis-server's CPU, and the sum
                                "redis_cpu_s": redis_s,
                                "redis_us_per_delivery": None if redis_s is None else redis_s * per,
                                "total_us_per_delivery": (cpu.seconds + (redis_s or 0.0)) * per,
                                "deliveries_per_s": delivered / wall,
                            }
                        )
            for name in servers:
                subs.ask("close", name)

        self.with_servers(body)

    # idle ------------------------------------------------------------------------

    def idle(self) -> None:
        cfg = self.cfg
        subs = Subscribers(cfg.workers, self.load_cpus if cfg.pin else None)
        try:
            for rep in range(cfg.repeat):
                for name in cfg.servers:
                    self.progress.step(f"idle {name} N={cfg.idle_n:,} rep {rep + 1}/{cfg.repeat}")
                    srv = self.start_server(name)
                    try:
                        rss0 = srv.rss_kb()
                        t0 = time.monotonic()
                        subs.connect(name, srv, cfg.idle_n, timeout=cfg.timeout * 5)
                        connect_s = time.monotonic() - t0
                        health = srv.health()
                        rss1 = srv.rss_kb()
                        self.runs.append(
                            {
                                "scenario": "idle",
                                "server": name,
                                "rep": rep,
                                "n": cfg.idle_n,
                                "rss_before_kb": rss0,
                                "rss_after_kb": rss1,
                                "health_connections": health.get("connections"),
                                "connect_s": connect_s,
                                "connects_per_s": cfg.idle_n / connect_s,
                                "bytes_per_connection": (rss1 - rss0) * 1024 / cfg.idle_n,
                            }
                        )
                        subs.ask("close", name)
                    finally:
                        srv.cleanup()
        finally:
            subs.close()

    # ingress ---------------------------------------------------------------------

    def ingress(self) -> None:
        cfg = self.cfg

        def body(servers: dict[str, Server], subs: Subscribers) -> None:
            data = "x" * cfg.size
            for rep in range(cfg.repeat):
                for b in (1, cfg.ingress_batch):
                    requests = max(1, cfg.ingress_m // b)
                    for name, srv in servers.items():
                        self.progress.step(
                            f"ingress {name} B={b} {requests:,} requests rep {rep + 1}/{cfg.repeat}"
                        )
                        cpu0, redis0 = srv.cpu(), srv.redis_cpu_ns()
                        res = httpload.run_requests(
                            srv.host,
                            srv.http_port,
                            partial(_emit_i, "nobody", data, b),
                            requests,
                            concurrency=cfg.ingress_concurrency,
                            timeout=cfg.timeout * 10,
                            progress=partial(self._live_count, requests),
                        )
                        cpu = srv.cpu() - cpu0
                        redis_s = _redis_seconds(srv, redis0)
                        check_emit_response(res.first_body, b, 0)
                        emits = requests * b
                        self.runs.append(
                            {
                                "scenario": "ingress",
                                "server": name,
                                "rep": rep,
                                "b": b,
                                "requests": requests,
                                "emits": emits,
                                "concurrency": cfg.ingress_concurrency,
                                "http_errors": res.errors,
                                "wall_s": res.elapsed,
                                "cpu_s": cpu.seconds,
                                "requests_per_s": requests / res.elapsed,
                                "emits_per_s": emits / res.elapsed,
                                "us_per_emit": cpu.seconds * 1e6 / emits,
                                "redis_cpu_s": redis_s,
                                "total_us_per_emit": (cpu.seconds + (redis_s or 0.0)) * 1e6 / emits,
                            }
                        )

        self.with_servers(body)

    # latency ---------------------------------------------------------------------

    def latency(self) -> None:
        cfg = self.cfg

        def body(servers: dict[str, Server], subs: Subscribers) -> None:
            pad = "x" * max(0, cfg.size - 40)
            for n in cfg.latency_n:
                rate = min(cfg.latency_rate, cfg.latency_budget / n)
                for name, srv in servers.items():
                    self.progress.step(f"latency: connecting {n:,} subscribers to {name}")
                    subs.connect(name, srv, n, timeout=cfg.timeout * 5)
                    subs.ask("latency", name, True)
                for rep in range(cfg.repeat):
                    for name, srv in servers.items():
                        self.progress.step(
                            f"latency {name} N={n:,} {cfg.latency_m} emits at "
                            f"{rate:g}/s rep {rep + 1}/{cfg.repeat}"
                        )
                        subs.ask("reset", name)
                        cpu0, redis0 = srv.cpu(), srv.redis_cpu_ns()
                        res = httpload.run_requests(
                            srv.host,
                            srv.http_port,
                            lambda i: emit_body(
                                CHANNEL, {"i": i, "t": time.monotonic_ns(), "pad": pad}, i, 1
                            ),
                            cfg.latency_m,
                            concurrency=4,
                            rate=rate,
                            timeout=cfg.timeout * 10,
                        )
                        expected = n * cfg.latency_m
                        st = subs.wait_frames(name, expected, cfg.timeout, self.progress)
                        cpu = srv.cpu() - cpu0
                        redis_s = _redis_seconds(srv, redis0)
                        lats = [lat for part in subs.ask("latencies", name) for lat in part]
                        per_emit: dict[int, int] = {}
                        for i, lat in lats:
                            if lat > per_emit.get(i, -1):
                                per_emit[i] = lat
                        all_ms = sorted(lat / 1e6 for _, lat in lats)
                        completion_ms = sorted(v / 1e6 for v in per_emit.values())
                        self.runs.append(
                            {
                                "scenario": "latency",
                                "server": name,
                                "rep": rep,
                                "n": n,
                                "m": cfg.latency_m,
                                "rate": rate,
                                "achieved_rate": cfg.latency_m / res.elapsed,
                                "expected": expected,
                                "deliveries": st["frames"],
                                "complete": st["frames"] == expected,
                                "samples": len(all_ms),
                                "p50_ms": pct(all_ms, 50),
                                "p90_ms": pct(all_ms, 90),
                                "p99_ms": pct(all_ms, 99),
                                "max_ms": all_ms[-1] if all_ms else None,
                                "completion_p50_ms": pct(completion_ms, 50),
                                "completion_p99_ms": pct(completion_ms, 99),
                                "us_per_delivery": cpu.seconds * 1e6 / max(1, st["frames"]),
                                # server CPU per publication: a lower bound on the time to
                                # write the last byte (completion above is an upper bound:
                                # it includes the subscribers' own receive time)
                                "server_cpu_ms_per_emit": cpu.seconds * 1e3 / cfg.latency_m,
                                "redis_cpu_s": redis_s,
                            }
                        )
                for name in servers:
                    subs.ask("close", name)

        self.with_servers(body)

    # slow consumer -----------------------------------------------------------------

    def slow(self) -> None:
        cfg = self.cfg
        data = "y" * cfg.slow_size
        b = 10
        requests = max(1, cfg.slow_m // b)
        m = requests * b
        for rep in range(cfg.repeat):
            for name in cfg.servers:
                self.progress.step(
                    f"slow {name} {cfg.slow_n} readers + 1 stalled, {m:,} x "
                    f"{cfg.slow_size} B rep {rep + 1}/{cfg.repeat}"
                )
                subs = Subscribers(cfg.workers, self.load_cpus if cfg.pin else None)
                srv = self.start_server(name)
                try:
                    subs.connect(name, srv, cfg.slow_n, stalled=1)
                    rss0 = srv.rss_kb()
                    peak = rss0
                    res = httpload.run_requests(
                        srv.host,
                        srv.http_port,
                        partial(_emit_i, CHANNEL, data, b),
                        requests,
                        timeout=cfg.timeout * 10,
                        progress=lambda d: None,
                    )
                    peak = max(peak, srv.rss_kb())
                    expected = cfg.slow_n * m
                    st = subs.wait_frames(name, expected, cfg.timeout, self.progress)
                    peak = max(peak, srv.rss_kb())
                    drained = subs.ask("drain_stalled", name, 10.0, timeout=30)
                    codes: dict[str, int] = {}
                    for r in drained:
                        for code, count in r["close_codes"].items():
                            codes[code] = codes.get(code, 0) + count
                    self.runs.append(
                        {
                            "scenario": "slow",
                            "server": name,
                            "rep": rep,
                            "n": cfg.slow_n,
                            "m": m,
                            "size": cfg.slow_size,
                            "pushed_bytes_per_subscriber": m * push_frame_bytes(CHANNEL, data),
                            "expected": expected,
                            "deliveries": st["frames"],
                            "all_delivered": st["frames"] == expected,
                            "http_errors": res.errors,
                            "stalled_frames": sum(r["stalled_frames"] for r in drained),
                            "stalled_close_codes": codes,
                            "rss_before_kb": rss0,
                            "rss_peak_kb": peak,
                            "rss_growth_kb": peak - rss0,
                        }
                    )
                finally:
                    subs.close()
                    srv.cleanup()


def _redis_seconds(srv: Server, before_ns: int | None) -> float | None:
    """CPU seconds of ``srv``'s redis-server since ``before_ns`` (None without one)."""
    now = srv.redis_cpu_ns()
    if before_ns is None or now is None:
        return None
    return (now - before_ns) / 1e9


def pct(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an already sorted list (None when empty)."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, math.ceil(p / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


# -- summary -------------------------------------------------------------------------

# scenario -> (keys that identify a case, metrics to take medians of)
SUMMARY_SPEC: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "fanout": (
        ("n", "m", "b", "c", "size"),
        (
            "us_per_delivery",
            "redis_us_per_delivery",
            "total_us_per_delivery",
            "deliveries_per_s",
            "wall_s",
        ),
    ),
    "idle": (("n",), ("bytes_per_connection", "connects_per_s")),
    "ingress": (("b",), ("emits_per_s", "requests_per_s", "us_per_emit", "total_us_per_emit")),
    "latency": (
        ("n", "rate"),
        (
            "p50_ms",
            "p99_ms",
            "completion_p50_ms",
            "completion_p99_ms",
            "server_cpu_ms_per_emit",
            "us_per_delivery",
        ),
    ),
    "slow": (("n", "m", "size"), ("rss_growth_kb", "deliveries")),
}


# extra ratios of medians (numerator, denominator), reported when both servers ran
EXTRA_RATIOS = (("rocketws-redis", "rocketws"), ("rocketws-redis", "peer"))


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Median of each metric per (scenario, case, server), with RocketWS/peer ratios.

    ``ratio`` is rocketws/peer; ``ratios`` holds the others of EXTRA_RATIOS that apply
    (e.g. ``"rocketws-redis/rocketws"``: Redis broker vs memory broker).
    """
    out: list[dict[str, Any]] = []
    for scenario, (keys, metrics) in SUMMARY_SPEC.items():
        cases: dict[tuple[Any, ...], dict[str, list[dict[str, Any]]]] = {}
        for r in runs:
            if r["scenario"] != scenario:
                continue
            case = tuple(r[k] for k in keys)
            cases.setdefault(case, {}).setdefault(r["server"], []).append(r)
        for case, by_server in cases.items():
            row: dict[str, Any] = {"scenario": scenario, **dict(zip(keys, case, strict=True))}
            for metric in metrics:
                med: dict[str, float | None] = {}
                for server, rs in by_server.items():
                    vals = [r[metric] for r in rs if r.get(metric) is not None]
                    med[server] = statistics.median(vals) if vals else None
                entry: dict[str, Any] = {"median": med}
                if all(v is None for v in med.values()):
                    continue  # e.g. redis_us_per_delivery without rocketws-redis
                a, b = med.get("rocketws"), med.get("peer")
                if a is not None and b:
                    entry["ratio"] = a / b
                ratios = {
                    f"{x}/{y}": med[x] / med[y]  # type: ignore[operator]
                    for x, y in EXTRA_RATIOS
                    if med.get(x) is not None and med.get(y)
                }
                if ratios:
                    entry["ratios"] = ratios
                row[metric] = entry
            row["runs"] = {s: len(rs) for s, rs in by_server.items()}
            if scenario in ("fanout", "latency"):
                row["complete"] = all(r["complete"] for rs in by_server.values() for r in rs)
            if scenario == "slow":
                row["all_delivered"] = {s: all(r["all_delivered"] for r in rs) for s, rs in by_server.items()}
                row["stalled_close_codes"] = {
                    s: [r["stalled_close_codes"] for r in rs] for s, rs in by_server.items()
                }
            out.append(row)
    return out


def format_summary(summary: list[dict[str, Any]]) -> str:
    lines = []
    for row in summary:
        case = ", ".join(f"{k}={row[k]}" for k in ("n", "m", "b", "c", "size", "rate") if k in row)
        lines.append(f"{row['scenario']} ({case}; runs {row['runs']})")
        for metric, entry in row.items():
            if not isinstance(entry, dict) or "median" not in entry:
                continue
            med = entry["median"]
            parts = [f"{s} {_fmt(v)}" for s, v in med.items()]
            ratio = f"  ratio {entry['ratio']:.2f}" if "ratio" in entry else ""
            ratio += "".join(f"  {k} {v:.2f}" for k, v in entry.get("ratios", {}).items())
            lines.append(f"  {metric:<22} " + "  ".join(parts) + ratio)
        for extra in ("complete", "all_delivered", "stalled_close_codes"):
            if extra in row:
                lines.append(f"  {extra:<22} {row[extra]}")
    return "\n".join(lines)


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3f}"


# -- machine, results, plot ------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = ""
    engine_commit = ""
    dirty = False
    try:
        engine_commit = subprocess.run(
            ["git", "log", "-1", "--format=%H", "--", "rocketws"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--", "rocketws"],
                cwd=REPO,
                capture_output=True,
                text=True,
            ).stdout.strip()
        )
    except (OSError, subprocess.CalledProcessError):
        pass
    versions: dict[str, str | None] = {}
    for mod in ("gevent", "websockets", "aiohttp", "orjson", "jsonrpcserver"):
        try:
            from importlib.metadata import version

            versions[mod] = version(mod)
        except Exception:
            versions[mod] = None
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg": os.getloadavg(),
        "commit": commit,
        "engine_commit": engine_commit,  # last commit that touched rocketws/
        "rocketws_dirty": dirty,
        "versions": versions,
        "redis_server": _redis_version(),
    }


def _redis_version() -> str | None:
    binary = redis_server_binary()
    if binary is None:
        return None
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def write_plot(summary: list[dict[str, Any]], path: Path) -> bool:
    """Bar charts of fan-out µs/delivery and deliveries/s per B, RocketWS vs peer."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'); no plot", file=sys.stderr)
        return False
    rows = [r for r in summary if r["scenario"] == "fanout"]
    ingress = [r for r in summary if r["scenario"] == "ingress"]
    if not rows and not ingress:
        return False
    panels = [
        ("us_per_delivery", "server CPU µs per delivery (lower is better)", rows),
        ("deliveries_per_s", "deliveries/s (higher is better)", rows),
        ("emits_per_s", "HTTP ingress emits/s (higher is better)", ingress),
    ]
    panels = [p for p in panels if p[2]]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    if len(panels) == 1:
        axes = [axes]
    colors = {"rocketws": "#d62728", "rocketws-redis": "#ff7f0e", "peer": "#1f77b4"}
    for ax, (metric, title, rs) in zip(axes, panels, strict=True):
        labels = [f"B={r['b']} C={r['c']}" if "c" in r else f"B={r['b']}" for r in rs]
        present = {s for r in rs for s in r[metric]["median"]}
        servers = [s for s in KNOWN_SERVERS if s in present]
        width = 0.8 / max(1, len(servers))
        for k, s in enumerate(servers):
            vals = [r[metric]["median"].get(s) or 0 for r in rs]
            xs = [i + k * width for i in range(len(rs))]
            bars = ax.bar(xs, vals, width, label=s, color=colors.get(s))
            ax.bar_label(bars, labels=[_fmt(v) for v in vals], fontsize=7)
        ax.set_xticks([i + width * (len(servers) - 1) / 2 for i in range(len(rs))], labels)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8)
    fig.suptitle("RocketWS (memory / Redis broker) vs websockets peer (medians)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def run(cfg: Config) -> dict[str, Any]:
    """Run the configured scenarios; returns the report (and writes it when cfg.out)."""
    unknown = [s for s in cfg.scenarios if s not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenario(s) {unknown}; choose from {SCENARIOS}")
    unknown = [s for s in cfg.servers if s not in KNOWN_SERVERS]
    if unknown:
        raise ValueError(f"unknown server(s) {unknown}; choose from {KNOWN_SERVERS}")
    if "rocketws-redis" in cfg.servers and redis_server_binary() is None:
        raise ValueError("rocketws-redis needs redis-server on PATH (bash scripts/sysdeps.sh)")
    nofile = raise_nofile_limit()
    need = max([cfg.idle_n if "idle" in cfg.scenarios else 0, cfg.fanout_n, *cfg.latency_n]) + 64
    if nofile < need:
        print(f"warning: open-files limit {nofile} < {need} needed", file=sys.stderr)
    server_cpus, load_cpus = cpu_plan()
    if cfg.pin and load_cpus:
        os.sched_setaffinity(0, load_cpus)
    bench = Bench(cfg, Progress(cfg.quiet), server_cpus, load_cpus)
    started = time.time()
    info = machine_info()
    out: Path | None = None
    if cfg.out:
        out = Path(cfg.out)
        if not out.is_absolute():
            out = Path.cwd() / out
        out.mkdir(parents=True, exist_ok=True)

    def report() -> dict[str, Any]:
        return {
            "started": started,
            "duration_s": time.time() - started,
            "machine": info,
            "pinning": {
                "server_cpus": sorted(server_cpus) if cfg.pin and server_cpus else None,
                "load_cpus": sorted(load_cpus) if cfg.pin and load_cpus else None,
            },
            "config": asdict(cfg),
            "summary": summarize(bench.runs),
            "runs": bench.runs,
        }

    def save(rep: dict[str, Any]) -> None:
        if out is not None:
            data = orjson.dumps(rep, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
            (out / "results.json").write_bytes(data)

    try:
        for scenario in SCENARIOS:
            if scenario in cfg.scenarios:
                getattr(bench, scenario)()
                save(report())  # a crash later keeps what was measured so far
    finally:
        bench.progress.done()
    final = report()
    save(final)
    if out is not None and cfg.plot:
        plot = out / "bench.png"
        final["plot"] = str(plot) if write_plot(final["summary"], plot) else None
    return final


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
    p.add_argument("--idle-n", type=int, help=f"connections (default {d.idle_n})")
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
    p.add_argument("--timeout", type=float, help="seconds without progress before giving up")
    p.add_argument("--out", help=f"directory for results.json and bench.png (default {d.out})")
    p.add_argument("--no-plot", dest="plot", action="store_false")
    p.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin to cores")
    p.add_argument("--quick", action="store_true", help="tiny sizes, all scenarios, one run")
    p.add_argument("-q", "--quiet", action="store_true")
    given = vars(p.parse_args(list(argv) if argv is not None else None))
    quick = given.pop("quick", False)
    for key in ("servers", "scenarios"):
        if key in given:
            given[key] = [x for x in given[key].split(",") if x]
    for key in ("batches", "latency_n", "fanout_concurrency"):
        if key in given:
            given[key] = _ints(given[key])
    return Config.quick(**given) if quick else Config(**given)


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = parse_args(argv)
        report = run(cfg)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, RuntimeError, TimeoutError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    print(
        f"machine: {report['machine']['nproc']} x {report['machine']['cpu_model']}, "
        f"Python {report['machine']['python']}, commit {report['machine']['commit'][:12]}, "
        f"engine (rocketws/) at {report['machine']['engine_commit'][:12]}"
        f"{' (rocketws/ modified)' if report['machine']['rocketws_dirty'] else ''}"
    )
    print(format_summary(report["summary"]))
    if cfg.out:
        print(f"results: {Path(cfg.out) / 'results.json'}")
        if report.get("plot"):
            print(f"plot: {report['plot']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
