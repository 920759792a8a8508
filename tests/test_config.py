"""Unit tests of settings loading and validation (rocketws.config)."""

from __future__ import annotations

import types
from typing import Any

import pytest

import settings
from rocketws.config import Address, Config, load_config, parse_address
from rocketws.core.exceptions import ConfigError


def settings_module(**values: Any) -> types.ModuleType:
    """A settings module holding ``values``, as load_config reads one."""
    module = types.ModuleType("test_settings")
    vars(module).update(values)
    return module

def test_settings_py_spells_out_the_builtin_defaults() -> None:
    assert load_config(settings, {}) == Config()


@pytest.mark.parametrize(
    ("text", "expected"),
    [(":58000", Address("0.0.0.0", 58000)), ("0.0.0.0:1", Address("0.0.0.0", 1)),
     ("[::1]:58000", Address("::1", 58000)), ("localhost:0", Address("localhost", 0))],
)
def test_parse_address(text: str, expected: Address) -> None:
    assert parse_address(text, "0.0.0.0") == expected


@pytest.mark.parametrize("text", ["58000", "host:", "a:b", "[::1]", "1.2.3.4:70000", "::1:80"])
def test_parse_address_rejects(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_address(text, "0.0.0.0")


def test_precedence_flag_over_env_over_settings() -> None:
    mod = settings_module(WEBSOCKETS={"HOST": "10.0.0.1", "PORT": 1, "MAX_MESSAGE_SIZE": 10})
    cfg = load_config(mod, {"ROCKETWS_WS_CONN": "127.0.0.1:2"})
    assert cfg.ws == Address("127.0.0.1", 2) and cfg.max_message_size == 10
    assert load_config(mod, {"ROCKETWS_WS_CONN": "127.0.0.1:2"}, ws_conn=":3").ws == Address("0.0.0.0", 3)
    assert load_config(mod, {"ROCKETWS_MAX_MESSAGE_SIZE": "20"}).max_message_size == 20
    assert load_config(None, {}, ms_conn=":9").ms == Address("127.0.0.1", 9)


@pytest.mark.parametrize(
    ("mod", "env", "needle"),
    [
        ({"WEBSOCKETS": {"PORTT": 1}}, {}, "PORTT"),
        ({"WEBSOCKETS": {"MAX_OUTBOX_BYTES": 0}}, {}, "MAX_OUTBOX_BYTES"),
        ({"WEBSOCKETS": []}, {}, "WEBSOCKETS"),
        ({"LOGGING": {"no": "version"}}, {}, "LOGGING"),
        ({}, {"ROCKETWS_CLOSE_TIMEOUT": "-1"}, "ROCKETWS_CLOSE_TIMEOUT"),
        ({}, {"ROCKETWS_SPEC_EXAMPLE_METHODS": "maybe"}, "ROCKETWS_SPEC_EXAMPLE_METHODS"),
        ({}, {"ROCKETWS_LOG_LEVEL": "LOUD"}, "ROCKETWS_LOG_LEVEL"),
    ],
)
def test_bad_values_name_themselves(mod: dict[str, Any], env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(settings_module(**mod), env)
    assert needle in str(info.value)


def test_allowed_origins_are_validated_and_normalised() -> None:
    cfg = load_config(None, {"ROCKETWS_ALLOWED_ORIGINS": "https://A.example.com/, http://x:8000"})
    assert cfg.allowed_origins == ("https://a.example.com", "http://x:8000")
    mod = settings_module(WEBSOCKETS={"ALLOWED_ORIGINS": ["*"]})
    assert load_config(mod, {}).allowed_origins == ("*",)
    for bad in ("example.com", "https://x/path", ","):
        with pytest.raises(ConfigError):
            load_config(None, {"ROCKETWS_ALLOWED_ORIGINS": bad})
