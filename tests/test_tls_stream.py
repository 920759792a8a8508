"""TlsStream (rocketws/transports/tls.py) against a scripted TLS socket: the two rules TLS
adds to non-blocking I/O (decrypted bytes OpenSSL holds; a write retried with the same
bytes), without a network."""

from __future__ import annotations

import ssl
from typing import Any

import pytest

from rocketws.transports.tls import RECORD_SIZE, TlsStream


class ScriptedTls:
    """What gevent's SSLSocket does with timeout 0: ``send`` returns 0 when OpenSSL wants
    the socket; ``recv_into`` raises SSLWantReadError when no whole record is there."""

    def __init__(self, records: list[bytes] | None = None, accept: int = 1 << 30) -> None:
        self.records = list(records or [])
        self.held = b""  # decrypted, not yet read (pending())
        self.accept = accept  # bytes the "socket" takes before it is full
        self.writes: list[bytes] = []
        self.timeout: float | None = None

    def settimeout(self, value: float) -> None:
        self.timeout = value

    def pending(self) -> int:
        return len(self.held)

    def recv_into(self, buffer: Any) -> int:
        if not self.held:
            if not self.records:
                raise ssl.SSLWantReadError
            self.held = self.records.pop(0)
        n = min(len(buffer), len(self.held), 5)  # at most 5 bytes per call: pending() matters
        buffer[:n] = self.held[:n]
        self.held = self.held[n:]
        return n

    def send(self, data: Any) -> int:
        if len(data) > self.accept:
            return 0
        self.accept -= len(data)
        self.writes.append(bytes(data))
        return len(data)


def test_tls_stream_is_made_non_blocking() -> None:
    sock = ScriptedTls()
    TlsStream(sock)
    assert sock.timeout == 0.0


def test_tls_stream_recv_into_takes_everything_openssl_holds() -> None:
    stream = TlsStream(ScriptedTls([b"0123456789abc"]))
    buf = bytearray(64)
    assert stream.recv_into(buf) == 13 and bytes(buf[:13]) == b"0123456789abc"


def test_tls_stream_recv_into_without_a_whole_record_would_block() -> None:
    with pytest.raises(BlockingIOError):
        TlsStream(ScriptedTls()).recv_into(bytearray(64))


def test_tls_stream_send_goes_record_by_record() -> None:
    sock = ScriptedTls()
    data = bytes(range(256)) * (RECORD_SIZE * 2 // 256 + 1)
    assert TlsStream(sock).send(data) == len(data)
    assert [len(w) for w in sock.writes] == [RECORD_SIZE, RECORD_SIZE, len(data) - 2 * RECORD_SIZE]
    assert b"".join(sock.writes) == data


def test_tls_stream_short_send_commits_the_record_it_must_repeat() -> None:
    sock = ScriptedTls(accept=RECORD_SIZE + 10)
    stream = TlsStream(sock)
    data = b"x" * (3 * RECORD_SIZE)
    assert stream.send(data) == RECORD_SIZE  # the second record did not fit
    assert stream.committed == RECORD_SIZE  # OpenSSL holds part of it: resend those bytes
    sock.accept = 1 << 30
    assert stream.send(memoryview(data)[RECORD_SIZE:]) == 2 * RECORD_SIZE
    assert stream.committed == 0


def test_tls_stream_short_last_record_commits_only_its_length() -> None:
    sock = ScriptedTls(accept=0)
    stream = TlsStream(sock)
    assert stream.send(b"tiny") == 0
    assert stream.committed == 4
