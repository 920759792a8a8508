"""Unit tests of settings loading and validation (rocketws.config)."""

from __future__ import annotations

import json
import types
from typing import Any

import pytest

import settings
from rocketws.config import SETTINGS, Address, Config, load_config, parse_address, settings_table
from rocketws.core.channels import OPTIONS, Namespace
from rocketws.core.exceptions import ConfigError

from .support import ROOT


def settings_module(**values: Any) -> types.ModuleType:
    """A settings module holding ``values``, as load_config reads one."""
    module = types.ModuleType("test_settings")
    vars(module).update(values)
    return module


def test_settings_py_spells_out_the_builtin_defaults() -> None:
    assert load_config(settings, {}) == Config()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (":58000", Address("0.0.0.0", 58000)),
        ("0.0.0.0:1", Address("0.0.0.0", 1)),
        ("[::1]:58000", Address("::1", 58000)),
        ("localhost:0", Address("localhost", 0)),
    ],
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
    assert cfg.websocket == Address("127.0.0.1", 2) and cfg.max_message_size == 10
    assert load_config(mod, {"ROCKETWS_WS_CONN": "127.0.0.1:2"}, ws_conn=":3").websocket == Address(
        "0.0.0.0", 3
    )
    assert load_config(mod, {"ROCKETWS_MAX_MESSAGE_SIZE": "20"}).max_message_size == 20
    assert load_config(None, {}, ms_conn=":9").backend == Address("127.0.0.1", 9)


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


# -- declarations: derived environment names, aliases ------------------------------------


def test_env_name_is_derived_from_the_flag_or_the_settings_key() -> None:
    assert SETTINGS["websocket"].env == "ROCKETWS_WS_CONN"  # from --ws-conn
    assert SETTINGS["backend"].env == "ROCKETWS_MS_CONN"  # from --ms-conn
    assert SETTINGS["broker"].env == "ROCKETWS_BROKER"  # from --broker
    assert SETTINGS["max_message_size"].env == "ROCKETWS_MAX_MESSAGE_SIZE"  # from the key
    assert SETTINGS["backend_idle_timeout"].env == "ROCKETWS_IDLE_TIMEOUT"
    assert SETTINGS["logging"].env is None  # the whole LOGGING dict: settings module only
    # Declared names instead: ROCKETWS_NAMESPACES (the whole module attribute) and the PROXY
    # settings, which issue 12 names (ROCKETWS_RPC_PROXY_URL, not ROCKETWS_RPC_URL).
    assert SETTINGS["rpc_proxy_url"].env == "ROCKETWS_RPC_PROXY_URL"
    assert SETTINGS["subscribe_proxy_url"].env == "ROCKETWS_SUBSCRIBE_PROXY_URL"
    assert SETTINGS["publish_proxy_url"].env == "ROCKETWS_PUBLISH_PROXY_URL"
    assert SETTINGS["proxy_timeout"].env == "ROCKETWS_PROXY_TIMEOUT"
    for spec in SETTINGS.values():
        if spec.env_name is not None:
            assert spec.env == spec.env_name
            assert spec.section in ("PROXY", "NAMESPACES"), spec.location
        elif spec.env is not None:
            name = (
                spec.flag.removeprefix("--") if spec.flag else (spec.keys[0] if spec.keys else spec.section)
            )
            assert spec.env == "ROCKETWS_" + name.upper().replace("-", "_")


def test_env_names_and_aliases_are_unique() -> None:
    names = [n for spec in SETTINGS.values() for n in (spec.env, *spec.aliases) if n]
    assert len(names) == len(set(names))


@pytest.mark.parametrize(
    ("field", "derived", "alias", "text", "value"),
    [
        ("backend_idle_timeout", "ROCKETWS_IDLE_TIMEOUT", "ROCKETWS_MS_IDLE_TIMEOUT", "7", 7.0),
        ("max_channel_length", "ROCKETWS_MAX_NAME_LENGTH", "ROCKETWS_MAX_CHANNEL_LENGTH", "4", 4),
        ("redis_source", "ROCKETWS_REDIS", "ROCKETWS_REDIS_SOURCE", "redis://h:1/0", "redis://h:1/0"),
    ],
)
def test_older_env_names_are_declared_aliases(
    field: str, derived: str, alias: str, text: str, value: object
) -> None:
    assert SETTINGS[field].env == derived and alias in SETTINGS[field].aliases
    assert getattr(load_config(None, {derived: text}), field) == value
    assert getattr(load_config(None, {alias: text}), field) == value
    assert getattr(load_config(None, {derived: text, alias: text}), field) == value


