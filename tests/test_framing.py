"""Unit tests of WebSocket framing helpers (rocketws.framing)."""

from __future__ import annotations

import gc
import os
import struct
import types

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rocketws.core import framing
from rocketws.core.exceptions import ProtocolViolation

from .wsraw import client_frame, close_payload


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
    assert framing.parse_close(close_payload(1000) + b"ok") == (1000, "ok")
    for bad in (b"\x03", close_payload(1005), close_payload(999), close_payload(2000)):
        with pytest.raises(ProtocolViolation):
            framing.parse_close(bad)
    with pytest.raises(ProtocolViolation) as info:
        framing.parse_close(close_payload(1000) + b"\xff")
    assert info.value.close_code == 1007


# -- FrameReader: client frames in, events out ------------------------------------------


def events(reader: framing.FrameReader) -> list[framing.Event]:
    out = []
    while (event := reader.next_event()) is not None:
        out.append(event)
    return out


def violation(reader: framing.FrameReader, data: bytes) -> ProtocolViolation:
    reader.feed(data)
    with pytest.raises(ProtocolViolation) as info:
        events(reader)
    return info.value


def test_reader_yields_text_messages_in_order() -> None:
    reader = framing.FrameReader()
    reader.feed(client_frame(0x1, b"one") + client_frame(0x1, "två".encode()) + client_frame(0x1))
    assert events(reader) == [framing.TextMessage("one"), framing.TextMessage("två"), framing.TextMessage("")]
    assert reader.buffered == 0


@pytest.mark.parametrize("n", [0, 125, 126, 65535, 65536])
def test_reader_reads_every_length_encoding(n: int) -> None:
    reader = framing.FrameReader(max_message_size=1 << 20)
    reader.feed(client_frame(0x1, b"x" * n))
    assert events(reader) == [framing.TextMessage("x" * n)]


def test_reader_waits_for_bytes_fed_one_at_a_time() -> None:
    text, ping = client_frame(0x1, b"a" * 300), client_frame(0x9, b"p")
    data = text + ping
    reader = framing.FrameReader()
    got: list[framing.Event] = []
    for i in range(len(data)):
        reader.feed(data[i : i + 1])
        got += events(reader)
        if i < len(text) - 1:
            assert got == []
        elif i < len(data) - 1:
            assert got == [framing.TextMessage("a" * 300)]
    assert got == [framing.TextMessage("a" * 300), framing.Ping(b"p")]
    assert reader.buffered == 0


def test_reader_reassembles_fragments_around_control_frames() -> None:
    reader = framing.FrameReader()
    reader.feed(
        client_frame(0x1, b"he", fin=False)
        + client_frame(0x9, b"mid")
        + client_frame(0x0, b"ll", fin=False)
        + client_frame(0xA, b"po")
        + client_frame(0x0, b"o")
    )
    assert events(reader) == [framing.Ping(b"mid"), framing.Pong(b"po"), framing.TextMessage("hello")]


def test_reader_close_frame_is_an_event_and_clear_drops_what_follows() -> None:
    # Reading no further after a close frame is the connection's decision
    # (tests/test_connection.py); the reader yields the Close and can be cleared.
    reader = framing.FrameReader()
    reader.feed(
        client_frame(0x1, b"last")
        + client_frame(0x8, close_payload(4321, "bye"))
        + client_frame(0x1, b"ignored")
    )
    assert reader.next_event() == framing.TextMessage("last")
    assert reader.next_event() == framing.Close(4321, "bye")
    reader.clear()
    assert reader.buffered == 0 and reader.next_event() is None


def test_reader_empty_close_frame_has_no_code() -> None:
    reader = framing.FrameReader()
    reader.feed(client_frame(0x8))
    assert events(reader) == [framing.Close(None, "")]


def test_reader_returns_events_before_a_bad_frame() -> None:
    reader = framing.FrameReader()
    reader.feed(client_frame(0x1, b"ok") + client_frame(0x1, b"bad", mask=False))
    assert reader.next_event() == framing.TextMessage("ok")
    with pytest.raises(ProtocolViolation) as info:
        reader.next_event()
    assert info.value.close_code == 1002
    assert reader.next_event() is None


