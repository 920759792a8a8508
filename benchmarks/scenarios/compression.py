"""``compression``: RocketWS with permessage-deflate (RFC 7692) on vs off, same clients.

Two servers: ``rocketws`` (compression off, the default) and ``rocketws-deflate``
(``ROCKETWS_COMPRESSION=1``); every subscriber offers ``permessage-deflate;
client_max_window_bits`` as browsers do, so the only difference is the server setting.
Whatever ``--servers`` says, these two run (the peer has no part in it).

- ``fanout`` part: N subscribers, M emits of a ~1 KB JSON object (a realistic market-data
  push, not a run of one letter) in requests of B emits: server CPU µs per delivery,
  bytes on the wire per delivery (frame header included), deliveries/s.
- ``idle`` part: N subscribed connections on a fresh server: RSS per connection.

The summary's ``rocketws-deflate/rocketws`` ratio is on/off.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from ..harness import CHANNEL, Bench, RunResult, Subscribers, check_emit_response, send_emits
from ..servers import Server

SERVERS = ("rocketws", "rocketws-deflate")
OFFER = "permessage-deflate; client_max_window_bits"  # what Chromium offers


def market_data(seed: int = 7) -> dict[str, Any]:
    """A ~1 KB JSON document: 12 quotes with varied symbols, prices and sizes."""
    rng = random.Random(seed)
    venues = ["XNAS", "XNYS", "BATS", "ARCX"]
    quotes = []
    for _ in range(12):
        symbol = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(rng.randint(3, 4)))
        mid = rng.uniform(5, 900)
        quotes.append(
            {
                "s": symbol,
                "bid": round(mid - rng.uniform(0.01, 0.2), 2),
                "ask": round(mid + rng.uniform(0.01, 0.2), 2),
                "bsz": rng.randint(1, 5000),
                "asz": rng.randint(1, 5000),
                "v": rng.choice(venues),
            }
        )
    return {"type": "quotes", "seq": rng.randint(10**6, 10**7), "quotes": quotes}


@dataclass
class CompressionRun(RunResult):
    SCENARIO: ClassVar[str] = "compression"
    REPORTS_COMPLETE: ClassVar[bool] = True
    CASE: ClassVar[tuple[str, ...]] = ("part", "n", "b")
    METRICS: ClassVar[tuple[str, ...]] = (
        "us_per_delivery",
        "wire_bytes_per_delivery",
        "deliveries_per_s",
        "bytes_per_connection",
    )

    part: str  # "fanout" or "idle"
    n: int
    b: int  # emits per request (0 for idle)
    m: int  # emits (0 for idle)
    payload_bytes: int  # of the JSON push, uncompressed
    deliveries: int
    complete: bool
    # fanout
    cpu_s: float | None
    us_per_delivery: float | None
    wire_bytes_per_delivery: float | None
    deliveries_per_s: float | None
    # idle
    rss_before_kb: int | None
    rss_after_kb: int | None
    bytes_per_connection: float | None


def _fanout(bench: Bench, srv: Server, subs: Subscribers, b: int, rep: int, data: Any) -> CompressionRun:
    cfg = bench.cfg
    requests = max(1, -(-cfg.compression_m // b))
    m = requests * b
    bench.progress.step(f"compression fanout {srv.name} N={cfg.compression_n:,} M={m:,} B={b} rep {rep + 1}")
    subs.ask("reset", srv.name)
    cpu0 = srv.cpu()
    t0 = time.monotonic_ns()
    res = send_emits(srv, data, b, requests, 1, cfg.timeout * 10)
    expected = cfg.compression_n * m
    st = subs.wait_frames(srv.name, expected, cfg.timeout, bench.progress)
    cpu = srv.cpu() - cpu0
    check_emit_response(res.first_body, b, cfg.compression_n)
    delivered = st["frames"]
    return CompressionRun(
        server=srv.name,
        rep=rep,
        part="fanout",
        n=cfg.compression_n,
        b=b,
        m=m,
        payload_bytes=_payload_bytes(data),
        deliveries=delivered,
        complete=delivered == expected and res.errors == 0,
        cpu_s=cpu.seconds,
        us_per_delivery=cpu.seconds * 1e6 / max(1, delivered),
        wire_bytes_per_delivery=st["wire_bytes"] / max(1, delivered),
        deliveries_per_s=delivered / (max(1, st["last_frame_ns"] - t0) / 1e9),
        rss_before_kb=None,
        rss_after_kb=None,
        bytes_per_connection=None,
    )


def _idle(bench: Bench, name: str, subs: Subscribers, rep: int) -> CompressionRun:
    cfg = bench.cfg
    n = cfg.compression_idle_n
    bench.progress.step(f"compression idle {name} N={n:,} rep {rep + 1}")
    srv = bench.start_server(name)
    try:
        rss0 = srv.rss_kb()
        subs.connect(name, srv, n, timeout=cfg.timeout * 5, extensions=OFFER)
        health = srv.health()
        rss1 = srv.rss_kb()
        subs.ask("close", name)
    finally:
        srv.cleanup()
    return CompressionRun(
        server=name,
        rep=rep,
        part="idle",
        n=n,
        b=0,
        m=0,
        payload_bytes=0,
        deliveries=0,
        complete=health.get("connections") == n,
        cpu_s=None,
        us_per_delivery=None,
        wire_bytes_per_delivery=None,
        deliveries_per_s=None,
        rss_before_kb=rss0,
        rss_after_kb=rss1,
        bytes_per_connection=(rss1 - rss0) * 1024 / n,
    )


def _payload_bytes(data: Any) -> int:
    import orjson

    push = {"jsonrpc": "2.0", "method": "message", "params": {"channel": CHANNEL, "data": data, "ts": 0.0}}
    return len(orjson.dumps(push))


def run(bench: Bench) -> list[CompressionRun]:
    cfg = bench.cfg
    data = market_data()
    results: list[CompressionRun] = []
    servers: dict[str, Server] = {}
    subs = bench.subscribers()
    try:
        for name in SERVERS:
            servers[name] = bench.start_server(name)
            bench.progress.step(f"compression: connecting {cfg.compression_n:,} subscribers to {name}")
            subs.connect(name, servers[name], cfg.compression_n, extensions=OFFER)
        for rep in range(cfg.repeat):
            for b in cfg.batches:
                for srv in servers.values():  # interleaved: off, on, off, ...
                    results.append(_fanout(bench, srv, subs, b, rep, data))
        for name in SERVERS:
            subs.ask("close", name)
        for srv in servers.values():
            srv.cleanup()
        servers.clear()
        for rep in range(cfg.repeat):
            for name in SERVERS:
                results.append(_idle(bench, name, subs, rep))
    finally:
        subs.close()
        for srv in servers.values():
            srv.cleanup()
    return results
