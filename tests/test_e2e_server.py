"""End to end: process lifecycle, CLI, the WebSocket port's plain-HTTP answers."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
import requests
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection

from .support import ServerProcess, StartServer, manage, recv_json, subscribe, ws_connect


def test_sigterm_closes_every_websocket_1001_and_exits_0(start_server: StartServer) -> None:
    srv = start_server()
    conns = [ws_connect(srv.ws_url) for _ in range(3)]
    for ws in conns:
        subscribe(ws, "bye")
    srv.call("emit", {"channel": "bye", "data": "last"})
    codes: list[int | None] = []

    def watch(ws: ClientConnection) -> None:
        try:
            while True:
                ws.recv(timeout=15)
        except ConnectionClosed as exc:
            codes.append(exc.rcvd.code if exc.rcvd else None)

    threads = [threading.Thread(target=watch, args=(ws,)) for ws in conns]
    for t in threads:
        t.start()
    assert srv.terminate(timeout=15) == 0
    for t in threads:
        t.join(15)
    assert codes == [1001, 1001, 1001]
    assert "Traceback" not in srv.log()


def test_sigterm_delivers_queued_pushes_before_1001(start_server: StartServer) -> None:
    srv = start_server()
    with ws_connect(srv.ws_url) as ws:
        subscribe(ws, "q")
        srv.call("emit", {"channel": "q", "data": 1})
        assert srv.proc is not None
        srv.proc.terminate()
        assert recv_json(ws)["params"]["data"] == 1
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=15)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001
    assert srv.proc.wait(15) == 0


def test_ws_port_plain_http_is_426_and_404(server: ServerProcess) -> None:
    http_url = server.ws_url.replace("ws://", "http://")
    resp = requests.get(http_url, timeout=10)
    assert resp.status_code == 426 and resp.headers["Upgrade"] == "websocket"
    assert requests.get(http_url + "other", timeout=10).status_code == 404


def test_ws_upgrade_on_other_path_is_refused(server: ServerProcess) -> None:
    with pytest.raises(InvalidStatus) as info:
        ws_connect(server.ws_url + "chat")
    assert info.value.response.status_code == 404


def test_handshake_timeout_drops_silent_clients(start_server: StartServer) -> None:
    srv = start_server(ROCKETWS_HANDSHAKE_TIMEOUT="0.5")
    with socket.create_connection(("127.0.0.1", srv.ws_port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n")  # never finishes the request
        data = b""
        while chunk := sock.recv(1024):  # the server answers 4xx and hangs up by itself
            data += chunk
        assert data == b"" or data.startswith(b"HTTP/1.1 4"), data
    assert srv.result("ping") == "pong"


def test_handshake_timeout_is_total_not_per_read(start_server: StartServer) -> None:
    srv = start_server(ROCKETWS_HANDSHAKE_TIMEOUT="1")
    with socket.create_connection(("127.0.0.1", srv.ws_port), timeout=10) as sock:
        start = time.monotonic()
        sock.settimeout(0.2)
        request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
        closed = False
        for byte in request:  # one byte every 0.2 s: each read is quick, the whole is not
            try:
                sock.sendall(bytes([byte]))
                if sock.recv(1024) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except OSError:
                closed = True
                break
        assert closed, "the server never dropped the dripping handshake"
        assert time.monotonic() - start < 5  # 1 s allowed, generous margin for a busy machine
    srv.wait_log("handshake from .* not finished")
    assert srv.result("ping") == "pong"


def test_client_errors_log_no_traceback(start_server: StartServer) -> None:
    srv = start_server()
    with ws_connect(srv.ws_url) as ws:
        ws.send("{bad json")
        recv_json(ws)
        ws.send(b"binary")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
    srv.post(b"\xff{")
    srv.wait_log("binary frames are not supported")
    assert "Traceback" not in srv.log()


def test_ipv6_loopback_listen() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("::1 is not configured here")
    srv = ServerProcess(args=["--ws-conn=[::1]:0", "--ms-conn=[::1]:0"]).start()
    try:
        assert srv.ws_url.startswith("ws://[::1]:")
        assert srv.result("ping") == "pong"
        with ws_connect(srv.ws_url) as ws:
            subscribe(ws, "v6")
    finally:
        srv.kill()


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["runserver", "--ws-conn=nonsense"], {}, "--ws-conn='nonsense'"),
        (["runserver", "--ms-conn=1.2.3.4:99999"], {}, "port must be 0-65535"),
        (["runserver"], {"ROCKETWS_MAX_OUTBOX_BYTES": "lots"}, "ROCKETWS_MAX_OUTBOX_BYTES='lots'"),
        (["runserver"], {"ROCKETWS_BROKER": "kafka://x"}, "kafka://x"),
        (
            ["runserver"],
            {"ROCKETWS_NAMESPACES": '[{"name": "a:b"}]'},
            "ROCKETWS_NAMESPACES[0]['name']='a:b': must not contain ':'",
        ),
        (["runserver"], {"ROCKETWS_SETTINGS": "no_such_settings_module"}, "no_such_settings_module"),
        (["frobnicate"], {}, "frobnicate"),
        (["runserver", "--nope"], {}, "--nope"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(args: list[str], env: dict[str, str], needle: str) -> None:
    result = manage(*args, env=env)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_cli_port_in_use_is_one_line_exit_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = manage("runserver", f"--ws-conn=127.0.0.1:{port}", "--ms-conn=127.0.0.1:0")
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_help_and_version() -> None:
    assert "runserver" in manage("--help").stdout
    version = manage("--version")
    assert version.returncode == 0 and version.stdout.startswith("RocketWS ")


def test_cli_help_shows_the_declared_default_addresses() -> None:
    from rocketws.config import DEFAULTS

    text = manage("--help").stdout
    assert f"[default from settings: {DEFAULTS.websocket}]" in text
    assert f"{DEFAULTS.backend}]; :PORT means {DEFAULTS.backend.host}." in text


def test_cli_env_overrides_settings(start_server: StartServer) -> None:
    srv = start_server(ROCKETWS_MAX_CHANNEL_LENGTH="4")
    with ws_connect(srv.ws_url) as ws:
        subscribe(ws, "abcd")
        from .support import request

        assert request(ws, "subscribe", {"channel": "abcde"})["error"]["code"] == -32602


def test_settings_module_logging_is_applied(start_server: StartServer, tmp_path: Path) -> None:
    (tmp_path / "custom_settings.py").write_text(
        "LOGGING = {'version': 1, 'disable_existing_loggers': False,\n"
        "  'formatters': {'f': {'format': 'CUSTOM|%(levelname)s|%(name)s|%(message)s'}},\n"
        "  'handlers': {'h': {'class': 'logging.StreamHandler', 'formatter': 'f',"
        " 'stream': 'ext://sys.stderr'}},\n"
        "  'root': {'handlers': ['h'], 'level': 'INFO'}}\n"
        "WEBSOCKETS = {'MAX_CHANNELS_PER_CONNECTION': 1}\n"
    )
    srv = start_server(ROCKETWS_SETTINGS="custom_settings", PYTHONPATH=str(tmp_path))
    assert "CUSTOM|INFO|rocketws.server|websocket listening on" in srv.log()
    with ws_connect(srv.ws_url) as ws:
        subscribe(ws, "one")
        from .support import request

        assert request(ws, "subscribe", {"channel": "two"})["error"]["code"] == -32003


# -- the open-files limit against MAX_CONNECTIONS (rocketws/process/limits.py) ----------


@pytest.mark.parametrize("workers", [[], ["--workers=2", "--broker=redis://127.0.0.1:1/0"]])
def test_cli_open_files_too_low_for_max_connections_is_one_line_exit_1(workers: list[str]) -> None:
    result = manage(
        "runserver",
        "--ws-conn=127.0.0.1:0",
        "--ms-conn=127.0.0.1:0",
        *workers,
        env={"ROCKETWS_MAX_CONNECTIONS": "1000"},
        nofile=(300, 300),
    )
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "MAX_CONNECTIONS 1000 needs 1064 open files" in lines[0]
    assert "limit is 300 (hard 300)" in lines[0] and "MAX_CONNECTIONS to 236 or less" in lines[0]
    assert "Traceback" not in result.stderr


def test_server_raises_its_soft_open_files_limit_and_logs_it() -> None:
    srv = ServerProcess(env={"ROCKETWS_MAX_CONNECTIONS": "1000"}, nofile=(300, 4000)).start()
    try:
        assert (
            "open-files limit 1064 (hard 4000, raised from 300): 1000 connections + 64 reserved" in srv.log()
        )
        assert srv.proc is not None
        limits = Path(f"/proc/{srv.proc.pid}/limits").read_text()
        assert any(line.startswith("Max open files") and " 1064 " in line for line in limits.splitlines())
    finally:
        assert srv.terminate() == 0


def test_server_logs_its_open_files_limit_when_it_fits() -> None:
    srv = ServerProcess(env={"ROCKETWS_MAX_CONNECTIONS": "100"}, nofile=(4000, 4000)).start()
    try:
        assert "open-files limit 4000 (hard 4000): 100 connections + 64 reserved" in srv.log()
    finally:
        assert srv.terminate() == 0
