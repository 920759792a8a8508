"""End to end: the opening handshake of a real `manage.py runserver`, over raw sockets
and with real clients (websockets, the `ws` npm package, nginx in front)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Subprotocol

from .support import ROOT, ServerProcess, StartServer, free_port, request, wait_until, ws_connect
from .wsraw import rpc_frame, split_frames

KEY = base64.b64encode(b"0123456789abcdef").decode()
UPGRADE = (
    "Host: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
)
NODE_DIR = ROOT / "tests" / "node"


@pytest.fixture(autouse=True)
def _no_traceback_in_the_server_log(server: ServerProcess) -> Iterator[None]:
    """Nothing a client sends may put a traceback in the server's log."""
    yield
    assert "Traceback" not in server.log(), server.log()


def _exchange(port: int, data: bytes, *, half_close: bool = False) -> bytes:
    """Send ``data`` on a new connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def _response(raw: bytes, *, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
    """(status, headers by lower-case name, body) of one complete response, checked to be
    exactly what Content-Length announces."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, raw
    status_line, *lines = head.decode("latin-1").split("\r\n")
    version, status, _reason = status_line.split(" ", 2)
    assert version == "HTTP/1.1"
    headers: dict[str, str] = {}
    for line in lines:
        name, value = line.split(":", 1)
        assert name.lower() not in headers, f"{name} twice"
        headers[name.lower()] = value.strip()
    length = int(headers["content-length"])
    assert len(body) == (0 if head_only else length), (length, body)
    assert length > 0
    assert "close" in headers["connection"].lower()
    return int(status), headers, body


def _refusal(server: ServerProcess, data: bytes) -> tuple[int, dict[str, str], bytes]:
    return _response(_exchange(server.ws_port, data))


# -- plain requests and HTTP/1.0 ----------------------------------------------------------


def test_http10_upgrade_is_answered_as_a_plain_request_426(server: ServerProcess) -> None:
    # RFC 9110 section 7.8: Upgrade is ignored in HTTP/1.0.
    status, headers, body = _refusal(server, f"GET / HTTP/1.0\r\n{UPGRADE}\r\n".encode())
    assert status == 426
    assert headers["upgrade"] == "websocket"
    assert b"HTTP/1.1" in body and b"proxy_http_version 1.1" in body
    server.wait_log(r"INFO .*refused a handshake .*: 426, an HTTP/1\.0 upgrade request")


def test_plain_get_is_426_and_plain_head_has_no_body(server: ServerProcess) -> None:
    status, headers, body = _refusal(server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (status, headers["upgrade"]) == (426, "websocket")
    assert body == b"This is a WebSocket endpoint: connect with a WebSocket client.\n"
    raw = _exchange(server.ws_port, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert _response(raw, head_only=True)[0] == 426


def test_http10_on_another_path_is_404(server: ServerProcess) -> None:
    assert _refusal(server, b"GET /chat HTTP/1.0\r\n\r\n")[0] == 404


def test_other_methods_are_405(server: ServerProcess) -> None:
    status, headers, _ = _refusal(
        server, f"POST / HTTP/1.1\r\n{UPGRADE}Content-Length: 2\r\n\r\n{{}}".encode()
    )
    assert (status, headers["allow"]) == (405, "GET")


# -- malformed handshakes --------------------------------------------------------------


@pytest.mark.parametrize("version", ["8", "14", None])
def test_unsupported_websocket_version_is_426_naming_13(server: ServerProcess, version: str | None) -> None:
    head = UPGRADE.replace(
        "Sec-WebSocket-Version: 13\r\n", "" if version is None else f"Sec-WebSocket-Version: {version}\r\n"
    )
    status, headers, _ = _refusal(server, f"GET / HTTP/1.1\r\n{head}\r\n".encode())
    assert (status, headers["sec-websocket-version"]) == (426, "13")  # RFC 6455 section 4.4


@pytest.mark.parametrize(
    ("key_line", "problem"),
    [
        ("", b"missing Sec-WebSocket-Key"),
        ("Sec-WebSocket-Key: ***not base64***\r\n", b"not base64"),
        ("Sec-WebSocket-Key: MDEyMzQ1Njc4OWFiY2Rlé\r\n", b"not ASCII"),
        ("Sec-WebSocket-Key: MDEyMzQ1Njc4OWFiY2Rl\r\n", b"15 bytes"),
    ],
)
def test_bad_key_is_400(server: ServerProcess, key_line: str, problem: bytes) -> None:
    head = UPGRADE.replace(f"Sec-WebSocket-Key: {KEY}\r\n", key_line)
    status, _, body = _refusal(server, f"GET / HTTP/1.1\r\n{head}\r\n".encode())
    assert status == 400 and problem in body
    server.wait_log(r"INFO .*refused a handshake .*: 400, .*" + problem.decode())


def test_more_than_100_headers_is_431(server: ServerProcess) -> None:
    extra = "".join(f"X-H{i}: v\r\n" for i in range(96))  # 5 + 96 = 101 fields
    assert _refusal(server, f"GET / HTTP/1.1\r\n{UPGRADE}{extra}\r\n".encode())[0] == 431
    extra = "".join(f"X-H{i}: v\r\n" for i in range(95))  # 100: accepted
    raw = _exchange(server.ws_port, f"GET / HTTP/1.1\r\n{UPGRADE}{extra}\r\n".encode(), half_close=True)
    assert raw.startswith(b"HTTP/1.1 101 ")


def test_head_over_16_kib_is_431_ended_or_not(server: ServerProcess) -> None:
    big = f"GET / HTTP/1.1\r\n{UPGRADE}X-Big: {'a' * 17000}\r\n\r\n".encode()
    assert _refusal(server, big)[0] == 431
    assert _refusal(server, big[:-4])[0] == 431  # a head that never ends


@pytest.mark.parametrize(
    "data",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32),  # a TLS hello on ws://
        b"GET / HTTP/1.1\nHost: x\n\n",  # bare LF
        b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n folded\r\n\r\n",  # obs-fold
        f"GET / HTTP/1.1\r\n{UPGRADE}Content-Length: 3\r\n\r\nabc".encode(),  # a body
        f"GET / HTTP/1.1\r\n{UPGRADE.replace('Connection: Upgrade', 'Connection: keep-alive')}\r\n".encode(),
        b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",  # no Host
    ],
)
def test_malformed_requests_are_400(server: ServerProcess, data: bytes) -> None:
    assert _refusal(server, data)[0] == 400


