"""TLS for both endpoints: the server's ``SSLContext`` and a non-blocking TLS stream.

``TlsContext`` loads ``TLS["CERT"]`` and ``TLS["KEY"]`` into a context with modern
defaults (TLS 1.2+, ALPN ``http/1.1``, no renegotiation) and, on SIGHUP, builds a new
context from the files and swaps it in: new handshakes get the new certificate, open
connections keep the one they were made with.  A bad file at start is a ConfigError
naming it; a bad file at reload is logged and the previous certificate stays.

``TlsStream`` is a WebSocket's TLS connection after the upgrade, for the io-watcher
``Connection``: ``recv_into`` and ``send`` behave like a non-blocking socket's, with the
two rules TLS adds (OpenSSL may hold decrypted bytes the kernel no longer signals, and a
write it could not finish must be retried with the same bytes: ``committed``).

The context is made where it is used: in a server process after ``monkey.patch_all``,
``ssl.SSLContext`` is gevent's, whose sockets wait cooperatively during the handshake.
"""

from __future__ import annotations

import hashlib
import logging
import re
import ssl
from typing import Any

from rocketws.config import SETTINGS
from rocketws.core.exceptions import ConfigError

logger = logging.getLogger(__name__)

RECORD_SIZE = 16384  # bytes of plaintext per TLS record (RFC 8446 5.1): one write each
_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def _name(field: str) -> str:
    return SETTINGS[field].names


class _Encrypted(Exception):
    """The private key asks for a password (raised from load_cert_chain's callback)."""


def _no_password() -> bytes:
    raise _Encrypted


def fingerprint(cert_pem: bytes) -> str:
    """SHA-256 of the first certificate in a PEM file (hex), as browsers show it."""
    m = _PEM_CERT.search(cert_pem)
    if m is None:
        return "?"
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(m.group(0).decode("ascii"))).hexdigest()


def create_context(cert: str, key: str) -> tuple[ssl.SSLContext, str]:
    """A server context with ``cert`` and ``key`` loaded, and the certificate's fingerprint.

    Raises ConfigError naming the setting whose file is missing, unreadable, not PEM, or
    (for the key) encrypted or not the certificate's key.
    """
    contents = {}
    for field, path in (("tls_cert", cert), ("tls_key", key)):
        try:
            with open(path, "rb") as f:
                contents[field] = f.read()
        except OSError as exc:
            raise ConfigError(_name(field), path, f"cannot read it: {exc.strerror or exc}") from None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_RENEGOTIATION  # a client cannot make us redo handshakes
    context.set_alpn_protocols(["http/1.1"])
    try:
        context.load_cert_chain(cert, key, password=_no_password)
    except _Encrypted:
        raise ConfigError(_name("tls_key"), key, "the key is encrypted; give it unencrypted") from None
    except ssl.SSLError as exc:
        raise _load_error(cert, key, exc) from None
    return context, fingerprint(contents["tls_cert"])


def _load_error(cert: str, key: str, exc: ssl.SSLError) -> ConfigError:
    """Which of the two files load_cert_chain refused, and why, as a ConfigError."""
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        probe.load_verify_locations(cafile=cert)
    except (ssl.SSLError, ValueError):
        return ConfigError(_name("tls_cert"), cert, f"not a PEM certificate ({exc.reason or exc})")
    if exc.reason == "KEY_VALUES_MISMATCH":
        return ConfigError(_name("tls_key"), key, f"not the private key of the certificate {cert}")
    return ConfigError(_name("tls_key"), key, f"not a usable PEM private key ({exc.reason or exc})")


class TlsContext:
    """The context new TLS handshakes use, reloadable from its two files."""

    def __init__(self, cert: str, key: str) -> None:
        """Load both files now; ConfigError (naming the file) when they are not usable."""
        self.cert, self.key = cert, key
        self.context, self.fingerprint = create_context(cert, key)

    def reload(self) -> bool:
        """Re-read both files and use them for new handshakes; open connections are
        untouched.  On a bad file, log it and keep the current certificate (False)."""
        try:
            self.context, self.fingerprint = create_context(self.cert, self.key)
        except ConfigError as exc:
            logger.error("TLS reload failed, keeping the previous certificate: %s", exc)
            return False
        logger.info("TLS certificate reloaded from %s (sha256 %s)", self.cert, self.fingerprint)
        return True

    def wrap(self, sock: Any) -> Any:
        """``sock`` as the server side of a TLS connection; the handshake is the caller's
        (``do_handshake``, under its deadline).  ``sock`` is detached: use the result."""
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)

    def handshake(self, sock: Any, timeout: float, peer: Any) -> Any | None:
        """Wrap ``sock`` and finish the TLS handshake within ``timeout`` seconds in total:
        the TLS socket, or None (logged, closed) if the client failed or was too slow."""
        import gevent

        tls_sock = sock
        try:
            with gevent.Timeout(timeout):
                tls_sock = self.wrap(sock)
                tls_sock.do_handshake()
            return tls_sock
        except gevent.Timeout:
            logger.info("TLS handshake from %s not finished in %.1f s: dropped", peer, timeout)
        except ssl.SSLError as exc:
            logger.info("TLS handshake with %s failed: %s", peer, describe(exc))
        except OSError as exc:
            logger.debug("TLS handshake with %s failed: %s", peer, exc)
        tls_sock.close()
        return None


def describe(exc: ssl.SSLError) -> str:
    """A one-line reason for a failed handshake (``HTTP_REQUEST``: plain HTTP on a TLS port)."""
    if exc.reason == "HTTP_REQUEST":
        return "plain HTTP sent to a TLS port"
    return str(exc.reason or exc)


class TlsStream:
    """A TLS connection after its handshake, non-blocking, read and written like a socket.

    ``recv_into`` raises BlockingIOError while no whole record has arrived and returns 0
    at EOF (close_notify or not: a WebSocket ends with its close frame, not with TLS's).
    ``send`` encrypts one record at a time and returns the bytes taken; after a short
    count OpenSSL may hold part of a record (``committed`` bytes from where the caller's
    data now starts): the next ``send`` must start with those same bytes (OpenSSL's
    retry rule; Python allows the buffer to move).
    """

    __slots__ = ("_sock", "committed")

    def __init__(self, sock: Any) -> None:
        """``sock``: a TLS socket whose handshake is done; it is made non-blocking."""
        sock.settimeout(0.0)
        self._sock = sock
        self.committed = 0

    def fileno(self) -> int:
        return int(self._sock.fileno())

    def setsockopt(self, level: int, option: int, value: int) -> None:
        self._sock.setsockopt(level, option, value)

    def recv_into(self, buffer: bytearray) -> int:
        """Decrypt what has arrived into ``buffer``; everything OpenSSL holds is taken,
        since the kernel will not signal bytes that have already left it."""
        sock = self._sock
        try:
            n: int = sock.recv_into(buffer)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise BlockingIOError from None
        while n and n < len(buffer) and sock.pending():
            try:
                more: int = sock.recv_into(memoryview(buffer)[n:])
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                break
            if not more:
                break
            n += more
        return n

    def send(self, data: bytes | memoryview) -> int:
        """Write ``data`` record by record until OpenSSL would block; the bytes taken."""
        sock = self._sock
        view = memoryview(data)
        total, size = 0, len(view)
        while total < size:
            chunk = view[total : total + RECORD_SIZE]
            if not sock.send(chunk):  # gevent: 0 when OpenSSL wants the socket first
                self.committed = len(chunk)
                return total
            total += len(chunk)
        self.committed = 0
        return total

    def close(self) -> None:
        self._sock.close()
