"""`runserver --workers N` end to end (issue 5 acceptance 2): SO_REUSEPORT workers
joined through a real redis-server, driven by 1,000 real WebSocket clients."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from .redis_fixtures import RedisServer
from .support import ROOT, ServerProcess, wait_until, ws_connect

CLIENTS = 1000
EMITS = 3


@pytest.fixture
def workers(redis_server: RedisServer) -> Iterator[tuple[ServerProcess, str]]:
    prefix = f"w-{uuid.uuid4().hex[:8]}:"
    srv = ServerProcess(
        args=[
            "--ws-conn=127.0.0.1:0",
            "--ms-conn=127.0.0.1:0",
            "--workers=2",
            f"--broker={redis_server.url}?prefix={prefix}&presence_ttl=2",
        ]
    ).start()
    try:
        srv.wait_log(r"all 2 workers ready", timeout=20)
        yield srv, prefix
    finally:
        pids = _worker_pids(srv)
        srv.stop()
        for pid in pids:  # never leave a worker behind, whatever happened above
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    srv.assert_no_traceback()  # the supervisor's and every worker's output


def _worker_pids(srv: ServerProcess) -> list[int]:
    return [int(p) for p in re.findall(r"worker \d+ started \(pid (\d+)\)", srv.log())]


def _per_worker_connections(url: str, prefix: str) -> list[int]:
    """Each live worker's open connections, as it reports them in Redis (presence)."""
    client = redis.Redis.from_url(url)
    try:
        ids = client.smembers(f"{prefix}nodes")
        counts = [client.get(f"{prefix}node:{i.decode() if isinstance(i, bytes) else i}") for i in ids]
        return sorted(int(c) for c in counts if c is not None)
    finally:
        client.close()


async def _client(url: str, ready: asyncio.Queue[ClientConnection]) -> ClientConnection:
    ws = await connect(url, compression=None, open_timeout=20, max_queue=None)
    await ws.send(
        json.dumps({"jsonrpc": "2.0", "method": "subscribe", "params": {"channel": "fan"}, "id": 1})
    )
    reply = json.loads(await asyncio.wait_for(ws.recv(), 20))
    assert reply["result"] == {"channel": "fan", "subscribed": True}
    return ws


async def _connect_all(url: str, n: int) -> list[ClientConnection]:
    gate = asyncio.Semaphore(100)

    async def one() -> ClientConnection:
        async with gate:
            return await _client(url, asyncio.Queue())

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def _receive(ws: ClientConnection, count: int) -> list[Any]:
    return [json.loads(await asyncio.wait_for(ws.recv(), 20))["params"]["data"] for _ in range(count)]


def test_workers_spread_1000_connections_and_every_client_gets_every_emit(
    workers: tuple[ServerProcess, str], redis_server: RedisServer
) -> None:
    srv, prefix = workers

    async def scenario() -> None:
        clients = await _connect_all(srv.ws_url, CLIENTS)
        try:

            def spread() -> list[int] | None:
                """Per-worker counts once both workers report all the clients."""
                c = _per_worker_connections(redis_server.url, prefix)
                return c if sum(c) == CLIENTS and len(c) == 2 else None

            counts = await asyncio.to_thread(wait_until, spread, 10)
            assert all(c > 0 for c in counts), counts  # both workers took connections
            print(f"connections per worker: {counts}")
            await asyncio.to_thread(
                wait_until, lambda: srv.result("total_subscribers", {"channel": "fan"}) == CLIENTS, 10
            )
            for i in range(EMITS):
                result = await asyncio.to_thread(srv.result, "emit", {"channel": "fan", "data": i})
                assert result == {"channel": "fan", "delivered": CLIENTS}
            received = await asyncio.gather(*(_receive(ws, EMITS) for ws in clients))
            assert all(r == list(range(EMITS)) for r in received)
        finally:
            await asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True)

    asyncio.run(scenario())


def test_workers_restart_a_crashed_worker(workers: tuple[ServerProcess, str]) -> None:
    srv, _ = workers
    victim = _worker_pids(srv)[0]
    os.kill(victim, signal.SIGKILL)
    srv.wait_log(rf"worker 1 \(pid {victim}\) exited with signal 9; restarting", timeout=10)
    wait_until(lambda: len(_worker_pids(srv)) == 3, timeout=10)
    assert srv.result("ping") == "pong"


def test_workers_sigterm_drains_and_stops_every_worker(workers: tuple[ServerProcess, str]) -> None:
    srv, _ = workers
    pids = _worker_pids(srv)
    client = ws_connect(srv.ws_url)
    assert srv.proc is not None
    srv.proc.send_signal(signal.SIGTERM)
    with pytest.raises(ConnectionClosed) as closed:
        client.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert srv.proc.wait(20) == 0
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert srv.log().count("INFO rocketws.server: stopped") == 2


def test_workers_without_redis_broker_are_refused() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "manage.py"),
            "runserver",
            "--workers=2",
            "--ws-conn=127.0.0.1:0",
            "--ms-conn=127.0.0.1:0",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        env={**os.environ, "ROCKETWS_BROKER": "memory"},
    )
    assert proc.returncode == 2
    assert "needs a Redis broker" in proc.stderr and "Traceback" not in proc.stderr
