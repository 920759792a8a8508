"""Pure helpers of the shell: splitting command lines, JSON with positions, endpoint URLs."""

from __future__ import annotations

import io
import json
import shlex
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from rocketws.client import normalize_url
from rocketws.config import DEFAULTS

DEFAULT_DATA = '{"message": "test"}'
DEFAULT_WS_PORT = DEFAULTS.websocket.port

# Other names accepted for commands.
ALIASES = {"quit": "exit", "?": "help", "notify": "notify_all"}
# Commands whose last argument is JSON data, and how many words come before it.
JSON_COMMANDS = {"emit": 1, "notify_all": 0}

# Wildcard bind addresses a client cannot connect to everywhere: use loopback instead.
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


class InputError(ValueError):
    """The user typed something the shell cannot use; ``str()`` is the one-line message."""


@dataclass(frozen=True)
class JsonInputError(InputError):
    """Invalid JSON: 1-based ``line`` and ``column`` in the JSON text, ``offset`` 0-based."""

    reason: str
    line: int
    column: int
    offset: int

    def __str__(self) -> str:
        return f"invalid JSON at line {self.line}, column {self.column}: {self.reason}"


def parse_json(text: str) -> Any:
    """Parse ``text`` as one JSON value; raises JsonInputError with its position."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise JsonInputError(exc.msg, exc.lineno, exc.colno, exc.pos) from None


def split_command(line: str) -> tuple[str, str]:
    """Split ``line`` into its command word and the raw rest (leading space removed)."""
    stripped = line.strip()
    name, _, rest = stripped.partition(" ")
    return name, rest.strip()


def take_word(text: str) -> tuple[str | None, str, int]:
    """Take the first shell word of ``text`` (quotes allowed).

    Returns ``(word, rest, rest_offset)`` where ``rest_offset`` is where the rest starts in
    ``text``.  Raises InputError for an unclosed quote.  ``word`` is None when text is
    blank (and "" for a quoted empty word).
    """
    start = len(text) - len(text.lstrip())
    if start == len(text):
        return None, "", len(text)
    stream = io.StringIO(text[start:])
    lexer = shlex.shlex(stream, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        word = lexer.get_token()
    except ValueError as exc:
        raise InputError(f"cannot read {text.strip()!r}: {exc}") from None
    consumed = start + len(text[start:]) - len(stream.read())
    rest = text[consumed:]
    offset = consumed + len(rest) - len(rest.lstrip())
    return word or "", rest.strip(), offset


def json_argument(line: str) -> tuple[str, int] | None:
    """Find the JSON data argument of an emit/notify_all ``line``.

    Returns ``(json_text, offset_in_line)``, or None when the line has no JSON argument.
    Raises InputError for an unclosed quote before it.
    """
    name, _, after = line.lstrip().partition(" ")
    words_before = JSON_COMMANDS.get(ALIASES.get(name, name))
    if words_before is None:
        return None
    offset = len(line) - len(after)
    for _ in range(words_before):
        _, _, skip = take_word(after)
        offset += skip
        after = after[skip:]
    text = after.strip()
    if not text:
        return None
    return text, offset + len(after) - len(after.lstrip())


def split_words(text: str) -> list[str]:
    """Split ``text`` into shell words; raises InputError for an unclosed quote."""
    try:
        return shlex.split(text, comments=False, posix=True)
    except ValueError as exc:
        raise InputError(f"cannot read {text.strip()!r}: {exc}") from None


def quote_word(word: str) -> str:
    """Quote ``word`` so that take_word/split_words give it back unchanged."""
    return shlex.quote(word)


def ms_url(text: str) -> str:
    """Normalize a MessagesSource address: URL, ``host:port`` or ``:port``."""
    text = text.strip()
    if text.startswith(":"):
        text = "127.0.0.1" + text
    try:
        url = normalize_url(text)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    host = urlsplit(url).hostname or ""
    if host in _WILDCARDS:  # a bind address such as 0.0.0.0: connect to loopback
        bracketed = f"[{host}]" if ":" in host else host
        url = url.replace(f"//{bracketed}", f"//{_host(_WILDCARDS[host])}", 1)
    return url


def ws_url(text: str) -> str:
    """Normalize a WebSocket address: ``ws(s)://`` or ``http(s)://`` URL, ``host:port``."""
    text = text.strip()
    if text.startswith(":"):
        text = "127.0.0.1" + text
    if "://" not in text:
        text = "ws://" + text
    scheme, _, rest = text.partition("://")
    scheme = {"http": "ws", "https": "wss"}.get(scheme.lower(), scheme.lower())
    parts = urlsplit(f"{scheme}://{rest}")
    if parts.scheme not in ("ws", "wss") or parts.hostname is None:
        raise InputError(f"not a WebSocket URL: {text!r}")
    try:
        port = parts.port
    except ValueError:
        raise InputError(f"bad port in URL: {text!r}") from None
    netloc = _host(_WILDCARDS.get(parts.hostname, parts.hostname))
    if port is not None:
        netloc += f":{port}"
    return f"{parts.scheme}://{netloc}{parts.path or '/'}"


def default_ws_url(ms: str, port: int = DEFAULT_WS_PORT) -> str:
    """Guess the WebSocket URL of the server whose MessagesSource is at ``ms``."""
    host = urlsplit(ms).hostname or "127.0.0.1"
    return f"ws://{_host(_WILDCARDS.get(host, host))}:{port}/"


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def format_json(value: Any) -> str:
    """Pretty, readable JSON (2-space indent, UTF-8 characters kept)."""
    return json.dumps(value, indent=2, ensure_ascii=False)


def compact_json(value: Any) -> str:
    """One-line readable JSON (``{"a": 1}``)."""
    return json.dumps(value, ensure_ascii=False)
