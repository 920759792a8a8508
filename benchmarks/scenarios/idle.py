"""``idle``: N subscribed connections on a fresh server; RSS per connection, connects/s.

With ``idle_tls`` the RocketWS servers run again over ``wss://`` (case ``tls``): the
difference is what TLS costs per idle connection (OpenSSL's per-connection state).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

from ..harness import Bench, RunResult


@dataclass
class IdleRun(RunResult):
    SCENARIO: ClassVar[str] = "idle"
    CASE: ClassVar[tuple[str, ...]] = ("n", "tls")
    METRICS: ClassVar[tuple[str, ...]] = ("bytes_per_connection", "connects_per_s")

    n: int
    tls: bool
    rss_before_kb: int
    rss_after_kb: int
    health_connections: Any
    connect_s: float
    connects_per_s: float
    bytes_per_connection: float


def run(bench: Bench) -> list[IdleRun]:
    cfg = bench.cfg
    results: list[IdleRun] = []
    subs = bench.subscribers()
    try:
        cases = [(name, False) for name in cfg.servers]
        if cfg.idle_tls:
            cases += [(name, True) for name in cfg.servers if name.startswith("rocketws")]
        for rep in range(cfg.repeat):
            for name, tls in cases:
                label = " over TLS" if tls else ""
                bench.progress.step(f"idle {name}{label} N={cfg.idle_n:,} rep {rep + 1}/{cfg.repeat}")
                srv = bench.start_server(name, tls=tls)
                try:
                    rss0 = srv.rss_kb()
                    t0 = time.monotonic()
                    subs.connect(name, srv, cfg.idle_n, timeout=cfg.timeout * 5, tls=tls)
                    connect_s = time.monotonic() - t0
                    health = srv.health()
                    rss1 = srv.rss_kb()
                    results.append(
                        IdleRun(
                            server=name,
                            rep=rep,
                            n=cfg.idle_n,
                            tls=tls,
                            rss_before_kb=rss0,
                            rss_after_kb=rss1,
                            health_connections=health.get("connections"),
                            connect_s=connect_s,
                            connects_per_s=cfg.idle_n / connect_s,
                            bytes_per_connection=(rss1 - rss0) * 1024 / cfg.idle_n,
                        )
                    )
                    subs.ask("close", name)
                finally:
                    srv.cleanup()
    finally:
        subs.close()
    return results
