"""``ingress``: no subscribers; emits/s over HTTP, one emit per request and B per request."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import ClassVar

from .. import httpload
from ..harness import Bench, RunResult, Subscribers, check_emit_response, emit_bodies, redis_seconds
from ..servers import Server


@dataclass
class IngressRun(RunResult):
    SCENARIO: ClassVar[str] = "ingress"
    CASE: ClassVar[tuple[str, ...]] = ("b",)
    METRICS: ClassVar[tuple[str, ...]] = ("emits_per_s", "requests_per_s", "us_per_emit", "total_us_per_emit")

    b: int
    requests: int
    emits: int
    concurrency: int
    http_errors: int
    wall_s: float
    cpu_s: float
    requests_per_s: float
    emits_per_s: float
    us_per_emit: float
    redis_cpu_s: float | None
    total_us_per_emit: float


def run(bench: Bench) -> list[IngressRun]:
    cfg = bench.cfg
    results: list[IngressRun] = []

    def body(servers: dict[str, Server], subs: Subscribers) -> None:
        data = "x" * cfg.size
        for rep in range(cfg.repeat):
            for b in (1, cfg.ingress_batch):
                requests = max(1, cfg.ingress_m // b)
                for name, srv in servers.items():
                    bench.progress.step(
                        f"ingress {name} B={b} {requests:,} requests rep {rep + 1}/{cfg.repeat}"
                    )
                    cpu0, redis0 = srv.cpu(), srv.redis_cpu_ns()
                    res = httpload.run_requests(
                        srv.host,
                        srv.http_port,
                        emit_bodies("nobody", data, b),
                        requests,
                        concurrency=cfg.ingress_concurrency,
                        timeout=cfg.timeout * 10,
                        progress=partial(bench.progress.count, requests),
                    )
                    cpu = srv.cpu() - cpu0
                    redis_s = redis_seconds(srv, redis0)
                    check_emit_response(res.first_body, b, 0)
                    emits = requests * b
                    results.append(
                        IngressRun(
                            server=name,
                            rep=rep,
                            b=b,
                            requests=requests,
                            emits=emits,
                            concurrency=cfg.ingress_concurrency,
                            http_errors=res.errors,
                            wall_s=res.elapsed,
                            cpu_s=cpu.seconds,
                            requests_per_s=requests / res.elapsed,
                            emits_per_s=emits / res.elapsed,
                            us_per_emit=cpu.seconds * 1e6 / emits,
                            redis_cpu_s=redis_s,
                            total_us_per_emit=(cpu.seconds + (redis_s or 0.0)) * 1e6 / emits,
                        )
                    )

    bench.with_servers(body)
    return results
