"""Fuzzing a real server: generated bad input over WebSocket and HTTP, pipelined with probes.

Deterministic (one seed) and bounded (FUZZ_CASES documents and frames in all).  The test
fails on a traceback in the server log, on a wrong answer to a valid probe sent after
bad input (every probe's answer is checked exactly), on a WebSocket closed with 1011 or
closed at all by well-framed UTF-8 text, on an HTTP answer that is not a well-formed
response, and on a leak: once every fuzz connection is closed, health reports no
connection and no channel.
"""

from __future__ import annotations

import json
import random
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from .support import ServerProcess, StartServer, nested, wait_until
from .wsraw import CLOSE, PING, PONG, TEXT, RawWebSocket, client_frame, close_payload

SEED = 20261201
FUZZ_CASES = 20_000  # documents and frames, over all the parts below
PROBE_EVERY = 16  # documents (over all connections) between two rounds of probes
BIG = "12345678901234567890"

CLIENT_METHODS = ["subscribe", "unsubscribe", "send_data", "subscriptions", "ping", "heartbeat", "emit"]
BACKEND_METHODS = ["emit", "notify_all", "available_channels", "total_subscribers", "ping", "subscribe"]
ODD_TEXT = [
    "",
    "é",
    "\u2028",
    "\x00",
    "\\",
    '"',
    "ä½ å¥½",
    "\U0001f600",
    "a" * 300,
    "null",
    "12345678901234567890",
]
NUMBERS = [
    "0",
    "-0",
    "1.5",
    "1e400",
    "-1e400",
    "1e-400",
    BIG,
    "-" + BIG,
    "-9223372036854775809",
    "NaN",
    "Infinity",
    "01",
    "1.",
]
SNIPPETS = ["[", "]", "{", "}", '"', "\\", ",", ":", "\\ud800", "\\u0000", "tru", "nul", "-", "e5", "\n", " "]


def _value(rng: random.Random, depth: int = 0) -> Any:
    pick = rng.random()
    if depth > 3 or pick < 0.5:
        return rng.choice(
            [
                None,
                True,
                False,
                rng.randint(-(2**70), 2**70),
                rng.random() * 1e6,
                rng.choice(ODD_TEXT),
                rng.randint(-5, 5),
            ]
        )
    if pick < 0.75:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {
        rng.choice(ODD_TEXT + ["channel", "data", "id"]): _value(rng, depth + 1)
        for _ in range(rng.randint(0, 4))
    }


def _request(rng: random.Random, methods: list[str], channels: list[str]) -> dict[str, Any]:
    req: dict[str, Any] = {"jsonrpc": rng.choice(["2.0"] * 8 + ["1.0", 2.0]), "method": rng.choice(methods)}
    shape = rng.random()
    if shape < 0.5:
        req["params"] = {"channel": rng.choice(channels), "data": _value(rng)}
    elif shape < 0.7:
        req["params"] = [rng.choice(channels), _value(rng)][: rng.randint(0, 3)]
    elif shape < 0.85:
        req["params"] = _value(rng)
    if rng.random() < 0.8:
        req["id"] = rng.choice([rng.randint(-(2**70), 2**70), rng.choice(ODD_TEXT), None, 1.5, [1], True])
    if rng.random() < 0.05:
        req["extra"] = 1
    return req


