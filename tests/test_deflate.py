"""Unit tests of permessage-deflate (rocketws.core.deflate, RFC 7692) and of the frame
reader with it negotiated."""

from __future__ import annotations

import json
import random
import zlib

import pytest

from rocketws.core import deflate, framing
from rocketws.core.exceptions import ProtocolViolation
from rocketws.core.handshake import Extension

from .test_framing import events, held_objects, violation
from .wsraw import client_frame, deflate_message, inflate_message, split_frames_with_bits

ACCEPTED = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"


def offer(*params: tuple[str, str | None], name: str = "permessage-deflate") -> list[Extension]:
    return [Extension(name, params)]


# -- negotiation (RFC 7692 7.1) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "response"),
    [
        ((), ACCEPTED),
        ((("client_max_window_bits", None),), ACCEPTED),  # what browsers, ws and websockets offer
        ((("client_max_window_bits", "10"),), ACCEPTED),  # we inflate any window up to 15
        ((("client_max_window_bits", "8"),), ACCEPTED),
        ((("server_no_context_takeover", None),), ACCEPTED),
        ((("client_no_context_takeover", None),), ACCEPTED),
        ((("server_max_window_bits", "15"),), ACCEPTED + "; server_max_window_bits=15"),
        (
            (
                ("server_no_context_takeover", None),
                ("client_no_context_takeover", None),
                ("server_max_window_bits", "15"),
                ("client_max_window_bits", "15"),
            ),
            ACCEPTED + "; server_max_window_bits=15",
        ),
    ],
)
def test_negotiate_accepts_offers_with_every_parameter(
    params: tuple[tuple[str, str | None], ...], response: str
) -> None:
    agreement = deflate.negotiate(offer(*params), enabled=True)
    assert agreement is not None and agreement.response == response


@pytest.mark.parametrize(
    "params",
    [
        (("server_max_window_bits", "10"),),  # valid, but we compress once with 15 bits
        (("server_max_window_bits", None),),  # 7.1.2.1: a value is required
        (("server_max_window_bits", "16"),),
        (("server_max_window_bits", "015"),),  # no leading zero
        (("client_max_window_bits", "7"),),
        (("client_max_window_bits", "16"),),
        (("client_max_window_bits", "x"),),
        (("server_no_context_takeover", "1"),),  # 7.1.1.1: no value
        (("client_no_context_takeover", "yes"),),
        (("client_max_window_bits", None), ("client_max_window_bits", None)),  # repeated
        (("mystery", None),),  # unknown
    ],
)
def test_negotiate_declines_invalid_or_unsupported_offers(params: tuple[tuple[str, str | None], ...]) -> None:
    assert deflate.negotiate(offer(*params), enabled=True) is None


def test_negotiate_takes_the_first_acceptable_offer_and_ignores_other_extensions() -> None:
    offers = [
        Extension("x-webkit-deflate-frame"),
        Extension("permessage-deflate", (("server_max_window_bits", "9"),)),
        Extension("permessage-deflate", (("client_max_window_bits", None),)),
    ]
    agreement = deflate.negotiate(offers, enabled=True)
    assert agreement is not None and agreement.response == ACCEPTED
    assert deflate.negotiate([Extension("x-webkit-deflate-frame")], enabled=True) is None


def test_negotiate_declines_everything_when_compression_is_off() -> None:
    assert deflate.negotiate(offer(), enabled=False) is None


# -- compressing once --------------------------------------------------------------------------

PUSH = json.dumps(
    {
        "jsonrpc": "2.0",
        "method": "message",
        "params": {"channel": "prices", "data": [{"sym": f"S{i}", "bid": 100 + i} for i in range(40)]},
    }
).encode()


def test_deflater_messages_inflate_independently_of_each_other() -> None:
    d = deflate.Deflater()
    first, second = d.compress(PUSH), d.compress(PUSH)
    assert not first.endswith(deflate.TRAILER)  # 7.2.1: the 4 octets are removed
    # server_no_context_takeover: each inflates from an empty window, in any order
    assert inflate_message(second) == PUSH and inflate_message(first) == PUSH
    assert len(second) < len(PUSH) // 3


def test_deflater_frame_sets_rsv1_and_falls_back_to_the_plain_frame() -> None:
    d = deflate.Deflater()
    plain = framing.text_frame(PUSH)
    (first, payload), *_ = split_frames_with_bits(d.frame(PUSH, plain))[0]
    assert first == 0xC1 and inflate_message(payload) == PUSH  # FIN + RSV1 + text
    short = b'{"jsonrpc":"2.0","result":{"channel":"chat","subscribed":true},"id":1}'
    assert d.frame(short, framing.text_frame(short)) == framing.text_frame(short)  # under MIN_SIZE
    noise = random.Random(1).randbytes(512)  # incompressible: deflate would make it longer
    plain = framing.text_frame(noise)
    assert d.frame(noise, plain) is plain


# -- inflating with a bound --------------------------------------------------------------------


def test_inflater_inflates_fragments_of_one_message() -> None:
    data = deflate_message(PUSH)
    inflater = deflate.Inflater(len(PUSH))
    cut = len(data) // 2
    assert inflater.inflate(data[:cut], False) + inflater.inflate(data[cut:], True) == PUSH


