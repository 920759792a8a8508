"""``split``: one emit to N idle subscribers, the server's CPU split user vs kernel.

Measured for the single-process RocketWS servers on the memory broker of ``--servers``
(``rocketws``, ``rocketws-base``, ``rocketws-wd*``; the peer and the Redis ones are skipped).

``split_emits`` single emits, each waited for until every subscriber has it; the server's
utime and stime (/proc/<pid>/stat, summed over the emits: the clock-tick resolution is
10 ms) say how much of the fan-out is RocketWS's Python and how much the kernel's
(write(2) on each socket, waking each subscriber's process on loopback).  When ``perf``
can sample the server (software cpu-clock events; no hardware counters are needed), the
share of samples per DSO is recorded too (``perf_top``: kernel vs the Python
interpreter vs C extensions), the same emits being repeated under ``perf record``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import ClassVar

from ..harness import Bench, RunResult, Subscribers, check_emit_response, send_emits
from ..procstat import CLK_TCK
from ..servers import Server, uses_redis


@dataclass
class SplitRun(RunResult):
    SCENARIO: ClassVar[str] = "split"
    CASE: ClassVar[tuple[str, ...]] = ("n",)
    METRICS: ClassVar[tuple[str, ...]] = (
        "cpu_ms_per_emit",
        "user_ms_per_emit",
        "sys_ms_per_emit",
        "user_share",
        "us_per_socket",
        "emit_ms",
    )

    n: int
    emits: int
    cpu_ms_per_emit: float  # schedstat, precise
    user_ms_per_emit: float  # utime / emits
    sys_ms_per_emit: float  # stime / emits
    user_share: float  # utime / (utime + stime)
    us_per_socket: float
    emit_ms: float  # mean wall time until the last subscriber has an emit
    perf_top: dict[str, float] = field(default_factory=dict)  # DSO -> share of samples


def _utime_stime(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]), int(rest[12])


def _emits(bench: Bench, srv: Server, subs: Subscribers, group: str, n: int, k: int) -> float:
    """``k`` single emits, each waited for; returns the mean wall ms of one."""
    data = "x" * bench.cfg.size
    total = 0.0
    for _ in range(k):
        subs.ask("reset", group)
        t = time.monotonic_ns()
        res = send_emits(srv, data, 1, 1, 1, bench.cfg.timeout)
        st = subs.wait_frames(group, n, bench.cfg.timeout, bench.progress, poll=0.002)
        check_emit_response(res.first_body, 1, n)
        total += (st["last_frame_ns"] - t) / 1e6
    return total / k


def perf_dsos(pid: int, run: Callable[[], object], seconds_hint: float) -> dict[str, float]:
    """Share of cpu-clock samples per DSO while ``run()`` runs; {} without a usable perf."""
    perf = shutil.which("perf")
    if perf is None:
        return {}
    with tempfile.TemporaryDirectory(prefix="bench-perf-") as tmp:
        data = os.path.join(tmp, "perf.data")
        rec = subprocess.Popen(
            [perf, "record", "-q", "-e", "cpu-clock", "-F", "2000", "-p", str(pid), "-o", data],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.3)  # perf attaches; a pause of the sender, not a synchronisation
        try:
            run()
        finally:
            rec.send_signal(signal.SIGINT)
            try:
                rec.wait(10 + seconds_hint)
            except subprocess.TimeoutExpired:
                rec.kill()
                rec.wait(5)
        try:
            out = subprocess.run(
                [perf, "report", "-i", data, "--stdio", "--sort", "dso", "-q"],
                capture_output=True,
                text=True,
                timeout=120,
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            return {}
    shares: dict[str, float] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].endswith("%"):
            try:
                shares[" ".join(parts[1:])] = float(parts[0].rstrip("%")) / 100
            except ValueError:
                continue
    return dict(sorted(shares.items(), key=lambda kv: -kv[1])[:8])


def run(bench: Bench) -> list[SplitRun]:
    cfg = bench.cfg
    n, k = cfg.split_n, cfg.split_emits
    results: list[SplitRun] = []

    def body(servers: dict[str, Server], subs: Subscribers) -> None:
        for name, srv in servers.items():
            if not name.startswith("rocketws") or uses_redis(name):
                continue  # one RocketWS process on the memory broker: its own utime/stime
            bench.progress.step(f"split: connecting {n:,} subscribers to {name}")
            subs.connect(name, srv, n, timeout=cfg.timeout * 5)
            _emits(bench, srv, subs, name, n, 2)  # warm-up
            for rep in range(cfg.repeat):
                bench.progress.step(f"split {name} N={n:,}: {k} emits, rep {rep + 1}/{cfg.repeat}")
                cpu0, (u0, s0) = srv.cpu(), _utime_stime(srv.pid)
                emit_ms = _emits(bench, srv, subs, name, n, k)
                cpu = srv.cpu() - cpu0
                u1, s1 = _utime_stime(srv.pid)
                user, sys_ = (u1 - u0) / CLK_TCK, (s1 - s0) / CLK_TCK
                perf: dict[str, float] = {}
                if cfg.split_perf and rep == 0:
                    bench.progress.step(f"split {name} N={n:,}: the same emits under perf record")
                    perf = perf_dsos(
                        srv.pid, partial(_emits, bench, srv, subs, name, n, k), emit_ms * k / 1e3
                    )
                results.append(
                    SplitRun(
                        server=name,
                        rep=rep,
                        n=n,
                        emits=k,
                        cpu_ms_per_emit=cpu.seconds * 1e3 / k,
                        user_ms_per_emit=user * 1e3 / k,
                        sys_ms_per_emit=sys_ * 1e3 / k,
                        user_share=user / (user + sys_) if user + sys_ else 0.0,
                        us_per_socket=cpu.seconds * 1e6 / (k * n),
                        emit_ms=emit_ms,
                        perf_top=perf,
                    )
                )
            subs.ask("close", name)

    bench.with_servers(body)
    return results