@pytest.mark.parametrize(
    ("data", "code", "words"),
    [
        (client_frame(0x1, b"x", mask=False), 1002, "masked"),
        (client_frame(0x1, b"x", rsv=0x40), 1002, "reserved bits"),
        (client_frame(0x3, b"x"), 1002, "unknown opcode 3"),
        (client_frame(0xB), 1002, "unknown opcode 11"),
        (client_frame(0x2, b"\x00"), 1003, "binary"),
        (client_frame(0x9, b"x", fin=False), 1002, "fragmented control"),
        (client_frame(0x9, b"x" * 126), 1002, "125"),
        (client_frame(0x0, b"x"), 1002, "continuation frame without"),
        (client_frame(0x1, b"a", fin=False) + client_frame(0x1, b"b"), 1002, "new message inside"),
        (client_frame(0x1, b"\xff\xfe"), 1007, "UTF-8"),
        (client_frame(0x1, b"a\xc3", fin=False) + client_frame(0x0, b"(\xa1"), 1007, "UTF-8"),
        (client_frame(0x8, b"\x03"), 1002, "1 byte"),
        (client_frame(0x8, close_payload(1005)), 1002, "invalid close code"),
        (client_frame(0x8, close_payload(1000) + b"\xff"), 1007, "UTF-8"),
    ],
)
def test_reader_refuses_bad_frames_with_their_close_code(data: bytes, code: int, words: str) -> None:
    exc = violation(framing.FrameReader(), data)
    assert exc.close_code == code and words in exc.reason


def test_reader_accepts_a_message_at_the_limit() -> None:
    reader = framing.FrameReader(max_message_size=100)
    reader.feed(client_frame(0x1, b"x" * 60, fin=False) + client_frame(0x0, b"y" * 40))
    assert events(reader) == [framing.TextMessage("x" * 60 + "y" * 40)]


def test_reader_refuses_a_huge_announced_frame_from_its_header() -> None:
    reader = framing.FrameReader()
    # the header announces 1 TiB and no payload byte is fed: refused at once
    exc = violation(reader, client_frame(0x1, length=1 << 40)[:10])
    assert exc.close_code == 1009 and "65536" in exc.reason
    assert reader.buffered == 0


def test_reader_refuses_fragments_over_the_limit_from_the_header() -> None:
    reader = framing.FrameReader(max_message_size=100)
    reader.feed(client_frame(0x1, b"x" * 60, fin=False))
    assert events(reader) == []
    # the second fragment's header alone (no payload yet) crosses the limit
    exc = violation(reader, client_frame(0x0, b"y" * 41)[:6])
    assert exc.close_code == 1009


def test_reader_limit_does_not_count_control_frames() -> None:
    reader = framing.FrameReader(max_message_size=10)
    reader.feed(client_frame(0x1, b"x" * 10, fin=False) + client_frame(0x9, b"p" * 100) + client_frame(0x0))
    assert events(reader) == [framing.Ping(b"p" * 100), framing.TextMessage("x" * 10)]


# -- fragment count and UTF-8 across fragments ----------------------------------------------


def fragmented(n: int, text: bytes = b"") -> bytes:
    """A text message in ``n`` frames (the first carries ``text``; the rest are empty)."""
    frames = [client_frame(0x1, text, fin=n == 1)]
    frames += [client_frame(0x0, b"", fin=i == n - 1) for i in range(1, n)]
    return b"".join(frames)


def test_reader_accepts_a_message_in_1024_fragments() -> None:
    reader = framing.FrameReader()
    reader.feed(fragmented(framing.MAX_FRAGMENTS, b"ok"))
    assert events(reader) == [framing.TextMessage("ok")]


def test_reader_refuses_fragment_1025_from_its_header() -> None:
    reader = framing.FrameReader()
    reader.feed(fragmented(framing.MAX_FRAGMENTS + 1)[:-6])  # no final frame yet
    assert events(reader) == []
    exc = violation(reader, client_frame(0x0)[:2])  # the 1,025th fragment's header alone
    assert exc.close_code == 1009 and "more than 1024 fragments" in exc.reason


