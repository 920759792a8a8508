"""``latency``: N subscribers, emits at a fixed rate; publish -> receipt p50/p99 and the
time until the last subscriber has an emit (fan-out completion).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

from .. import httpload
from ..harness import CHANNEL, Bench, RunResult, Subscribers, emit_body, redis_seconds
from ..report import pct
from ..servers import Server


@dataclass
class LatencyRun(RunResult):
    SCENARIO: ClassVar[str] = "latency"
    CASE: ClassVar[tuple[str, ...]] = ("n", "rate")
    REPORTS_COMPLETE: ClassVar[bool] = True
    METRICS: ClassVar[tuple[str, ...]] = (
        "p50_ms",
        "p99_ms",
        "completion_p50_ms",
        "completion_p99_ms",
        "server_cpu_ms_per_emit",
        "us_per_delivery",
    )

    n: int
    m: int
    rate: float
    achieved_rate: float
    expected: int
    deliveries: int
    complete: bool
    samples: int
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    completion_p50_ms: float | None
    completion_p99_ms: float | None
    us_per_delivery: float
    # server CPU per publication: a lower bound on the time to write the last byte
    # (completion above is an upper bound: it includes the subscribers' own receive time)
    server_cpu_ms_per_emit: float
    redis_cpu_s: float | None


def run(bench: Bench) -> list[LatencyRun]:
    cfg = bench.cfg
    results: list[LatencyRun] = []

    def body(servers: dict[str, Server], subs: Subscribers) -> None:
        pad = "x" * max(0, cfg.size - 40)

        def timed_emit(i: int) -> bytes:  # the send time travels in the data
            return emit_body(CHANNEL, {"i": i, "t": time.monotonic_ns(), "pad": pad}, i, 1)

        for n in cfg.latency_n:
            rate = min(cfg.latency_rate, cfg.latency_budget / n)
            for name, srv in servers.items():
                bench.progress.step(f"latency: connecting {n:,} subscribers to {name}")
                subs.connect(name, srv, n, timeout=cfg.timeout * 5)
                subs.ask("latency", name, True)
            for rep in range(cfg.repeat):
                for name, srv in servers.items():
                    bench.progress.step(
                        f"latency {name} N={n:,} {cfg.latency_m} emits at "
                        f"{rate:g}/s rep {rep + 1}/{cfg.repeat}"
                    )
                    subs.ask("reset", name)
                    cpu0, redis0 = srv.cpu(), srv.redis_cpu_ns()
                    res = httpload.run_requests(
                        srv.host,
                        srv.http_port,
                        timed_emit,
                        cfg.latency_m,
                        concurrency=4,
                        rate=rate,
                        timeout=cfg.timeout * 10,
                    )
                    expected = n * cfg.latency_m
                    st = subs.wait_frames(name, expected, cfg.timeout, bench.progress)
                    cpu = srv.cpu() - cpu0
                    redis_s = redis_seconds(srv, redis0)
                    lats = [lat for part in subs.ask("latencies", name) for lat in part]
                    per_emit: dict[int, int] = {}
                    for i, lat in lats:
                        if lat > per_emit.get(i, -1):
                            per_emit[i] = lat
                    all_ms = sorted(lat / 1e6 for _, lat in lats)
                    completion_ms = sorted(v / 1e6 for v in per_emit.values())
                    results.append(
                        LatencyRun(
                            server=name,
                            rep=rep,
                            n=n,
                            m=cfg.latency_m,
                            rate=rate,
                            achieved_rate=cfg.latency_m / res.elapsed,
                            expected=expected,
                            deliveries=st["frames"],
                            complete=st["frames"] == expected,
                            samples=len(all_ms),
                            p50_ms=pct(all_ms, 50),
                            p90_ms=pct(all_ms, 90),
                            p99_ms=pct(all_ms, 99),
                            max_ms=all_ms[-1] if all_ms else None,
                            completion_p50_ms=pct(completion_ms, 50),
                            completion_p99_ms=pct(completion_ms, 99),
                            us_per_delivery=cpu.seconds * 1e6 / max(1, st["frames"]),
                            server_cpu_ms_per_emit=cpu.seconds * 1e3 / cfg.latency_m,
                            redis_cpu_s=redis_s,
                        )
                    )
            for name in servers:
                subs.ask("close", name)

    bench.with_servers(body)
    return results
