"""What channel presence costs on subscribe/unsubscribe, on the Redis broker.

One RocketWS server on the Redis broker (its own redis-server, both pinned to the
server's core) with three namespaces: ``plain`` (no presence: the baseline), ``p``
(``presence``) and ``j`` (``presence`` and ``join_leave``).  ``--conns`` connections each
subscribe to and unsubscribe from a channel of their own ``--ops`` times, one request at
a time, the rate limit off.  In the ``j`` case each channel has one more, idle
subscriber, who gets the ``join``/``leave`` pushes (read by the client library's
background thread).  The cases are interleaved and repeated (``--repeat``); medians of
server and redis-server CPU per subscribe+unsubscribe pair and the pairs/s are reported
with ratios to ``plain``.

Usage::

    python -m benchmarks.presence                       # 20 connections x 500 pairs, 3 runs
    python -m benchmarks.presence --conns 2 --ops 20 --repeat 1   # the smoke run's size
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from websockets.sync.client import ClientConnection, connect

from .servers import Server, cpu_plan

CASES = ("plain", "p", "j")
NAMESPACES = [{"name": "p", "presence": True}, {"name": "j", "presence": True, "join_leave": True}]


@dataclass
class PresenceRun:
    """One run of one case."""

    case: str
    pairs: int
    seconds: float
    server_us_per_pair: float
    redis_us_per_pair: float

    @property
    def pairs_per_s(self) -> float:
        return self.pairs / self.seconds


def _call(ws: ClientConnection, method: str, channel: str) -> None:
    ws.send(json.dumps({"jsonrpc": "2.0", "method": method, "params": [channel], "id": 1}))
    while True:  # pushes (join/leave of the idle subscriber's channel) are not for us
        reply = json.loads(ws.recv(timeout=10))
        if "id" in reply:
            if "result" not in reply:
                raise RuntimeError(f"{method} {channel}: {reply}")
            return


def _run_case(srv: Server, case: str, conns: int, ops: int, tag: str) -> PresenceRun:
    url = f"ws://127.0.0.1:{srv.ws_port}/"
    clients = [connect(url, compression=None, max_queue=None).__enter__() for _ in range(conns)]
    idle = (
        [connect(url, compression=None, max_queue=None).__enter__() for _ in range(conns)]
        if case == "j"
        else []
    )
    channels = [f"{case}:{tag}-{i}" if case != "plain" else f"{tag}-{i}" for i in range(conns)]
    try:
        for ws, channel in zip(idle, channels, strict=False):
            _call(ws, "subscribe", channel)
        for ws, channel in zip(clients, channels, strict=True):  # warm: Redis channel subscribed
            _call(ws, "subscribe", channel)
            _call(ws, "unsubscribe", channel)
        errors: list[BaseException] = []

        def work(ws: ClientConnection, channel: str) -> None:
            try:
                for _ in range(ops):
                    _call(ws, "subscribe", channel)
                    _call(ws, "unsubscribe", channel)
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        threads = [threading.Thread(target=work, args=pair) for pair in zip(clients, channels, strict=True)]
        cpu0, redis0, t0 = srv.cpu(), srv.redis_cpu_ns() or 0, time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.monotonic() - t0
        cpu, redis_ns = srv.cpu() - cpu0, (srv.redis_cpu_ns() or 0) - redis0
        if errors:
            raise errors[0]
    finally:
        for ws in clients + idle:
            ws.close()
    pairs = conns * ops
    return PresenceRun(case, pairs, seconds, cpu.seconds * 1e6 / pairs, redis_ns / 1e3 / pairs)


def run(conns: int = 20, ops: int = 500, repeat: int = 3) -> dict[str, Any]:
    """Every case ``repeat`` times, interleaved; the runs and the medians with ratios."""
    server_cpus, _load = cpu_plan()
    env = {
        "ROCKETWS_NAMESPACES": json.dumps(NAMESPACES),
        "ROCKETWS_RATE_LIMIT": "0",
    }  # one client: many calls
    srv = Server("rocketws-redis", cpus=server_cpus, env=env)
    srv.start()
    runs: list[PresenceRun] = []
    try:
        for r in range(repeat):
            for case in CASES:
                runs.append(_run_case(srv, case, conns, ops, f"r{r}"))
    finally:
        srv.cleanup()
    return {"conns": conns, "ops": ops, "repeat": repeat, "runs": [asdict(x) for x in runs], **summary(runs)}


def summary(runs: Iterable[PresenceRun]) -> dict[str, Any]:
    """Medians per case and their ratios to ``plain``."""
    by_case: dict[str, list[PresenceRun]] = {}
    for r in runs:
        by_case.setdefault(r.case, []).append(r)
    medians = {
        case: {
            "server_us_per_pair": statistics.median(r.server_us_per_pair for r in rs),
            "redis_us_per_pair": statistics.median(r.redis_us_per_pair for r in rs),
            "pairs_per_s": statistics.median(r.pairs_per_s for r in rs),
        }
        for case, rs in by_case.items()
    }
    base = medians.get("plain")
    ratios = {}
    if base:
        for case, m in medians.items():
            ratios[case] = {k: m[k] / base[k] if base[k] else float("nan") for k in m}
    return {"medians": medians, "ratios": ratios}


def format_summary(result: dict[str, Any]) -> str:
    lines = [
        f"presence on Redis: {result['conns']} connections x {result['ops']} subscribe+unsubscribe pairs, "
        f"medians of {result['repeat']}",
        "| case | server µs/pair | redis µs/pair | pairs/s | server ratio | redis ratio | pairs/s ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for case in CASES:
        m, q = result["medians"][case], result["ratios"][case]
        lines.append(
            f"| {case} | {m['server_us_per_pair']:.0f} | {m['redis_us_per_pair']:.0f} "
            f"| {m['pairs_per_s']:.0f} "
            f"| {q['server_us_per_pair']:.2f} | {q['redis_us_per_pair']:.2f} | {q['pairs_per_s']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.presence", description=__doc__.splitlines()[0])
    p.add_argument("--conns", type=int, default=20)
    p.add_argument("--ops", type=int, default=500)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--json", help="also write the result to this file")
    args = p.parse_args(argv)
    result = run(args.conns, args.ops, args.repeat)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    print(format_summary(result))


if __name__ == "__main__":
    main()
