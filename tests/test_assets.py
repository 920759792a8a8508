"""Unit tests of rocketws.core.assets: static files answered by the WebSocket endpoint."""

from __future__ import annotations

import pytest

from rocketws.config import Config
from rocketws.core import assets, handshake
from rocketws.core.handshake import Request

ASSET = assets.Asset.of(b"export const x = 1;\n", assets.JAVASCRIPT)


def _get(method: str = "GET", *headers: tuple[str, str], target: str = "/rocketws.js") -> Request:
    return Request(method, target, "1.1", (("host", "example.com"), *headers))


def test_asset_etag_is_strong_and_follows_the_bytes() -> None:
    other = assets.Asset.of(b"export const x = 2;\n", assets.JAVASCRIPT)
    assert ASSET.etag.startswith('"') and ASSET.etag.endswith('"') and not ASSET.etag.startswith("W/")
    assert ASSET.etag != other.etag
    assert assets.Asset.of(ASSET.body, assets.JAVASCRIPT).etag == ASSET.etag


def test_respond_get_sends_the_body_with_caching_headers() -> None:
    answer = assets.respond(ASSET, _get())
    raw = answer.encode("Tue, 01 Dec 2026 00:00:00 GMT")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert body == ASSET.body
    lines = head.decode().split("\r\n")
    assert "Content-Type: text/javascript; charset=utf-8" in lines
    assert f"Content-Length: {len(ASSET.body)}" in lines
    assert f"ETag: {ASSET.etag}" in lines
    assert "Cache-Control: public, max-age=600" in lines
    assert "Access-Control-Allow-Origin: *" in lines
    assert "X-Content-Type-Options: nosniff" in lines
    assert "Connection: close" in lines


def test_respond_head_sends_headers_only() -> None:
    raw = assets.respond(ASSET, _get("HEAD")).encode()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert body == b"" and f"Content-Length: {len(ASSET.body)}".encode() in head


@pytest.mark.parametrize(
    "value",
    [ASSET.etag, f'"other", {ASSET.etag}', f"W/{ASSET.etag}", "*", f"  {ASSET.etag}  "],
)
def test_respond_if_none_match_matching_answers_304_without_body(value: str) -> None:
    answer = assets.respond(ASSET, _get("GET", ("if-none-match", value)))
    raw = answer.encode()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert answer.status == 304 and body == b""
    assert b"\r\nContent-Type:" not in head  # RFC 9110 15.4.5: no content
    assert f"ETag: {ASSET.etag}".encode() in head


@pytest.mark.parametrize("value", ['"other"', "", 'W/"other"', ASSET.etag[:-2] + '"'])
def test_respond_if_none_match_not_matching_answers_200(value: str) -> None:
    assert assets.respond(ASSET, _get("GET", ("if-none-match", value))).status == 200


def test_respond_other_method_is_405() -> None:
    answer = assets.respond(ASSET, _get("POST"))
    assert answer.status == 405 and ("Allow", "GET, HEAD") in answer.headers


def test_decide_serves_assets_by_path_and_404s_the_rest() -> None:
    table = {assets.CLIENT_PATH: lambda request: assets.respond(ASSET, request)}
    config = Config()
    served = handshake.decide(_get(target="/rocketws.js?v=1"), config, assets=table)
    assert isinstance(served, handshake.Reject) and served.status == 200 and served.body == ASSET.body
    assert isinstance(
        missing := handshake.decide(_get(target="/other.js"), config, assets=table), handshake.Reject
    )
    assert missing.status == 404
    # without the table (SERVE_CLIENT off) the path is a 404 like any other
    off = handshake.decide(_get(), config)
    assert isinstance(off, handshake.Reject) and off.status == 404
