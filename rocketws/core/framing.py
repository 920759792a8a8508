"""WebSocket framing (RFC 6455 section 5), pure bytes in and out.

Server frames are never masked (5.1), so a frame is encoded once and its bytes can be
queued to any number of connections.  ``FrameReader`` parses what a client sends into
events (whole text messages, pings, pongs, close), incrementally, with no I/O; with
permessage-deflate negotiated (RFC 7692, ``core.deflate``) it inflates compressed
messages too.
"""

from __future__ import annotations

import codecs
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from rocketws.core.codes import CloseCode
from rocketws.core.exceptions import ProtocolViolation

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

_FIN = 0x80
_RSV1 = 0x40  # RFC 7692 6: the "Per-Message Compressed" bit
MAX_FRAGMENTS = 1024  # per message; browsers do not fragment text messages at all
_pack_h = struct.Struct("!BBH").pack
_pack_q = struct.Struct("!BBQ").pack


def encode_frame(payload: bytes, opcode: int = OP_TEXT, *, compressed: bool = False) -> bytes:
    """One unmasked, final frame carrying ``payload``; ``compressed``: RSV1 set (RFC
    7692 6), for a text message compressed with permessage-deflate."""
    n = len(payload)
    first = _FIN | _RSV1 | opcode if compressed else _FIN | opcode
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
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


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
        raise ProtocolViolation("close reason is not UTF-8", close_code=CloseCode.INVALID_PAYLOAD) from None
    return code, reason


# -- reading client frames ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TextMessage:
    """A whole text message (all its fragments joined), decoded from UTF-8."""

    text: str


@dataclass(frozen=True, slots=True)
class Ping:
    """A ping frame; the peer expects a pong with the same payload (5.5.2)."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    """A pong frame (5.5.3): nothing to answer."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Close:
    """A close frame (5.5.1): the code (None when the frame had no payload) and reason."""

    code: int | None
    reason: str


Event = TextMessage | Ping | Pong | Close

_CONTROL = 0x8
_KNOWN_OPCODES = frozenset((OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG))


class Inflate(Protocol):
    """Inflates one compressed message (``core.deflate.Inflater``)."""

    def inflate(self, data: bytes, final: bool) -> bytes:
        """The next fragment's payload, inflated; raises ProtocolViolation."""


_utf8_decoder = codecs.getincrementaldecoder("utf-8")


class _Fragments:
    """A fragmented text message in progress: its text so far, decoded fragment by
    fragment, and the decoder (and inflater) that carry over between fragments."""

    __slots__ = ("parts", "size", "decoder", "inflate")

    def __init__(self, inflate: Inflate | None) -> None:
        self.parts: list[str] = []
        self.size = 0  # bytes on the wire so far
        self.decoder = _utf8_decoder()
        self.inflate = inflate


