"""How the workers of ``runserver --workers N`` see each other's figures.

The supervisor makes a private run directory (mode 0700) and gives every worker its
path (``ROCKETWS_RUN_DIR``) and the worker count (``ROCKETWS_WORKERS``).  Each worker
listens on ``worker-I.sock`` there and answers every connection with one JSON snapshot
(its metrics text and health) and closes.  The worker that receives ``/metrics`` or
``/health`` on the shared MessagesSource port (SO_REUSEPORT: the kernel picks one)
asks every other socket at once, bounded by a timeout; a worker that does not answer
counts as down.  Figures are read at the moment of the scrape, nothing is cached.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
import orjson
from gevent.server import StreamServer

from rocketws.process.supervisor import RUN_DIR_ENV, WORKER_ENV, WORKERS_ENV

logger = logging.getLogger(__name__)
ASK_TIMEOUT = 2.0  # seconds for a sibling's snapshot
MAX_SNAPSHOT_BYTES = 16 * 1024 * 1024


def socket_path(run_dir: str, worker: str) -> Path:
    return Path(run_dir) / f"worker-{worker}.sock"


class Siblings:
    """This worker's snapshot server and the client that gathers the others'."""

    def __init__(
        self, run_dir: str, worker: str, expected: int, snapshot: Callable[[], dict[str, Any]]
    ) -> None:
        self.run_dir = run_dir
        self.worker = worker
        self.expected = expected
        self._snapshot = snapshot
        self._path = socket_path(run_dir, worker)
        self._server: StreamServer | None = None

    def start(self) -> None:
        """Listen on this worker's socket (a restarted worker replaces its old one)."""
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self._path))
        listener.listen(16)
        self._server = StreamServer(listener, self._answer)
        self._server.start()

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()

    def _answer(self, sock: Any, _address: Any) -> None:
        try:
            sock.sendall(orjson.dumps(self._snapshot()))
        except OSError:
            pass
        except Exception:
            logger.exception("bug while answering a sibling worker")
        finally:
            sock.close()

    def gather(self, timeout: float = ASK_TIMEOUT) -> list[dict[str, Any]]:
        """The other workers' snapshots (those that answered within ``timeout``)."""
        paths = [p for p in sorted(Path(self.run_dir).glob("worker-*.sock")) if p != self._path]
        jobs = [gevent.spawn(_ask, str(p), timeout) for p in paths]
        gevent.joinall(jobs, timeout=timeout + 0.5)
        return [job.value for job in jobs if job.successful() and job.value is not None]


def _ask(path: str, timeout: float) -> dict[str, Any] | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    chunks: list[bytes] = []
    size = 0
    try:
        sock.connect(path)
        while size <= MAX_SNAPSHOT_BYTES:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError:
        return None  # not running (a stale socket of a worker being restarted), or stuck
    finally:
        sock.close()
    try:
        snapshot = orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError:
        return None
    return snapshot if isinstance(snapshot, dict) else None


def from_environment(snapshot: Callable[[], dict[str, Any]]) -> Siblings | None:
    """The Siblings of this worker, when the supervisor started it (else None)."""
    run_dir = os.environ.get(RUN_DIR_ENV)
    worker = os.environ.get(WORKER_ENV)
    if not run_dir or not worker:
        return None
    return Siblings(run_dir, worker, int(os.environ.get(WORKERS_ENV, "1")), snapshot)
