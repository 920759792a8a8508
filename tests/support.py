"""Shared test helpers: one wait-until, one free port, a real `manage.py runserver`
subprocess, and small WebSocket client helpers.

The WebSocket frame codec for raw clients is in ``tests/wsraw.py``; plain test doubles
of the core's protocols are in ``tests/fakes.py``.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import gevent
import requests
from websockets.sync.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")
_LISTEN = re.compile(r"(websocket|messages source) listening on (\w+://[^\s\"/]+/)")  # plain or JSON lines


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago (bound, released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    predicate: Callable[[], T | None],
    timeout: float = 10.0,
    *,
    interval: float = 0.01,
    what: str | None = None,
    sleep: Callable[[float], object] = time.sleep,
) -> T:
    """Poll ``predicate`` until it returns a truthy value and return that value.

    Raises AssertionError naming ``what`` (or the predicate) after ``timeout`` seconds.
    Tests that run servers or brokers in this process's gevent hub pass
    ``sleep=gevent.sleep`` so the hub runs while the test waits.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        sleep(interval)


def wait_in_hub(predicate: Callable[[], T | None], timeout: float = 10.0, *, what: str | None = None) -> T:
    """``wait_until`` that yields to the gevent hub between polls, for tests that run a
    broker or server in this process."""
    return wait_until(predicate, timeout, interval=0.002, what=what, sleep=gevent.sleep)