class FrameReader:
    """Incremental parser of a client's frames into events (RFC 6455 5.2-5.6), no I/O.

    ``feed`` the bytes as they arrive, in order; then call ``next_event`` until it returns
    None (it needs more bytes).  Each frame header is checked as soon as it is complete,
    before its payload arrives, so a frame announcing more than ``max_message_size``
    bytes is refused without buffering it.  ``next_event`` raises ProtocolViolation
    (with the close code to send) for a bad frame or a limit; events before the bad
    frame are returned first.  Whether to read on after a Close event or a violation
    (RFC 6455 says not) is the connection's decision (``core.connection``), which then
    calls ``clear``.

    ``inflater``: given when permessage-deflate was negotiated (``core.deflate.Inflater``);
    called with ``max_message_size`` for each compressed message, which may then inflate
    to at most that many bytes.  A fragmented message is checked as UTF-8 fragment by
    fragment (RFC 6455 8.1), with a decoder (and an inflater) that exist only while it
    is in progress: an idle reader holds neither.
    """

    __slots__ = ("max_message_size", "_inflater", "_buf", "_fragments")

    def __init__(
        self, max_message_size: int = 64 * 1024, inflater: Callable[[int], Inflate] | None = None
    ) -> None:
        self.max_message_size = max_message_size
        self._inflater = inflater
        self._buf = bytearray()
        self._fragments: _Fragments | None = None  # an unfinished message

    @property
    def buffered(self) -> int:
        """Bytes fed but not yet consumed by an event."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append received bytes."""
        self._buf += data

    def next_event(self) -> Event | None:
        """The next complete event, or None when more bytes are needed.

        Raises ProtocolViolation (see ``_next_event``); the buffer is dropped with it,
        since nothing after a bad frame can be framed.
        """
        try:
            return self._next_event()
        except ProtocolViolation:
            self.clear()
            raise

    def _next_event(self) -> Event | None:
        """Parse the next event.

        Raises ProtocolViolation: 1002 for malformed framing (unmasked frame, reserved
        bits, unknown opcode, bad fragmentation, bad control frame or close payload, bad
        compressed data), 1003 for a binary frame, 1007 for a text message that is not
        UTF-8 (at its first fragment that cannot be), 1009 for a message over
        ``max_message_size`` bytes (whole, summed across fragments, or once inflated) or
        in more than MAX_FRAGMENTS fragments.
        """
        while True:
            buf = self._buf
            have = len(buf)
            if have < 2:
                return None
            first, second = buf[0], buf[1]
            length = second & 0x7F
            start = 2
            if length == 126:  # 5.2: 16-bit extended payload length
                if have < 4:
                    return None
                length = int.from_bytes(buf[2:4], "big")
                start = 4
            elif length == 127:  # 5.2: 64-bit extended payload length
                if have < 10:
                    return None
                length = int.from_bytes(buf[2:10], "big")
                start = 10
            opcode = self._check_header(first, second, length)
            end = start + 4 + length
            if have < end:
                return None
            mask = bytes(buf[start : start + 4])
            payload = unmask(bytes(buf[start + 4 : end]), mask) if length else b""
            if end == have:
                self._buf = bytearray()  # an idle reader keeps no buffer
            else:
                del buf[:end]
            event = self._event(first, opcode, payload)
            if event is not None:
                return event

    def _check_header(self, first: int, second: int, length: int) -> int:
        """Validate a frame header (before its payload is read); return its opcode."""
        opcode = first & 0x0F
        if opcode & _CONTROL:
            # 5.5: control frames are never fragmented and carry at most 125 bytes.
            if not first & _FIN:
                raise ProtocolViolation("fragmented control frame")
            if length > 125:
                raise ProtocolViolation("control frame payload over 125 bytes")
        if first & 0x70:
            self._check_reserved_bits(first & 0x70, opcode)
        if not second & 0x80:
            raise ProtocolViolation("client frames must be masked (RFC 6455 5.1)")
        if opcode == OP_BINARY:
            raise ProtocolViolation(
                "binary frames are not supported; send JSON-RPC as text",
                close_code=CloseCode.UNSUPPORTED_DATA,
            )
        if opcode not in _KNOWN_OPCODES:  # 5.2: reserved opcodes
            raise ProtocolViolation(f"unknown opcode {opcode}")
        fragments = self._fragments
        if opcode == OP_TEXT and fragments is not None:
            raise ProtocolViolation("new message inside a fragmented message")  # 5.4
        if opcode == OP_CONTINUATION:
            if fragments is None:
                raise ProtocolViolation("continuation frame without a message")  # 5.4
            if len(fragments.parts) >= MAX_FRAGMENTS:
                # Refused at the header of fragment MAX_FRAGMENTS + 1: empty fragments add
                # nothing to the size, but each costs memory and time.
                raise ProtocolViolation(
                    f"message in more than {MAX_FRAGMENTS} fragments",
                    close_code=CloseCode.MESSAGE_TOO_BIG,
                )
        size = fragments.size if fragments is not None and opcode == OP_CONTINUATION else 0
        if not opcode & _CONTROL and size + length > self.max_message_size:
            raise ProtocolViolation(
                f"message over {self.max_message_size} bytes",
                close_code=CloseCode.MESSAGE_TOO_BIG,
            )
        return opcode

    def _check_reserved_bits(self, rsv: int, opcode: int) -> None:
        """RFC 6455 5.2: reserved bits fail the connection unless an extension gives them
        a meaning; permessage-deflate gives RSV1 one, on a message's first frame only
        (RFC 7692 6)."""
        if self._inflater is None:
            raise ProtocolViolation("reserved bits set (no extension was negotiated)")
        if rsv != _RSV1:
            raise ProtocolViolation("reserved bits RSV2/RSV3 set (permessage-deflate uses RSV1 only)")
        if opcode & _CONTROL:
            raise ProtocolViolation("RSV1 set on a control frame (RFC 7692 6: never compressed)")
        if opcode == OP_CONTINUATION:
            raise ProtocolViolation("RSV1 set on a continuation frame (RFC 7692 6: first frame only)")

    def _event(self, first: int, opcode: int, payload: bytes) -> Event | None:
        """Turn one checked, unmasked frame into an event (None: a non-final fragment)."""
        if opcode == OP_PING:
            return Ping(payload)
        if opcode == OP_PONG:
            return Pong(payload)
        if opcode == OP_CLOSE:
            code, reason = parse_close(payload)
            return Close(code, reason)
        fin = first & _FIN
        fragments = self._fragments
        if fragments is None:  # the first frame of a text message
            inflater = self._inflater if first & _RSV1 else None
            if fin:  # the whole message: no decoder object needed
                if inflater is not None:
                    payload = inflater(self.max_message_size).inflate(payload, True)
                try:
                    return TextMessage(payload.decode("utf-8"))
                except UnicodeDecodeError:
                    raise _not_utf8() from None
            fragments = _Fragments(None if inflater is None else inflater(self.max_message_size))
            self._fragments = fragments
        wire = len(payload)
        if fragments.inflate is not None:
            payload = fragments.inflate.inflate(payload, bool(fin))
        try:
            # RFC 6455 8.1: fail as soon as the bytes so far cannot be UTF-8.
            fragments.parts.append(fragments.decoder.decode(payload, bool(fin)))
        except UnicodeDecodeError:
            raise _not_utf8() from None
        if not fin:
            fragments.size += wire
            return None
        self._fragments = None
        return TextMessage("".join(fragments.parts))

    def clear(self) -> None:
        """Drop everything buffered (after a close frame or a violation: 5.5.1, 7.1.7)."""
        self._buf = bytearray()
        self._fragments = None


def _not_utf8() -> ProtocolViolation:
    return ProtocolViolation("text message is not valid UTF-8", close_code=CloseCode.INVALID_PAYLOAD)
