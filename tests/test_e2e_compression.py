"""End to end: permessage-deflate (RFC 7692) against a real `manage.py runserver`, with a
raw client that checks the wire, the `websockets` client and the `ws` npm client."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.sync.client import connect

from .support import ServerProcess, recv_json, request, subscribe, wait_until
from .wsraw import TEXT, RawWebSocket, client_frame, deflate_message, inflate_message, rpc_frame

OFFER = "permessage-deflate; client_max_window_bits"  # what browsers send
ACCEPTED = (
    "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover"
)
NODE_DIR = Path(__file__).resolve().parent / "node"
DATA = {"rows": [{"id": i, "name": f"item {i}", "price": 10.25 + i, "tags": ["a", "b"]} for i in range(16)]}


@pytest.fixture(scope="module")
def compressing() -> Iterator[ServerProcess]:
    srv = ServerProcess(env={"ROCKETWS_COMPRESSION": "1"}).start()
    yield srv
    assert "Traceback" not in srv.log()
    srv.kill()


def compressed_request(raw: RawWebSocket, method: str, rid: int, params: object = None) -> Any:
    """Send a compressed request (RSV1); return the reply, inflating it if compressed."""
    body = json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": rid}).encode()
    raw.sock.sendall(client_frame(TEXT, deflate_message(body), rsv=0x40))
    first, payload = raw.read_frame_with_bits()
    assert first & 0x0F == TEXT
    return json.loads(inflate_message(payload) if first & 0x40 else payload)


def test_raw_client_offer_is_accepted_and_pushes_are_compressed_on_the_wire(
    compressing: ServerProcess,
) -> None:
    clients = [RawWebSocket(compressing.ws_port, extensions=OFFER) for _ in range(2)]
    for raw in clients:
        assert ACCEPTED in raw.head
        reply = compressed_request(raw, "subscribe", 1, {"channel": "wire"})  # the server inflates it
        assert reply["result"] == {"channel": "wire", "subscribed": True}
    assert compressing.result("emit", {"channel": "wire", "data": DATA}) == {
        "channel": "wire",
        "delivered": 2,
    }
    received = [raw.read_frame_with_bits() for raw in clients]
    for first, payload in received:
        assert first == 0xC1  # FIN, RSV1 (RFC 7692 6: compressed), text
        push = json.loads(inflate_message(payload))
        assert push["method"] == "message" and push["params"]["data"] == DATA
        assert len(payload) < len(json.dumps(push)) // 2
    assert received[0] == received[1]  # compressed once: the same bytes for both
    for raw in clients:
        raw.close()


def test_raw_client_zip_bomb_closes_1009(compressing: ServerProcess) -> None:
    raw = RawWebSocket(compressing.ws_port, extensions=OFFER)
    bomb = deflate_message(b"[" * (32 << 20))  # 32 MiB in ~32 KiB on the wire
    raw.sock.sendall(client_frame(TEXT, bomb, rsv=0x40))
    assert raw.read_until_close()[1:] == (1009, "message over 65536 bytes once inflated")
    raw.close()


@pytest.mark.parametrize(
    ("frames", "reason"),
    [
        (client_frame(0x9, b"", rsv=0x40), "RSV1 set on a control frame (RFC 7692 6: never compressed)"),
        (
            client_frame(TEXT, b"[", fin=False) + client_frame(0x0, b"]", rsv=0x40),
            "RSV1 set on a continuation frame (RFC 7692 6: first frame only)",
        ),
        (client_frame(TEXT, b"\xff\xfe\xfd", rsv=0x40), "invalid compressed data ("),  # zlib's words follow
    ],
)
def test_raw_client_rsv1_misuse_closes_1002(compressing: ServerProcess, frames: bytes, reason: str) -> None:
    raw = RawWebSocket(compressing.ws_port, extensions=OFFER)
    raw.sock.sendall(frames)
    _texts, code, got = raw.read_until_close()
    assert code == 1002 and got.startswith(reason)
    raw.close()


def test_raw_client_without_an_offer_gets_plain_frames(compressing: ServerProcess) -> None:
    raw = RawWebSocket(compressing.ws_port)
    assert "Sec-WebSocket-Extensions" not in raw.head
    assert raw.call("subscribe", 1, {"channel": "mixed"})["result"]["subscribed"] is True
    packed = RawWebSocket(compressing.ws_port, extensions=OFFER)
    assert compressed_request(packed, "subscribe", 1, {"channel": "mixed"})["result"]["subscribed"] is True
    compressing.result("emit", {"channel": "mixed", "data": DATA})
    first, payload = raw.read_frame_with_bits()
    assert first == 0x81 and json.loads(payload)["params"]["data"] == DATA
    first, payload = packed.read_frame_with_bits()
    assert first == 0xC1 and json.loads(inflate_message(payload))["params"]["data"] == DATA
    raw.sock.sendall(client_frame(TEXT, deflate_message(b"[]"), rsv=0x40))  # not negotiated here
    assert raw.read_until_close()[1] == 1002
    raw.close()
    packed.close()


def test_server_with_compression_off_declines_the_offer(server: ServerProcess) -> None:
    raw = RawWebSocket(server.ws_port, extensions=OFFER)
    assert "Sec-WebSocket-Extensions" not in raw.head
    raw.sock.sendall(rpc_frame("ping", 1))
    assert raw.read_frame_with_bits() == (0x81, b'{"jsonrpc":"2.0","result":"pong","id":1}')
    raw.sock.sendall(client_frame(TEXT, deflate_message(b"[]"), rsv=0x40))
    texts, code, reason = raw.read_until_close()
    assert (code, reason) == (1002, "reserved bits set (no extension was negotiated)")
    raw.close()


def test_websockets_client_messages_flow_compressed_both_ways(compressing: ServerProcess) -> None:
    # The websockets client offers permessage-deflate by default and compresses every
    # message it sends; the server inflates them and compresses what it sends back.
    with connect(compressing.ws_url, open_timeout=10) as a, connect(compressing.ws_url, open_timeout=10) as b:
        for ws in (a, b):
            assert ws.response is not None
            assert ws.response.headers["Sec-WebSocket-Extensions"] == ACCEPTED.split(": ", 1)[1]
            (ext,) = ws.protocol.extensions
            assert isinstance(ext, PerMessageDeflate) and ext.remote_no_context_takeover
            subscribe(ws, "both-ways")
        reply = request(a, "send_data", {"channel": "both-ways", "data": DATA})
        assert reply["result"] == {"channel": "both-ways", "delivered": 1}
        assert recv_json(b)["params"]["data"] == DATA
        compressing.result("emit", {"channel": "both-ways", "data": "x" * 5000})
        assert recv_json(a)["params"]["data"] == recv_json(b)["params"]["data"] == "x" * 5000


def node_client() -> tuple[str, Path]:
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "ws").is_dir():
        if os.environ.get("CI"):  # `make test` runs npm ci: never skip in CI
            pytest.fail("node or tests/node/node_modules missing in CI")
        pytest.skip("needs node and `npm ci` in tests/node (make test does it)")
    return node, NODE_DIR / "deflate_client.mjs"


def test_ws_npm_client_negotiates_and_messages_flow_compressed(compressing: ServerProcess) -> None:
    node, script = node_client()
    proc = subprocess.Popen(
        [node, str(script), compressing.ws_url, "npm"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = iter(proc.stdout)
        assert json.loads(next(lines)) == {"upgrade": ACCEPTED.split(": ", 1)[1]}
        assert json.loads(next(lines)) == {"open": "permessage-deflate"}
        assert json.loads(next(lines))["message"]["result"] == {"channel": "npm", "subscribed": True}
        # its 1 KB send_data went compressed (threshold 0) and was understood
        assert json.loads(next(lines))["message"]["result"] == {"channel": "npm", "delivered": 0}
        compressing.result("emit", {"channel": "npm", "data": DATA})
        push = json.loads(next(lines))
        assert push["message"]["params"]["data"] == DATA and push["binary"] is False
        assert proc.wait(15) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    wait_until(lambda: compressing.result("total_subscribers", {"channel": "npm"}) == 0)
