"""permessage-deflate (RFC 7692), pure bytes in and out: negotiation, compress-once
frames for fan-out, and a bounded inflater for what clients send.

The server always answers with ``server_no_context_takeover`` (7.1.1.1): every message
it sends is compressed from an empty window, independently of any connection, so a
publication is compressed once and the same frame bytes are queued to every subscriber
that negotiated the extension.  It also always answers with ``client_no_context_takeover``,
which a server may include whether or not the offer has it (7.1.1.2): then a client's
message is inflated from an empty window too, and a connection needs an inflate context
(~40 KiB with its 32 KiB window) only while a compressed message is being received.
An idle connection holds no zlib object.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from rocketws.core import framing
from rocketws.core.codes import CloseCode
from rocketws.core.exceptions import ProtocolViolation

NAME = "permessage-deflate"
WINDOW_BITS = 15  # the server's LZ77 window (7.1.2.1): 32 KiB, zlib's largest
# 7.2.1: a compressed message is DEFLATE data flushed with an empty stored block, minus
# these 4 octets; 7.2.2: the receiver appends them back before inflating.
TRAILER = b"\x00\x00\xff\xff"
# Shorter messages (a subscribe reply is ~70 bytes) are sent uncompressed: deflate saves
# a few bytes at most there, for ~5 µs and a 32 KiB output buffer per call.
MIN_SIZE = 128

ExtensionParam = tuple[str, str | None]
"""One extension parameter: name, and its value (None when it has none)."""


class Offer(Protocol):
    """One offered extension (``core.handshake.Extension``, RFC 6455 9.1)."""

    @property
    def name(self) -> str: ...

    @property
    def params(self) -> Sequence[ExtensionParam]: ...


# -- negotiation (RFC 7692 section 7.1) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Agreement:
    """permessage-deflate as accepted: the parameters of the response, in order."""

    params: tuple[ExtensionParam, ...]

    @property
    def response(self) -> str:
        """The ``Sec-WebSocket-Extensions`` response value."""
        return "; ".join([NAME, *(key if value is None else f"{key}={value}" for key, value in self.params)])


AGREED = Agreement((("server_no_context_takeover", None), ("client_no_context_takeover", None)))
AGREED_WITH_BITS = Agreement((*AGREED.params, ("server_max_window_bits", str(WINDOW_BITS))))
"""The two responses there are: shared values, so a connection keeps no copy of its own."""

_BITS = re.compile(r"[1-9][0-9]?")  # 7.1.2.1/7.1.2.2: a decimal integer, no leading zero
_PARAMS = frozenset(
    (
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits",
        "client_max_window_bits",
    )
)


def _window_bits(value: str | None) -> int | None:
    """A valid window-bits value (8-15), or None when ``value`` is not one."""
    if value is None or not _BITS.fullmatch(value):
        return None
    bits = int(value)
    return bits if 8 <= bits <= 15 else None


def accept_offer(params: Sequence[ExtensionParam]) -> Agreement | None:
    """Accept one permessage-deflate offer, or decline it (None).

    7.1: declined when a parameter is unknown, repeated, or has an invalid value, or
    when the offer asks for what the server does not do: ``server_max_window_bits``
    below 15 (7.1.2.1 lets a server decline it; we compress once for every connection
    with a 32 KiB window).  ``client_max_window_bits`` (with or without a value) is
    fine: the inflater takes any window up to 15 bits, so the response leaves it out
    (7.1.2.2 lets it).
    """
    seen: set[str] = set()
    server_bits: int | None = None
    for name, value in params:
        if name not in _PARAMS or name in seen:
            return None
        seen.add(name)
        if name.endswith("_no_context_takeover"):
            if value is not None:  # 7.1.1.1, 7.1.1.2: no value
                return None
        elif name == "server_max_window_bits":
            server_bits = _window_bits(value)  # 7.1.2.1: a value is required
            if server_bits is None or server_bits < WINDOW_BITS:
                return None
        elif value is not None and _window_bits(value) is None:  # client_max_window_bits
            return None
    # An offer with server_max_window_bits expects it back (clients such as the
    # websockets library fail the handshake otherwise); 15 is what we use.
    return AGREED if server_bits is None else AGREED_WITH_BITS


def negotiate(offers: Sequence[Offer], enabled: bool) -> Agreement | None:
    """The first acceptable permessage-deflate offer (RFC 7692 5: offers are in the
    client's order of preference), or None: the extension is not used.

    Nothing is accepted when compression is off.  No other extension is ever accepted,
    so nothing else can claim RSV1 (RFC 7692 5).
    """
    if not enabled:
        return None
    for offer in offers:
        if offer.name == NAME and (agreement := accept_offer(offer.params)) is not None:
            return agreement
    return None


# -- sending: compress once (RFC 7692 section 7.2.1) ----------------------------------------


class Deflater:
    """Compresses whole messages, each independently of every other (7.1.1.1).

    One zlib stream is kept per process and flushed with Z_FULL_FLUSH after each
    message: that resets the compression state (no match refers to an earlier message)
    and ends the output with an empty stored block, whose last 4 octets are removed
    (7.2.1).  So the ~260 KiB of compressor state is allocated once, not per message.
    """

    __slots__ = ("_z", "level")

    def __init__(self, level: int = zlib.Z_DEFAULT_COMPRESSION) -> None:
        self.level = level
        self._z = zlib.compressobj(level, zlib.DEFLATED, -WINDOW_BITS)

    def compress(self, payload: bytes) -> bytes:
        """The message's compressed bytes, as they go in a frame (7.2.1)."""
        z = self._z
        data = z.compress(payload) + z.flush(zlib.Z_FULL_FLUSH)
        return data[:-4] if data.endswith(TRAILER) else data

    def frame(self, payload: bytes, plain: bytes) -> bytes:
        """The frame for connections that negotiated permessage-deflate: compressed
        (RSV1), or ``plain`` itself when the payload is under MIN_SIZE bytes or
        compressing does not make it smaller (RFC 7692 6: a message may be sent
        uncompressed on such a connection)."""
        if len(payload) < MIN_SIZE:
            return plain
        frame = framing.encode_frame(self.compress(payload), framing.OP_TEXT, compressed=True)
        return frame if len(frame) < len(plain) else plain


# -- receiving: inflate with a bound (RFC 7692 section 7.2.2) ---------------------------------


class Inflater:
    """Inflates one compressed message, fragment by fragment, to at most ``limit`` bytes.

    Made when a compressed message begins and dropped when it ends: with
    ``client_no_context_takeover`` (always in our response) every message starts from
    an empty window.  Output is asked from zlib ``max_length`` bytes at a time, so a
    small payload that would inflate to gigabytes (a zip bomb) costs at most ``limit``
    bytes of memory before it is refused with 1009.
    """

    __slots__ = ("_z", "_left", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._left = limit
        self._z = zlib.decompressobj(-WINDOW_BITS)  # takes any client window up to 15 bits

    def inflate(self, data: bytes, final: bool) -> bytes:
        """Inflate the next fragment's payload (``final``: the message's last).

        Raises ProtocolViolation: 1009 when the message inflates to more than ``limit``
        bytes, 1002 for data that is not DEFLATE (or goes on after a final block).
        """
        z = self._z
        if final:
            data += TRAILER  # 7.2.2
        if z.eof:  # 7.2.3.4: a block with BFINAL ends the message's DEFLATE data
            if data and data != TRAILER:
                raise ProtocolViolation("compressed data after the final DEFLATE block")
            return b""
        try:
            out = z.decompress(data, self._left + 1)
        except zlib.error as exc:
            raise ProtocolViolation(f"invalid compressed data ({exc})") from None
        if len(out) > self._left:
            raise ProtocolViolation(
                f"message over {self.limit} bytes once inflated",
                close_code=CloseCode.MESSAGE_TOO_BIG,
            )
        self._left -= len(out)
        if z.eof and z.unused_data not in (b"", TRAILER):
            raise ProtocolViolation("compressed data after the final DEFLATE block")
        return out
