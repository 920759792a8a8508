"""Deployment files: supervisor/rocketws.conf under a real supervisord; the Dockerfile."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from .support import ROOT, free_port, wait_until


def _health(port: int) -> dict[str, Any] | None:
    try:
        health: dict[str, Any] = requests.get(f"http://127.0.0.1:{port}/health", timeout=2).json()
        return health
    except requests.RequestException:
        return None


def test_supervisor_program_runs_restarts_and_stops_with_term(tmp_path: Path) -> None:
    supervisord = Path(sys.executable).with_name("supervisord")
    if not supervisord.exists():
        pytest.fail("supervisord is not installed (it is a dev dependency)")
    section = (ROOT / "supervisor" / "rocketws.conf").read_text()
    ws_port, ms_port = free_port(), free_port()
    section = (
        section.replace("/opt/rocketws/.venv/bin/python", sys.executable)
        .replace("/opt/rocketws", str(ROOT))
        .replace("/var/log/rocketws", str(tmp_path))
        .replace(":58000", f":{ws_port}")
        .replace(":59999", f":{ms_port}")
    )
    section = re.sub(r"^user=.*$", "", section, flags=re.M)  # the test is not root-dependent
    assert "stopsignal=TERM" in section and "autorestart=true" in section
    sock = tmp_path / "supervisor.sock"
    conf = tmp_path / "supervisord.conf"
    conf.write_text(
        f"[supervisord]\nnodaemon=true\nlogfile={tmp_path}/supervisord.log\npidfile={tmp_path}/s.pid\n"
        f"[unix_http_server]\nfile={sock}\n"
        "[rpcinterface:supervisor]\n"
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
        f"[supervisorctl]\nserverurl=unix://{sock}\n" + section
    )
    ctl = [str(supervisord.with_name("supervisorctl")), "-c", str(conf)]
    proc = subprocess.Popen(
        [str(supervisord), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        wait_until(lambda: _health(ms_port), timeout=30, interval=0.1)

        def pid() -> int:
            out = subprocess.run([*ctl, "pid", "rocketws"], capture_output=True, text=True, timeout=30)
            return int(out.stdout.strip()) if out.stdout.strip().isdigit() else 0

        first = wait_until(pid, timeout=10)
        os.kill(first, signal.SIGKILL)  # a crash: supervisord restarts it
        wait_until(lambda: pid() not in (0, first) and _health(ms_port), timeout=30, interval=0.1)
        stop = subprocess.run([*ctl, "stop", "rocketws"], capture_output=True, text=True, timeout=30)
        assert "stopped" in stop.stdout, stop.stdout
        log = (tmp_path / "supervisord.log").read_text()
        assert (
            "exited: rocketws (exit status 0; expected)" in log or "stopped: rocketws (exit status 0)" in log
        ), log
        stderr_log = (tmp_path / "stderr.log").read_text()
        assert "websocket listening on" in stderr_log and "stopped" in stderr_log
        assert "Traceback" not in stderr_log, stderr_log
    finally:
        proc.terminate()
        proc.wait(30)


def test_dockerfile_is_nonroot_with_healthcheck_and_both_ports() -> None:
    """Static checks only: no Docker engine runs on the CI machines."""
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^USER (?!root)\S+", text, re.M)
    assert re.search(r"^EXPOSE 58000 59999$", text, re.M)
    assert "HEALTHCHECK" in text and "/health" in text
    assert "--ms-conn=0.0.0.0:59999" in text
    assert "git clone" not in text and "COPY rocketws" in text
