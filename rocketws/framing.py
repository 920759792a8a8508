"""WebSocket framing helpers (RFC 6455 section 5), pure bytes in and out.

Server frames are never masked (5.1), so a frame is encoded once and its bytes can be
queued to any number of connections.
"""

from __future__ import annotations

import struct

from .codes import CloseCode
from .exceptions import ProtocolViolation

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

_FIN = 0x80
_pack_h = struct.Struct("!BBH").pack
_pack_q = struct.Struct("!BBQ").pack


def encode_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """One unmasked, final frame carrying ``payload``."""
    n = len(payload)
    first = _FIN | opcode
    if n < 126:
        return bytes((first, n)) + payload
    if n <= 0xFFFF:
        return _pack_h(first, 126, n) + payload
    return _pack_q(first, 127, n) + payload


def text_frame(payload: bytes) -> bytes:
    """A text frame; ``payload`` must already be UTF-8."""
    return encode_frame(payload, OP_TEXT)


def close_frame(code: int | None = None, reason: str = "") -> bytes:
    """A close frame with a status code and a UTF-8 reason (cut to fit 123 bytes, 5.5)."""
    if code is None:
        return encode_frame(b"", OP_CLOSE)
    raw = reason.encode("utf-8")[:123]
    raw = raw.decode("utf-8", "ignore").encode("utf-8")  # never cut inside a character
    return encode_frame(struct.pack("!H", code) + raw, OP_CLOSE)


def unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte ``mask`` (5.3), as one big-integer operation."""
    n = len(payload)
    if not n:
        return b""
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(
        n, "little"
    )


def _valid_close_code(code: int) -> bool:
    # 7.4.1/7.4.2: 1004-1006 and 1015 must not be sent; 1016-2999 are reserved.
    if code in (1004, 1005, 1006, 1015):
        return False
    return 1000 <= code <= 1014 or 3000 <= code <= 4999


def parse_close(payload: bytes) -> tuple[int | None, str]:
    """Decode a received close frame's payload into (code or None, reason).

    Raises ProtocolViolation (1002, or 1007 for a reason that is not UTF-8).
    """
    if not payload:
        return None, ""
    if len(payload) < 2:
        raise ProtocolViolation("close frame payload of 1 byte")
    (code,) = struct.unpack("!H", payload[:2])
    if not _valid_close_code(code):
        raise ProtocolViolation(f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolViolation(
            "close reason is not UTF-8", close_code=CloseCode.INVALID_PAYLOAD
        ) from None
    return code, reason
