"""``scale``: N subscribed connections on one box, ``--workers`` processes on Redis.

The subscribers come from ``scale_clients`` processes, process i bound to the loopback
address 127.0.0.(2+i) before connecting (``Subscribers.connect(sources=...)``): each
address has its own ~28,000 ephemeral ports towards the server, and each process stays
under its open-files limit.  The server runs ``scale_workers`` processes on a private
redis-server, each allowed ``ceil(1.25 N / workers)`` connections (SO_REUSEPORT spreads
them unevenly), nothing pinned: everything shares the machine's cores.

Measured, in order: the connect rate; RSS of the server processes (total, and the growth
per connection over the freshly started server) and of Redis; ``scale_emits`` single
emits to everyone, each timed until the last subscriber has it (wall, server and Redis
CPU; medians); then ``scale_rate`` emits/s for ``scale_seconds``, sent open-loop (the
steady fan-out: deliveries/s achieved, lag of the last delivery after the last emit, CPU
per second); when the box cannot keep up, publications queue (in Redis and the
outboxes) and the lag says by how much.
Connections that do not get through are counted, not fatal: the run reports how many
were reached and the first server log lines that say why; connections the server closes
later (e.g. a subscriber process too starved to answer a ping in time) are counted with
their close codes, and each emit waits for the connections still open.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import ClassVar

from .. import httpload
from ..harness import CHANNEL, Bench, RunResult, Subscribers, check_emit_response, emit_bodies, send_emits
from ..procstat import rss_kb
from ..servers import Server

MAX_PER_PROCESS = 20000 - 64  # this box's open-files limit minus the server's reserve


@dataclass
class ScaleRun(RunResult):
    SCENARIO: ClassVar[str] = "scale"
    CASE: ClassVar[tuple[str, ...]] = ("n", "workers")
    METRICS: ClassVar[tuple[str, ...]] = (
        "connected",
        "connects_per_s",
        "rss_mb_total",
        "bytes_per_connection",
        "emit_ms",
        "emit_server_cpu_ms",
        "emit_redis_cpu_ms",
        "steady_achieved_rate",
        "steady_deliveries_per_s",
        "steady_lag_ms",
        "steady_server_cpu_per_s",
        "steady_redis_cpu_per_s",
    )

    n: int
    workers: int
    clients: int
    write_delay: float
    connected: int
    connect_s: float
    connects_per_s: float
    rss_kb_start: int
    rss_kb_connected: int
    rss_mb_total: float
    bytes_per_connection: float
    redis_rss_kb: int
    emits: int
    emit_ms: float | None  # median over the emits: until the last subscriber has it
    emit_server_cpu_ms: float | None
    emit_redis_cpu_ms: float | None
    emit_complete: bool
    steady_rate: float
    steady_seconds: float
    steady_sent: int  # emits answered before the deadline (fewer: the rate was not kept)
    steady_achieved_rate: float  # emits/s actually answered
    steady_expected: int
    steady_deliveries: int
    steady_deliveries_per_s: float
    steady_lag_ms: float  # last delivery after the last emit was sent
    steady_server_cpu_per_s: float  # CPU seconds per wall second (2.0 = both cores busy)
    steady_redis_cpu_per_s: float
    closed_by_server: int  # connections the server closed during the run (see close_codes)
    close_codes: dict[str, int] = field(default_factory=dict)
    emit_ms_all: list[float] = field(default_factory=list)
    why: str = ""  # when not every connection got through: what the server logged


def _per_worker(n: int, workers: int) -> int:
    return min(MAX_PER_PROCESS, -(-n * 5 // (4 * workers)))


def _why(srv: Server) -> str:
    """The server log lines that explain refused connections (first few)."""
    wanted = ("503", "MAX_CONNECTIONS", "Too many open files", "EMFILE", "error", "limit")
    lines = [line for line in srv.log_tail(200_000).splitlines() if any(w in line for w in wanted)]
    return "\n".join(lines[:5])


def _paced_emits(srv: Server, data: str, m: int, rate: float, limit_s: float) -> int:
    """Send ``m`` single emits open-loop, emit i not before ``start + i / rate`` whether or
    not earlier ones were answered (up to 64 in flight, as backends publishing
    independently); returns how many were answered within ``limit_s``."""
    res = httpload.run_requests(
        srv.host, srv.http_port, emit_bodies(CHANNEL, data, 1), m, concurrency=64, rate=rate, timeout=limit_s
    )
    if res.errors:
        raise RuntimeError(f"{res.errors} emits failed: {res.statuses}")
    if res.rpc_errors:
        raise RuntimeError(f"{res.rpc_errors} emits refused, the first: {res.first_error[:300]!r}")
    return res.requests


def run(bench: Bench) -> list[ScaleRun]:
    cfg = bench.cfg
    n, workers = cfg.scale_n, cfg.scale_workers
    env = {
        "ROCKETWS_MAX_CONNECTIONS": str(_per_worker(n, workers)),
        "ROCKETWS_WRITE_DELAY": str(cfg.scale_write_delay),
    }
    results: list[ScaleRun] = []
    for rep in range(cfg.scale_repeat):
        bench.progress.step(f"scale: starting {workers} workers on Redis (rep {rep + 1}/{cfg.scale_repeat})")
        srv = Server("rocketws-redis", cpus=None, env=env, workers=workers).start(timeout=120)
        subs = Subscribers(cfg.scale_clients, None, cfg.read_interval)
        try:
            results.append(_one(bench, srv, subs, rep))
        finally:
            subs.close()
            srv.cleanup()
    return results


def _one(bench: Bench, srv: Server, subs: Subscribers, rep: int) -> ScaleRun:
    cfg = bench.cfg
    n, workers = cfg.scale_n, cfg.scale_workers
    assert srv.redis is not None
    time.sleep(1.0)  # let the workers settle (imports, first presence write) before the RSS baseline
    rss0 = srv.rss_kb()
    sources = [f"127.0.0.{2 + i}" for i in range(cfg.scale_clients)]
    bench.progress.step(f"scale: connecting {n:,} subscribers from {len(sources)} addresses")
    t0 = time.monotonic()
    connected = subs.connect("scale", srv, n, sources=sources, timeout=cfg.timeout * 10, require=False)
    connect_s = time.monotonic() - t0
    why = "" if connected == n else _why(srv)
    time.sleep(1.0)  # outboxes and buffers of the subscribe replies settle
    rss1 = srv.rss_kb()
    redis_rss = rss_kb(srv.redis.pid)

    emit_ms: list[float] = []
    emit_cpu: list[float] = []
    emit_redis: list[float] = []
    complete = True
    data = "x" * cfg.size
    for i in range(cfg.scale_emits):
        live = subs.stats("scale")["ready"]  # the server may have closed some (no pong in time)
        bench.progress.step(f"scale: one emit to {live:,} ({i + 1}/{cfg.scale_emits})")
        subs.ask("reset", "scale")
        cpu0, redis0 = srv.cpu(), srv.redis_cpu_ns() or 0
        t = time.monotonic_ns()
        res = send_emits(srv, data, 1, 1, 1, cfg.timeout)
        st = subs.wait_frames("scale", live, cfg.timeout, bench.progress, poll=0.05)
        cpu = srv.cpu() - cpu0
        check_emit_response(res.first_body, 1, None)
        complete = complete and st["frames"] >= live
        emit_ms.append((st["last_frame_ns"] - t) / 1e6)
        emit_cpu.append(cpu.seconds * 1e3)
        emit_redis.append(((srv.redis_cpu_ns() or 0) - redis0) / 1e6)

    m = max(1, round(cfg.scale_rate * cfg.scale_seconds))
    live = subs.stats("scale")["ready"]
    bench.progress.step(f"scale: steady fan-out, {m} emits at {cfg.scale_rate:g}/s to {live:,}")
    subs.ask("reset", "scale")
    cpu0, redis0 = srv.cpu(), srv.redis_cpu_ns() or 0
    t = time.monotonic_ns()
    try:
        sent = _paced_emits(srv, data, m, cfg.scale_rate, cfg.timeout)
    except TimeoutError as exc:  # answers did not come back in time: count what arrives
        sent, why = m, (why + "\n" if why else "") + f"steady: {exc}"
    sent_ns = time.monotonic_ns()
    st = subs.wait_frames("scale", live * sent, cfg.timeout, bench.progress, poll=0.05)
    cpu = srv.cpu() - cpu0
    redis_s = ((srv.redis_cpu_ns() or 0) - redis0) / 1e9
    wall = max(1, st["last_frame_ns"] - t) / 1e9
    final = subs.stats("scale")
    return ScaleRun(
        server=srv.name,
        rep=rep,
        n=n,
        workers=workers,
        clients=cfg.scale_clients,
        write_delay=cfg.scale_write_delay,
        connected=connected,
        connect_s=connect_s,
        connects_per_s=connected / connect_s,
        rss_kb_start=rss0,
        rss_kb_connected=rss1,
        rss_mb_total=rss1 / 1024,
        bytes_per_connection=(rss1 - rss0) * 1024 / max(1, connected),
        redis_rss_kb=redis_rss,
        emits=cfg.scale_emits,
        emit_ms=statistics.median(emit_ms) if emit_ms else None,
        emit_server_cpu_ms=statistics.median(emit_cpu) if emit_cpu else None,
        emit_redis_cpu_ms=statistics.median(emit_redis) if emit_redis else None,
        emit_complete=complete,
        steady_rate=cfg.scale_rate,
        steady_seconds=cfg.scale_seconds,
        steady_sent=sent,
        steady_achieved_rate=sent * 1e9 / max(1, sent_ns - t),
        steady_expected=live * sent,
        steady_deliveries=st["frames"],
        steady_deliveries_per_s=st["frames"] / wall,
        steady_lag_ms=max(0, st["last_frame_ns"] - sent_ns) / 1e6,
        steady_server_cpu_per_s=cpu.seconds / wall,
        steady_redis_cpu_per_s=redis_s / wall,
        closed_by_server=final["closed"],
        close_codes=final["close_codes"],
        emit_ms_all=emit_ms,
        why=why,
    )