@pytest.mark.parametrize(
    "first_fragments",
    [
        [b"\xff"],  # never valid anywhere
        [b"a\xc3", b"("],  # a lead byte followed by a non-continuation byte
        [b"ok", b"\xed\xa0\x80"],  # an encoded surrogate (U+D800)
        [b"\xf4\x90"],  # above U+10FFFF
    ],
)
def test_reader_refuses_invalid_utf8_at_the_first_bad_fragment(first_fragments: list[bytes]) -> None:
    # RFC 6455 8.1: fail as soon as the bytes cannot be UTF-8, not when the message ends.
    reader = framing.FrameReader()
    head, *rest = first_fragments
    data = client_frame(0x1, head, fin=False) + b"".join(client_frame(0x0, f, fin=False) for f in rest)
    exc = violation(reader, data)
    assert exc.close_code == 1007 and "UTF-8" in exc.reason


def test_reader_joins_a_character_split_across_fragments() -> None:
    reader = framing.FrameReader()
    euro = "€".encode()
    reader.feed(
        client_frame(0x1, euro[:1], fin=False)
        + client_frame(0x0, euro[1:2], fin=False)
        + client_frame(0x0, euro[2:])
    )
    assert events(reader) == [framing.TextMessage("€")]


def test_reader_refuses_a_character_cut_by_the_final_fragment() -> None:
    exc = violation(
        framing.FrameReader(), client_frame(0x1, b"a", fin=False) + client_frame(0x0, b"\xe2\x82")
    )
    assert exc.close_code == 1007


def held_objects(reader: framing.FrameReader) -> list[str]:
    """Type names of the decoder / inflater objects reachable from ``reader`` (classes
    and functions, such as the inflater factory, are not followed)."""
    seen: set[int] = set()
    names: set[str] = set()
    todo: list[object] = [reader]
    while todo:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, (type, types.FunctionType, types.ModuleType)):
            continue
        seen.add(id(obj))
        names.add(type(obj).__name__)
        todo.extend(gc.get_referents(obj))
    return sorted(n for n in names if "Decoder" in n or "Decompress" in n or n == "Inflater")


def test_reader_holds_a_decoder_only_while_a_fragmented_message_is_in_progress() -> None:
    reader = framing.FrameReader()
    assert held_objects(reader) == []
    reader.feed(client_frame(0x1, b"a", fin=False))
    assert events(reader) == [] and held_objects(reader) == ["IncrementalDecoder"]
    reader.feed(client_frame(0x0, b"b"))
    assert events(reader) == [framing.TextMessage("ab")] and held_objects(reader) == []


# -- properties (hypothesis; derandomized, bounded) ----------------------------------------

_EVENTS = (framing.TextMessage, framing.Ping, framing.Pong, framing.Close)
_MAX = 256  # a small message limit, so that the bound is reached often
_FRAMES = st.builds(
    lambda opcode, payload, fin, mask, rsv: client_frame(opcode, payload, fin=fin, mask=mask, rsv=rsv),
    st.sampled_from([0x0, 0x1, 0x2, 0x3, 0x8, 0x9, 0xA, 0xB]),
    st.binary(max_size=300) | st.text(max_size=80).map(str.encode),
    st.booleans(),
    st.booleans() | st.just(True),
    st.sampled_from([0, 0, 0, 0x40, 0x10]),
)
_STREAMS = st.lists(_FRAMES | st.binary(max_size=20), max_size=12).map(b"".join) | st.binary(max_size=400)


@settings(derandomize=True, max_examples=300, deadline=None, database=None)
@given(_STREAMS, st.lists(st.integers(1, 64), min_size=1, max_size=8))
def test_property_frame_reader_yields_events_or_violation_with_a_bounded_buffer(
    stream: bytes, cuts: list[int]
) -> None:
    """Any bytes, in any chunks: events, then at most one ProtocolViolation; never another
    exception, and what stays buffered is at most one frame's header and payload."""
    reader = framing.FrameReader(max_message_size=_MAX)
    pos, i = 0, 0
    while pos < len(stream):
        chunk = stream[pos : pos + cuts[i % len(cuts)]]
        pos, i = pos + len(chunk), i + 1
        reader.feed(chunk)
        try:
            while (event := reader.next_event()) is not None:
                assert isinstance(event, _EVENTS)
                if isinstance(event, framing.TextMessage):
                    assert len(event.text.encode()) <= _MAX
        except ProtocolViolation as exc:
            assert exc.close_code in (1002, 1003, 1007, 1009)
            assert reader.buffered == 0
            return  # the connection reads nothing more (RFC 6455 7.1.7)
        assert reader.buffered < 14 + _MAX  # the 2-14 byte header (mask included) + payload
