"""Linux /proc readings of a process this benchmark started, and stopping it by PID."""

from __future__ import annotations

import os
import signal
import subprocess

CLK_TCK = os.sysconf("SC_CLK_TCK")


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


def descendants(pid: int) -> list[int]:
    """``pid``'s children, their children, ... (/proc/<pid>/task/*/children)."""
    out: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tids = os.listdir(f"/proc/{parent}/task")
        except FileNotFoundError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{parent}/task/{tid}/children") as f:
                    kids = [int(x) for x in f.read().split()]
            except (FileNotFoundError, ProcessLookupError):
                continue
            out.extend(kids)
            todo.extend(kids)
    return out


def tree_schedstat_ns(pid: int) -> int:
    """``schedstat_ns`` of ``pid`` and every process below it (``--workers``)."""
    return sum(schedstat_ns(p) for p in [pid, *descendants(pid)])


def tree_stat_ticks(pid: int) -> int:
    total = 0
    for p in [pid, *descendants(pid)]:
        try:
            total += stat_ticks(p)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def tree_rss_kb(pid: int) -> int:
    """``rss_kb`` of ``pid`` and every process below it."""
    total = 0
    for p in [pid, *descendants(pid)]:
        try:
            total += rss_kb(p)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def write_calls(pid: int) -> int:
    """write(2)-family calls so far of ``pid`` (/proc/<pid>/io ``syscw``): RocketWS writes
    WebSockets with os.write, so this counts its socket writes (send(2) is not counted)."""
    try:
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                if line.startswith("syscw:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0
    return 0


def tree_write_calls(pid: int) -> int:
    """``write_calls`` of ``pid`` and every process below it."""
    return sum(write_calls(p) for p in [pid, *descendants(pid)])


def stat_ticks(pid: int) -> int:
    """utime + stime of ``pid`` so far, in clock ticks (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        # fields after the ")" of comm: utime and stime are fields 14 and 15 (1-based)
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])


def rss_kb(pid: int) -> int:
    """Resident set size of ``pid`` (VmRSS, KiB)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc status")


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """SIGTERM a process this benchmark started (by PID); SIGKILL it after ``timeout``."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
