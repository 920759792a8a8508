"""The open-files limit (RLIMIT_NOFILE) against ``MAX_CONNECTIONS``, checked at start.

Every WebSocket is a file descriptor, so a process that accepts ``MAX_CONNECTIONS``
needs that many plus ``RESERVED_FILES`` for everything else (the two listening sockets,
the Redis pool and subscriber, MessagesSource clients, connect-proxy requests,
handshakes in progress, log files, the event loop's own descriptors).  At start the
soft limit is raised towards the hard one when that is enough (no privilege needed);
when even the hard limit is too low the server refuses to start with one line saying
what to change, instead of failing accepts (EMFILE) under load.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

RESERVED_FILES = 64
"""Descriptors kept for everything but WebSockets (see the module docstring)."""


class OpenFilesTooLow(Exception):
    """RLIMIT_NOFILE cannot be raised far enough for ``MAX_CONNECTIONS``."""


@dataclass(frozen=True)
class OpenFiles:
    """The limit the process runs with after ``ensure_open_files``."""

    soft: int
    hard: int
    needed: int
    raised_from: int | None  # the soft limit before it was raised (None: not raised)

    def describe(self) -> str:
        raised = "" if self.raised_from is None else f", raised from {self.raised_from}"
        return (
            f"open-files limit {self.soft} (hard {_shown(self.hard)}{raised}): "
            f"{self.needed - RESERVED_FILES} connections + {RESERVED_FILES} reserved"
        )


def _shown(limit: int) -> str:
    return "unlimited" if limit == resource.RLIM_INFINITY else str(limit)


def ensure_open_files(max_connections: int, workers: int = 1) -> OpenFiles:
    """Make RLIMIT_NOFILE fit ``max_connections`` per process, or raise OpenFilesTooLow.

    Raises the soft limit to what is needed when the hard limit allows (it is inherited
    by ``--workers`` processes); never lowers it.  ``workers`` only shapes the advice in
    the error message (how many connections the box holds with this limit).
    """
    needed = max_connections + RESERVED_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            fits = max(0, hard - RESERVED_FILES)
            raise OpenFilesTooLow(
                f"MAX_CONNECTIONS {max_connections} needs {needed} open files per process, "
                f"but the open-files limit is {soft} (hard {hard}): set MAX_CONNECTIONS to "
                f"{fits} or less (with --workers N the box holds N x that; now {workers} "
                f"worker(s)), or raise the limit (ulimit -n, systemd LimitNOFILE=)"
            )
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
        return OpenFiles(needed, hard, needed, soft)
    return OpenFiles(soft, hard, needed, None)
