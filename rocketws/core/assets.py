"""Static files answered by the WebSocket endpoint to plain GETs (``/rocketws.js``).

An ``Asset`` holds the bytes, content type and strong ETag of one file, made once at
start; ``respond`` turns a GET or HEAD into a 200 or a 304 (RFC 9110 section 13.1.2:
``If-None-Match``, weak comparison), as a ``handshake.Reject`` so the adapter sends it
like any other answer without an upgrade (then closes the connection).
"""

from __future__ import annotations

import base64
import hashlib
import logging
from dataclasses import dataclass

from rocketws.core.handshake import Reject, Request

CLIENT_PATH = "/rocketws.js"
JAVASCRIPT = "text/javascript; charset=utf-8"  # RFC 9239
# Revalidated with the ETag after 10 minutes: a server upgrade reaches pages soon.
CACHE_CONTROL = "public, max-age=600"


@dataclass(frozen=True, slots=True)
class Asset:
    """One static file: its bytes, ``Content-Type`` and strong ``ETag`` (quoted)."""

    body: bytes
    content_type: str
    etag: str

    @classmethod
    def of(cls, body: bytes, content_type: str) -> Asset:
        """The asset of ``body``, its ETag derived from a SHA-256 of the bytes."""
        digest = base64.urlsafe_b64encode(hashlib.sha256(body).digest()[:18]).decode("ascii")
        return cls(body, content_type, f'"{digest}"')


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` value matches ``etag`` (``*``, or one of its entity
    tags by weak comparison: ``W/"x"`` matches ``"x"``)."""
    if if_none_match is None:
        return False
    for tag in if_none_match.split(","):
        tag = tag.strip()
        if tag == "*":
            return True
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag == etag:
            return True
    return False


def respond(asset: Asset, request: Request) -> Reject:
    """200 with the asset (headers only for HEAD), 304 when ``If-None-Match`` matches,
    405 for a method other than GET and HEAD."""
    if request.method not in ("GET", "HEAD"):
        return Reject(
            405,
            b"Use GET.\n",
            (("Allow", "GET, HEAD"), ("Connection", "close")),
            f"method {request.method} for {CLIENT_PATH}",
        )
    headers = (
        ("ETag", asset.etag),
        ("Cache-Control", CACHE_CONTROL),
        # A page of another origin imports it as a module script, which needs CORS.
        ("Access-Control-Allow-Origin", "*"),
        ("X-Content-Type-Options", "nosniff"),
        ("Connection", "close"),
    )
    if etag_matches(request.joined("if-none-match"), asset.etag):
        # RFC 9110 8.6: a 304's Content-Length, if sent, is the 200's: so no body is sent.
        return Reject(
            304, asset.body, headers, "not modified", logging.DEBUG, send_body=False, content_type=None
        )
    return Reject(
        200,
        asset.body,
        headers,
        "static file",
        logging.DEBUG,
        send_body=request.method == "GET",
        content_type=asset.content_type,
    )
