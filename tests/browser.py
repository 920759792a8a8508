"""Headless Chromium driven over the DevTools protocol (CDP), for browser tests.

Chromium comes from Debian (`scripts/sysdeps.sh` installs it); the protocol is spoken
with the `websockets` client the tests already use, so no browser driver is needed.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from typing import Any

import pytest
import requests
from websockets.sync.client import connect

from .support import wait_until

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
    "--remote-debugging-address=127.0.0.1",
]


def chromium_binary() -> str:
    binary = shutil.which("chromium")
    if binary is None:
        if os.environ.get("CI"):  # `make test` installs it: never skip in CI
            pytest.fail("chromium not on PATH in CI (scripts/sysdeps.sh should install it)")
        pytest.skip("chromium not on PATH (run: bash scripts/sysdeps.sh)")
    return binary


class Browser:
    """One headless Chromium this test started (killed by PID), with one page."""

    def __init__(self, extra_args: Sequence[str] = ()) -> None:
        """``extra_args``: more Chromium flags (e.g. ``--ignore-certificate-errors-spki-list``)."""
        self.profile = tempfile.mkdtemp(prefix="rocketws-chromium-")
        self.proc = subprocess.Popen(
            [chromium_binary(), *FLAGS, *extra_args, f"--user-data-dir={self.profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        port = self._devtools_port()
        pages = requests.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        page = next(t for t in pages if t["type"] == "page")
        self.cdp = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=10).__enter__()
        self._ids = itertools.count(1)

    def _devtools_port(self) -> int:
        found: list[int] = []
        done = threading.Event()

        def scan() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                m = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
                if m and not found:
                    found.append(int(m.group(1)))
                    done.set()
            done.set()

        threading.Thread(target=scan, daemon=True).start()
        if not done.wait(30) or not found:
            self.close()
            raise RuntimeError("chromium did not start its DevTools endpoint")
        return found[0]

    def start_eval(self, expression: str) -> int:
        """Send a Runtime.evaluate that awaits a promise; collect it with ``result``."""
        rid = next(self._ids)
        self.cdp.send(
            json.dumps(
                {
                    "id": rid,
                    "method": "Runtime.evaluate",
                    "params": {"expression": expression, "awaitPromise": True, "returnByValue": True},
                }
            )
        )
        return rid

    def result(self, rid: int, timeout: float = 20.0) -> Any:
        while True:
            msg = json.loads(self.cdp.recv(timeout=timeout))
            if msg.get("id") != rid:
                continue
            res = msg["result"]
            if "exceptionDetails" in res:
                raise AssertionError(f"page error: {res['exceptionDetails']}")
            return res["result"].get("value")

    def navigate(self, url: str, timeout: float = 20.0) -> None:
        """Load ``url`` in the page (its cookies are then the page's) and wait until the
        new document has loaded."""
        rid = next(self._ids)
        self.cdp.send(json.dumps({"id": rid, "method": "Page.navigate", "params": {"url": url}}))
        while True:
            msg = json.loads(self.cdp.recv(timeout=timeout))
            if msg.get("id") == rid:
                if "errorText" in msg.get("result", {}) or "error" in msg:
                    raise AssertionError(f"navigation to {url} failed: {msg}")
                break
        loaded = (
            "new Promise((resolve) => { const done = () => resolve(location.href);"
            " if (document.readyState === 'complete') done(); else addEventListener('load', done); })"
        )
        wait_until(lambda: self.evaluate(loaded, timeout) == url, timeout, what=f"{url} loaded")

    def evaluate(self, expression: str, timeout: float = 20.0) -> Any:
        return self.result(self.start_eval(expression), timeout)

    def close(self) -> None:
        try:
            self.cdp.close()
        except Exception:
            pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        shutil.rmtree(self.profile, ignore_errors=True)
