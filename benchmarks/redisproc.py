"""A private redis-server for the ``rocketws-redis`` benchmark server.

Same approach as tests/redis_fixtures.py (127.0.0.1, an ephemeral port, no persistence),
without pytest: the benchmark starts one per ``rocketws-redis`` server, pins it to the
server's core, reads its CPU time from /proc, and stops it by PID.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .procstat import CLK_TCK, schedstat_ns, stat_ticks, stop_process


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def redis_server_binary() -> str | None:
    return shutil.which("redis-server")


def redis_version() -> str | None:
    """``redis-server --version`` of the binary on PATH (None without one)."""
    binary = redis_server_binary()
    if binary is None:
        return None
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def redis_server_command(binary: str, port: int, workdir: str | os.PathLike[str]) -> list[str]:
    """A private, non-persistent redis-server on 127.0.0.1:``port`` (foreground)."""
    return [
        binary,
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
        "--daemonize",
        "no",
        "--protected-mode",
        "yes",
    ]


class RedisProcess:
    """One redis-server this benchmark started, optionally pinned to ``cpus``."""

    def __init__(self, cpus: set[int] | None = None) -> None:
        self.cpus = cpus
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.workdir = ""
        self.version = ""

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 10.0, attempts: int = 3) -> RedisProcess:
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError(
                "rocketws-redis needs a redis-server binary on PATH "
                "(bash scripts/sysdeps.sh, or apt-get install redis-server)"
            )
        self.version = redis_version() or ""
        self.workdir = tempfile.mkdtemp(prefix="bench-redis-")
        cpus = self.cpus

        def pin() -> None:
            if cpus:
                os.sched_setaffinity(0, cpus)

        for _ in range(attempts):  # the free port may be taken between probe and bind
            self.port = free_port()
            log = open(Path(self.workdir) / "redis.log", "ab")  # noqa: SIM115
            self.proc = subprocess.Popen(
                redis_server_command(binary, self.port, self.workdir),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=pin,
            )
            log.close()
            deadline = time.monotonic() + timeout
            while not ping(self.port):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.01)
            else:
                return self
            self.stop()
        raise RuntimeError(f"redis-server did not start; log in {self.workdir}/redis.log")

    def cpu_ns(self) -> int:
        """CPU time of every redis-server thread so far (schedstat ns, else stat ticks)."""
        total = schedstat_ns(self.pid)
        if total:
            return total
        return stat_ticks(self.pid) * 1_000_000_000 // CLK_TCK

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the redis-server this object started (by PID), SIGKILL if it lingers."""
        stop_process(self.proc, timeout)

    def cleanup(self) -> None:
        self.stop()
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = ""
