"""``manage.py shell``: an interactive backend console for a RocketWS MessagesSource.

Exit codes (interactive mode always exits 0)::

    0  every command succeeded
    1  a command failed (bad input, or the server answered with a JSON-RPC error)
    2  usage error (bad --ms-conn / --ws-conn)
    3  the server could not be reached by some command
    130 interrupted (Ctrl-C outside `watch`)
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from rocketws.config import DEFAULTS
from rocketws.shell.commands import Outcome, Shell
from rocketws.shell.parsing import DEFAULT_WS_PORT, InputError

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "Shell",
    "main",
    "run_script",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130

DEFAULT_MS = str(DEFAULTS.backend)


def run_script(shell: Shell, lines: Iterable[str]) -> int:
    """Run command lines in order (stopping at ``exit``); returns the exit code."""
    failed = unreachable = False
    for line in lines:
        outcome = shell.execute(line.rstrip("\r\n"))
        if outcome is Outcome.EXIT:
            break
        failed |= outcome is Outcome.FAILED
        unreachable |= outcome is Outcome.UNREACHABLE
    if unreachable:
        return EXIT_UNREACHABLE
    return EXIT_FAILED if failed else EXIT_OK


def main(
    ms: str | None = None,
    ws: str | None = None,
    command: str | None = None,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    history: Path | None = None,
    ws_port: int = DEFAULT_WS_PORT,
    api_key: str | None = None,
) -> int:
    """Run the shell; returns the process exit code (see the module docstring).

    ``ws`` defaults to the host of ``ms`` on ``ws_port``.  With ``command``, runs its
    lines and exits.  Else, when stdin is a terminal, runs the interactive console;
    otherwise reads commands from stdin line by line.  ``api_key`` is sent with every
    request and never printed.
    """
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        shell = Shell(ms or DEFAULT_MS, ws, stdout, stderr, ws_port=ws_port, api_key=api_key)
    except InputError as exc:
        stderr.write(f"shell: {exc}\n")
        return EXIT_USAGE
    try:
        if command is not None:
            return run_script(shell, command.splitlines() or [""])
        if stdin.isatty():
            from rocketws.shell.interactive import history_path, run_interactive

            return run_interactive(shell, history=history or history_path())
        return run_script(shell, stdin)
    except KeyboardInterrupt:
        stderr.write("interrupted\n")
        return EXIT_INTERRUPTED
    finally:
        shell.client.close()
