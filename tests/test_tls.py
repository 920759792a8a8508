"""End to end over TLS: ``wss://`` and ``https://`` with a test CA made here (trustme).

Every private key lives in a pytest tmp dir.  The server is a real ``manage.py
runserver`` with ROCKETWS_TLS_CERT / ROCKETWS_TLS_KEY; clients trust only the test CA.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from websockets.exceptions import ConnectionClosed

from .redis_fixtures import RedisServer
from .support import (
    RUNSERVER_EPHEMERAL,
    ServerProcess,
    manage,
    recv_json,
    request,
    subscribe,
    wait_until,
    ws_connect,
)
from .wsraw import RawWebSocket, rpc_frame


@dataclass
class Pki:
    """A test CA and a server certificate for 127.0.0.1, as files in a tmp dir."""

    ca: trustme.CA
    dir: Path
    cert: Path
    key: Path
    ca_file: Path

    def issue(self, cert: Path, key: Path) -> bytes:
        """Write a new leaf for 127.0.0.1 to ``cert``/``key``; its DER."""
        leaf = self.ca.issue_cert("127.0.0.1", "localhost")
        leaf.private_key_pem.write_to_path(str(key))
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        for pem in leaf.cert_chain_pems[1:]:
            pem.write_to_path(str(cert), append=True)
        return ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        return context

    def env(self, **more: str) -> dict[str, str]:
        return {"ROCKETWS_TLS_CERT": str(self.cert), "ROCKETWS_TLS_KEY": str(self.key), **more}


def make_pki(directory: Path) -> Pki:
    ca = trustme.CA()
    pki = Pki(ca, directory, directory / "cert.pem", directory / "key.pem", directory / "ca.pem")
    ca.cert_pem.write_to_path(str(pki.ca_file))
    pki.issue(pki.cert, pki.key)
    return pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def start_tls_server(pki: Pki, **env: str) -> ServerProcess:
    srv = ServerProcess(env=pki.env(**env)).start()
    srv.http.verify = str(pki.ca_file)
    srv.http.trust_env = False  # REQUESTS_CA_BUNDLE would win over verify
    return srv


@pytest.fixture(scope="module")
def server(pki: Pki) -> Iterator[ServerProcess]:
    srv = start_tls_server(pki)
    yield srv
    srv.kill()


@pytest.fixture
def start(pki: Pki) -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def run(**env: str) -> ServerProcess:
        srv = start_tls_server(pki, **env)
        started.append(srv)
        return srv

    yield run
    for srv in started:
        srv.kill()


def tls_connect(pki: Pki, rcvbuf: int | None = None) -> Callable[..., socket.socket]:
    """A ``RawWebSocket`` connect function: TCP (optionally a small receive buffer), then TLS."""

    def connect(address: tuple[str, int], timeout: float) -> socket.socket:
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        raw.settimeout(timeout)
        raw.connect(address)
        return pki.client_context().wrap_socket(raw, server_hostname=address[0])

    return connect


def peer_certificate(pki: Pki, port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with pki.client_context().wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            der = tls.getpeercert(binary_form=True)
            assert der is not None
            return der


# -- both endpoints ----------------------------------------------------------------------


def test_tls_server_announces_wss_and_https(server: ServerProcess) -> None:
    assert server.ws_url.startswith("wss://127.0.0.1:") and server.ms_url.startswith("https://127.0.0.1:")
    assert "TLS certificate" in server.log()


def test_tls_https_messages_source_is_verified_against_the_test_ca(server: ServerProcess) -> None:
    assert server.health()["status"] == "ok"
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(server.ms_url + "health", timeout=10)  # the system CAs do not know ours


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated")
def test_tls_negotiates_tls12_or_later_and_alpn_http11(pki: Pki, server: ServerProcess) -> None:
    context = pki.client_context()
    context.set_alpn_protocols(["http/1.1"])
    with socket.create_connection(("127.0.0.1", server.ws_port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
            assert tls.selected_alpn_protocol() == "http/1.1"
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(str(pki.ca_file))
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    with socket.create_connection(("127.0.0.1", server.ws_port), timeout=10) as raw:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            old.wrap_socket(raw, server_hostname="127.0.0.1")


def test_tls_wss_subscribe_emit_push_and_close_codes(pki: Pki, server: ServerProcess) -> None:
    with ws_connect(server.ws_url, ssl=pki.client_context()) as ws:
        subscribe(ws, "tls-news")
        assert server.result("emit", {"channel": "tls-news", "data": {"n": 1}})["delivered"] == 1
        push = recv_json(ws)
        assert push["method"] == "message" and push["params"]["data"] == {"n": 1}
        ws.close(1000, "bye")
        rcvd = ws.protocol.close_rcvd
        assert rcvd is not None and rcvd.code == 1000
    with ws_connect(server.ws_url, ssl=pki.client_context()) as ws:
        ws.send(b"\x01\x02")  # binary: the server closes with 1003
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1003
    wait_until(lambda: server.health()["connections"] == 0)


def test_tls_pipelined_and_big_messages_cross_record_boundaries(pki: Pki, server: ServerProcess) -> None:
    """Frames over 16 KiB (one TLS record) both ways, and requests pipelined with the
    upgrade, so frames and records are split at unrelated places."""
    pipelined = rpc_frame("subscribe", 1, ["tls-big"]) + b"".join(rpc_frame("ping", i) for i in (2, 3, 4))
    raw = RawWebSocket(server.ws_port, pipelined=pipelined, connect=tls_connect(pki))
    replies = [json.loads(raw.read_frame()[1]) for _ in range(4)]
    assert [r["id"] for r in replies] == [1, 2, 3, 4] and replies[1]["result"] == "pong"
    big = "b" * 300_000  # ~19 records
    assert server.result("emit", {"channel": "tls-big", "data": big})["delivered"] == 1
    assert json.loads(raw.read_frame()[1])["params"]["data"] == big
    with ws_connect(server.ws_url, ssl=pki.client_context(), max_size=None) as ws:
        subscribe(ws, "tls-big")
        text = "c" * 60_000  # a client message of 4 records, under MAX_MESSAGE_SIZE
        reply = request(ws, "send_data", {"channel": "tls-big", "data": text}, rid=9)
        assert reply["result"]["delivered"] == 1
    assert json.loads(raw.read_frame()[1])["params"]["data"] == text
    raw.close()


def emits(channel: str, items: list[object]) -> list[dict[str, object]]:
    """A batch of one ``emit`` per item."""
    return [
        {"jsonrpc": "2.0", "method": "emit", "params": {"channel": channel, "data": d}, "id": i}
        for i, d in enumerate(items)
    ]


def test_tls_slow_consumer_is_closed_4008(pki: Pki, start: Callable[..., ServerProcess]) -> None:
    srv = start(ROCKETWS_MAX_OUTBOX_BYTES="65536", ROCKETWS_CLOSE_TIMEOUT="30")
    slow = RawWebSocket(srv.ws_port, rcvbuf=4096, connect=tls_connect(pki, rcvbuf=4096))
    assert slow.call("subscribe", 1, ["flood"])["result"]["subscribed"] is True
    payload = "y" * 4000
    sent = 0
    while srv.result("total_subscribers", {"channel": "flood"}) == 1:
        assert sent < 4000, "slow consumer was never disconnected"
        assert srv.post(emits("flood", [[sent + k, payload] for k in range(5)])).status_code == 200
        sent += 5
    texts, code, reason = slow.read_until_close()  # what was queued before the limit, then 4008
    assert (code, reason) == (4008, "slow consumer")
    assert 0 < len(texts) < sent
    assert [json.loads(t)["params"]["data"][0] for t in texts] == list(range(len(texts)))
    slow.close()
    wait_until(lambda: srv.health()["connections"] == 0)


# -- handshake failures: logged in one line, no traceback --------------------------------


def test_tls_handshake_timeout_drops_a_client_that_never_says_hello(
    start: Callable[..., ServerProcess],
) -> None:
    srv = start(ROCKETWS_HANDSHAKE_TIMEOUT="0.5")
    with socket.create_connection(("127.0.0.1", srv.ws_port), timeout=10) as raw:
        started = time.monotonic()
        assert raw.recv(100) == b""  # closed by the server, no ClientHello ever sent
        assert 0.4 < time.monotonic() - started < 5
    srv.wait_log(r"handshake from .* not finished in 0\.5 s")
    with socket.create_connection(
        ("127.0.0.1", int(srv.ms_url.rstrip("/").rsplit(":", 1)[1])), timeout=10
    ) as raw:
        assert raw.recv(100) == b""
    srv.wait_log(r"TLS handshake from .* not finished in 0\.5 s")


def test_tls_plaintext_client_on_the_tls_port_gets_a_clean_close(pki: Pki, server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.ws_port), timeout=10) as raw:
        raw.sendall(
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        received = b""
        try:
            while chunk := raw.recv(4096):
                received += chunk
        except ConnectionResetError:
            pass
        assert b"101" not in received
    server.wait_log(r"TLS handshake with .* failed: plain HTTP sent to a TLS port")
    with pytest.raises(requests.exceptions.ConnectionError):  # http:// to the https:// port
        requests.get(server.ms_url.replace("https://", "http://") + "health", timeout=10)
    wait_until(lambda: server.log().count("plain HTTP sent to a TLS port") >= 2)
    with ws_connect(server.ws_url, ssl=pki.client_context()) as ws:  # still serving
        assert request(ws, "ping")["result"] == "pong"
    server.assert_no_traceback()


# -- reload on SIGHUP --------------------------------------------------------------------


def test_tls_sighup_reloads_the_certificate_and_keeps_open_connections(
    pki: Pki, tmp_path: Path, start: Callable[..., ServerProcess]
) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    first = pki.issue(cert, key)
    srv = ServerProcess(env={"ROCKETWS_TLS_CERT": str(cert), "ROCKETWS_TLS_KEY": str(key)}).start()
    srv.http.verify = str(pki.ca_file)
    srv.http.trust_env = False
    try:
        assert peer_certificate(pki, srv.ws_port) == first
        with ws_connect(srv.ws_url, ssl=pki.client_context()) as ws:
            subscribe(ws, "reload")
            second = pki.issue(cert, key)
            assert srv.proc is not None
            srv.proc.send_signal(signal.SIGHUP)
            srv.wait_log(r"TLS certificate reloaded from .*sha256 " + hashlib.sha256(second).hexdigest())
            assert srv.result("emit", {"channel": "reload", "data": 1})["delivered"] == 1
            assert recv_json(ws)["params"]["data"] == 1  # the old connection goes on
            assert request(ws, "ping")["result"] == "pong"
            assert peer_certificate(pki, srv.ws_port) == second
            ms_port = int(srv.ms_url.rstrip("/").rsplit(":", 1)[1])
            assert peer_certificate(pki, ms_port) == second
            key.write_text("not a key\n")  # a broken file: logged, the current one stays
            srv.proc.send_signal(signal.SIGHUP)
            srv.wait_log(r"TLS reload failed, keeping the previous certificate: .*ROCKETWS_TLS_KEY")
            assert peer_certificate(pki, srv.ws_port) == second
    finally:
        srv.kill()


def test_tls_supervisor_passes_sighup_to_every_worker(
    pki: Pki, tmp_path: Path, redis_server: RedisServer
) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    pki.issue(cert, key)
    args = ["--ws-conn=127.0.0.1:0", "--ms-conn=127.0.0.1:0", "--workers=2", f"--tls-cert={cert}"]
    args += [f"--tls-key={key}", f"--broker={redis_server.url}?prefix=tls-{uuid.uuid4().hex[:8]}:"]
    srv = ServerProcess(args=args).start()
    try:
        srv.wait_log(r"all 2 workers ready; websocket on wss://.*messages source on https://", timeout=20)
        with ws_connect(srv.ws_url, ssl=pki.client_context()) as ws:
            second = pki.issue(cert, key)
            assert srv.proc is not None
            srv.proc.send_signal(signal.SIGHUP)
            for worker in (1, 2):
                srv.wait_log(rf"\[worker {worker}\] .*TLS certificate reloaded")
            assert request(ws, "ping")["result"] == "pong"
            assert peer_certificate(pki, srv.ws_port) == second
        assert srv.terminate() == 0
    finally:
        srv.kill()
        for pid in re.findall(r"worker \d+ started \(pid (\d+)\)", srv.log()):
            try:  # never leave a worker behind
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass


# -- settings checked at start: one line naming the file, exit 2 -------------------------


def _runserver(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return manage(*RUNSERVER_EPHEMERAL, env=env, timeout=30)


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("missing cert", "ROCKETWS_TLS_CERT / --tls-cert='"),
        ("missing key", "ROCKETWS_TLS_KEY / --tls-key='"),
        ("cert without key", 'TLS["KEY"] / ROCKETWS_TLS_KEY / --tls-key=None: required with TLS["CERT"]'),
        ("not a cert", "ROCKETWS_TLS_CERT / --tls-cert='"),
        ("mismatched key", "not the private key of the certificate"),
    ],
)
def test_tls_bad_files_refused_at_start_in_one_line(pki: Pki, tmp_path: Path, case: str, needle: str) -> None:
    other = make_pki(tmp_path)  # a key that belongs to another certificate
    env = pki.env()
    if case == "missing cert":
        env["ROCKETWS_TLS_CERT"] = str(tmp_path / "nope.pem")
    elif case == "missing key":
        env["ROCKETWS_TLS_KEY"] = str(tmp_path / "nope.pem")
    elif case == "cert without key":
        del env["ROCKETWS_TLS_KEY"]
    elif case == "not a cert":
        env["ROCKETWS_TLS_CERT"] = str(pki.key)
    else:
        env["ROCKETWS_TLS_KEY"] = str(other.key)
    done = _runserver(env)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rocketws: error: invalid "), done.stderr
    assert needle in lines[0]


def test_tls_only_on_the_websocket_endpoint_when_the_messages_source_opts_out(
    pki: Pki, start: Callable[..., ServerProcess]
) -> None:
    srv = start(ROCKETWS_HTTPS="false")
    assert srv.ws_url.startswith("wss://") and srv.ms_url.startswith("http://")
    assert srv.health()["status"] == "ok"


# -- a real browser ----------------------------------------------------------------------


def spki_hash(cert_pem: bytes) -> str:
    """base64(sha256(SubjectPublicKeyInfo)): what ``--ignore-certificate-errors-spki-list`` takes."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def test_tls_browser_connects_over_wss_and_receives_a_push(pki: Pki, server: ServerProcess) -> None:
    from .browser import Browser

    browser = Browser(
        extra_args=[f"--ignore-certificate-errors-spki-list={spki_hash(pki.cert.read_bytes())}"]
    )
    try:
        rid = browser.start_eval(f"""
          new Promise((resolve, reject) => {{
            const ws = new WebSocket({json.dumps(server.ws_url)});
            const seen = [];
            ws.onopen = () => ws.send(JSON.stringify(
              {{ jsonrpc: "2.0", method: "subscribe", params: {{ channel: "tls-browser" }}, id: 1 }}));
            ws.onmessage = (event) => {{
              const msg = JSON.parse(event.data);
              seen.push(msg);
              if (msg.method === "message") ws.close(1000, "done");
            }};
            ws.onclose = (event) => resolve({{ seen, code: event.code, clean: event.wasClean }});
            setTimeout(() => reject(new Error("no push within 15 s")), 15000);
          }})""")
        wait_until(lambda: server.result("total_subscribers", {"channel": "tls-browser"}) == 1, timeout=15)
        big = "z" * 40_000  # more than one TLS record
        server.call("emit", {"channel": "tls-browser", "data": big})
        out = browser.result(rid)
        reply, push = out["seen"]
        assert reply["result"] == {"channel": "tls-browser", "subscribed": True}
        assert push["params"]["data"] == big
        assert (out["code"], out["clean"]) == (1000, True)
    finally:
        browser.close()
