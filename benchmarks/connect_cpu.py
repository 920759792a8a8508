"""Server CPU per connection for ``connect`` with an HS256 token, end to end over sockets.

Issue 10's target: ``connect`` with an HS256 token costs at most 60 µs of server CPU per
connection.  ``benchmarks.micro --only auth.connect_hs256`` times the core's part; this
measures the real server process.  Per repeat, two fresh RocketWS servers:

- ``ping``: anonymous mode (nothing configured); each of N connections sends one ``ping``
  after the upgrade and reads its answer (the baseline: upgrade, one request, one answer);
- ``connect``: a token secret and an audience configured; each sends ``connect {token}``
  (HS256, ``sub``, ``exp``, ``aud``, a small ``info``; a different user per connection)
  and reads the answer.

Both servers run at once (on the same core) and the connections are made by this process
in turn to each server, so load from other processes falls on both cases alike; they stay
open until the servers' CPU times (schedstat, every thread) are read, so closing costs
nothing here.  Two arrivals, each its own pair of servers:

- ``serial``: one connection at a time (upgrade, request, answer, then the next), in turn
  to each server: the worst case, as every connection finds the server's caches taken by
  the other server and this process (a ``connect`` then costs several times what it
  costs in a loop; docs/benchmarks.md#connect-with-a-token-issue-10);
- ``burst``: ``--in-flight`` connections at once (K upgrades sent, their answers read, K
  requests sent, their answers read), the next K to the other server: a reconnect storm,
  the server serving several connections per wake-up.

Reported per connection: the server CPU of each case, and ``connect - ping``, what a
token ``connect`` adds over the cheapest request.  Medians over ``--repeat`` (default 3).

Usage::

    python -m benchmarks.connect_cpu                 # N=1,000, 3 repeats, 32 in flight
    python -m benchmarks.connect_cpu --n 200 --repeat 1 --in-flight 8
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import time
from typing import Any

import jwt
import orjson

from .servers import Server, cpu_plan
from .wsclient import HANDSHAKE_TEMPLATE, client_frame

SECRET = "connect-cpu-benchmark-secret-" + "k" * 16
AUDIENCE = "bench"


def _read_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("server closed the connection")
        data += chunk
    return data


def _answer(sock: socket.socket) -> Any:
    """One unmasked server text frame's JSON (RFC 6455 5.2)."""
    head = _read_exact(sock, 2)
    size = head[1] & 0x7F
    if size == 126:
        size = int.from_bytes(_read_exact(sock, 2), "big")
    elif size == 127:
        size = int.from_bytes(_read_exact(sock, 8), "big")
    return orjson.loads(_read_exact(sock, size))


def _open(port: int, requests: list[bytes]) -> list[tuple[socket.socket, Any]]:
    """One connection per request, all at once: every upgrade sent before any answer is
    read, then every request; (socket, the request's answer) each."""
    socks = []
    upgrade = HANDSHAKE_TEMPLATE.format(host="127.0.0.1", port=port, extensions="").encode()
    for _ in requests:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        socks.append(sock)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(upgrade)
    for sock in socks:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("no upgrade answer")
            head += chunk
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"upgrade refused: {head[:80]!r}")
    for sock, request in zip(socks, requests, strict=True):
        sock.sendall(client_frame(request))
    return [(sock, _answer(sock)) for sock in socks]


def _requests(case: str, n: int) -> list[bytes]:
    if case == "ping":
        return [b'{"jsonrpc":"2.0","method":"ping","id":1}'] * n
    exp = int(time.time()) + 3600
    claims = [{"sub": f"user-{i}", "exp": exp, "aud": AUDIENCE, "info": {"name": "Bench"}} for i in range(n)]
    return [
        orjson.dumps(
            {
                "jsonrpc": "2.0",
                "method": "connect",
                "params": {"token": jwt.encode(c, SECRET, algorithm="HS256")},
                "id": 1,
            }
        )
        for c in claims
    ]


def run_pair(n: int, cpus: set[int] | None, in_flight: int = 1) -> dict[str, float]:
    """Server CPU µs per connection of each case, both servers up at once and their
    connections made in turn (``in_flight`` at once to one, then as many to the other), so
    that load from elsewhere falls on both alike."""
    envs = {
        "ping": {},
        "connect": {"ROCKETWS_TOKEN_HMAC_SECRET": SECRET, "ROCKETWS_TOKEN_AUDIENCE": AUDIENCE},
    }
    requests = {case: _requests(case, n) for case in CASES}
    servers: dict[str, Server] = {}
    socks: list[socket.socket] = []
    try:
        for case in CASES:
            servers[case] = Server("rocketws", cpus=cpus, env=envs[case]).start()
        before = {case: servers[case].cpu() for case in CASES}
        for i in range(0, n, in_flight):
            for case in CASES:
                for sock, answer in _open(servers[case].ws_port, requests[case][i : i + in_flight]):
                    socks.append(sock)
                    if "result" not in answer:
                        raise RuntimeError(f"{case} failed: {answer!r:.300}")
        return {case: (servers[case].cpu() - before[case]).seconds / n * 1e6 for case in CASES}
    finally:
        for sock in socks:
            sock.close()
        for server in servers.values():
            server.cleanup()


CASES = ("ping", "connect")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.connect_cpu", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--n", type=int, default=1000, help="connections per case (default 1000)")
    parser.add_argument("--repeat", type=int, default=3, help="repeats (default 3)")
    parser.add_argument(
        "--in-flight", type=int, default=32, help="connections at once in the burst arrival (default 32)"
    )
    args = parser.parse_args(argv)
    server_cpus, _ = cpu_plan()
    arrivals = {"serial": 1, "burst": max(1, args.in_flight)}
    figures: dict[tuple[str, str], list[float]] = {(a, c): [] for a in arrivals for c in CASES}
    for rep in range(args.repeat):
        for arrival, in_flight in arrivals.items():
            pair = run_pair(args.n, server_cpus, in_flight)
            for case in CASES:
                figures[arrival, case].append(pair[case])
            print(
                f"rep {rep + 1} {arrival}: " + ", ".join(f"{c} {pair[c]:.1f} µs" for c in CASES),
                file=sys.stderr,
            )
    print(f"N={args.n:,} connections per case, medians of {args.repeat}, server CPU per connection:")
    for arrival, in_flight in arrivals.items():
        ping, connect = (statistics.median(figures[arrival, c]) for c in CASES)
        added = [c - p for p, c in zip(figures[arrival, "ping"], figures[arrival, "connect"], strict=True)]
        runs = ", ".join(f"{a:.1f}" for a in added)
        print(f"{arrival} ({in_flight} at once):")
        print(f"  upgrade + ping (anonymous)     {ping:8.1f} µs")
        print(f"  upgrade + connect (HS256)      {connect:8.1f} µs")
        print(f"  connect - ping                 {statistics.median(added):8.1f} µs (runs: {runs})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
