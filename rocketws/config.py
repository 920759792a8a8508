"""Typed, validated settings: built-in defaults < settings module < ROCKETWS_* env < flags.

Each setting is declared once, as a field of ``Config`` made by ``setting()``: its place
in settings.py, default, parser and doc line.  Its environment variable is derived:
``ROCKETWS_`` + the name of its ``runserver`` flag when it has one (``--ws-conn`` ->
``ROCKETWS_WS_CONN``), else ``ROCKETWS_`` + its settings key (``MAX_MESSAGE_SIZE`` ->
``ROCKETWS_MAX_MESSAGE_SIZE``).  Names used before that rule still work as declared
aliases.  Everything is validated once at start; a bad value raises ConfigError naming it.
``python -m rocketws.config`` prints the table in docs/configuration.md.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

from rocketws.brokers.base import STREAM_LIMITS
from rocketws.core import jsonrpc
from rocketws.core.channels import OPTIONS, Namespace, parse_write_delay, validate_namespace_name
from rocketws.core.exceptions import ConfigError
from rocketws.core.handshake import is_token
from rocketws.core.proxy import Route
from rocketws.core.streams import HISTORY_SETTINGS

T = TypeVar("T")
Parser = Callable[[str, Any], Any]
ENV_PREFIX = "ROCKETWS_"


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Setting:
    """One declared setting: where it lives, its default, how it is parsed, what it means.

    ``keys`` is one key of the settings dict ``section``, two for an address (HOST, PORT),
    or none when the setting is the whole module attribute ``section`` (LOGGING).
    """

    section: str
    keys: tuple[str, ...]
    default: Any
    parse: Parser
    doc: str
    flag: str | None = None
    aliases: tuple[str, ...] = ()
    secret: bool = False  # never in repr(), error messages or logs
    env_name: str | None = None  # its variable when not derived (ROCKETWS_NAMESPACES, ROCKETWS_RPC_PROXY_URL)
    older: tuple[str, str] | None = None  # (section, key): where settings.py kept it before

    @property
    def env(self) -> str | None:
        """``env_name`` when declared, else the derived environment variable (None for a
        whole-module setting without ``env_name``)."""
        if self.env_name is not None or not self.keys:
            return self.env_name
        name = self.flag.removeprefix("--") if self.flag else self.keys[0]
        return ENV_PREFIX + name.upper().replace("-", "_")

    @property
    def names(self) -> str:
        """Every place it can be given, for errors about a value whose source is not known
        (``TLS["CERT"] / ROCKETWS_TLS_CERT / --tls-cert``)."""
        return " / ".join(name for name in (self.location, self.env, self.flag) if name)

    @property
    def location(self) -> str:
        """Where it is in settings.py: ``WEBSOCKETS["HOST"], ["PORT"]``."""
        return self.section + ", ".join(f'["{key}"]' for key in self.keys)

    def settings_name(self) -> str:
        """How errors name its settings.py value."""
        key = f"[{self.keys[0]!r}]" if len(self.keys) == 1 else ""
        return f"settings.{self.section}{key}"

    def read(self, settings: object | None) -> Any:
        """Its raw value in the settings module (a dict of the keys given, for an
        address), or None when not set there."""
        found = self.read_named(settings)
        return None if found is None else found[1]

    def read_named(self, settings: object | None) -> tuple[str, Any] | None:
        """(how errors name it, its raw value) in the settings module, or None when not
        set there.  Given in both its place and its ``older`` one: ConfigError."""
        value = self._read(settings)
        if self.older is not None:
            section, key = self.older
            old = _section(settings, section).get(key)
            if old is not None and value:  # an empty top-level list defers to the older place
                raise ConfigError(
                    f"settings.{section}[{key!r}]",
                    "...",
                    f"set in settings.{self.section} too: give it in one place ({self.location})",
                )
            if old is not None and not value:
                return f"settings.{section}[{key!r}]", old
        return None if value is None else (self.settings_name(), value)

    def _read(self, settings: object | None) -> Any:
        if not self.keys:
            return getattr(settings, self.section, None) if settings is not None else None
        section = _section(settings, self.section)
        if len(self.keys) == 1:
            return section.get(self.keys[0])
        given = {key: section[key] for key in self.keys if key in section}
        return given or None


def setting(
    section: str,
    key: str | tuple[str, ...],
    default: T,
    parse: Parser,
    doc: str,
    *,
    flag: str | None = None,
    aliases: tuple[str, ...] = (),
    secret: bool = False,
    env_name: str | None = None,
    older: tuple[str, str] | None = None,
) -> T:
    """Declare a Config field (see Setting); mutable defaults are copied per Config.

    A ``secret`` setting is left out of ``repr(config)``; its parser must not put the
    value in a ConfigError.
    """
    keys = (key,) if isinstance(key, str) else key
    meta = {"setting": Setting(section, keys, default, parse, doc, flag, aliases, secret, env_name, older)}
    if isinstance(default, (dict, list)):
        factory: Callable[[], T] = lambda: copy.deepcopy(default)  # noqa: E731
        return dataclasses.field(default_factory=factory, metadata=meta, repr=not secret)
    return dataclasses.field(default=default, metadata=meta, repr=not secret)


# -- parsers: (name for errors, raw value) -> typed value, or ConfigError ------------------

_CONN = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\[\]]*)):(?P<port>\d{1,5})$")


def parse_address(text: str, default_host: str, name: str = "address") -> Address:
    """Parse ``HOST:PORT``, ``:PORT`` (``default_host``) or ``[IPv6]:PORT``."""
    m = _CONN.match(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise ConfigError(name, text, "expected HOST:PORT, :PORT or [IPv6]:PORT")
    port = int(m["port"])
    if port > 65535:
        raise ConfigError(name, text, "port must be 0-65535")
    host = m["v6"] or m["host"] or default_host
    return Address(host, port)


def _address(default: Address) -> Parser:
    """A parser of ``HOST:PORT`` text, or of settings' ``{"HOST": ..., "PORT": ...}``."""

    def parse(name: str, value: Any) -> Address:
        if not isinstance(value, Mapping):
            return parse_address(value, default.host, name)
        host, port = value.get("HOST", default.host), value.get("PORT", default.port)
        if not isinstance(host, str) or isinstance(port, bool) or not isinstance(port, int):
            raise ConfigError(f"{name} HOST/PORT", (host, port), "expected a str host and an int port")
        return parse_address(str(Address(host, port)), default.host, name)

    return parse