def test_inflater_refuses_a_zip_bomb_after_at_most_limit_bytes() -> None:
    bomb = deflate_message(b"\0" * (64 << 20))  # 64 MiB of zeros in ~64 KiB
    assert len(bomb) < 70_000
    with pytest.raises(ProtocolViolation) as info:
        deflate.Inflater(64 * 1024).inflate(bomb, True)
    assert info.value.close_code == 1009 and "once inflated" in info.value.reason


def test_inflater_accepts_exactly_the_limit() -> None:
    assert deflate.Inflater(1000).inflate(deflate_message(b"a" * 1000), True) == b"a" * 1000


def test_inflater_refuses_data_that_is_not_deflate() -> None:
    with pytest.raises(ProtocolViolation) as info:
        deflate.Inflater(1000).inflate(b"\xff\xff\xff\xff", True)
    assert info.value.close_code == 1002


def test_inflater_takes_a_final_block_but_nothing_after_it() -> None:
    # 7.2.3.4: a sender may end the data with a BFINAL block (zlib's Z_FINISH)
    z = zlib.compressobj(wbits=-15)
    final = z.compress(b"hello") + z.flush()
    assert deflate.Inflater(100).inflate(final, True) == b"hello"
    with pytest.raises(ProtocolViolation):
        deflate.Inflater(100).inflate(final + b"\x00junk", True)


# -- the frame reader with permessage-deflate ---------------------------------------------------


def reader(limit: int = 64 * 1024) -> framing.FrameReader:
    return framing.FrameReader(limit, deflate.Inflater)


def test_reader_inflates_compressed_and_passes_plain_messages() -> None:
    r = reader()
    r.feed(client_frame(0x1, deflate_message(PUSH), rsv=0x40) + client_frame(0x1, b"plain"))
    assert events(r) == [framing.TextMessage(PUSH.decode()), framing.TextMessage("plain")]


def test_reader_inflates_a_fragmented_message_with_rsv1_on_the_first_frame_only() -> None:
    data = deflate_message(PUSH)
    r = reader()
    r.feed(
        client_frame(0x1, data[:10], fin=False, rsv=0x40)
        + client_frame(0x9, b"ping in between")  # control frames are never compressed
        + client_frame(0x0, data[10:20], fin=False)
        + client_frame(0x0, data[20:])
    )
    assert events(r) == [framing.Ping(b"ping in between"), framing.TextMessage(PUSH.decode())]


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (client_frame(0x1, b"a", fin=False) + client_frame(0x0, b"b", rsv=0x40), "continuation"),
        (client_frame(0x9, b"", rsv=0x40), "control frame"),
        (client_frame(0x8, b"", rsv=0x40), "control frame"),
        (client_frame(0x1, b"x", rsv=0x20), "RSV2/RSV3"),
        (client_frame(0x1, b"x", rsv=0x60), "RSV2/RSV3"),
        (client_frame(0x1, b"\xff\xff\xff", rsv=0x40), "invalid compressed data"),
    ],
)
def test_reader_refuses_rsv1_where_rfc_7692_forbids_it(data: bytes, words: str) -> None:
    exc = violation(reader(), data)
    assert exc.close_code == 1002 and words in exc.reason


def test_reader_without_negotiation_refuses_rsv1_with_1002() -> None:
    exc = violation(framing.FrameReader(), client_frame(0x1, deflate_message(b"{}"), rsv=0x40))
    assert exc.close_code == 1002 and "no extension was negotiated" in exc.reason


def test_reader_refuses_a_zip_bomb_with_1009() -> None:
    bomb = deflate_message(b"[" * (16 << 20))
    exc = violation(reader(), client_frame(0x1, bomb, rsv=0x40))
    assert exc.close_code == 1009 and "65536 bytes once inflated" in exc.reason


def test_reader_refuses_a_fragmented_zip_bomb_before_its_last_fragment() -> None:
    bomb = deflate_message(b"[" * (16 << 20))
    exc = violation(reader(), client_frame(0x1, bomb[:5000], fin=False, rsv=0x40))
    assert exc.close_code == 1009


def test_reader_checks_inflated_text_is_utf8_fragment_by_fragment() -> None:
    bad = deflate_message(b"ok\xff" + b"x" * 100)
    exc = violation(reader(), client_frame(0x1, bad, fin=False, rsv=0x40))
    assert exc.close_code == 1007


def held_zlib(r: framing.FrameReader) -> bool:
    return "Inflater" in held_objects(r)


def test_reader_holds_an_inflater_only_while_a_compressed_message_is_in_progress() -> None:
    data = deflate_message(PUSH)
    r = reader()
    r.feed(client_frame(0x1, data[:10], fin=False, rsv=0x40))
    assert events(r) == [] and held_zlib(r)
    r.feed(client_frame(0x0, data[10:]))
    assert events(r) == [framing.TextMessage(PUSH.decode())] and not held_zlib(r)
    r.feed(client_frame(0x1, data, rsv=0x40))  # a whole message: inflated and dropped at once
    assert events(r) == [framing.TextMessage(PUSH.decode())] and not held_zlib(r)
