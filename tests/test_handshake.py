"""The opening handshake's decisions, without sockets (rocketws/core/handshake.py)."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from rocketws.config import Config, load_config
from rocketws.core import handshake
from rocketws.core.exceptions import ConfigError
from rocketws.core.handshake import Accept, Extension, Reject, Request

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 section 1.3's example
CONFIG = Config()
BASE = (
    ("host", "example.com"),
    ("upgrade", "websocket"),
    ("connection", "Upgrade"),
    ("sec-websocket-key", KEY),
    ("sec-websocket-version", "13"),
)


def _request(
    *extra: tuple[str, str],
    drop: tuple[str, ...] = (),
    method: str = "GET",
    target: str = "/",
    version: str = "1.1",
) -> Request:
    headers = tuple(h for h in BASE if h[0] not in drop) + extra
    return Request(method, target, version, headers)


def _reject(request: Request, config: Config = CONFIG, full: bool = False) -> Reject:
    decision = handshake.decide(request, config, full=full)
    assert isinstance(decision, Reject), decision
    return decision


def _accept(request: Request, config: Config = CONFIG) -> Accept:
    decision = handshake.decide(request, config)
    assert isinstance(decision, Accept), decision
    return decision


def _parse(response: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    return status, dict(line.split(": ", 1) for line in lines), body


# -- accepting --------------------------------------------------------------------------


def test_handshake_accepts_rfc_example_with_its_accept_key() -> None:
    accept = _accept(_request())
    status, headers, body = _parse(accept.response)
    assert status == "HTTP/1.1 101 Switching Protocols"
    assert headers == {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Accept": "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",  # RFC 6455 section 1.3
    }
    assert body == b""
    assert (accept.subprotocol, accept.offers, accept.extensions) == (None, (), ())


def test_handshake_accepts_token_lists_in_any_case_and_a_query() -> None:
    request = Request(
        "GET",
        "/?token=abc",
        "1.1",
        (
            ("host", "h"),
            ("upgrade", "h2c, WebSocket"),
            ("connection", "keep-alive, UPGRADE"),
            ("sec-websocket-key", f" {KEY} "),
            ("sec-websocket-version", "13"),
        ),
    )
    assert _accept(request).subprotocol is None


def test_handshake_accepts_absolute_form_target() -> None:
    _accept(_request(target="http://example.com/"))


# -- subprotocols -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offered", "selected"),
    [
        (["rocketws"], "rocketws"),
        (["jsonrpc"], "jsonrpc"),
        (["x", "rocketws, jsonrpc"], "rocketws"),  # the client's order decides
        (["graphql-ws", "jsonrpc"], "jsonrpc"),
        (["ROCKETWS"], None),  # case-sensitive
        (["unknown"], None),  # accepted, none selected (documented in protocol.md)
    ],
)
def test_handshake_selects_the_first_offered_supported_subprotocol(
    offered: list[str], selected: str | None
) -> None:
    accept = _accept(_request(*(("sec-websocket-protocol", value) for value in offered)))
    assert accept.subprotocol == selected
    headers = _parse(accept.response)[1]
    assert headers.get("Sec-WebSocket-Protocol") == selected


def test_handshake_selects_none_when_the_setting_is_empty() -> None:
    config = dataclasses.replace(CONFIG, subprotocols=())
    assert _accept(_request(("sec-websocket-protocol", "rocketws")), config).subprotocol is None


@pytest.mark.parametrize("value", ["", " , ", "a b", "a;b", "rocketws, x/y"])
def test_handshake_refuses_malformed_subprotocol_header_400(value: str) -> None:
    refusal = _reject(_request(("sec-websocket-protocol", value)))
    assert refusal.status == 400 and "Sec-WebSocket-Protocol" in refusal.detail


# -- extensions -------------------------------------------------------------------------


def test_parse_extensions_follows_rfc6455_9_1_grammar() -> None:
    value = 'permessage-deflate; client_max_window_bits; server_max_window_bits="10" , x-foo,,y;a=1'
    assert handshake.parse_extensions(value) == (
        Extension("permessage-deflate", (("client_max_window_bits", None), ("server_max_window_bits", "10"))),
        Extension("x-foo"),
        Extension("y", (("a", "1"),)),
    )
    assert handshake.parse_extensions(None) == ()
    assert handshake.parse_extensions('a; b="c\\d"') == (Extension("a", (("b", "cd"),)),)


@pytest.mark.parametrize(
    "value",
    ["", ",", "a;", "a; =1", "a; b=", 'a; b="x y"', 'a; b="unterminated', "a b", "a;b=1 c", "a=1"],
)
def test_parse_extensions_refuses_malformed_offers(value: str) -> None:
    with pytest.raises(ValueError):
        handshake.parse_extensions(value)


def test_handshake_parses_extension_offers_and_declines_them() -> None:
    accept = _accept(
        _request(
            ("sec-websocket-extensions", "permessage-deflate; client_max_window_bits"),
            ("sec-websocket-extensions", "x-webkit-deflate-frame"),
        )
    )
    assert accept.offers == (
        Extension("permessage-deflate", (("client_max_window_bits", None),)),
        Extension("x-webkit-deflate-frame"),
    )
    assert accept.extensions == ()
    assert "Sec-WebSocket-Extensions" not in _parse(accept.response)[1]
    assert handshake.negotiate_extensions(accept.offers, CONFIG) == (None, ())


def test_handshake_with_compression_accepts_permessage_deflate() -> None:
    config = dataclasses.replace(CONFIG, compression=True)
    accept = _accept(
        _request(
            ("sec-websocket-extensions", "x-webkit-deflate-frame"),
            ("sec-websocket-extensions", "permessage-deflate; server_max_window_bits=10"),
            ("sec-websocket-extensions", "permessage-deflate; client_max_window_bits"),
        ),
        config,
    )
    agreed = (("server_no_context_takeover", None), ("client_no_context_takeover", None))
    assert accept.extensions == (Extension("permessage-deflate", agreed),)
    assert _parse(accept.response)[1]["Sec-WebSocket-Extensions"] == (
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    )
    # every compressed connection keeps the same value, not a copy of its own
    again = _accept(_request(("sec-websocket-extensions", "permessage-deflate")), config)
    assert again.extensions is accept.extensions


def test_handshake_with_compression_declines_invalid_deflate_offers() -> None:
    config = dataclasses.replace(CONFIG, compression=True)
    accept = _accept(
        _request(("sec-websocket-extensions", "permessage-deflate; client_max_window_bits=7")), config
    )
    assert accept.extensions == () and "Sec-WebSocket-Extensions" not in _parse(accept.response)[1]


def test_handshake_refuses_malformed_extensions_400() -> None:
    refusal = _reject(_request(("sec-websocket-extensions", "permessage-deflate; a=")))
    assert refusal.status == 400


# -- refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "status"),
    [
        (_request(*((f"x-h{i}", "v") for i in range(96))), 431),  # 101 fields
        (_request(version="2.0"), 505),
        (_request(drop=("host",)), 400),
        (_request(("host", "other")), 400),
        (_request(target="/chat"), 404),
        (_request(target="*", method="OPTIONS"), 404),
        (_request(method="POST"), 405),
        (_request(method="HEAD"), 405),  # an upgrade is a GET
        (_request(drop=("upgrade", "connection")), 426),
        (_request(version="1.0"), 426),
        (_request(drop=("connection",)), 400),
        (_request(("content-length", "5")), 400),
        (_request(("transfer-encoding", "chunked")), 400),
        (_request(drop=("sec-websocket-version",)), 426),
        (_request(("origin", "https://a"), ("origin", "https://b")), 400),
    ],
)
def test_handshake_refusal_statuses(request_: Request, status: int) -> None:
    assert _reject(request_).status == status


def test_handshake_accepts_exactly_100_fields_and_content_length_0() -> None:
    _accept(_request(("content-length", "0"), *((f"x-h{i}", "v") for i in range(94))))


@pytest.mark.parametrize("version", ["8", "12", "14", "13, 13", "13x", ""])
def test_handshake_unsupported_version_is_426_naming_13(version: str) -> None:
    refusal = _reject(_request(("sec-websocket-version", version), drop=("sec-websocket-version",)))
    status, headers, body = _parse(refusal.encode())
    assert status == "HTTP/1.1 426 Upgrade Required"
    assert headers["Sec-WebSocket-Version"] == "13"  # RFC 6455 section 4.4
    assert headers["Upgrade"] == "websocket"
    assert int(headers["Content-Length"]) == len(body) > 0


@pytest.mark.parametrize(
    ("keys", "problem"),
    [
        ((), "missing"),
        (("!!!notbase64!!!!!!!!!!==",), "not base64"),
        (("dGhlIHNhbXBsZSBub25jZQ=é",), "not ASCII"),
        (("dGhlIHNhbXBsZSBub25j",), "15 bytes"),
        (("dGhlIHNhbXBsZSBub25jZSE/",), "18 bytes"),
        ((KEY, KEY), "more than one"),
    ],
)
def test_handshake_bad_key_is_400(keys: tuple[str, ...], problem: str) -> None:
    refusal = _reject(_request(*(("sec-websocket-key", k) for k in keys), drop=("sec-websocket-key",)))
    assert refusal.status == 400 and problem in refusal.detail
    assert problem.encode() in refusal.body


def test_handshake_http10_upgrade_is_a_plain_request_426() -> None:
    refusal = _reject(_request(version="1.0", drop=("host",)))
    status, headers, body = _parse(refusal.encode("Sun, 06 Nov 1994 08:49:37 GMT"))
    assert status == "HTTP/1.1 426 Upgrade Required"
    assert headers["Date"] == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert headers["Upgrade"] == "websocket" and headers["Connection"] == "Upgrade, close"
    assert int(headers["Content-Length"]) == len(body)
    assert b"HTTP/1.1" in body and b"proxy_http_version 1.1" in body


def test_handshake_plain_head_gets_426_headers_without_body() -> None:
    refusal = _reject(Request("HEAD", "/", "1.1", (("host", "h"),)))
    status, headers, body = _parse(refusal.encode())
    assert status == "HTTP/1.1 426 Upgrade Required"
    assert int(headers["Content-Length"]) == len(refusal.body) > 0 and body == b""


def test_handshake_origin_outside_allowed_is_403() -> None:
    config = dataclasses.replace(CONFIG, allowed_origins=("https://app.example.com",))
    assert _reject(_request(("origin", "https://evil.example.net")), config).status == 403
    _accept(_request(("origin", "https://APP.example.com/")), config)
    _accept(_request(), config)  # no Origin: not a browser


def test_handshake_full_is_503_with_retry_after_and_logged_as_warning() -> None:
    refusal = _reject(_request(), full=True)
    headers = _parse(refusal.encode())[1]
    assert (refusal.status, headers["Retry-After"], refusal.level) == (503, "5", logging.WARNING)


def test_every_refusal_is_complete_and_closes() -> None:
    for refusal in (handshake.head_too_large(), handshake.bad_request("x"), _reject(_request(target="/x"))):
        status, headers, body = _parse(refusal.encode())
        assert int(headers["Content-Length"]) == len(body) > 0
        assert "close" in headers["Connection"]
        assert headers["Content-Type"] == "text/plain; charset=utf-8"


def test_subprotocols_setting_is_validated() -> None:
    assert load_config(None, {"ROCKETWS_SUBPROTOCOLS": "a, b.v2"}).subprotocols == ("a", "b.v2")
    with pytest.raises(ConfigError, match="not a token"):
        load_config(None, {"ROCKETWS_SUBPROTOCOLS": "a b"})
