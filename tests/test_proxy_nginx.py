"""Behind a real nginx (Debian's): server pings keep an idle WebSocket open through the
proxy's read timeout; without them nginx cuts it.

nginx runs as a subprocess of the test (``daemon off``, one process, killed by PID) with
the README's proxy settings and ``proxy_read_timeout 2s``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .support import StartServer, free_port, request, wait_until, ws_connect
from .wsraw import PING, PONG, TEXT, RawWebSocket

PROXY_READ_TIMEOUT = 2.0

NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location /ws/ {{
            proxy_pass http://127.0.0.1:{upstream}/;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host $host;
            proxy_read_timeout {timeout:g}s;
        }}
    }}
}}
"""

Nginx = Callable[[int], int]
"""The ``nginx`` fixture: proxy ``/ws/`` to a WebSocket port; returns nginx's port."""


def nginx_binary() -> str:
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if binary is None:
        if os.environ.get("CI"):  # `make test` installs it: never skip in CI
            pytest.fail("nginx not installed in CI (scripts/sysdeps.sh should install it)")
        pytest.skip("nginx not installed (run: bash scripts/sysdeps.sh)")
    return binary


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Nginx]:
    binary = nginx_binary()
    started: list[subprocess.Popen[bytes]] = []

    def start(upstream: int) -> int:
        port = free_port()
        conf = tmp_path / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(tmp=tmp_path, port=port, upstream=upstream, timeout=PROXY_READ_TIMEOUT)
        )
        proc = subprocess.Popen(
            [binary, "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started.append(proc)
        wait_until(lambda: _listening(port) or proc.poll() is not None, what="nginx listening")
        assert proc.poll() is None, (tmp_path / "error.log").read_text()
        return port

    yield start
    for proc in started:
        proc.terminate()  # by PID: only the nginx this test started
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_nginx_keeps_an_idle_websocket_open_with_server_pings(
    start_server: StartServer, nginx: Nginx
) -> None:
    srv = start_server(ROCKETWS_PING_INTERVAL="0.5")
    port = nginx(srv.ws_port)
    raw = RawWebSocket(port, path="/ws/")  # answers our pings itself, below
    assert raw.call("subscribe", 1, ["proxied"])["result"]["subscribed"] is True
    with ws_connect(f"ws://127.0.0.1:{port}/ws/") as library:  # answers pings on its own
        assert request(library, "ping")["result"] == "pong"
        start, pings = time.monotonic(), 0
        while time.monotonic() - start < 3 * PROXY_READ_TIMEOUT:  # each read waits for a ping
            assert raw.read_frame() == (PING, b"")
            raw.send_frame(PONG, b"")
            pings += 1
        assert pings >= 3 * PROXY_READ_TIMEOUT / 0.5 / 2
        assert request(library, "ping", rid=2)["result"] == "pong"  # idle as long, still open
    raw.send_text(json.dumps({"jsonrpc": "2.0", "method": "ping", "id": 3}))
    while (frame := raw.read_frame())[0] == PING:
        raw.send_frame(PONG, b"")
    assert frame[0] == TEXT and json.loads(frame[1]) == {"jsonrpc": "2.0", "result": "pong", "id": 3}
    assert srv.result("total_subscribers", {"channel": "proxied"}) == 1
    raw.close()
    assert "Traceback" not in srv.log()


def test_nginx_cuts_an_idle_websocket_when_pings_are_off(start_server: StartServer, nginx: Nginx) -> None:
    srv = start_server(ROCKETWS_PING_INTERVAL="0")
    port = nginx(srv.ws_port)
    raw = RawWebSocket(port, path="/ws/", timeout=3 * PROXY_READ_TIMEOUT + 5)
    assert raw.call("subscribe", 1, ["cut"])["result"]["subscribed"] is True
    start = time.monotonic()
    with pytest.raises(EOFError):
        raw.read_frame()  # nothing arrives: nginx's read timeout ends the connection
    assert PROXY_READ_TIMEOUT - 0.1 <= time.monotonic() - start < 3 * PROXY_READ_TIMEOUT
    raw.close()
    wait_until(lambda: srv.result("total_subscribers", {"channel": "cut"}) == 0)
    assert "Traceback" not in srv.log()
