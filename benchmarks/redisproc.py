"""A private redis-server for the ``rocketws-redis`` benchmark server.

Same approach as tests/redis_fixtures.py (127.0.0.1, an ephemeral port, no persistence),
without pytest: the benchmark starts one per ``rocketws-redis`` server, pins it to the
server's core, reads its CPU time from /proc, and stops it by PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


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


def schedstat_ns(pid: int) -> int:
    """CPU ns so far of every thread of ``pid`` (/proc schedstat; 0 if unavailable)."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (FileNotFoundError, ProcessLookupError):
                continue
    except FileNotFoundError:
        return 0
    return total


def stop_process(proc: subprocess.Popen | None, timeout: float) -> None:
    """SIGTERM a process this benchmark started (by PID); SIGKILL it after ``timeout``."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def redis_server_binary() -> str | None:
    return shutil.which("redis-server")


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
        self.version = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
        self.workdir = tempfile.mkdtemp(prefix="bench-redis-")
        cpus = self.cpus

        def pin() -> None:
            if cpus:
                os.sched_setaffinity(0, cpus)

        for _ in range(attempts):  # the free port may be taken between probe and bind
            self.port = free_port()
            log = open(Path(self.workdir) / "redis.log", "ab")  # noqa: SIM115
            self.proc = subprocess.Popen(
                [
                    binary, "--bind", "127.0.0.1", "--port", str(self.port),
                    "--save", "", "--appendonly", "no", "--dir", self.workdir,
                    "--daemonize", "no", "--protected-mode", "yes",
                ],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
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
        with open(f"/proc/{self.pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return (int(rest[11]) + int(rest[12])) * 1_000_000_000 // os.sysconf("SC_CLK_TCK")

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the redis-server this object started (by PID), SIGKILL if it lingers."""
        stop_process(self.proc, timeout)

    def cleanup(self) -> None:
        self.stop()
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = ""