def fuzz_document(rng: random.Random, methods: list[str], channels: list[str]) -> str:
    """One generated JSON-RPC document (valid, invalid or not JSON at all), as text."""
    kind = rng.random()
    if kind < 0.3:
        return json.dumps(_request(rng, methods, channels))
    if kind < 0.45:
        return json.dumps([_request(rng, methods, channels) for _ in range(rng.randint(0, 6))])
    if kind < 0.55:
        return json.dumps(_value(rng))
    if kind < 0.63:  # deep nesting, on both decoder paths, as data or as the whole document
        depth = rng.choice([rng.randint(55, 70), rng.randint(300, 340), rng.randint(950, 1100)])
        inner = nested(depth, rng.choice(["1", BIG, "1e400"]), rng.choice(["array", "object"]))
        if rng.random() < 0.5:
            return inner
        return json.dumps(
            {"jsonrpc": "2.0", "method": rng.choice(methods), "params": ["c", 0], "id": 1}
        ).replace("0]", inner + "]")
    if kind < 0.7:  # numbers JSON cannot hold, or that only the stdlib path keeps exact
        number = rng.choice(NUMBERS)
        return (
            f'{{"jsonrpc":"2.0","method":"{rng.choice(methods)}","params":[{number}, {BIG}],"id":{number}}}'
        )
    if kind < 0.75:  # a batch over the limit (or just at it: 1,000 errors answered)
        return "[" + ",".join(["1"] * rng.choice([1000, 1001, 1001, 1002, 1003, 5000])) + "]"
    text = json.dumps(_request(rng, methods, channels))  # mutated: cut, spliced, garbled
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(text) + 1)
        text = text[:i] + rng.choice(SNIPPETS) + text[i + rng.randint(0, 3) :]
    return text


def _is_response(obj: Any) -> bool:
    if not isinstance(obj, dict) or obj.get("jsonrpc") != "2.0" or "id" not in obj:
        return False
    if "error" in obj:
        error = obj["error"]
        return isinstance(error, dict) and isinstance(error.get("code"), int) and error["code"] != -32603
    return "result" in obj


def assert_answer(payload: bytes) -> None:
    """A well-formed JSON-RPC answer (a response, a batch of responses), never -32603."""
    answer = json.loads(payload)
    members = answer if isinstance(answer, list) else [answer]
    assert members and all(_is_response(m) for m in members), payload[:300]


# -- WebSocket ---------------------------------------------------------------------------


def _send_probe(ws: RawWebSocket, n: int) -> str:
    rid = f"probe-{n}"
    ws.send_text(json.dumps({"jsonrpc": "2.0", "method": "ping", "id": rid}))
    return rid


def _read_probe(ws: RawWebSocket, rid: str) -> None:
    """Every frame before the probe's answer must be a well-formed answer or a push."""
    while True:
        opcode, payload = ws.read_frame()
        assert opcode == TEXT, (opcode, payload[:200])
        message = json.loads(payload)
        if isinstance(message, dict) and message.get("id") == rid:
            assert message == {"jsonrpc": "2.0", "result": "pong", "id": rid}
            return
        if isinstance(message, dict) and message.get("method") in ("message", "broadcast"):
            continue  # a push from another fuzz connection's send_data
        assert_answer(payload)


def fuzz_websocket_documents(server: ServerProcess, rng: random.Random, cases: int) -> int:
    """Well-framed UTF-8 text documents: answered, never closing the connection."""
    channels = [f"fuzz-{i}" for i in range(6)] + ["", "x" * 300, "\x07bell", "ns:room"]
    sockets = [RawWebSocket(server.ws_port) for _ in range(4)]
    for ws in sockets:  # many small frames: Nagle's algorithm would hold each for an ACK
        ws.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for n in range(cases):
        ws = sockets[n % len(sockets)]
        text = fuzz_document(rng, CLIENT_METHODS, channels)
        ws.send_frame(TEXT, text.encode("utf-8", "surrogatepass").decode("utf-8", "replace").encode())
        if n % PROBE_EVERY == PROBE_EVERY - 1:  # probes on every connection, then answers
            rids = [_send_probe(other, n * 10 + i) for i, other in enumerate(sockets)]
            for other, rid in zip(sockets, rids, strict=True):
                _read_probe(other, rid)
    for ws in sockets:
        _read_probe(ws, _send_probe(ws, -1))
        ws.close()  # no close frame: an abrupt end must clean up too
    return cases