def manage(
    *args: str,
    env: dict[str, str] | None = None,
    inherit_env: bool = True,
    cwd: Path = ROOT,
    stdin: str = "",
    timeout: float = 60,
    nofile: tuple[int, int] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``manage.py ARGS`` to completion (output captured as text).

    ``env`` is added to this process's environment, or with ``inherit_env=False`` to a
    bare ``PATH`` only (no ROCKETWS_* variable leaks in).  ``nofile``: the (soft, hard)
    open-files limit it runs with.
    """
    base = dict(os.environ) if inherit_env else {"PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=cwd,
        env={**base, **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=None if nofile is None else _set_nofile(nofile),
    )


def _set_nofile(limits: tuple[int, int]) -> Callable[[], None]:
    """A ``preexec_fn`` that sets RLIMIT_NOFILE in the child."""

    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, limits)

    return preexec


RUNSERVER_EPHEMERAL = ("runserver", "--ws-conn=127.0.0.1:0", "--ms-conn=127.0.0.1:0")
"""``manage.py`` arguments for a server on ephemeral loopback ports."""


class ServerProcess:
    """`manage.py runserver` on 127.0.0.1 ephemeral ports, its stderr captured.

    Nothing a test sends may put a traceback in the server log (tracebacks are for our
    bugs): ``kill`` and ``terminate`` fail the test that stops a server whose log has one.
    """

    def __init__(
        self,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        nofile: tuple[int, int] | None = None,
    ) -> None:
        self.nofile = nofile  # the (soft, hard) open-files limit it starts with
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.args = args or list(RUNSERVER_EPHEMERAL[1:])
        self.lines: list[str] = []
        self.urls: dict[str, str] = {}
        self._cond = threading.Condition()
        self.proc: subprocess.Popen[str] | None = None
        self.http = requests.Session()

    def start(self, timeout: float = 20.0) -> ServerProcess:
        proc = self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "runserver", *self.args],
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=None if self.nofile is None else _set_nofile(self.nofile),
        )
        threading.Thread(target=self._pump, daemon=True).start()
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.urls) == 2 or proc.poll() is not None, timeout)
        if not ok or len(self.urls) != 2:
            self.kill()
            raise RuntimeError("server did not start:\n" + self.log())
        return self

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line)
                m = _LISTEN.search(line)
                if m:
                    self.urls[m.group(1)] = m.group(2)
                self._cond.notify_all()

    def log(self) -> str:
        with self._cond:
            return "".join(self.lines)

    def wait_log(self, pattern: str, timeout: float = 10.0) -> str:
        rx = re.compile(pattern)
        with self._cond:
            found = self._cond.wait_for(lambda: rx.search("".join(self.lines)), timeout)
        assert found, f"log never matched {pattern!r}:\n{self.log()}"
        return found.group(0)

    @property
    def ws_url(self) -> str:
        return self.urls["websocket"]

    @property
    def ms_url(self) -> str:
        return self.urls["messages source"]

    @property
    def ws_port(self) -> int:
        return int(self.ws_url.rstrip("/").rsplit(":", 1)[1])

    def post(self, body: Any, **kwargs: Any) -> requests.Response:
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        return self.http.post(self.ms_url, data=data, timeout=10, **kwargs)

    def call(self, method: str, params: Any = None, rid: Any = 1) -> Any:
        """Call a backend method; return the whole JSON-RPC response object."""
        req: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": rid}
        if params is not None:
            req["params"] = params
        resp = self.post(req)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def result(self, method: str, params: Any = None) -> Any:
        resp = self.call(method, params)
        assert "result" in resp, resp
        return resp["result"]

    def health(self) -> dict[str, Any]:
        health: dict[str, Any] = self.http.get(self.ms_url + "health", timeout=10).json()
        return health

    def assert_no_traceback(self) -> None:
        """Fail when the server has logged a traceback."""
        log = self.log()
        assert "Traceback (most recent call last)" not in log, f"traceback in the server log:\n{log}"

    def terminate(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        status = self.proc.wait(timeout)
        self.assert_no_traceback()
        return status

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM if still running, then wait; SIGKILL (``kill``) if it outlives ``timeout``.
        For teardown: never raises for a slow shutdown (``terminate`` asserts one)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.http.close()
        self.assert_no_traceback()


# -- JSON documents for the decoder paths ----------------------------------------------

DECODER_PATHS = {"orjson": "1", "stdlib": "12345678901234567890"}
"""A leaf value per decoder path: a 20-digit run sends a document to the stdlib decoder."""
TOO_DEEP = {
    "jsonrpc": "2.0",
    "error": {
        "code": -32600,
        "message": "Invalid Request",
        "data": {"reason": "nesting deeper than 64 levels (RPC MAX_NESTING_DEPTH)"},
    },
    "id": None,
}
"""The answer to a document nested deeper than the default RPC MAX_NESTING_DEPTH."""


def nested(depth: int, leaf: str, kind: str = "array") -> str:
    """JSON text of ``depth`` levels of arrays (or objects) around ``leaf``."""
    if kind == "array":
        return "[" * depth + leaf + "]" * depth
    return '{"a":' * depth + leaf + "}" * depth


def emit_doc(data: str, rid: str = "1", method: str = "emit", channel: str = "c") -> str:
    """A request whose params are a channel and ``data`` (JSON text): 2 levels deeper."""
    return (
        f'{{"jsonrpc":"2.0","method":"{method}","params":{{"channel":"{channel}","data":{data}}},"id":{rid}}}'
    )


StartServer = Callable[..., ServerProcess]
"""The ``start_server`` fixture: start a server with extra environment variables."""


def ws_connect(url: str, **kwargs: Any) -> ClientConnection:
    kwargs.setdefault("open_timeout", 10)
    kwargs.setdefault("close_timeout", 5)
    ws: ClientConnection = connect(url, compression=None, **kwargs).__enter__()
    return ws


def request(ws: ClientConnection, method: str, params: Any = None, rid: Any = 1) -> dict[str, Any]:
    """Send one request on ``ws`` and return its response (pushes in between are kept)."""
    req: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": rid}
    if params is not None:
        req["params"] = params
    ws.send(json.dumps(req))
    response: dict[str, Any] = recv_json(ws)
    return response


def recv_json(ws: ClientConnection, timeout: float = 10.0) -> Any:
    return json.loads(ws.recv(timeout=timeout))


def subscribe(ws: ClientConnection, channel: str) -> None:
    assert request(ws, "subscribe", {"channel": channel})["result"] == {
        "channel": channel,
        "subscribed": True,
    }
