"""A raw WebSocket client for tests that must send what a real client library won't."""

from __future__ import annotations

import base64
import os
import socket
import struct


def client_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, mask: bool = True,
                 rsv: int = 0, length: int | None = None) -> bytes:
    """A client frame as a browser would send it (masked unless told otherwise)."""
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



class RawWebSocket:
    """Handshake done by hand; frames sent and read as bytes."""

    def __init__(self, port: int, rcvbuf: int | None = None, timeout: float = 10.0,
                 pipelined: bytes = b"") -> None:
        """Connect and upgrade; ``pipelined``: bytes sent in the same write as the request."""
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
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
        self.buf = b""

    def send_frame(self, opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True,
                   length: int | None = None) -> None:
        self.sock.sendall(client_frame(opcode, payload, fin=fin, mask=mask, length=length))

    def send_text(self, text: str) -> None:
        self.send_frame(0x1, text.encode())

    def _need(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_frame(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next frame; EOFError when the TCP stream ends."""
        b1, b2 = self._need(2)
        n = b2 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._need(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._need(8))
        assert not b2 & 0x80, "server frames must not be masked"
        return b1 & 0x0F, self._need(n)

    def read_until_close(self) -> tuple[list[bytes], int | None, str]:
        """Read frames until a close frame; return (text payloads, code, reason)."""
        texts: list[bytes] = []
        while True:
            opcode, payload = self.read_frame()
            if opcode == 0x8:
                if len(payload) >= 2:
                    (code,) = struct.unpack("!H", payload[:2])
                    return texts, code, payload[2:].decode()
                return texts, None, ""
            if opcode == 0x1:
                texts.append(payload)

    def close(self) -> None:
        self.sock.close()