def _frame_fuzz(rng: random.Random) -> bytes:
    """One or a few frames breaking RFC 6455 in some way (or not at all)."""
    kind = rng.randrange(10)
    payload = rng.randbytes(rng.randint(0, 40))
    if kind == 0:
        return client_frame(TEXT, b'{"jsonrpc":"2.0"}', mask=False)
    if kind == 1:
        return client_frame(rng.choice([0x3, 0x7, 0xB, 0xF, 0x2]), payload)
    if kind == 2:
        return client_frame(TEXT, payload, rsv=rng.choice([0x40, 0x20, 0x10]))
    if kind == 3:
        return client_frame(TEXT, rng.randbytes(8) + b"\xff\xfe")  # not UTF-8
    if kind == 4:
        return client_frame(TEXT, b"", length=rng.choice([70_000, 2**40, 2**63 - 1]))
    if kind == 5:
        return (
            client_frame(rng.choice([PING, CLOSE]), b"x" * 126)
            if rng.random() < 0.5
            else client_frame(PING, payload, fin=False)
        )
    if kind == 6:
        return client_frame(0x0, payload)  # continuation without a message
    if kind == 7:
        return client_frame(TEXT, b"[1,", fin=False) + client_frame(TEXT, b"2]")  # new message inside
    if kind == 8:
        code = rng.choice([1000, 1001, 1005, 999, 2000, 4000, 4999, 1015])
        return client_frame(
            CLOSE, close_payload(code, rng.choice(["", "bye", "é"])) + rng.choice([b"", b"\xff"])
        )
    return client_frame(PING, payload[:20]) + client_frame(PONG, payload[:10])


def fuzz_websocket_frames(server: ServerProcess, rng: random.Random, cases: int) -> int:
    """Frame-level violations: a close frame with a defined code (never 1011), or served."""
    for n in range(cases):
        ws = RawWebSocket(server.ws_port)
        ws.sock.sendall(_frame_fuzz(rng))
        ws.sock.sendall(
            client_frame(TEXT, json.dumps({"jsonrpc": "2.0", "method": "ping", "id": n}).encode())
        )
        try:
            while True:
                opcode, payload = ws.read_frame()
                if opcode == CLOSE:
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                    assert code != 1011 and (code is None or 1000 <= code <= 4999), payload
                    break
                if opcode == TEXT:
                    assert json.loads(payload) == {"jsonrpc": "2.0", "result": "pong", "id": n}
                    break
                assert opcode == PONG
        except (EOFError, ConnectionResetError):
            pass  # after a close frame of the client's, the server may drop TCP at once
        finally:
            ws.close()
    return cases


# -- HTTP --------------------------------------------------------------------------------


