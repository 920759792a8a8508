"""The one WebSocket frame codec of the tests, and a raw client built on it.

``client_frame`` builds what a browser sends (RFC 6455 section 5.2, masked unless told
otherwise); ``split_frames`` parses what the server sends; ``RawWebSocket`` does the
handshake by hand for tests that must send what a real client library won't.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import zlib
from collections.abc import Callable
from typing import Any

TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA


def client_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    mask: bool = True,
    rsv: int = 0,
    length: int | None = None,
) -> bytes:
    """A client frame as a browser would send it (masked unless told otherwise).

    ``length`` announces a payload length other than ``len(payload)``.
    """
    n = len(payload) if length is None else length
    first = (0x80 if fin else 0) | rsv | opcode
    mbit = 0x80 if mask else 0
    if n < 126:
        header = struct.pack("!BB", first, mbit | n)
    elif n <= 0xFFFF:
        header = struct.pack("!BBH", first, mbit | 126, n)
    else:
        header = struct.pack("!BBQ", first, mbit | 127, n)
    if not mask:
        return header + payload
    key = os.urandom(4)
    return header + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def close_payload(code: int, reason: str = "") -> bytes:
    """The payload of a close frame: a 2-byte code, then the UTF-8 reason (section 5.5.1)."""
    return struct.pack("!H", code) + reason.encode()


def rpc_frame(method: str, rid: int, params: object = None) -> bytes:
    """A masked text frame holding one JSON-RPC request."""
    req: dict[str, object] = {"jsonrpc": "2.0", "method": method, "id": rid}
    if params is not None:
        req["params"] = params
    return client_frame(TEXT, json.dumps(req).encode())


def split_frames(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Parse unmasked server frames: ``([(opcode, payload), ...], bytes left over)``."""
    frames, rest = split_frames_with_bits(data)
    return [(first & 0x0F, payload) for first, payload in frames], rest


def split_frames_with_bits(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """``split_frames`` with each frame's whole first byte (FIN, RSV1-3, opcode)."""
    frames: list[tuple[int, bytes]] = []
    while len(data) >= 2:
        b1, b2 = data[0], data[1]
        assert not b2 & 0x80, "server frames must not be masked"
        n, start = b2 & 0x7F, 2
        if n == 126:
            if len(data) < 4:
                break
            (n,), start = struct.unpack("!H", data[2:4]), 4
        elif n == 127:
            if len(data) < 10:
                break
            (n,), start = struct.unpack("!Q", data[2:10]), 10
        if len(data) < start + n:
            break
        frames.append((b1, data[start : start + n]))
        data = data[start + n :]
    return frames, data


class RawWebSocket:
    """Handshake done by hand; frames sent and read as bytes.

    ``connect`` makes the TCP socket: ``gevent.socket.create_connection`` lets the client
    share the gevent hub with a server running in the test process.
    """

    def __init__(
        self,
        port: int,
        rcvbuf: int | None = None,
        timeout: float = 10.0,
        pipelined: bytes = b"",
        connect: Callable[..., socket.socket] | None = None,
        path: str = "/",
        extensions: str | None = None,
    ) -> None:
        """Connect and upgrade ``path``; ``pipelined``: bytes sent in the same write as the
        request; ``extensions``: a ``Sec-WebSocket-Extensions`` offer (the response is
        ``head``)."""
        if connect is None:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            if rcvbuf is not None:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.settimeout(timeout)
            self.sock.connect(("127.0.0.1", port))
        else:
            self.sock = connect(("127.0.0.1", port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n"
                + (f"Sec-WebSocket-Extensions: {extensions}\r\n" if extensions else "")
                + "\r\n"
            ).encode()
            + pipelined
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError("closed during handshake")
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head
        self.head = head.decode("latin-1")
        self.buf = b""
        self._frames: list[tuple[int, bytes]] = []

    def send_frame(
        self, opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True, length: int | None = None
    ) -> None:
        self.sock.sendall(client_frame(opcode, payload, fin=fin, mask=mask, length=length))

    def send_text(self, text: str) -> None:
        self.send_frame(TEXT, text.encode())

    def read_frame(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next frame; EOFError when the TCP stream ends."""
        first, payload = self.read_frame_with_bits()
        return first & 0x0F, payload

    def read_frame_with_bits(self) -> tuple[int, bytes]:
        """(first byte: FIN, RSV1-3, opcode; payload) of the next frame."""
        while not self._frames:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            frames, self.buf = split_frames_with_bits(self.buf + chunk)
            self._frames.extend(frames)
        return self._frames.pop(0)

    def call(self, method: str, rid: int, params: object = None) -> Any:
        """Send one JSON-RPC request; return the decoded next text frame."""
        self.sock.sendall(rpc_frame(method, rid, params))
        opcode, payload = self.read_frame()
        assert opcode == TEXT, (opcode, payload)
        return json.loads(payload)

    def read_until_close(self) -> tuple[list[bytes], int | None, str]:
        """Read frames until a close frame; return (text payloads, code, reason)."""
        texts: list[bytes] = []
        while True:
            opcode, payload = self.read_frame()
            if opcode == CLOSE:
                if len(payload) >= 2:
                    (code,) = struct.unpack("!H", payload[:2])
                    return texts, code, payload[2:].decode()
                return texts, None, ""
            if opcode == TEXT:
                texts.append(payload)

    def close(self) -> None:
        self.sock.close()


def deflate_message(payload: bytes) -> bytes:
    """A message compressed as a permessage-deflate client does it (RFC 7692 7.2.1):
    DEFLATE, flushed with an empty stored block, its last 4 octets removed; written
    with zlib directly, independently of the server's code."""
    z = zlib.compressobj(wbits=-15)
    data = z.compress(payload) + z.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(b"\x00\x00\xff\xff")
    return data[:-4]


def inflate_message(data: bytes) -> bytes:
    """A received compressed message's payload (RFC 7692 7.2.2: append 00 00 ff ff)."""
    return zlib.decompressobj(wbits=-15).decompress(data + b"\x00\x00\xff\xff")
