"""The benchmark's subscriber pool counts exactly what a server sends, however the bytes
are cut into chunks: pushes by ``count_pushes``, anything else frame by frame."""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Iterator

import orjson
import pytest

from benchmarks.wsclient import PUSH, Conn, SubscriberPool, count_pushes
from tests.wsraw import CLOSE, PING, PONG, TEXT, client_frame, close_payload, split_frames


def server_frame(opcode: int, payload: bytes) -> bytes:
    return client_frame(opcode, payload, mask=False)


def push(data: object) -> bytes:
    body = {
        "jsonrpc": "2.0",
        "method": "message",
        "params": {"channel": "c", "data": data, "ts": time.time()},
    }
    return server_frame(TEXT, orjson.dumps(body))


@pytest.fixture
def pool_conn() -> Iterator[tuple[SubscriberPool, Conn, socket.socket]]:
    mine, theirs = socket.socketpair()
    pool = SubscriberPool()
    yield pool, Conn(sock=mine, group="g", channel="c", state="ready"), theirs
    mine.close()
    theirs.close()


def feed_in_chunks(pool: SubscriberPool, conn: Conn, stream: bytes, rng: random.Random, most: int) -> None:
    pos = 0
    while pos < len(stream):
        step = rng.randint(1, most)
        pool._feed(conn, stream[pos : pos + step], 0)
        pos += step


def test_push_prefix_is_what_the_servers_send() -> None:
    assert split_frames(push("x"))[0][0][1].startswith(PUSH)


@pytest.mark.parametrize("most", [1, 7, 300, 5000])
def test_pushes_of_every_header_size_are_counted_exactly_in_any_chunking(
    pool_conn: tuple[SubscriberPool, Conn, socket.socket], most: int
) -> None:
    pool, conn, _ = pool_conn
    rng = random.Random(most)
    frames = [push("x" * rng.choice([1, 60, 100, 300, 2000])) for _ in range(2000)]
    stream = b"".join(frames)
    feed_in_chunks(pool, conn, stream, rng, most)
    assert conn.pushes  # the scans were used once a push had been parsed
    assert (conn.frames, conn.wire_bytes, conn.buf) == (len(frames), len(stream), b"")


def test_a_ping_among_pushes_is_answered_and_a_close_records_its_code(
    pool_conn: tuple[SubscriberPool, Conn, socket.socket],
) -> None:
    pool, conn, peer = pool_conn
    rng = random.Random(5)
    pushes = [push("x" * 100) for _ in range(50)]
    stream = (
        b"".join(pushes[:20])
        + server_frame(PING, b"are you there")
        + b"".join(pushes[20:])
        + server_frame(CLOSE, close_payload(4009, "bye"))
    )
    feed_in_chunks(pool, conn, stream, rng, 900)
    assert conn.frames == 50 and conn.close_code == 4009
    peer.settimeout(5)
    # a masked pong with the zero key (RFC 6455 5.5.3: the ping's payload)
    assert peer.recv(4096) == bytes((0x80 | PONG, 0x80 | 13)) + bytes(4) + b"are you there"


def test_count_pushes_leaves_anything_but_pushes_to_the_frame_parser() -> None:
    one = push("x" * 100)
    assert count_pushes(one * 3) == (3, len(one) * 3)
    assert count_pushes(one * 3 + one[:50]) == (3, len(one) * 3)  # the last cut short
    assert count_pushes(one * 3 + one[:10]) is None  # what follows the last push is unclear
    assert count_pushes(one * 2 + one[:2]) == (2, len(one) * 2)  # a header's start after
    assert count_pushes(one + server_frame(PING, b"")) is None
    assert count_pushes(one + server_frame(CLOSE, close_payload(1000))) is None
    assert count_pushes(one + server_frame(TEXT, b'{"jsonrpc":"2.0","result":1,"id":1}')) is None
    assert count_pushes(server_frame(TEXT, b"not a push")) is None