class HttpReader:
    """Reads pipelined responses (Content-Length or 204) from one socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _need(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            chunk = self.sock.recv(65536)
            assert chunk, f"closed mid-response: {self.buf[:200]!r}"
            self.buf += chunk

    def response(self) -> tuple[int, bytes, bytes]:
        self._need(lambda: b"\r\n\r\n" in self.buf)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 "), head[:200]
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        self._need(lambda: len(self.buf) >= length)
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, head, body


def _post(body: bytes) -> bytes:
    return b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def _connect(server: ServerProcess) -> socket.socket:
    host, port = server.ms_url.split("//")[1].rstrip("/").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def fuzz_http_bodies(server: ServerProcess, rng: random.Random, cases: int) -> int:
    """Bodies pipelined on keep-alive connections, a probe after every PROBE_EVERY."""
    channels = [f"fuzz-{i}" for i in range(6)] + ["", "\x07bell"]
    done = 0
    with _connect(server) as sock:
        reader = HttpReader(sock)
        while done < cases:
            count = min(PROBE_EVERY, cases - done)
            bodies = []
            for _ in range(count):
                text = fuzz_document(rng, BACKEND_METHODS, channels)
                body = text.encode("utf-8", "surrogatepass")
                if rng.random() < 0.05:
                    body = body[: rng.randrange(len(body) + 1)] + rng.choice(
                        [b"\xff", b"\xc3", b"\xed\xa0\x80"]
                    )
                bodies.append(body)
            rid = rng.choice([rng.randint(-(2**80), 2**80), f"probe-{done}", -(2**63) - 1])
            probe = json.dumps({"jsonrpc": "2.0", "method": "ping", "id": rid}).encode()
            sock.sendall(b"".join(_post(b) for b in bodies) + _post(probe))
            for body in bodies:
                status, head, answer = reader.response()
                assert status in (200, 204), (head, body[:200])
                if status == 200:
                    assert_answer(answer)
            status, _, answer = reader.response()
            assert status == 200 and json.loads(answer) == {"jsonrpc": "2.0", "result": "pong", "id": rid}
            done += count
    return done


BAD_HEADS = [
    b"POST / HTTP/1.1\r\nContent-Length: " + b"0" * 4400 + b"5\r\n\r\n",
    b"POST / HTTP/2.0\r\nContent-Length: 2\r\n\r\n{}",
    b"GET /\r\n\r\n",
    b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    b"POST / HTTP/1.1\r\nBad Header\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS hello
    b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03\x01",
    b"POST / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nContent-Length: 2\r\n\r\n{}",
    b"POST / HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n[]",
    b"POST / HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n",
]


def fuzz_http_heads(server: ServerProcess, rng: random.Random, cases: int) -> int:
    """Valid requests, then a broken or odd head, pipelined: the valid ones are answered
    first, exactly; the broken one gets an error status and the connection closes."""
    for n in range(cases):
        bad = rng.choice(BAD_HEADS)
        if rng.random() < 0.5:  # garble a valid head at one place
            head = bytearray(_post(b"{}"))
            head[rng.randrange(len(head))] = rng.choice(b"\x00 :\r\n\x7f\xff")
            bad = bytes(head)
        good = [json.dumps({"jsonrpc": "2.0", "method": "ping", "id": f"{n}-{i}"}).encode() for i in range(2)]
        with _connect(server) as sock:
            sock.sendall(b"".join(_post(b) for b in good) + bad)
            reader = HttpReader(sock)
            for i in range(2):
                status, _, answer = reader.response()
                assert status == 200 and json.loads(answer) == {
                    "jsonrpc": "2.0",
                    "result": "pong",
                    "id": f"{n}-{i}",
                }
            sock.shutdown(socket.SHUT_WR)  # whatever the bad bytes meant, the request ends here
            rest = reader.buf
            while chunk := sock.recv(65536):
                rest += chunk
        if rest:  # an answer, or nothing (a garbled byte may still make a valid head)
            assert rest.startswith(b"HTTP/1.1 "), rest[:200]
            assert int(rest[9:12]) in (200, 204, 400, 404, 405, 408, 413, 431, 505), rest[:200]
    return cases


def test_fuzz_websocket_and_http(start_server: StartServer) -> None:
    # The rate limit is off: 12,000 documents on a few connections are a fuzz run, not
    # abuse (the limit has its own tests in tests/test_e2e_permissions.py).
    server = start_server(ROCKETWS_RATE_LIMIT="0")
    rng = random.Random(SEED)
    started = time.monotonic()
    ws_frames = fuzz_websocket_frames(server, rng, FUZZ_CASES // 20)
    http_heads = fuzz_http_heads(server, rng, FUZZ_CASES // 20)
    http_bodies = fuzz_http_bodies(server, rng, FUZZ_CASES * 3 // 10)
    ws_docs = fuzz_websocket_documents(server, rng, FUZZ_CASES - ws_frames - http_heads - http_bodies)
    assert ws_frames + http_heads + http_bodies + ws_docs == FUZZ_CASES
    # Nothing leaks: every fuzz connection is gone, and with it every subscription.
    wait_until(
        lambda: server.health() == {"status": "ok", "broker": "ok", "connections": 0, "channels": 0},
        what="no leak",
    )
    assert server.result("available_channels") == []
    server.assert_no_traceback()
    assert time.monotonic() - started < 60
