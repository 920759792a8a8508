"""Typed, validated settings: built-in defaults < settings module < ROCKETWS_* env < flags.

Validated once at start; any bad value raises ConfigError naming it.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from rocketws.core.exceptions import ConfigError

DEFAULT_LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"},
    },
    "root": {"handlers": ["stderr"], "level": "INFO"},
}


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Config:
    """Every setting RocketWS reads, with its default."""

    ws: Address = Address("0.0.0.0", 58000)
    ms: Address = Address("127.0.0.1", 59999)
    broker: str = "memory"
    redis_source: str | None = None
    max_message_size: int = 64 * 1024
    max_outbox_bytes: int = 1024 * 1024
    max_channels_per_connection: int = 128
    max_connections: int = 16000
    allowed_origins: tuple[str, ...] = ("*",)
    max_channel_length: int = 255
    max_request_body: int = 1024 * 1024
    ms_idle_timeout: float = 60.0
    max_batch_size: int = 1000
    handshake_timeout: float = 10.0
    close_timeout: float = 5.0
    shutdown_timeout: float = 5.0
    spec_example_methods: bool = False
    log_level: str | None = None
    logging: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(DEFAULT_LOGGING))


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


# field -> (settings dict, key, environment variable, parser)
_SIMPLE: dict[str, tuple[str, str, str, Callable[[str, Any], Any]]] = {
    "max_message_size": ("WEBSOCKETS", "MAX_MESSAGE_SIZE", "ROCKETWS_MAX_MESSAGE_SIZE", _positive_int),
    "max_outbox_bytes": ("WEBSOCKETS", "MAX_OUTBOX_BYTES", "ROCKETWS_MAX_OUTBOX_BYTES", _positive_int),
    "max_connections": ("WEBSOCKETS", "MAX_CONNECTIONS", "ROCKETWS_MAX_CONNECTIONS", _positive_int),
    "allowed_origins": ("WEBSOCKETS", "ALLOWED_ORIGINS", "ROCKETWS_ALLOWED_ORIGINS", _origins),
    "max_channels_per_connection": (
        "WEBSOCKETS", "MAX_CHANNELS_PER_CONNECTION", "ROCKETWS_MAX_CHANNELS_PER_CONNECTION", _positive_int,
    ),
    "handshake_timeout": ("WEBSOCKETS", "HANDSHAKE_TIMEOUT", "ROCKETWS_HANDSHAKE_TIMEOUT", _positive_float),
    "close_timeout": ("WEBSOCKETS", "CLOSE_TIMEOUT", "ROCKETWS_CLOSE_TIMEOUT", _positive_float),
    "max_request_body": ("MESSAGES_SOURCE", "MAX_REQUEST_BODY", "ROCKETWS_MAX_REQUEST_BODY", _positive_int),
    "ms_idle_timeout": ("MESSAGES_SOURCE", "IDLE_TIMEOUT", "ROCKETWS_MS_IDLE_TIMEOUT", _positive_float),
    "max_channel_length": ("CHANNELS", "MAX_NAME_LENGTH", "ROCKETWS_MAX_CHANNEL_LENGTH", _positive_int),
    "max_batch_size": ("RPC", "MAX_BATCH_SIZE", "ROCKETWS_MAX_BATCH_SIZE", _positive_int),
    "spec_example_methods": ("RPC", "SPEC_EXAMPLE_METHODS", "ROCKETWS_SPEC_EXAMPLE_METHODS", _bool),
    "shutdown_timeout": ("SERVER", "SHUTDOWN_TIMEOUT", "ROCKETWS_SHUTDOWN_TIMEOUT", _positive_float),
    "broker": ("SERVER", "BROKER", "ROCKETWS_BROKER", _broker),
    "redis_source": ("MESSAGES_SOURCE", "REDIS", "ROCKETWS_REDIS_SOURCE", _redis_source),
    "log_level": ("SERVER", "LOG_LEVEL", "ROCKETWS_LOG_LEVEL", _log_level),
}
_KNOWN_KEYS: dict[str, set[str]] = {
    "WEBSOCKETS": {"HOST", "PORT"},
    "MESSAGES_SOURCE": {"HOST", "PORT"},
}
for _spec in _SIMPLE.values():
    _KNOWN_KEYS.setdefault(_spec[0], set()).add(_spec[1])


def _section(settings: ModuleType | None, name: str) -> Mapping[str, Any]:
    value = getattr(settings, name, None) if settings is not None else None
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"settings.{name}", value, "expected a dict")
    unknown = set(value) - _KNOWN_KEYS[name]
    if unknown:
        raise ConfigError(f"settings.{name}", sorted(unknown), "unknown key(s)")
    return value


def _address(
    section: Mapping[str, Any], env: Mapping[str, str], env_name: str, flag: str | None,
    flag_name: str, default: Address,
) -> Address:
    if flag is not None:
        return parse_address(flag, default.host, flag_name)
    if env.get(env_name):
        return parse_address(env[env_name], default.host, env_name)
    host = section.get("HOST", default.host)
    port = section.get("PORT", default.port)
    if not isinstance(host, str) or isinstance(port, bool) or not isinstance(port, int):
        raise ConfigError("settings HOST/PORT", (host, port), "expected a str host and an int port")
    return parse_address(f"[{host}]:{port}" if ":" in host else f"{host}:{port}", default.host, "settings")


def load_config(
    settings: ModuleType | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    ws_conn: str | None = None,
    ms_conn: str | None = None,
    broker: str | None = None,
) -> Config:
    """Build the Config.  Raises ConfigError naming the first bad value."""
    env = environ if environ is not None else {}
    defaults = Config()
    values: dict[str, Any] = {}
    sections = {name: _section(settings, name) for name in _KNOWN_KEYS}
    values["ws"] = _address(
        sections["WEBSOCKETS"], env, "ROCKETWS_WS_CONN", ws_conn, "--ws-conn", defaults.ws
    )
    values["ms"] = _address(
        sections["MESSAGES_SOURCE"], env, "ROCKETWS_MS_CONN", ms_conn, "--ms-conn", defaults.ms
    )
    for name, (section, key, env_name, parse) in _SIMPLE.items():
        if env.get(env_name):
            values[name] = parse(env_name, env[env_name])
        elif sections[section].get(key) is not None:
            values[name] = parse(f"settings.{section}[{key!r}]", sections[section][key])
    if broker is not None:
        values["broker"] = _broker("--broker", broker)
    logging_conf = getattr(settings, "LOGGING", None) if settings is not None else None
    if logging_conf is not None:
        if not isinstance(logging_conf, Mapping) or "version" not in logging_conf:
            raise ConfigError("settings.LOGGING", "...", "expected a logging.config.dictConfig dict")
        values["logging"] = copy.deepcopy(dict(logging_conf))
    return dataclasses.replace(defaults, **values)
