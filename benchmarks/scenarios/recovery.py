"""``recovery``: N clients reconnect to a channel with M publications and recover them.

Two servers whatever ``--servers`` says: ``rocketws-history`` (memory broker) and
``rocketws-redis-history`` (Redis broker), both keeping history on every channel.
Each run first emits M publications to a fresh channel, then N clients (C at a time)
connect, ``subscribe {channel, recover: {offset: 0, epoch}}`` and read the answer with
all M publications (checked: ``recovered`` true, M of them); mode ``subscribe`` does the
same reconnects with a plain ``subscribe`` (the baseline: what the recovery adds is the
difference).  Server CPU (and Redis's) and wall time for the N clients.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson

from .. import httpload
from ..harness import Bench, RunResult, redis_seconds
from ..servers import Server
from ..wsclient import HANDSHAKE_TEMPLATE, client_frame

SERVERS = ("rocketws-history", "rocketws-redis-history")
MODES = ("recover", "subscribe")


@dataclass
class RecoveryRun(RunResult):
    SCENARIO: ClassVar[str] = "recovery"
    CASE: ClassVar[tuple[str, ...]] = ("mode", "n", "m")
    METRICS: ClassVar[tuple[str, ...]] = ("wall_s", "cpu_s", "total_us_per_client", "clients_per_s")

    mode: str
    n: int
    m: int
    concurrency: int
    wall_s: float
    cpu_s: float
    redis_cpu_s: float | None
    total_us_per_client: float
    clients_per_s: float
    answer_bytes: int  # of one answer


def _emit_history(srv: Server, channel: str, m: int) -> str:
    """Emit ``m`` publications to ``channel`` (batches of 100); return the epoch."""
    epoch = ""
    for start in range(0, m, 100):
        batch = [
            {"jsonrpc": "2.0", "method": "emit", "params": {"channel": channel, "data": "x" * 100}, "id": i}
            for i in range(start, min(m, start + 100))
        ]
        status, body = httpload.post(srv.host, srv.http_port, orjson.dumps(batch), timeout=30)
        answers = orjson.loads(body)
        if status != 200 or "result" not in answers[-1]:
            raise RuntimeError(f"{srv.name}: emit failed: {body[:300]!r}")
        epoch = answers[-1]["result"]["epoch"]
    return epoch


def _check(answer: Any, *, name: str, mode: str, m: int) -> None:
    """Raise unless ``answer`` subscribed (and, for ``recover``, recovered all ``m``)."""
    result = answer.get("result") or {}
    if mode == "recover" and (
        result.get("recovered") is not True or len(result.get("publications", ())) != m
    ):
        raise RuntimeError(f"{name}: recovery failed: {str(answer)[:300]}")
    if not result.get("subscribed"):
        raise RuntimeError(f"{name}: subscribe failed: {str(answer)[:300]}")


async def _client(srv: Server, request: bytes, check: Any) -> int:
    reader, writer = await asyncio.open_connection(srv.host, srv.ws_port)
    try:
        writer.write(HANDSHAKE_TEMPLATE.format(host=srv.host, port=srv.ws_port, extensions="").encode())
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(f"handshake refused: {head[:100]!r}")
        writer.write(request)
        first = await reader.readexactly(2)
        n = first[1] & 0x7F
        if n == 126:
            n = int.from_bytes(await reader.readexactly(2), "big")
        elif n == 127:
            n = int.from_bytes(await reader.readexactly(8), "big")
        payload = await reader.readexactly(n)
        check(orjson.loads(payload))
        return len(payload)
    finally:
        writer.close()


async def _reconnects(srv: Server, request: bytes, n: int, concurrency: int, check: Any) -> int:
    gate = asyncio.Semaphore(concurrency)
    size = 0

    async def one() -> None:
        nonlocal size
        async with gate:
            size = await _client(srv, request, check)

    await asyncio.gather(*(one() for _ in range(n)))
    return size


def run(bench: Bench) -> list[RecoveryRun]:
    cfg = bench.cfg
    results: list[RecoveryRun] = []
    servers: dict[str, Server] = {}
    try:
        for name in SERVERS:
            servers[name] = bench.start_server(name)
        for rep in range(cfg.repeat):
            for name, srv in servers.items():
                channel = f"recovery-{uuid.uuid4().hex[:8]}"
                epoch = _emit_history(srv, channel, cfg.recovery_m)
                for mode in MODES:
                    bench.progress.step(
                        f"recovery {name} {mode} N={cfg.recovery_n:,} M={cfg.recovery_m} "
                        f"rep {rep + 1}/{cfg.repeat}"
                    )
                    params: dict[str, Any] = {"channel": channel}
                    if mode == "recover":
                        params["recover"] = {"offset": 0, "epoch": epoch}
                    request = client_frame(
                        orjson.dumps({"jsonrpc": "2.0", "method": "subscribe", "params": params, "id": 1})
                    )

                    check = functools.partial(_check, name=name, mode=mode, m=cfg.recovery_m)
                    cpu0, redis0 = srv.cpu(), srv.redis_cpu_ns()
                    t0 = time.monotonic()
                    size = asyncio.run(
                        _reconnects(srv, request, cfg.recovery_n, cfg.recovery_concurrency, check)
                    )
                    wall = time.monotonic() - t0
                    cpu = (srv.cpu() - cpu0).seconds
                    redis_s = redis_seconds(srv, redis0)
                    results.append(
                        RecoveryRun(
                            server=name,
                            rep=rep,
                            mode=mode,
                            n=cfg.recovery_n,
                            m=cfg.recovery_m,
                            concurrency=cfg.recovery_concurrency,
                            wall_s=wall,
                            cpu_s=cpu,
                            redis_cpu_s=redis_s,
                            total_us_per_client=(cpu + (redis_s or 0.0)) * 1e6 / cfg.recovery_n,
                            clients_per_s=cfg.recovery_n / wall,
                            answer_bytes=size,
                        )
                    )
    finally:
        for srv in servers.values():
            srv.cleanup()
    return results