def _address_setting(section: str, default: Address, flag: str, doc: str) -> Address:
    """Declare an address kept as ``HOST`` and ``PORT`` in settings, ``HOST:PORT`` elsewhere."""
    return setting(section, ("HOST", "PORT"), default, _address(default), doc, flag=flag)


def _positive_int(name: str, value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(name, value, "expected a whole number") from None
    if isinstance(value, bool) or isinstance(value, float) or number <= 0:
        raise ConfigError(name, value, "expected a whole number above 0")
    return number


def _positive_float(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(name, value, "expected a number of seconds") from None
    if isinstance(value, bool) or not number > 0:
        raise ConfigError(name, value, "expected a number of seconds above 0")
    return number


def _seconds_or_off(name: str, value: Any) -> float:
    """Seconds, or 0 for off."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(name, value, "expected a number of seconds") from None
    if isinstance(value, bool) or not 0 <= number < float("inf"):
        raise ConfigError(name, value, "expected a number of seconds, 0 for off")
    return number


def _write_delay(name: str, value: Any) -> float:
    """Seconds from 0 to ``channels.MAX_WRITE_DELAY``."""
    try:
        delay = parse_write_delay(value)
    except ValueError as exc:
        raise ConfigError(name, value, str(exc)) from None
    if delay is None:
        raise ConfigError(name, value, "expected a number of seconds, 0 for off")
    return delay


def _bytes_or_off(name: str, value: Any) -> int:
    """Bytes, or 0 for off."""
    return 0 if value in (0, "0") and not isinstance(value, bool) else _positive_int(name, value)


def _nesting_depth(name: str, value: Any) -> int:
    """Levels, from 3 (a batch of requests with params) to the codec's ceiling."""
    depth = _positive_int(name, value)
    if not 3 <= depth <= jsonrpc.MAX_NESTING_CEILING:
        raise ConfigError(name, value, f"expected 3 to {jsonrpc.MAX_NESTING_CEILING} levels")
    return depth


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(name, value, "expected true or false")


def _log_level(name: str, value: Any) -> str:
    level = str(value).upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(name, value, "expected DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return level


LOG_FORMATS = ("plain", "json")


def _log_format(name: str, value: Any) -> str:
    text = str(value).strip().lower()
    if text not in LOG_FORMATS:
        raise ConfigError(name, value, "expected plain or json")
    return text


def _origins(name: str, value: Any) -> tuple[str, ...]:
    """``*`` (any origin), or origins such as ``https://example.com`` (list or comma-separated)."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
        raise ConfigError(name, value, 'expected "*" or a list of origins')
    origins = tuple(i.strip().rstrip("/").lower() for i in items if i.strip())
    if not origins:
        raise ConfigError(name, value, 'expected "*" or at least one origin')
    for origin in origins:
        if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
            raise ConfigError(name, value, f"{origin!r} is not an origin like https://example.com")
    return origins


def _token_list(what: str, bad: str) -> Parser:
    """A parser of RFC 9110 tokens (``what``: for errors; ``bad``: what a non-token is
    called), a list or comma-separated."""

    def parse(name: str, value: Any) -> tuple[str, ...]:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
            raise ConfigError(name, value, f"expected a list of {what}")
        names = tuple(i.strip() for i in items if i.strip())
        for item in names:
            if not is_token(item):
                raise ConfigError(name, value, f"{item!r} is not {bad}")
        return names

    return parse


# Subprotocol names, tokens (RFC 6455 section 4.1); a list, or comma-separated.
_subprotocols = _token_list("subprotocol names", "a token (RFC 6455 section 4.1)")


def _broker(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(name, value, "expected a broker URL such as memory")
    return value


def _redis_source(name: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not value.startswith("redis://"):
        raise ConfigError(name, value, "expected redis://host:port/db?channel=NAME")
    return value


MIN_API_KEY_LENGTH = 16
_HIDDEN = "(hidden)"  # what errors show instead of a secret


def _api_key(name: str, value: Any) -> str | None:
    """An API key: unset or "" = off; else 16+ printable ASCII characters, no spaces."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not re.fullmatch(r"[\x21-\x7e]+", value):
        raise ConfigError(name, _HIDDEN, "expected printable ASCII without spaces")
    if len(value) < MIN_API_KEY_LENGTH:
        raise ConfigError(
            name,
            _HIDDEN,
            f"at least {MIN_API_KEY_LENGTH} characters (`manage.py init` generates one)",
        )
    return value


def _optional_str(name: str, value: Any, expected: str) -> str | None:
    """A non-empty string, or None for None/"" (not set); else ConfigError(``expected``)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(name, value, expected)
    return value


def _path_or_none(name: str, value: Any) -> str | None:
    """A file path, or None (not set); whether the file is usable is checked at start."""
    return _optional_str(name, value, "expected a file path")


def _logging(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping) or "version" not in value:
        raise ConfigError(name, "...", "expected a logging.config.dictConfig dict")
    return copy.deepcopy(dict(value))


_NAMESPACE_FIELDS = OPTIONS
_NAMESPACE_TYPES = get_type_hints(Namespace)


def _non_negative_int(name: str, value: Any) -> int:
    return 0 if value in (0, "0") and not isinstance(value, bool) else _positive_int(name, value)


_OPTION_PARSERS: dict[Any, Parser] = {bool: _bool, int: _non_negative_int, float: _seconds_or_off}


def _namespace_name(name: str, value: Any) -> str:
    try:
        return validate_namespace_name(value)
    except ValueError as exc:
        raise ConfigError(name, value, str(exc)) from None


def _option(name: str, key: str, value: Any) -> Any:
    meta = _NAMESPACE_FIELDS[key].metadata
    parse = meta.get("parse")
    if parse is None:
        parsed = _OPTION_PARSERS[_NAMESPACE_TYPES[key]](name, value)
    else:
        try:
            parsed = parse(value)
        except ValueError as exc:
            raise ConfigError(name, value, str(exc)) from None
    return parsed


def _namespace(name: str, entry: Any) -> Namespace:
    """One ``{"name": ..., option: value}`` dict; options are Namespace's fields."""
    if not isinstance(entry, Mapping):
        raise ConfigError(name, entry, 'expected a dict such as {"name": "chat"}')
    unknown = sorted(set(entry) - set(_NAMESPACE_FIELDS), key=str)
    if unknown:
        raise ConfigError(name, entry, f"unknown key(s) {unknown}; known: {sorted(_NAMESPACE_FIELDS)}")
    if "name" not in entry:
        raise ConfigError(name, entry, 'missing "name"')
    options: dict[str, Any] = {"name": _namespace_name(f"{name}['name']", entry["name"])}
    for key, value in entry.items():
        if key != "name":
            options[key] = _option(f"{name}[{key!r}]", key, value)
    if (options.get("history_size", 0) > 0) != (options.get("history_ttl", 0.0) > 0):
        raise ConfigError(
            name,
            entry,
            "history_size and history_ttl keep history only together: set both above 0, or neither",
        )
    return Namespace(**options)


def _namespaces(name: str, value: Any) -> tuple[Namespace, ...]:
    """A list of namespace dicts; from the environment, that list as JSON."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ConfigError(name, value, f"expected a JSON list of dicts: {exc}") from None
    if not isinstance(value, (list, tuple)):
        raise ConfigError(name, value, 'expected a list of dicts such as [{"name": "chat"}]')
    namespaces = tuple(_namespace(f"{name}[{i}]", entry) for i, entry in enumerate(value))
    seen: set[str] = set()
    for i, ns in enumerate(namespaces):
        if ns.name in seen:
            raise ConfigError(f"{name}[{i}]['name']", ns.name, "declared twice")
        seen.add(ns.name)
    return namespaces


# -- AUTH parsers ---------------------------------------------------------------------------


def _optional_text(name: str, value: Any) -> str | None:
    return _optional_str(name, value, "expected a string")


def _secret(name: str, value: Any) -> str | None:
    """A secret: never echoed in errors."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value.encode()) < 32:
        raise ConfigError(name, "...", "expected a string of at least 32 bytes (RFC 7518 3.2)")
    return value


def _file_path(name: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not Path(value).is_file():
        raise ConfigError(name, value, "expected the path of a readable file")
    return value


def _http_url(name: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not re.fullmatch(r"https?://[^/\s]+(/\S*)?", value):
        raise ConfigError(name, value, "expected an http:// or https:// URL")
    return value


_header_names = _token_list("header names", "a header name")


# -- PROXY parsers (docs/operations.md#proxies) ---------------------------------------------

# Headers a proxy request sets itself; forwarding them from the upgrade request would let
# a client speak for RocketWS (X-RocketWS-User) or break the request's framing.
_OWN_HEADERS = frozenset(
    ("host", "content-type", "content-length", "transfer-encoding", "connection", "user-agent", "expect")
)
_HANDLER = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


def _proxy_headers(name: str, value: Any) -> tuple[str, ...]:
    names: tuple[str, ...] = _header_names(name, value)
    for header in names:
        lower = header.lower()
        if lower in _OWN_HEADERS or lower.startswith("x-rocketws-"):
            raise ConfigError(name, value, f"{header!r} is set by RocketWS itself: it cannot be forwarded")
    return names


_FIELD_VALUE = re.compile(r"[\x20-\x7e]*")  # RFC 9110 5.5, visible ASCII and spaces


def _static_headers(name: str, value: Any) -> dict[str, str]:
    """Header name -> value sent with every proxied call (values are secrets: never echoed);
    from the environment, a JSON object."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ConfigError(name, _HIDDEN, "expected a JSON object of header names and values") from None
    if not isinstance(value, Mapping):
        raise ConfigError(name, _HIDDEN, 'expected a dict such as {"X-Api-Key": "..."}')
    headers: dict[str, str] = {}
    for header, text in value.items():
        if not isinstance(header, str) or not is_token(header):
            raise ConfigError(name, _HIDDEN, f"{header!r} is not a header name")
        lower = header.lower()
        if lower in _OWN_HEADERS or lower.startswith("x-rocketws-"):
            raise ConfigError(name, _HIDDEN, f"{header!r} is set by RocketWS itself")
        if not isinstance(text, str) or not _FIELD_VALUE.fullmatch(text):
            raise ConfigError(name, _HIDDEN, f"the value of {header!r} must be printable ASCII")
        headers[header] = text
    return headers


def _route(name: str, entry: Any) -> Route:
    if not isinstance(entry, Mapping):
        raise ConfigError(name, entry, 'expected a dict such as {"pattern": "db.*", "url": "http://..."}')
    unknown = sorted(set(entry) - {"pattern", "url", "handler"}, key=str)
    if unknown:
        raise ConfigError(name, entry, f"unknown key(s) {unknown}; known: handler, pattern, url")
    pattern = entry.get("pattern")
    if not isinstance(pattern, str) or not pattern or not pattern.isprintable():
        raise ConfigError(f"{name}['pattern']", pattern, "expected a method name or glob such as db.*")
    url, handler = entry.get("url"), entry.get("handler")
    if (url is None) == (handler is None):
        raise ConfigError(name, entry, 'give exactly one of "url" and "handler"')
    if url is not None:
        return Route(pattern, url=_http_url(f"{name}['url']", url))
    if not isinstance(handler, str) or not _HANDLER.fullmatch(handler):
        raise ConfigError(f"{name}['handler']", handler, "expected an import path module:function")
    return Route(pattern, handler=handler)


def _routes(name: str, value: Any) -> tuple[Route, ...]:
    """A list of route dicts; from the environment, that list as JSON."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ConfigError(name, value, f"expected a JSON list of dicts: {exc}") from None
    if not isinstance(value, (list, tuple)):
        raise ConfigError(name, value, 'expected a list of dicts such as [{"pattern": "db.*", "url": ...}]')
    return tuple(_route(f"{name}[{i}]", entry) for i, entry in enumerate(value))


# -- the declarations --------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """Every setting RocketWS reads; each field is its declaration (see ``setting``)."""

    websocket: Address = _address_setting(
        "WEBSOCKETS",
        Address("0.0.0.0", 58000),
        "--ws-conn",
        "WebSocket endpoint (`HOST:PORT`, `:PORT` = all interfaces, `[::1]:PORT`); port 0 = any free port",
    )
    max_message_size: int = setting(
        "WEBSOCKETS",
        "MAX_MESSAGE_SIZE",
        64 * 1024,
        _positive_int,
        "bytes per received message; larger: close 1009",
    )
    max_outbox_bytes: int = setting(
        "WEBSOCKETS",
        "MAX_OUTBOX_BYTES",
        1024 * 1024,
        _positive_int,
        "unsent bytes per connection; more: close 4008",
    )
    max_channels_per_connection: int = setting(
        "WEBSOCKETS",
        "MAX_CHANNELS_PER_CONNECTION",
        128,
        _positive_int,
        "channels one connection may subscribe to; then `subscribe` answers -32003",
    )
    max_connections: int = setting(
        "WEBSOCKETS",
        "MAX_CONNECTIONS",
        16000,
        _positive_int,
        "open WebSockets per process; an upgrade beyond it is answered HTTP 503 with `Retry-After`; "
        "checked at start against the open-files limit, which is raised if it can be, else the "
        "server refuses to start ([scaling.md](scaling.md#the-open-files-limit)); `--workers` for more",
    )
    allowed_origins: tuple[str, ...] = setting(
        "WEBSOCKETS",
        "ALLOWED_ORIGINS",
        ("*",),
        _origins,
        "browser origins that may connect (`https://example.com`; comma-separated in the environment); "
        "an upgrade with another `Origin` gets 403; clients that send no `Origin` are always allowed",
    )
    handshake_timeout: float = setting(
        "WEBSOCKETS",
        "HANDSHAKE_TIMEOUT",
        10.0,
        _positive_float,
        "seconds, in total, to send the whole HTTP upgrade request (a slow drip does not extend it); "
        "with TLS, the TLS handshake included (it bounds the MessagesSource's TLS handshake too)",
    )
    close_timeout: float = setting(
        "WEBSOCKETS",
        "CLOSE_TIMEOUT",
        5.0,
        _positive_float,
        "seconds to flush and finish a closing handshake before dropping TCP",
    )
    subprotocols: tuple[str, ...] = setting(
        "WEBSOCKETS",
        "SUBPROTOCOLS",
        ("jsonrpc", "rocketws"),
        _subprotocols,
        "`Sec-WebSocket-Protocol` names the server agrees to (the first one the client offered that is "
        "listed; comma-separated in the environment); the protocol spoken is the same "
        "([protocol.md](protocol.md#handshake))",
    )
    # -- per-connection command rate limit (docs/security.md#limits) --
    rate_limit: float = setting(
        "WEBSOCKETS",
        "RATE_LIMIT",
        100.0,
        _seconds_or_off,
        "JSON-RPC messages per second one connection may send (a token bucket; a batch counts as "
        "one message, bounded by `MAX_BATCH_SIZE`); over it: -32029; 0 = no limit",
    )
    rate_burst: int = setting(
        "WEBSOCKETS",
        "RATE_BURST",
        200,
        _positive_int,
        "messages a connection may send at once before `RATE_LIMIT` applies (the bucket's size)",
    )
    rate_refusals: int = setting(
        "WEBSOCKETS",
        "RATE_REFUSALS",
        20,
        _positive_int,
        "-32029 refusals in a row (no accepted message between) before the connection is closed "
        "with 4029 (reconnect allowed)",
    )
    # -- liveness (docs/protocol.md#liveness) --
    ping_interval: float = setting(
        "WEBSOCKETS",
        "PING_INTERVAL",
        25.0,
        _seconds_or_off,
        "seconds without a received frame before the server pings (keeps proxies from cutting "
        "idle connections); 0 = no pings",
    )
    pong_timeout: float = setting(
        "WEBSOCKETS",
        "PONG_TIMEOUT",
        10.0,
        _positive_float,
        "seconds after a ping for a pong (or any frame); then close 4009",
    )
    write_timeout: float = setting(
        "WEBSOCKETS",
        "WRITE_TIMEOUT",
        10.0,
        _seconds_or_off,
        "seconds the socket may take no bytes while frames are pending; then close 4008 "
        "(`write timeout`) and drop it; 0 = no limit",
    )
    send_buffer: int = setting(
        "WEBSOCKETS",
        "SEND_BUFFER",
        0,
        _bytes_or_off,
        "bytes: caps each WebSocket's kernel send buffer (SO_SNDBUF; Linux doubles it); "
        "0 = kernel autotuning (up to `tcp_wmem` max, 4 MiB)",
    )
    compression: bool = setting(
        "WEBSOCKETS",
        "COMPRESSION",
        False,
        _bool,
        "permessage-deflate (RFC 7692) with clients that offer it: each publication is compressed "
        "once for all of them ([protocol.md](protocol.md#compression))",
    )
    write_delay: float = setting(
        "WEBSOCKETS",
        "WRITE_DELAY",
        0.0,
        _write_delay,
        "seconds (e.g. `0.005`) a publication may wait before it is written, so that publications "
        "arriving meanwhile leave in one write per connection (less CPU per delivery, that much more "
        "latency); namespaces may set their own (`write_delay`); 0 = write at once",
    )
    admin: bool = setting(
        "MESSAGES_SOURCE",
        "ADMIN",
        True,
        _bool,
        "serve the admin dashboard at `GET /admin` on the MessagesSource port (a page without "
        "data: its figures and console use the API key, [admin.md](admin.md))",
    )
    serve_client: bool = setting(
        "WEBSOCKETS",
        "SERVE_CLIENT",
        True,
        _bool,
        "answer `GET /rocketws.js` on the WebSocket port with the JavaScript client "
        "([client-js.md](client-js.md))",
    )
    backend: Address = _address_setting(
        "MESSAGES_SOURCE",
        Address("127.0.0.1", 59999),
        "--ms-conn",
        "MessagesSource (backend HTTP API) endpoint; `:PORT` = 127.0.0.1",
    )
    max_request_body: int = setting(
        "MESSAGES_SOURCE",
        "MAX_REQUEST_BODY",
        1024 * 1024,
        _positive_int,
        "bytes; larger: HTTP 413",
    )
    backend_idle_timeout: float = setting(
        "MESSAGES_SOURCE",
        "IDLE_TIMEOUT",
        60.0,
        _positive_float,
        "seconds a keep-alive HTTP connection may sit idle",
        aliases=("ROCKETWS_MS_IDLE_TIMEOUT",),
    )
    api_key: str | None = setting(
        "MESSAGES_SOURCE",
        "API_KEY",
        None,
        _api_key,
        "backends must send it (`Authorization: apikey KEY` or `X-API-Key: KEY`), else HTTP 401; "
        f"at least {MIN_API_KEY_LENGTH} characters; unset = no check; `/health` stays open "
        "([security.md](security.md#backend-api-key))",
        secret=True,
    )
    request_timeout: float = setting(
        "MESSAGES_SOURCE",
        "REQUEST_TIMEOUT",
        30.0,
        _positive_float,
        "seconds, in total, to send one request's head and body (a slow drip does not extend it); "
        "then HTTP 408 and close",
    )
    redis_source: str | None = setting(
        "MESSAGES_SOURCE",
        "REDIS",
        None,
        _redis_source,
        "`redis://host:port/db?channel=NAME`: also serve `emit`/`notify_all` PUBLISHed to that "
        "Redis channel ([scaling.md](scaling.md))",
        aliases=("ROCKETWS_REDIS_SOURCE",),
    )
    max_channel_length: int = setting(
        "CHANNELS",
        "MAX_NAME_LENGTH",
        255,
        _positive_int,
        "characters in a channel name",
        aliases=("ROCKETWS_MAX_CHANNEL_LENGTH",),
    )
    namespaces: tuple[Namespace, ...] = setting(
        "NAMESPACES",
        (),
        (),
        _namespaces,
        "channel namespaces, a list of dicts (keys below; JSON in the environment); "
        'a channel `ns:room` is in namespace `ns`, one without `:` in the default namespace `""`; '
        '`CHANNELS["NAMESPACES"]` is its older place (one of the two at a time)',
        env_name=ENV_PREFIX + "NAMESPACES",
        older=("CHANNELS", "NAMESPACES"),
    )
    allow_unknown_namespaces: bool = setting(
        "CHANNELS",
        "ALLOW_UNKNOWN_NAMESPACES",
        True,
        _bool,
        "false: `subscribe` to `x:room` with `x` not in `NAMESPACES` answers -32005",
    )
    max_batch_size: int = setting(
        "RPC",
        "MAX_BATCH_SIZE",
        1000,
        _positive_int,
        "requests per batch; more: -32003",
    )
    max_nesting_depth: int = setting(
        "RPC",
        "MAX_NESTING_DEPTH",
        jsonrpc.MAX_NESTING_DEPTH,
        _nesting_depth,
        "levels of arrays and objects in one JSON-RPC document (the outermost is 1; at most "
        f"{jsonrpc.MAX_NESTING_CEILING}); deeper: one -32600, id null, on every endpoint",
    )
    spec_example_methods: bool = setting(
        "RPC",
        "SPEC_EXAMPLE_METHODS",
        False,
        _bool,
        "add the JSON-RPC spec's section 7 example methods to the MessagesSource (conformance testing)",
    )
    # -- history, recovery and idempotent emits (docs/protocol.md#history-and-recovery) --
    history_default_limit: int = setting(
        "HISTORY",
        "HISTORY_LIMIT",
        HISTORY_SETTINGS.default_limit,
        _non_negative_int,
        "publications a `history` call without `limit` answers",
    )
    history_max_limit: int = setting(
        "HISTORY",
        "HISTORY_MAX_LIMIT",
        HISTORY_SETTINGS.max_limit,
        _positive_int,
        "the largest `limit` a `history` call may ask for; more: -32602",
    )
    recovery_max: int = setting(
        "HISTORY",
        "RECOVERY_MAX_PUBLICATIONS",
        HISTORY_SETTINGS.recovery_max,
        _positive_int,
        "publications a `subscribe {recover}` may answer; more missed: `recovered: false`",
    )
    history_memory_max_bytes: int = setting(
        "HISTORY",
        "HISTORY_MEMORY_MAX_BYTES",
        STREAM_LIMITS.memory_max_bytes,
        _positive_int,
        "bytes of history the memory broker keeps for all channels together; past it the channels "
        "published least recently lose their oldest publications",
    )
    history_meta_ttl: float = setting(
        "HISTORY",
        "HISTORY_META_TTL",
        STREAM_LIMITS.meta_ttl,
        _positive_float,
        "seconds a channel's epoch and top offset outlive its last publication (at least its "
        "`history_ttl`); after that the channel starts a new epoch",
    )
    idempotency_window: float = setting(
        "HISTORY",
        "IDEMPOTENCY_WINDOW",
        STREAM_LIMITS.idempotency_window,
        _positive_float,
        "seconds an `emit`'s `idempotency_key` is remembered (a repeat publishes nothing)",
    )
    idempotency_max_keys: int = setting(
        "HISTORY",
        "IDEMPOTENCY_MAX_KEYS",
        STREAM_LIMITS.idempotency_max_keys,
        _positive_int,
        "idempotency keys the memory broker remembers (the oldest are forgotten first); Redis "
        "keeps every key for the window",
    )
    # -- connection authentication (docs/security.md); none set: anonymous mode --
    token_hmac_secret: str | None = setting(
        "AUTH",
        "TOKEN_HMAC_SECRET",
        None,
        _secret,
        "secret (>= 32 bytes) verifying HS256/HS384/HS512 connection tokens",
    )
    token_public_key: str | None = setting(
        "AUTH",
        "TOKEN_PUBLIC_KEY",
        None,
        _file_path,
        "path of a PEM public key verifying RS*/PS* (RSA), ES* (EC) or EdDSA connection tokens",
    )
    token_jwks_file: str | None = setting(
        "AUTH",
        "TOKEN_JWKS_FILE",
        None,
        _file_path,
        "path of a JWKS file (public keys, chosen by the token's `kid`)",
    )
    token_audience: str | None = setting(
        "AUTH",
        "TOKEN_AUDIENCE",
        None,
        _optional_text,
        "when set, tokens must carry this `aud`",
    )
    token_issuer: str | None = setting(
        "AUTH",
        "TOKEN_ISSUER",
        None,
        _optional_text,
        "when set, tokens must carry this `iss`",
    )
    token_require_exp: bool = setting(
        "AUTH",
        "TOKEN_REQUIRE_EXP",
        False,
        _bool,
        "true: tokens without `exp` are refused (4501)",
    )
    connect_timeout: float = setting(
        "AUTH",
        "CONNECT_TIMEOUT",
        10.0,
        _positive_float,
        "seconds after the upgrade for a successful `connect` when authentication is on; then close 4010",
    )
    refresh_grace: float = setting(
        "AUTH",
        "REFRESH_GRACE",
        25.0,
        _positive_float,
        "seconds after a token's `exp` for a `refresh`; then close 4011",
    )
    connect_proxy_url: str | None = setting(
        "AUTH",
        "CONNECT_PROXY_URL",
        None,
        _http_url,
        "the application's URL that `connect` without a token is POSTed to ([security.md](security.md))",
    )
    connect_proxy_headers: tuple[str, ...] = setting(
        "AUTH",
        "CONNECT_PROXY_HEADERS",
        ("Cookie", "Authorization"),
        _header_names,
        "upgrade request headers forwarded to the connect proxy (comma-separated in the environment)",
    )
    connect_proxy_timeout: float = setting(
        "AUTH",
        "CONNECT_PROXY_TIMEOUT",
        5.0,
        _positive_float,
        "seconds for the connect proxy's answer; then -32014 and close 4012",
    )
    max_connections_per_user: int = setting(
        "AUTH",
        "MAX_CONNECTIONS_PER_USER",
        0,
        _non_negative_int,
        "connections one user (a token's `sub`) may have open on each node, 0 = no limit; one "
        "more: -32016 and close 4013 (per node, not across nodes: [security.md](security.md#limits))",
    )
    # -- RPC, subscribe and publish proxies (docs/operations.md#proxies) --
    rpc_proxy_url: str | None = setting(
        "PROXY",
        "RPC_URL",
        None,
        _http_url,
        'the application\'s URL for `rpc` calls no `PROXY["RPC"]` pattern routes (the catch-all); '
        "unset: such calls answer -32040",
        env_name=ENV_PREFIX + "RPC_PROXY_URL",
    )
    rpc_proxy_routes: tuple[Route, ...] = setting(
        "PROXY",
        "RPC",
        (),
        _routes,
        '`rpc` routes, first match wins: `{"pattern": "db.*", "url": ...}` POSTs there, '
        '`{"pattern": "time.now", "handler": "module:function"}` calls that in-process (JSON in the '
        "environment)",
        env_name=ENV_PREFIX + "RPC_PROXY_ROUTES",
    )
    subscribe_proxy_url: str | None = setting(
        "PROXY",
        "SUBSCRIBE_URL",
        None,
        _http_url,
        "the application's URL asked before a `subscribe` in namespaces with `subscribe_proxy`",
        env_name=ENV_PREFIX + "SUBSCRIBE_PROXY_URL",
    )
    publish_proxy_url: str | None = setting(
        "PROXY",
        "PUBLISH_URL",
        None,
        _http_url,
        "the application's URL asked before a `send_data` in namespaces with `publish_proxy`",
        env_name=ENV_PREFIX + "PUBLISH_PROXY_URL",
    )
    proxy_timeout: float = setting(
        "PROXY",
        "TIMEOUT",
        5.0,
        _positive_float,
        "seconds for a proxied call's answer (HTTP or in-process handler); then -32042",
        env_name=ENV_PREFIX + "PROXY_TIMEOUT",
    )
    proxy_headers: tuple[str, ...] = setting(
        "PROXY",
        "HEADERS",
        ("Cookie", "Authorization"),
        _proxy_headers,
        "upgrade request headers forwarded with every proxied call (comma-separated in the environment)",
        env_name=ENV_PREFIX + "PROXY_HEADERS",
    )
    proxy_static_headers: dict[str, str] = setting(
        "PROXY",
        "STATIC_HEADERS",
        {},
        _static_headers,
        'headers sent with every proxied call, e.g. `{"X-Api-Key": "..."}` for the application to check '
        "(a secret: never logged; a JSON object in the environment)",
        env_name=ENV_PREFIX + "PROXY_STATIC_HEADERS",
        secret=True,
    )
    proxy_max_in_flight_per_connection: int = setting(
        "PROXY",
        "MAX_IN_FLIGHT_PER_CONNECTION",
        8,
        _positive_int,
        "`rpc` calls one connection may have waiting; one more: -32044",
        env_name=ENV_PREFIX + "PROXY_MAX_IN_FLIGHT_PER_CONNECTION",
    )
    proxy_max_in_flight: int = setting(
        "PROXY",
        "MAX_IN_FLIGHT",
        1000,
        _positive_int,
        "proxied calls (rpc, subscribe, publish) waiting in one process; one more: -32044; also the "
        "size of each application's keep-alive connection pool",
        env_name=ENV_PREFIX + "PROXY_MAX_IN_FLIGHT",
    )
    proxy_max_response_size: int = setting(
        "PROXY",
        "MAX_RESPONSE_SIZE",
        1048576,
        _positive_int,
        "bytes of an application's answer; a longer one: -32043 (the connection to it is closed)",
        env_name=ENV_PREFIX + "PROXY_MAX_RESPONSE_SIZE",
    )
    # -- TLS (docs/security.md#tls) --
    tls_cert: str | None = setting(
        "TLS",
        "CERT",
        None,
        _path_or_none,
        "PEM file: the server certificate, then its intermediates; with `KEY` set, the endpoints "
        "below speak TLS (`wss://`, `https://`); both files are re-read on SIGHUP "
        "([security.md](security.md#tls))",
        flag="--tls-cert",
    )
    tls_key: str | None = setting(
        "TLS",
        "KEY",
        None,
        _path_or_none,
        "PEM file: the certificate's private key (not encrypted); required with `CERT`",
        flag="--tls-key",
    )
    tls_websocket: bool = setting(
        "TLS",
        "WSS",
        True,
        _bool,
        "with `CERT`: the WebSocket endpoint serves `wss://`; false: plain `ws://` (TLS ends at a proxy)",
    )
    tls_backend: bool = setting(
        "TLS",
        "HTTPS",
        True,
        _bool,
        "with `CERT`: the MessagesSource serves `https://`; false: plain `http://` (backends on loopback)",
    )
    broker: str = setting(
        "SERVER",
        "BROKER",
        "memory",
        _broker,
        "`memory` (one process) or `redis://host:port/db[?options]` to join nodes through Redis "
        "([scaling.md](scaling.md))",
        flag="--broker",
    )
    shutdown_timeout: float = setting(
        "SERVER",
        "SHUTDOWN_TIMEOUT",
        5.0,
        _positive_float,
        "seconds to wait for WebSockets to close on SIGTERM/SIGINT",
    )
    log_level: str | None = setting(
        "SERVER",
        "LOG_LEVEL",
        None,
        _log_level,
        "overrides the root level of `LOGGING` (DEBUG, INFO, WARNING, ERROR)",
    )
    logging: dict[str, Any] = setting(
        "LOGGING",
        (),
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
            "handlers": {
                "stderr": {
                    "class": "logging.StreamHandler",
                    "formatter": "plain",
                    "stream": "ext://sys.stderr",
                },
            },
            "root": {"handlers": ["stderr"], "level": "INFO"},
        },
        _logging,
        "a `logging.config.dictConfig` dict, applied at start (default: stderr, INFO)",
    )
    # -- observability (docs/operations.md) --------------------------------------------
    log_format: str = setting(
        "SERVER",
        "LOG_FORMAT",
        "plain",
        _log_format,
        "`plain` (the `LOGGING` formatters) or `json`: one JSON object per line on every "
        "handler ([operations.md](operations.md#logging))",
    )
    metrics: bool = setting(
        "MESSAGES_SOURCE",
        "METRICS",
        True,
        _bool,
        "`GET /metrics` (Prometheus text format) and JSON-RPC call timing; false: 404 and no "
        "timing ([operations.md](operations.md#metrics))",
    )
    metrics_public: bool = setting(
        "MESSAGES_SOURCE",
        "METRICS_PUBLIC",
        False,
        _bool,
        "true: `/metrics` without the API key (when `API_KEY` is set it is needed otherwise; "
        "Prometheus sends it with `authorization: {type: apikey}`)",
    )


SETTINGS: dict[str, Setting] = {f.name: f.metadata["setting"] for f in dataclasses.fields(Config)}
"""Config field name -> its declaration, in declaration order."""
DEFAULTS = Config()
"""The built-in defaults; other modules read defaults from here."""

_KNOWN_KEYS: dict[str, set[str]] = {}
for _spec in SETTINGS.values():
    if _spec.keys:
        _KNOWN_KEYS.setdefault(_spec.section, set()).update(_spec.keys)
    if _spec.older is not None:
        _KNOWN_KEYS.setdefault(_spec.older[0], set()).add(_spec.older[1])


def _section(settings: object | None, name: str) -> Mapping[str, Any]:
    value = getattr(settings, name, None) if settings is not None else None
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"settings.{name}", value, "expected a dict")
    unknown = set(value) - _KNOWN_KEYS[name]
    if unknown:
        raise ConfigError(f"settings.{name}", sorted(unknown), "unknown key(s)")
    return value


def _from_env(spec: Setting, env: Mapping[str, str]) -> tuple[str, str] | None:
    """(name, text) of the variable that sets ``spec``, or None; a derived name and an
    alias that disagree are an error."""
    given = [(name, env[name]) for name in (spec.env, *spec.aliases) if name and env.get(name)]
    if len({text for _, text in given}) > 1:
        (name, text), (other, other_text) = given[0], given[1]
        raise ConfigError(other, other_text, f"an older name of {name}, which is set to {text!r}")
    return given[0] if given else None


def load_config(
    settings: object | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    ws_conn: str | None = None,
    ms_conn: str | None = None,
    broker: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
) -> Config:
    """Build the Config.  Raises ConfigError naming the first bad value."""
    env = environ if environ is not None else {}
    flags = {
        "--ws-conn": ws_conn,
        "--ms-conn": ms_conn,
        "--broker": broker,
        "--tls-cert": tls_cert,
        "--tls-key": tls_key,
    }
    for name in _KNOWN_KEYS:
        _section(settings, name)  # unknown keys are refused even where no setting is read
    values: dict[str, Any] = {}
    for field_name, spec in SETTINGS.items():
        flag = flags.get(spec.flag) if spec.flag else None
        from_env = _from_env(spec, env)
        if flag is not None:
            values[field_name] = spec.parse(str(spec.flag), flag)
        elif from_env is not None:
            values[field_name] = spec.parse(*from_env)
        elif (named := spec.read_named(settings)) is not None:
            values[field_name] = spec.parse(*named)
    config = dataclasses.replace(DEFAULTS, **values)
    if (config.tls_cert is None) != (config.tls_key is None):
        given, missing = ("tls_cert", "tls_key") if config.tls_key is None else ("tls_key", "tls_cert")
        raise ConfigError(SETTINGS[missing].names, None, f"required with {SETTINGS[given].names}")
    keyed = config.token_hmac_secret or config.token_public_key or config.token_jwks_file
    for ns in config.namespaces:
        if ns.allow_subscribe == "token" and not keyed:
            raise ConfigError(
                f"NAMESPACES {ns.name!r} allow_subscribe",
                ns.allow_subscribe,
                "subscription tokens need a token key "
                "(AUTH TOKEN_HMAC_SECRET, TOKEN_PUBLIC_KEY or TOKEN_JWKS_FILE)",
            )
    for ns in config.namespaces:
        for option, url in _PROXY_OPTIONS:
            if getattr(ns, option) and getattr(config, url) is None:
                raise ConfigError(
                    f"NAMESPACES {ns.name!r} {option}", True, f"needs {SETTINGS[url].names} to be set"
                )
    return config


_PROXY_OPTIONS = (("subscribe_proxy", "subscribe_proxy_url"), ("publish_proxy", "publish_proxy_url"))


# -- the documentation table ---------------------------------------------------------------


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return "see `settings.py`"
    if isinstance(value, tuple):
        return f"`{json.dumps(list(value))}`"
    return f"`{value}`"


def settings_table() -> str:
    """The Markdown table of every setting, as docs/configuration.md has it."""
    rows = ["| setting (`settings.py`) | environment / flag | default | meaning |", "|---|---|---|---|"]
    for spec in SETTINGS.values():
        names = [f"`{name}`" for name in (spec.env, spec.flag) if name]
        names += [f"`{alias}` (older name)" for alias in spec.aliases]
        env = ", ".join(names) or "settings module only"
        rows.append(f"| `{spec.location}` | {env} | {_shown(spec.default)} | {spec.doc} |")
    for name, option in _NAMESPACE_FIELDS.items():
        default = "required" if option.default is dataclasses.MISSING else _shown(option.default)
        rows.append(
            f'| `NAMESPACES[i]["{name}"]` | in `{SETTINGS["namespaces"].env}` '
            f"| {default} | {option.metadata['doc']} |"
        )
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(settings_table(), end="")
