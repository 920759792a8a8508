"""``manage.py token`` and ``manage.py init``: a signed token, and a first settings file.

``token`` signs a connection token (claims ``sub``, ``iat``, ``exp``, ``info``) or, with
a channel, a subscription token (``sub``, ``channel``, ``iat``, ``exp``, ``info``) with
HS256 and the configured ``AUTH["TOKEN_HMAC_SECRET"]``, for tests, the demo and the
shell.  The secret is read by ``token_secret``: the Config field when the connection
authentication settings declare it, else ``ROCKETWS_TOKEN_HMAC_SECRET``, else the
settings module's ``AUTH`` dict; it is never printed.

``init`` writes ``settings.py`` with fresh secrets (``secrets.token_urlsafe``), mode 0600,
and refuses to overwrite an existing file.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rocketws.config import Config

__all__ = ["SETTINGS_TEMPLATE", "init_settings", "make_token", "token_secret"]

SECRET_ENV = "ROCKETWS_TOKEN_HMAC_SECRET"
DEFAULT_TTL = 3600  # seconds
ALGORITHM = "HS256"


class TokenError(Exception):
    """A token cannot be made (no secret, bad --info or --ttl); the message says why."""


def token_secret(config: Config, settings: object | None, environ: Mapping[str, str]) -> str | None:
    """The HMAC secret tokens are signed with, or None when none is configured.

    ``config.token_hmac_secret`` once the AUTH settings are declared (the connection
    authentication work); until then ``$ROCKETWS_TOKEN_HMAC_SECRET``, then
    ``settings.AUTH["TOKEN_HMAC_SECRET"]``.
    """
    declared = getattr(config, "token_hmac_secret", None)
    if declared:
        return str(declared)
    if environ.get(SECRET_ENV):
        return environ[SECRET_ENV]
    auth = getattr(settings, "AUTH", None)
    if isinstance(auth, Mapping) and isinstance(auth.get("TOKEN_HMAC_SECRET"), str):
        return auth["TOKEN_HMAC_SECRET"] or None
    return None


def make_token(
    secret: str,
    user: str,
    *,
    ttl: int = DEFAULT_TTL,
    info: Any = None,
    channel: str | None = None,
    now: float | None = None,
) -> str:
    """A JWT (HS256) for ``user``: a connection token, or a subscription token for ``channel``.

    ``ttl`` seconds until ``exp`` (0: no ``exp``); ``info`` is any JSON value (omitted when
    None).
    """
    import jwt  # PyJWT: imported here so the server never loads it for this

    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {"sub": user, "iat": issued}
    if channel is not None:
        claims["channel"] = channel
    if ttl:
        claims["exp"] = issued + ttl
    if info is not None:
        claims["info"] = info
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def parse_ttl(text: str | None) -> int:
    """``--ttl``: whole seconds >= 0 (0: no expiry).  Raises TokenError."""
    if text is None:
        return DEFAULT_TTL
    if not text.isdigit():
        raise TokenError(f"--ttl expects whole seconds >= 0, got {text!r}")
    return int(text)


def parse_info(text: str | None) -> Any:
    """``--info``: a JSON value.  Raises TokenError."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise TokenError(f"--info is not JSON: {exc}") from None


SETTINGS_TEMPLATE = '''\
"""RocketWS settings, written by `manage.py init`.

This file holds secrets: keep it out of version control (mode 0600) and give each
environment its own (run `manage.py init` again in another directory).  Every setting
not listed here keeps its default (docs/configuration.md); environment variables
(ROCKETWS_*) override this file.
"""

# Browser-facing WebSocket endpoint (behind your TLS-terminating proxy, or with TLS).
WEBSOCKETS = {{
    "HOST": "0.0.0.0",
    "PORT": 58000,
    # Browser pages allowed to connect; "*" allows any origin.
    "ALLOWED_ORIGINS": ["https://example.com"],
}}

# Backend-facing JSON-RPC over HTTP: keep it on loopback or a private network.
MESSAGES_SOURCE = {{
    "HOST": "127.0.0.1",
    "PORT": 59999,
    # Backends send it as `Authorization: apikey KEY` or `X-API-Key: KEY`;
    # the Python client: rocketws.client.Client(url, api_key=KEY);
    # the shell: ROCKETWS_API_KEY=KEY manage.py shell.
    "API_KEY": "{api_key}",
}}

# Connection tokens (JWT, HS256) are signed with this secret by your backend
# (`manage.py token --user ID` makes one for tests).
AUTH = {{
    "TOKEN_HMAC_SECRET": "{token_secret}",
    # Connections one user may hold open on each node (one more: -32016, close 4013).
    # "MAX_CONNECTIONS_PER_USER": 10,
}}

# A channel "ns:room" is in namespace "ns"; one without ":" in the default namespace.
# Options: docs/security.md#namespace-options.
NAMESPACES = [
    # news:* channels: clients listen, only backends publish.
    {{"name": "news", "allow_send_data": "nobody"}},
    # chat:* channels: signed-in users talk to each other (chat:room#alice,bob: only those two).
    {{"name": "chat", "allow_anonymous": False}},
    # A namespace whose channels each need a subscription token (`manage.py token --channel`):
    # {{"name": "private", "allow_subscribe": "token"}},
]

CHANNELS = {{
    # False: subscribing to a channel of an undeclared namespace answers -32005.
    "ALLOW_UNKNOWN_NAMESPACES": False,
}}
'''


def init_settings(directory: Path) -> Path:
    """Write ``directory/settings.py`` with fresh secrets, mode 0600; return its path.

    Raises FileExistsError when it exists (never overwritten), OSError when it cannot be
    written.  The directory is made (mode 0700) if missing.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / "settings.py"
    text = SETTINGS_TEMPLATE.format(api_key=secrets.token_urlsafe(32), token_secret=secrets.token_urlsafe(48))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # O_EXCL: never overwrite
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    return path


def print_token(
    config: Config, settings: object | None, environ: Mapping[str, str], args: Mapping[str, Any]
) -> None:
    """Print the token ``manage.py token`` was asked for.  Raises TokenError."""
    secret = token_secret(config, settings, environ)
    if secret is None:
        raise TokenError(
            f'no token secret: set AUTH["TOKEN_HMAC_SECRET"] in settings.py or {SECRET_ENV} '
            "(manage.py init writes one)"
        )
    user = args["--user"]
    if not user:
        raise TokenError("--user must not be empty")
    token = make_token(
        secret,
        user,
        ttl=parse_ttl(args["--ttl"]),
        info=parse_info(args["--info"]),
        channel=args["--channel"],
    )
    sys.stdout.write(token + "\n")
