"""A private redis-server for tests: 127.0.0.1, an ephemeral port, no persistence.

The fixtures are registered in conftest.py.
Tests are skipped when no ``redis-server`` binary is on PATH (``make test`` installs it
through scripts/sysdeps.sh).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.redisproc import redis_server_command

from .support import free_port, wait_until


class RedisServer:
    """One redis-server process this test run started; ``stop``/``start`` keep the port."""

    def __init__(self, workdir: Path, port: int | None = None, extra: tuple[str, ...] = ()) -> None:
        """``extra``: more redis-server arguments (later ones win: ``--appendonly yes``)."""
        self.workdir = workdir
        self.port = port or free_port()
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start on ``self.port`` and wait until it answers PING."""
        binary = shutil.which("redis-server")
        if binary is None:
            if os.environ.get("CI"):  # CI runs `make test`, which installs it: never skip there
                pytest.fail("redis-server not on PATH in CI (scripts/sysdeps.sh should install it)")
            pytest.skip("redis-server not on PATH (run: bash scripts/sysdeps.sh)")
        log = open(self.workdir / f"redis-{self.port}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [*redis_server_command(binary, self.port, self.workdir), *self.extra],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        proc = self.proc

        def answers() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {proc.returncode}; see {self.workdir}")
            return self.ping()

        try:
            wait_until(answers, timeout, what=f"redis-server to answer PING on port {self.port}")
        except AssertionError:
            self.stop()
            raise

    def ping(self) -> bool:
        """Whether the server answers PING now."""
        try:
            return self.command("PING").startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Kill the process this object started (SIGKILL: an abrupt outage) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def command(self, *args: str | bytes) -> bytes:
        """Send one command over a fresh socket; return the raw first reply chunk."""
        parts = [a.encode() if isinstance(a, str) else a for a in args]
        payload = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
            sock.sendall(payload)
            return sock.recv(65536)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server shared by the tests of one module."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server for one test (which may stop and restart it)."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