def test_alias_conflicting_with_the_derived_name_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, {"ROCKETWS_IDLE_TIMEOUT": "7", "ROCKETWS_MS_IDLE_TIMEOUT": "8"})
    assert str(info.value) == (
        "invalid ROCKETWS_MS_IDLE_TIMEOUT='8': an older name of ROCKETWS_IDLE_TIMEOUT, which is set to '7'"
    )


def test_settings_address_keys_default_separately() -> None:
    mod = types.SimpleNamespace(MESSAGES_SOURCE={"PORT": 5})
    assert load_config(mod, {}).backend == Address("127.0.0.1", 5)
    with pytest.raises(ConfigError, match="settings.MESSAGES_SOURCE HOST/PORT"):
        load_config(types.SimpleNamespace(MESSAGES_SOURCE={"PORT": "5"}), {})


# -- nested: channel namespaces -----------------------------------------------------------


def test_namespaces_from_settings_and_from_env_json() -> None:
    mod = types.SimpleNamespace(
        CHANNELS={
            "NAMESPACES": [{"name": "news", "allow_send_data": False}, {"name": "chat"}],
            "ALLOW_UNKNOWN_NAMESPACES": False,
        }
    )
    cfg = load_config(mod, {})
    assert cfg.namespaces == (Namespace("news", allow_send_data=False), Namespace("chat"))
    assert cfg.allow_unknown_namespaces is False
    env = {"ROCKETWS_NAMESPACES": '[{"name": "", "allow_send_data": "off"}]'}
    assert load_config(mod, env).namespaces == (Namespace("", allow_send_data=False),)
    assert load_config(None, {"ROCKETWS_ALLOW_UNKNOWN_NAMESPACES": "0"}).allow_unknown_namespaces is False


@pytest.mark.parametrize(
    ("namespaces", "message"),
    [
        (
            [{"name": "news"}, {"name": "a:b"}],
            "invalid settings.CHANNELS['NAMESPACES'][1]['name']='a:b': must not contain ':'",
        ),
        ([{"name": 5}], "invalid settings.CHANNELS['NAMESPACES'][0]['name']=5: expected a string"),
        (
            [{"name": "n", "allow_send_data": "maybe"}],
            "invalid settings.CHANNELS['NAMESPACES'][0]['allow_send_data']='maybe': "
            'expected one of "subscribers", "authenticated", "nobody" (or true/false)',
        ),
        (
            [{"name": "n"}, {"name": "n"}],
            "invalid settings.CHANNELS['NAMESPACES'][1]['name']='n': declared twice",
        ),
        (
            [{"allow_send_data": True}],
            "invalid settings.CHANNELS['NAMESPACES'][0]={'allow_send_data': True}: missing \"name\"",
        ),
        (
            [{"name": "n", "history": 5}],
            "invalid settings.CHANNELS['NAMESPACES'][0]={'name': 'n', 'history': 5}: "
            "unknown key(s) ['history']; known: ['allow_anonymous', 'allow_presence', 'allow_send_data', 'allow_subscribe', "
            "'allow_user_limited_channels', 'channel_regex', 'history_size', 'history_ttl', 'join_leave', 'max_subscribers', 'name', "
            "'presence', 'publish_proxy', 'subscribe_proxy', 'write_delay']",
        ),
        (["news"], "invalid settings.CHANNELS['NAMESPACES'][0]='news': expected a dict"),
        ({"name": "n"}, "invalid settings.CHANNELS['NAMESPACES']={'name': 'n'}: expected a list"),
    ],
)
def test_bad_namespaces_are_one_line_naming_the_value(namespaces: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(types.SimpleNamespace(CHANNELS={"NAMESPACES": namespaces}), {})
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_bad_namespaces_env_json_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"^invalid ROCKETWS_NAMESPACES='\[\{': expected a JSON list"):
        load_config(None, {"ROCKETWS_NAMESPACES": "[{"})
    with pytest.raises(ConfigError, match=r"^invalid ROCKETWS_NAMESPACES\[0\]\['name'\]='a:b'"):
        load_config(None, {"ROCKETWS_NAMESPACES": '[{"name": "a:b"}]'})


# -- docs/configuration.md and settings.py agree with the declarations ---------------------


