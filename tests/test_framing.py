"""Unit tests of WebSocket framing helpers (rocketws.framing)."""

from __future__ import annotations

import os
import struct

import pytest

from rocketws import framing
from rocketws.exceptions import ProtocolViolation


@pytest.mark.parametrize(("n", "header_len"), [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)])
def test_encode_frame_lengths(n: int, header_len: int) -> None:
    frame = framing.text_frame(b"a" * n)
    assert frame[0] == 0x81 and len(frame) == n + header_len
    assert not frame[1] & 0x80  # never masked


def test_unmask_matches_bytewise_xor() -> None:
    for n in (0, 1, 3, 4, 5, 1000):
        payload, mask = os.urandom(n), os.urandom(4)
        assert framing.unmask(payload, mask) == bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def test_close_frame_has_code_and_utf8_reason_cut_to_fit() -> None:
    frame = framing.close_frame(4008, "slow consumer")
    assert frame[0] == 0x88 and struct.unpack("!H", frame[2:4])[0] == 4008 and frame[4:] == b"slow consumer"
    long = framing.close_frame(1000, "é" * 100)
    assert len(long) - 2 <= 125
    long[4:].decode("utf-8")


def test_parse_close_payloads() -> None:
    assert framing.parse_close(b"") == (None, "")
    assert framing.parse_close(struct.pack("!H", 1000) + b"ok") == (1000, "ok")
    for bad in (b"\x03", struct.pack("!H", 1005), struct.pack("!H", 999), struct.pack("!H", 2000)):
        with pytest.raises(ProtocolViolation):
            framing.parse_close(bad)
    with pytest.raises(ProtocolViolation) as info:
        framing.parse_close(struct.pack("!H", 1000) + b"\xff")
    assert info.value.close_code == 1007
