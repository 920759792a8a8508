"""Run the configured scenarios against the servers and build the report (results.json)."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson

from .config import SCENARIOS, Config
from .harness import Bench, Progress
from .machine import machine_info
from .redisproc import redis_server_binary
from .report import summarize, write_plot
from .scenarios import SCENARIOS as SCENARIO_TABLE
from .servers import KNOWN_SERVERS, cpu_plan
from .wsclient import raise_nofile_limit

RESULT_TYPES = [s.result for s in SCENARIO_TABLE.values()]


def check(cfg: Config) -> None:
    """Raise ValueError for an unknown scenario or server, or a missing redis-server."""
    unknown = [s for s in cfg.scenarios if s not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenario(s) {unknown}; choose from {SCENARIOS}")
    unknown = [s for s in cfg.servers if s not in KNOWN_SERVERS]
    if unknown:
        raise ValueError(f"unknown server(s) {unknown}; choose from {KNOWN_SERVERS}")
    redis_needed = any(s.startswith("rocketws-redis") for s in cfg.servers) or "recovery" in cfg.scenarios
    if redis_needed and redis_server_binary() is None:
        raise ValueError("rocketws-redis needs redis-server on PATH (bash scripts/sysdeps.sh)")


def run(cfg: Config) -> dict[str, Any]:
    """Run the configured scenarios; returns the report (and writes it when cfg.out)."""
    check(cfg)
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
        runs = [r.as_dict() for r in bench.runs]
        return {
            "started": started,
            "duration_s": time.time() - started,
            "machine": info,
            "pinning": {
                "server_cpus": sorted(server_cpus) if cfg.pin and server_cpus else None,
                "load_cpus": sorted(load_cpus) if cfg.pin and load_cpus else None,
            },
            "config": asdict(cfg),
            "summary": summarize(runs, RESULT_TYPES),
            "runs": runs,
        }

    def save(rep: dict[str, Any]) -> None:
        if out is not None:
            data = orjson.dumps(rep, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
            (out / "results.json").write_bytes(data)

    try:
        for name, scenario in SCENARIO_TABLE.items():
            if name in cfg.scenarios:
                bench.runs.extend(scenario.run(bench))
                save(report())  # a crash later keeps what was measured so far
    finally:
        bench.progress.done()
    final = report()
    save(final)
    if out is not None and cfg.plot:
        plot = out / "bench.png"
        final["plot"] = str(plot) if write_plot(final["summary"], plot) else None
    return final
