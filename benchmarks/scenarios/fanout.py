"""``fanout``: N subscribers on one channel, M emits of S bytes, B emits per request,
C requests in flight; server CPU µs per delivery and deliveries/s.

With a rate (``--fanout-rates``, emits/s; 0 = unpaced, the default) the requests are
paced at rate / B per second over the C keep-alive connections (single emits arriving
one by one at a steady rate, what ``write_delay`` coalesces), the data carries its send
time, and publish -> receipt latency is recorded on every k-th subscriber.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

from .. import httpload
from ..harness import (
    CHANNEL,
    Bench,
    RunResult,
    Subscribers,
    check_emit_response,
    emit_body,
    push_frame_bytes,
    redis_publish,
    redis_seconds,
    send_emits,
)
from ..report import pct
from ..servers import Server


@dataclass
class FanoutRun(RunResult):
    SCENARIO: ClassVar[str] = "fanout"
    CASE: ClassVar[tuple[str, ...]] = ("n", "m", "b", "c", "size", "rate")
    REPORTS_COMPLETE: ClassVar[bool] = True
    METRICS: ClassVar[tuple[str, ...]] = (
        "us_per_delivery",
        "redis_us_per_delivery",
        "total_us_per_delivery",
        "client_us_per_delivery",
        "deliveries_per_s",
        "wall_s",
        "writes_per_subscriber_request",
        "emit_rate",
        "p50_ms",
        "p99_ms",
    )

    n: int
    m: int
    b: int
    c: int
    size: int
    # emits/s asked for (0: unpaced) and achieved (emits / the emitter's wall time)
    rate: float
    emit_rate: float
    frame_bytes: int
    expected: int
    deliveries: int
    complete: bool
    http_errors: int
    emit_wall_s: float
    wall_s: float
    cpu_s: float
    cpu_stat_s: float
    us_per_delivery: float
    # rocketws-redis: its redis-server's CPU, and the sum
    redis_cpu_s: float | None
    redis_us_per_delivery: float | None
    total_us_per_delivery: float
    # the subscriber processes' CPU (the load generator's receiving side, on the same box)
    client_cpu_s: float
    client_us_per_delivery: float
    deliveries_per_s: float
    # write(2) calls per subscriber per request of B emits (1.0: a batch leaves in one
    # write; B: one write per emit); RocketWS only (the peer writes with send(2))
    writes: int
    writes_per_subscriber_request: float | None
    # paced runs: publish -> receipt on the sampled subscribers (None when unpaced)
    latency_samples: int
    p50_ms: float | None
    p99_ms: float | None


def run(bench: Bench) -> list[FanoutRun]:
    cfg = bench.cfg
    results: list[FanoutRun] = []

    def body(servers: dict[str, Server], subs: Subscribers) -> None:
        for name, srv in servers.items():
            bench.progress.step(f"fanout: connecting {cfg.fanout_n:,} subscribers to {name}")
            subs.connect(name, srv, cfg.fanout_n)
        data = "x" * cfg.size
        frame = push_frame_bytes(CHANNEL, data)
        # paced runs: the send time in the data, padded to about the same push size, and
        # to the same size whatever the number's digits (every push the same size)

        def timed_data(i: int) -> dict[str, object]:
            return {"i": i, "t": time.monotonic_ns(), "pad": "x" * max(0, cfg.size - 36 - len(str(i)))}

        timed_frame = push_frame_bytes(CHANNEL, timed_data(0))
        cases = [(r, c, b) for r in cfg.fanout_rates for c in cfg.fanout_concurrency for b in cfg.batches]
        for rep in range(cfg.repeat):
            for rate, c, b in cases:
                requests = max(1, -(-cfg.fanout_m // b))
                m = requests * b
                paced = rate > 0
                for name, srv in servers.items():
                    bench.progress.step(
                        f"fanout {name} N={cfg.fanout_n:,} M={m:,} B={b} C={c}"
                        + (f" at {rate:g} emits/s" if paced else "")
                        + f" rep {rep + 1}/{cfg.repeat}"
                    )
                    subs.ask("reset", name)
                    if paced:
                        subs.ask("latency", name, True, cfg.fanout_latency_every)
                    cpu0, redis0, writes0 = srv.cpu(), srv.redis_cpu_ns(), srv.write_calls()
                    client0 = subs.cpu_ns()
                    t0 = time.monotonic_ns()
                    piped = name == "rocketws-redis-pipe"
                    if piped:  # the harness PUBLISHes each request's B in one pipeline
                        emit_wall = time.monotonic()
                        nodes = redis_publish(srv, data, b, requests)
                        emit_wall = time.monotonic() - emit_wall
                        errors = 0 if nodes == 1 else 1
                    elif paced:

                        def timed(i: int, b: int = b) -> bytes:
                            return emit_body(CHANNEL, timed_data(i), i, b)

                        res = httpload.run_requests(
                            srv.host, srv.http_port, timed, requests, c, rate / b, cfg.timeout * 10
                        )
                        emit_wall, errors = res.elapsed, res.errors
                    else:
                        res = send_emits(srv, data, b, requests, c, cfg.timeout * 10)
                        emit_wall, errors = res.elapsed, res.errors
                    expected = cfg.fanout_n * m
                    st = subs.wait_frames(name, expected, cfg.timeout, bench.progress)
                    cpu = srv.cpu() - cpu0
                    client_s = (subs.cpu_ns() - client0) / 1e9
                    writes = srv.write_calls() - writes0
                    redis_s = redis_seconds(srv, redis0)
                    if not piped:
                        check_emit_response(res.first_body, b, cfg.fanout_n)
                    lats: list[float] = []
                    if paced:
                        lats = sorted(lat / 1e6 for part in subs.ask("latencies", name) for _, lat in part)
                        subs.ask("latency", name, False)
                    wall = max(1, st["last_frame_ns"] - t0) / 1e9
                    delivered = st["frames"]
                    per = 1e6 / max(1, delivered)
                    results.append(
                        FanoutRun(
                            server=name,
                            rep=rep,
                            n=cfg.fanout_n,
                            m=m,
                            b=b,
                            c=c,
                            size=cfg.size,
                            rate=rate,
                            emit_rate=m / max(1e-9, emit_wall),
                            frame_bytes=timed_frame if paced else frame,
                            expected=expected,
                            deliveries=delivered,
                            complete=delivered == expected,
                            http_errors=errors,
                            emit_wall_s=emit_wall,
                            wall_s=wall,
                            cpu_s=cpu.seconds,
                            cpu_stat_s=cpu.stat_seconds,
                            us_per_delivery=cpu.seconds * per,
                            redis_cpu_s=redis_s,
                            redis_us_per_delivery=None if redis_s is None else redis_s * per,
                            total_us_per_delivery=(cpu.seconds + (redis_s or 0.0)) * per,
                            client_cpu_s=client_s,
                            client_us_per_delivery=client_s * per,
                            deliveries_per_s=delivered / wall,
                            writes=writes,
                            writes_per_subscriber_request=(
                                writes / (cfg.fanout_n * requests) if name.startswith("rocketws") else None
                            ),
                            latency_samples=len(lats),
                            p50_ms=pct(lats, 50),
                            p99_ms=pct(lats, 99),
                        )
                    )
        for name in servers:
            subs.ask("close", name)

    bench.with_servers(body)
    return results