def test_request_line_cut_short_then_eof_is_closed_quietly(server: ServerProcess) -> None:
    assert _exchange(server.ws_port, b"GET / HTTP/1", half_close=True) == b""
    assert _exchange(server.ws_port, f"GET / HTTP/1.1\r\n{UPGRADE}".encode(), half_close=True) == b""
    with ws_connect(server.ws_url) as ws:  # still serving
        assert request(ws, "ping")["result"] == "pong"


def test_handshake_timeout_logs_one_info_line(start_server: StartServer) -> None:
    srv = start_server(ROCKETWS_HANDSHAKE_TIMEOUT="0.5")
    with socket.create_connection(("127.0.0.1", srv.ws_port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        assert sock.recv(1024) == b""  # dropped, no answer
    line = srv.wait_log(r".*handshake from .* not finished in 0\.5 s: dropped")
    assert " INFO " in line
    assert srv.log().count("not finished") == 1
    assert "Traceback" not in srv.log()


def test_frames_right_behind_the_head_are_served(server: ServerProcess) -> None:
    data = f"GET / HTTP/1.1\r\n{UPGRADE}\r\n".encode() + rpc_frame("ping", 7)
    with socket.create_connection(("127.0.0.1", server.ws_port), timeout=10) as sock:
        sock.sendall(data)
        received = b""
        while b"pong" not in received:
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
    head, _, rest = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ")
    frames, _ = split_frames(rest)
    assert json.loads(frames[0][1]) == {"jsonrpc": "2.0", "result": "pong", "id": 7}


# -- subprotocols and extensions with real clients --------------------------------------


@pytest.mark.parametrize(
    ("offered", "selected"),
    [
        (["rocketws"], "rocketws"),
        (["x", "jsonrpc", "rocketws"], "jsonrpc"),
        (["x-unknown"], None),
        (None, None),
    ],
)
def test_websockets_client_gets_the_first_offered_subprotocol(
    server: ServerProcess, offered: list[str] | None, selected: str | None
) -> None:
    with ws_connect(server.ws_url, subprotocols=offered) as ws:
        assert ws.subprotocol == selected
        assert ws.response is not None
        assert ws.response.headers.get("Sec-WebSocket-Protocol") == selected
        assert request(ws, "ping")["result"] == "pong"


def test_websockets_client_deflate_offer_is_declined(server: ServerProcess) -> None:
    # compression left at its default: the client offers permessage-deflate
    with connect(server.ws_url, subprotocols=[Subprotocol("rocketws")], open_timeout=10) as ws:
        assert (
            ws.request is not None and "permessage-deflate" in ws.request.headers["Sec-WebSocket-Extensions"]
        )
        assert ws.protocol.extensions == []
        assert ws.response is not None and "Sec-WebSocket-Extensions" not in ws.response.headers
        assert request(ws, "ping")["result"] == "pong"


def _node_ping(url: str, *protocols: str) -> dict[str, object]:
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "ws").is_dir():
        if os.environ.get("CI"):
            pytest.fail("node or tests/node/node_modules missing in CI (`make test` installs them)")
        pytest.skip("node or the ws package missing (run: cd tests/node && npm ci)")
    out = subprocess.run(
        [node, str(NODE_DIR / "ping.mjs"), url, *protocols], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_node_ws_client_selects_rocketws_and_pings(server: ServerProcess) -> None:
    out = _node_ping(server.ws_url, "rocketws", "jsonrpc")
    assert out == {
        "reply": {"jsonrpc": "2.0", "result": "pong", "id": 1},
        "protocol": "rocketws",
        "extensions": [],  # ws offers permessage-deflate; declined
    }


def test_node_ws_client_fails_when_no_offered_subprotocol_is_supported(server: ServerProcess) -> None:
    # Documented in protocol.md: accepted without Sec-WebSocket-Protocol; ws refuses that.
    assert _node_ping(server.ws_url, "x-unknown") == {"error": "Server sent no subprotocol"}


# -- behind nginx -------------------------------------------------------------------------


class Nginx:
    """A Debian nginx this test started (stopped by PID), proxying to the WebSocket port."""

    def __init__(self, tmp: Path, upstream_port: int, http_version: str | None) -> None:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not os.access(binary, os.X_OK):
            if os.environ.get("CI"):
                pytest.fail("nginx missing in CI (scripts/sysdeps.sh should install it)")
            pytest.skip("nginx missing (run: bash scripts/sysdeps.sh)")
        self.port = free_port()
        version = f"proxy_http_version {http_version};" if http_version else ""
        temp = " ".join(
            f"{kind}_temp_path {tmp}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        (tmp / "nginx.conf").write_text(
            f"""daemon off;
master_process off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 64; }}
http {{
  access_log off;
  {temp}
  server {{
    listen 127.0.0.1:{self.port};
    location / {{
      proxy_pass http://127.0.0.1:{upstream_port};
      {version}
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
    }}
  }}
}}
"""
        )
        self.tmp = tmp
        self.proc = subprocess.Popen(
            [binary, "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-e", str(tmp / "error.log")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self._ready, what="nginx listening")

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError("nginx exited:\n" + (self.tmp / "error.log").read_text())
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def nginx(tmp_path: Path, server: ServerProcess) -> Iterator[Callable[[str | None], Nginx]]:
    started: list[Nginx] = []

    def start(http_version: str | None) -> Nginx:
        proxy = Nginx(tmp_path, server.ws_port, http_version)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


def test_nginx_without_proxy_http_version_gives_a_clean_426(
    server: ServerProcess, nginx: Callable[[str | None], Nginx]
) -> None:
    proxy = nginx(None)  # nginx speaks HTTP/1.0 upstream by default
    with pytest.raises(InvalidStatus) as info:
        ws_connect(f"ws://127.0.0.1:{proxy.port}/")
    assert info.value.response.status_code == 426
    assert b"proxy_http_version 1.1" in info.value.response.body
    # nginx keeps its client connection alive: read one response by its Content-Length
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(f"GET / HTTP/1.1\r\n{UPGRADE}\r\n".encode())
        raw = b""
        while b"\r\n\r\n" not in raw:
            raw += sock.recv(65536)
        head, _, body = raw.partition(b"\r\n\r\n")
        fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
        length = int(fields[b"Content-Length"])
        while len(body) < length:
            chunk = sock.recv(65536)
            assert chunk, body
            body += chunk
    assert head.startswith(b"HTTP/1.1 426 ") and len(body) == length and b"HTTP/1.0" in body
    server.wait_log(r"INFO .*426, an HTTP/1\.0 upgrade request")


def test_nginx_with_proxy_http_version_11_upgrades(
    server: ServerProcess, nginx: Callable[[str | None], Nginx]
) -> None:
    proxy = nginx("1.1")
    with ws_connect(f"ws://127.0.0.1:{proxy.port}/", subprotocols=["rocketws"]) as ws:
        assert ws.subprotocol == "rocketws"
        assert request(ws, "ping")["result"] == "pong"
