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
one after another, in turn to each server, so load from other processes falls on both
cases alike; they stay open until the servers' CPU times (schedstat, every thread) are
read, so closing costs nothing here.  Reported per
connection: the server CPU of each case, and ``connect - ping``, what a token ``connect``
adds over the cheapest request.  Medians over ``--repeat`` (default 3).

Usage::

    python -m benchmarks.connect_cpu                 # N=1,000, 3 repeats
    python -m benchmarks.connect_cpu --n 200 --repeat 1
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


def _open(port: int, request: bytes) -> tuple[socket.socket, Any]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(HANDSHAKE_TEMPLATE.format(host="127.0.0.1", port=port, extensions="").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("no upgrade answer")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(f"upgrade refused: {head[:80]!r}")
    sock.sendall(client_frame(request))
    return sock, _answer(sock)


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


def run_pair(n: int, cpus: set[int] | None) -> dict[str, float]:
    """Server CPU µs per connection of each case, both servers up at once and their
    connections made in turn (one each), so that load from elsewhere falls on both alike."""
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
        for i in range(n):
            for case in CASES:
                sock, answer = _open(servers[case].ws_port, requests[case][i])
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
    args = parser.parse_args(argv)
    server_cpus, _ = cpu_plan()
    figures: dict[str, list[float]] = {case: [] for case in CASES}
    for rep in range(args.repeat):
        pair = run_pair(args.n, server_cpus)
        for case in CASES:
            figures[case].append(pair[case])
        print(f"rep {rep + 1}: " + ", ".join(f"{c} {pair[c]:.1f} µs" for c in CASES), file=sys.stderr)
    ping, connect = (statistics.median(figures[c]) for c in ("ping", "connect"))
    added = [c - p for p, c in zip(figures["ping"], figures["connect"], strict=True)]
    print(f"N={args.n:,} connections per case, medians of {args.repeat}, server CPU per connection:")
    print(f"  upgrade + ping (anonymous)     {ping:8.1f} µs")
    print(f"  upgrade + connect (HS256)      {connect:8.1f} µs")
    runs = ", ".join(f"{a:.1f}" for a in added)
    print(f"  connect - ping                 {statistics.median(added):8.1f} µs (runs: {runs})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
