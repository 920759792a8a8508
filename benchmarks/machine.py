"""The setup a figure was measured on: machine, Python, library versions and commits."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from .redisproc import redis_version

REPO = Path(__file__).resolve().parent.parent
LIBRARIES = ("gevent", "websockets", "aiohttp", "orjson", "jsonrpcserver")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()


def commits() -> dict[str, Any]:
    """HEAD, the last commit that touched rocketws/, and whether rocketws/ is modified."""
    try:
        return {
            "commit": _git("rev-parse", "HEAD"),
            "engine_commit": _git("log", "-1", "--format=%H", "--", "rocketws"),
            "rocketws_dirty": bool(_git("status", "--porcelain", "--", "rocketws")),
        }
    except (OSError, subprocess.CalledProcessError):
        return {"commit": "", "engine_commit": "", "rocketws_dirty": False}


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for mod in LIBRARIES:
        try:
            versions[mod] = version(mod)
        except PackageNotFoundError:
            versions[mod] = None
    return versions


def machine_info() -> dict[str, Any]:
    git = commits()
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg": os.getloadavg(),
        "commit": git["commit"],
        "engine_commit": git["engine_commit"],  # last commit that touched rocketws/
        "rocketws_dirty": git["rocketws_dirty"],
        "versions": library_versions(),
        "redis_server": redis_version(),
    }


def describe(info: dict[str, Any]) -> str:
    """One line: cores, CPU, Python, commit and the engine's commit."""
    return (
        f"machine: {info['nproc']} x {info['cpu_model']}, "
        f"Python {info['python']}, commit {info['commit'][:12]}, "
        f"engine (rocketws/) at {info['engine_commit'][:12]}"
        f"{' (rocketws/ modified)' if info['rocketws_dirty'] else ''}"
    )
