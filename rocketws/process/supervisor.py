"""``runserver --workers N``: N server processes sharing both ports (SO_REUSEPORT).

The supervisor (this module, plain blocking Python: no gevent) starts each worker as
``rocketws runserver`` with concrete ports and ``ROCKETWS_WORKER_ID`` set; a worker
listens with SO_REUSEPORT, so the kernel spreads new connections over the workers.
Every worker is a full node with its own hub, joined to the others through the Redis
broker.  The supervisor relays the workers' output (prefixed ``[worker I]``), restarts a
worker that exits unasked (with capped backoff, logged), and on SIGTERM/SIGINT passes
SIGTERM to every worker, waits for them to drain, and exits 0.  With TLS configured,
SIGHUP is passed to every worker (each reloads its certificate).  With LOG_FORMAT json
the workers' lines are relayed as they are (each names its ``worker``), so the output
stays one JSON object per line.  The supervisor makes a private run directory for the
workers' snapshot sockets (``process/siblings.py``: ``/metrics`` and ``/health`` answer
for every worker) and removes it on exit.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

from rocketws.config import Address, Config

logger = logging.getLogger(__name__)

WORKER_ENV = "ROCKETWS_WORKER_ID"
RUN_DIR_ENV = "ROCKETWS_RUN_DIR"  # the workers' snapshot sockets (process/siblings.py)
WORKERS_ENV = "ROCKETWS_WORKERS"  # how many workers /health expects
_READY = ("websocket listening on", "messages source listening on")


def _bind(address: Address, listen: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((address.host, address.port))
        if listen:
            sock.listen(1024)
    except BaseException:
        sock.close()
        raise
    return sock


def reuse_port_listener(address: Address) -> socket.socket:
    """A listening TCP socket on ``address`` that other workers may bind too."""
    return _bind(address, listen=True)


def reserve_port(address: Address) -> tuple[Address, socket.socket]:
    """Bind (without listening) so port 0 becomes a concrete port every worker can share.

    Keep the returned socket open while workers run: it holds the port.
    """
    sock = _bind(address, listen=False)
    return Address(address.host, int(sock.getsockname()[1])), sock


def exit_with_parent(stop: Callable[[], None], interval: float = 0.5) -> None:
    """In a worker: call ``stop`` if the supervisor dies (runs as a greenlet)."""
    import gevent

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            gevent.sleep(interval)
        logger.warning("supervisor (pid %d) is gone; stopping this worker", parent)
        stop()

    gevent.spawn(watch)


@dataclass
class _Worker:
    index: int
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    ready: threading.Event = field(default_factory=threading.Event)
    restarts: int = 0
    restart_at: float = 0.0
    relay: threading.Thread | None = None


class Supervisor:
    """Runs and watches the worker processes of one ``runserver --workers N``."""

    def __init__(self, config: Config, workers: int, *, restart_cap: float = 10.0) -> None:
        self.config = config
        self.count = workers
        self.restart_cap = restart_cap
        self._stop = threading.Event()
        self._workers = [_Worker(i + 1) for i in range(workers)]
        self._reserved: list[socket.socket] = []
        self._out_lock = threading.Lock()
        self._run_dir = ""

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; return the exit status (1 if workers cannot start)."""
        self._run_dir = tempfile.mkdtemp(prefix="rocketws-run-")  # mode 0700
        ws, ws_sock = reserve_port(self.config.websocket)
        ms, ms_sock = reserve_port(self.config.backend)
        self._reserved = [ws_sock, ms_sock]
        self._args = [f"--ws-conn={ws}", f"--ms-conn={ms}", f"--broker={self.config.broker}"]
        if self.config.tls_cert is not None and self.config.tls_key is not None:
            self._args += [f"--tls-cert={self.config.tls_cert}", f"--tls-key={self.config.tls_key}"]
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._stop.set())
        if self.config.tls_cert is not None:
            signal.signal(signal.SIGHUP, lambda *_: self._pass_on(signal.SIGHUP))
        try:
            for worker in self._workers:
                self._spawn(worker)
            if not self._wait_ready():
                return 1
            host = f"[{ws.host}]" if ":" in ws.host else ws.host
            mhost = f"[{ms.host}]" if ":" in ms.host else ms.host
            tls = self.config.tls_cert is not None
            logger.info(
                "all %d workers ready; websocket on %s://%s:%d/, messages source on %s://%s:%d/",
                self.count,
                "wss" if tls and self.config.tls_websocket else "ws",
                host,
                ws.port,
                "https" if tls and self.config.tls_backend else "http",
                mhost,
                ms.port,
            )
            self._watch()
            return 0
        finally:
            self._shutdown()
            for sock in self._reserved:
                sock.close()
            shutil.rmtree(self._run_dir, ignore_errors=True)

    # -- workers ------------------------------------------------------------------------

    def _spawn(self, worker: _Worker) -> None:
        env = {
            **os.environ,
            WORKER_ENV: str(worker.index),
            RUN_DIR_ENV: self._run_dir,
            WORKERS_ENV: str(self.count),
            "PYTHONUNBUFFERED": "1",
        }
        path = os.pathsep.join(p for p in (sys.path[0], env.get("PYTHONPATH")) if p)
        env["PYTHONPATH"] = path
        worker.ready.clear()
        worker.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys; from rocketws.process.cli import main; sys.exit(main(sys.argv[1:]))",
                "runserver",
                *self._args,
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        worker.started_at = time.monotonic()
        logger.info("worker %d started (pid %d)", worker.index, worker.proc.pid)
        assert worker.proc.stdout is not None
        worker.relay = threading.Thread(target=self._relay, args=(worker, worker.proc.stdout), daemon=True)
        worker.relay.start()

    def _pass_on(self, sig: int) -> None:
        """Send ``sig`` to every running worker (SIGHUP: reload the TLS certificate)."""
        for worker in self._workers:
            if worker.proc is not None and worker.proc.poll() is None:
                worker.proc.send_signal(sig)
        logger.info("passed %s to the workers", signal.Signals(sig).name)

    def _relay(self, worker: _Worker, stream: IO[bytes]) -> None:
        seen: set[str] = set()
        prefix = b"" if self.config.log_format == "json" else f"[worker {worker.index}] ".encode()
        for line in stream:
            with self._out_lock:
                sys.stderr.buffer.write(prefix + line)
                sys.stderr.buffer.flush()
            if not worker.ready.is_set():
                text = line.decode(errors="replace")
                seen.update(marker for marker in _READY if marker in text)
                if len(seen) == len(_READY):
                    worker.ready.set()

    def _wait_ready(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            while not worker.ready.wait(0.05):
                assert worker.proc is not None
                if worker.proc.poll() is not None or time.monotonic() > deadline:
                    logger.error(
                        "worker %d failed to start (exit status %s); stopping",
                        worker.index,
                        worker.proc.poll(),
                    )
                    return False
                if self._stop.is_set():
                    return False
        return True

    def _watch(self) -> None:
        while not self._stop.wait(0.1):
            now = time.monotonic()
            for worker in self._workers:
                proc = worker.proc
                if proc is None:
                    if now >= worker.restart_at:
                        self._spawn(worker)
                    continue
                status = proc.poll()
                if status is None:
                    continue
                if now - worker.started_at > 30:
                    worker.restarts = 0  # it ran fine for a while: restart at once
                delay = 0.0
                if worker.restarts:
                    delay = min(self.restart_cap, 0.25 * (2**worker.restarts))
                worker.restarts += 1
                worker.proc, worker.restart_at = None, now + delay
                how = f"signal {-status}" if status < 0 else f"status {status}"
                logger.error(
                    "worker %d (pid %d) exited with %s; restarting in %.1f s",
                    worker.index,
                    proc.pid,
                    how,
                    delay,
                )

    def _shutdown(self) -> None:
        live = [w.proc for w in self._workers if w.proc is not None and w.proc.poll() is None]
        for proc in live:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.config.shutdown_timeout + 5
        for proc in live:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.error("worker pid %d did not stop in time; killing it", proc.pid)
                proc.kill()
                proc.wait()
        for worker in self._workers:
            if worker.relay is not None:
                worker.relay.join(2)  # relay the workers' last lines before exiting
        if live:
            logger.info("all workers stopped")