def _table_rows(text: str) -> dict[str, list[str]]:
    """First cell -> the other cells, for every row of the settings table."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("| `") and line.endswith(" |"):
            cells = [c.strip() for c in line[2:-2].split(" | ")]
            rows[cells[0]] = cells[1:]
    return rows


def test_docs_table_is_the_declarations() -> None:
    documented = _table_rows((ROOT / "docs" / "configuration.md").read_text())
    declared = _table_rows(settings_table())
    assert len(declared) == len(SETTINGS) + len(OPTIONS)  # every setting, and each namespace key
    assert documented == declared, "regenerate it: python -m rocketws.config"


def test_settings_py_spells_out_every_declared_setting() -> None:
    for spec in SETTINGS.values():
        section = getattr(settings, spec.section)
        for key in spec.keys:
            assert key in section, f"settings.py lacks {spec.section}[{key!r}]"
        raw = spec.read(settings)  # None: not set, which is right only where the default is None
        value = None if raw is None else spec.parse(spec.settings_name(), raw)
        assert value == spec.default, spec.location


# -- PROXY (docs/operations.md#proxies) ----------------------------------------------------


def test_proxy_settings_from_the_environment() -> None:
    routes = '[{"pattern": "db.*", "url": "http://127.0.0.1:8000/rpc"}, {"pattern": "t", "handler": "m.n:f"}]'
    cfg = load_config(
        None,
        {
            "ROCKETWS_RPC_PROXY_URL": "https://app.example/rpc",
            "ROCKETWS_RPC_PROXY_ROUTES": routes,
            "ROCKETWS_PROXY_TIMEOUT": "2.5",
            "ROCKETWS_PROXY_HEADERS": "Cookie, X-Tenant",
            "ROCKETWS_PROXY_MAX_IN_FLIGHT_PER_CONNECTION": "3",
        },
    )
    assert cfg.rpc_proxy_url == "https://app.example/rpc" and cfg.proxy_timeout == 2.5
    assert [(r.pattern, r.url, r.handler) for r in cfg.rpc_proxy_routes] == [
        ("db.*", "http://127.0.0.1:8000/rpc", None),
        ("t", None, "m.n:f"),
    ]
    assert cfg.proxy_headers == ("Cookie", "X-Tenant") and cfg.proxy_max_in_flight_per_connection == 3
    assert (cfg.proxy_max_in_flight, cfg.proxy_max_response_size) == (1000, 1048576)


@pytest.mark.parametrize(
    ("proxy", "needle"),
    [
        ({"RPC": [{"pattern": "a"}]}, 'give exactly one of "url" and "handler"'),
        ({"RPC": [{"pattern": "a", "url": "ftp://x"}]}, "expected an http:// or https:// URL"),
        ({"RPC": [{"pattern": "a", "handler": "no-colon"}]}, "expected an import path module:function"),
        ({"RPC": [{"pattern": "", "url": "http://x/"}]}, "expected a method name or glob"),
        ({"RPC": [{"pattern": "a", "url": "http://x/", "timeout": 1}]}, "unknown key(s) ['timeout']"),
        ({"RPC": {"pattern": "a"}}, "expected a list of dicts"),
        ({"HEADERS": ["X-RocketWS-User"]}, "set by RocketWS itself"),
        ({"HEADERS": ["Content-Length"]}, "set by RocketWS itself"),
        ({"TIMEOUT": 0}, "above 0"),
        ({"MAX_IN_FLIGHT": 0}, "above 0"),
    ],
)
def test_bad_proxy_settings_are_refused_naming_the_value(proxy: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(settings_module(PROXY=proxy), {})
    assert needle in str(info.value) and "PROXY" in str(info.value)


def test_namespace_proxy_options_need_their_urls() -> None:
    namespaces = [{"name": "g", "subscribe_proxy": True}]
    with pytest.raises(ConfigError, match="ROCKETWS_SUBSCRIBE_PROXY_URL"):
        load_config(settings_module(NAMESPACES=namespaces), {})
    with pytest.raises(ConfigError, match="ROCKETWS_PUBLISH_PROXY_URL"):
        load_config(settings_module(NAMESPACES=[{"name": "g", "publish_proxy": "true"}]), {})
    cfg = load_config(
        settings_module(NAMESPACES=namespaces, PROXY={"SUBSCRIBE_URL": "http://127.0.0.1:1/s"}), {}
    )
    assert cfg.namespaces[0].subscribe_proxy and not cfg.namespaces[0].publish_proxy


def test_proxy_static_headers_are_a_secret() -> None:
    key = "k-" + "s" * 30
    cfg = load_config(None, {"ROCKETWS_PROXY_STATIC_HEADERS": json.dumps({"X-Api-Key": key})})
    assert cfg.proxy_static_headers == {"X-Api-Key": key} and key not in repr(cfg)
    for bad in ({"X-Api-Key": key + "\n"}, {"X-RocketWS-User": key}, {"bad name": key}, [key]):
        with pytest.raises(ConfigError) as info:
            load_config(settings_module(PROXY={"STATIC_HEADERS": bad}), {})
        assert key not in str(info.value) and "STATIC_HEADERS" in str(info.value)
