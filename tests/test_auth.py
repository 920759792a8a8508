"""Unit tests of connection authentication (rocketws/core/auth.py) with a fake connection."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import jwt
import pytest

from rocketws.core.auth import ANONYMOUS_MODE, Authenticator, upgrade_token
from rocketws.core.codes import RpcCode
from rocketws.core.disconnect import TOO_MANY_CONNECTIONS, Disconnect
from rocketws.core.exceptions import AuthFailed, RpcError
from rocketws.core.handshake import Request
from rocketws.core.tokens import Identity, TokenVerifier

SECRET = "s" * 32


class FakeLink:
    """An Admission that records what the authenticator asks of the connection."""

    def __init__(self, headers: Sequence[tuple[str, str]] = ()) -> None:
        self.connecting = True
        self.headers = tuple(headers)
        self.admitted: list[Identity] = []
        self.refused: list[Disconnect] = []
        self.extended: list[float] = []

    def upgrade_headers(self) -> Sequence[tuple[str, str]]:
        return self.headers

    def admit(self, identity: Identity) -> list[str]:
        self.admitted.append(identity)
        self.connecting = False
        return list(identity.channels)

    def refuse(self, why: Disconnect) -> None:
        self.refused.append(why)

    def extend(self, expires_at: float) -> None:
        self.extended.append(expires_at)


def token(sub: str = "alice", ttl: int = 60, **extra: Any) -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time()) + ttl, **extra}, SECRET, "HS256")


def authenticator(**kwargs: Any) -> Authenticator:
    return Authenticator(TokenVerifier(hmac_secret=SECRET), ping_interval=25.0, **kwargs)


def test_anonymous_mode_requires_nothing_and_answers_connect() -> None:
    assert not ANONYMOUS_MODE.required and "anonymous" in ANONYMOUS_MODE.describe()
    answer = ANONYMOUS_MODE.connect(FakeLink(), "c1", None, None, None)
    assert answer == {"client": "c1", "user": "", "expires_in": None, "ping_interval": 0.0, "channels": []}


def test_connect_with_a_token_admits_its_identity_and_channels() -> None:
    auth, link = authenticator(), FakeLink()
    answer = auth.connect(link, "c1", token(channels=["news"]), "app", "1.0")
    assert [i.user for i in link.admitted] == ["alice"] and not link.refused
    assert answer["user"] == "alice" and answer["channels"] == ["news"]
    assert 55 <= answer["expires_in"] <= 60 and answer["ping_interval"] == 25.0


def test_refused_token_asks_the_connection_to_close_after_the_answer() -> None:
    auth, link = authenticator(), FakeLink()
    with pytest.raises(AuthFailed) as info:
        auth.connect(link, "c1", token(ttl=-60), None, None)
    assert info.value.code == RpcCode.TOKEN_EXPIRED
    assert [d.code for d in link.refused] == [4502] and not link.admitted
    with pytest.raises(AuthFailed) as missing:
        auth.connect(FakeLink(), "c2", None, None, None)
    assert missing.value.code == RpcCode.TOKEN_INVALID and "missing token" in missing.value.reason


def test_second_connect_is_already_connected() -> None:
    auth, link = authenticator(), FakeLink()
    auth.connect(link, "c1", token(), None, None)
    with pytest.raises(AuthFailed) as info:
        auth.connect(link, "c1", token(), None, None)
    assert info.value.code == RpcCode.ALREADY_CONNECTED


def test_refresh_needs_the_same_user_and_moves_the_expiry() -> None:
    auth, link = authenticator(), FakeLink()
    with pytest.raises(RpcError) as early:
        auth.refresh(link, "alice", token())
    assert early.value.code == RpcCode.NOT_CONNECTED
    auth.connect(link, "c1", token(ttl=10), None, None)
    assert auth.refresh(link, "alice", token(ttl=120))["expires_in"] > 100
    assert len(link.extended) == 1
    with pytest.raises(AuthFailed):
        auth.refresh(link, "alice", token(sub="mallory"))
    assert len(link.extended) == 1


def test_connect_proxy_gets_params_and_kept_headers() -> None:
    seen: list[tuple[dict[str, Any], Sequence[tuple[str, str]]]] = []

    def proxy(params: dict[str, Any], headers: Sequence[tuple[str, str]]) -> Identity:
        seen.append((params, headers))
        return Identity("bob", {"name": "Bob"})

    auth = Authenticator(None, proxy, forward_headers=["Cookie"])
    request = Request("GET", "/", "1.1", (("cookie", "sid=1"), ("user-agent", "x")))
    upgrade, kept = auth.at_upgrade(request)
    assert upgrade is None and kept == (("cookie", "sid=1"),)
    link = FakeLink(kept)
    assert auth.connect(link, "c1", None, "app", None)["user"] == "bob"
    assert seen == [({"client": "c1", "name": "app"}, (("cookie", "sid=1"),))]


def test_connection_closed_while_the_proxy_answered_is_not_admitted() -> None:
    link = FakeLink()

    def proxy(params: dict[str, Any], headers: Sequence[tuple[str, str]]) -> Identity:
        link.connecting = False  # the connect timeout fired while the proxy was asked
        return Identity("bob")

    with pytest.raises(RpcError) as info:
        Authenticator(None, proxy).connect(link, "c1", None, None, None)
    assert info.value.code == RpcCode.NOT_CONNECTED and not link.admitted and not link.refused


def test_upgrade_token_from_bearer_header_then_query() -> None:
    bearer = Request("GET", "/?token=q", "1.1", (("authorization", "Bearer abc"),))
    assert upgrade_token(bearer) == "abc"
    assert upgrade_token(Request("GET", "/?x=1&token=a%2Eb", "1.1", ())) == "a.b"
    assert upgrade_token(Request("GET", "/", "1.1", (("authorization", "Basic xyz"),))) is None


class FullLink(FakeLink):
    """A connection whose node refuses the user (MAX_CONNECTIONS_PER_USER)."""

    def admit(self, identity: Identity) -> list[str]:
        raise AuthFailed(RpcCode.TOO_MANY_CONNECTIONS, "user has 1 connection(s)", TOO_MANY_CONNECTIONS)


def test_connect_refused_by_the_per_user_limit_answers_32016_then_closes_4013() -> None:
    link = FullLink()
    with pytest.raises(AuthFailed) as info:
        authenticator().connect(link, "c1", token(), None, None)
    assert info.value.code == RpcCode.TOO_MANY_CONNECTIONS
    assert link.refused == [TOO_MANY_CONNECTIONS] and link.refused[0].code == 4013
