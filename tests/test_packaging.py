"""The wheel (what `pip install .` and the Dockerfile install) holds the whole package."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(300)
def test_wheel_holds_every_file_of_the_package(tmp_path: Path) -> None:
    # An explicit package list once left rocketws.transports.websocket out: an installed
    # (not editable) RocketWS could not start.
    tracked = subprocess.run(
        ["git", "ls-files", "rocketws"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    assert "rocketws/transports/websocket/connection.py" in tracked
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "-q", "-w", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    assert "absent from the `packages` configuration" not in built.stderr
    (wheel,) = tmp_path.glob("rocketws-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert sorted(set(tracked) - names) == []
