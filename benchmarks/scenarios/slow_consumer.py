"""``slow``: N reading subscribers plus one that never reads; everyone else still gets
every push, and the server's RSS growth stays bounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .. import httpload
from ..harness import CHANNEL, Bench, RunResult, emit_bodies, merge_counts, push_frame_bytes

BATCH = 10  # emits per request


@dataclass
class SlowConsumerRun(RunResult):
    SCENARIO: ClassVar[str] = "slow"
    CASE: ClassVar[tuple[str, ...]] = ("n", "m", "size")
    METRICS: ClassVar[tuple[str, ...]] = ("rss_growth_kb", "deliveries")

    n: int
    m: int
    size: int
    pushed_bytes_per_subscriber: int
    expected: int
    deliveries: int
    all_delivered: bool
    http_errors: int
    stalled_frames: int
    stalled_close_codes: dict[str, int]
    rss_before_kb: int
    rss_peak_kb: int
    rss_growth_kb: int

    @classmethod
    def summary_extras(cls, by_server: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        return {
            "all_delivered": {s: all(r["all_delivered"] for r in rs) for s, rs in by_server.items()},
            "stalled_close_codes": {s: [r["stalled_close_codes"] for r in rs] for s, rs in by_server.items()},
        }


def run(bench: Bench) -> list[SlowConsumerRun]:
    cfg = bench.cfg
    results: list[SlowConsumerRun] = []
    data = "y" * cfg.slow_size
    requests = max(1, cfg.slow_m // BATCH)
    m = requests * BATCH
    for rep in range(cfg.repeat):
        for name in cfg.servers:
            bench.progress.step(
                f"slow {name} {cfg.slow_n} readers + 1 stalled, {m:,} x "
                f"{cfg.slow_size} B rep {rep + 1}/{cfg.repeat}"
            )
            subs = bench.subscribers()
            srv = bench.start_server(name)
            try:
                subs.connect(name, srv, cfg.slow_n, stalled=1)
                rss0 = srv.rss_kb()
                peak = rss0
                res = httpload.run_requests(
                    srv.host,
                    srv.http_port,
                    emit_bodies(CHANNEL, data, BATCH),
                    requests,
                    timeout=cfg.timeout * 10,
                    progress=lambda d: None,
                )
                peak = max(peak, srv.rss_kb())
                expected = cfg.slow_n * m
                st = subs.wait_frames(name, expected, cfg.timeout, bench.progress)
                peak = max(peak, srv.rss_kb())
                drained = subs.ask("drain_stalled", name, 10.0, timeout=30)
                results.append(
                    SlowConsumerRun(
                        server=name,
                        rep=rep,
                        n=cfg.slow_n,
                        m=m,
                        size=cfg.slow_size,
                        pushed_bytes_per_subscriber=m * push_frame_bytes(CHANNEL, data),
                        expected=expected,
                        deliveries=st["frames"],
                        all_delivered=st["frames"] == expected,
                        http_errors=res.errors,
                        stalled_frames=sum(r["stalled_frames"] for r in drained),
                        stalled_close_codes=merge_counts(r["close_codes"] for r in drained),
                        rss_before_kb=rss0,
                        rss_peak_kb=peak,
                        rss_growth_kb=peak - rss0,
                    )
                )
            finally:
                subs.close()
                srv.cleanup()
    return results
