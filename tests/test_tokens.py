"""Unit tests of connection-token verification (rocketws/core/tokens.py), every key type."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from rocketws.core.codes import RpcCode
from rocketws.core.exceptions import AuthFailed
from rocketws.core.tokens import Identity, TokenVerifier, identity_from_claims

SECRET = "s" * 32


def claims(**extra: Any) -> dict[str, Any]:
    return {"sub": "alice", "exp": int(time.time()) + 60, **extra}


def pem(key: Any) -> str:
    return str(
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def hs256_by_hand(payload: dict[str, Any], key: bytes) -> str:
    """An HS256 JWS made without PyJWT's key checks (RFC 7515 7.1)."""

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    signing = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(json.dumps(payload).encode())
    return signing + "." + b64(hmac.new(key, signing.encode(), hashlib.sha256).digest())


def refused(verifier: TokenVerifier, token: Any) -> AuthFailed:
    with pytest.raises(AuthFailed) as info:
        verifier.verify(token)
    return info.value


def test_hs256_token_gives_the_identity_of_its_claims() -> None:
    token = jwt.encode(claims(info={"name": "Alice"}, meta={"role": 1}, channels=["a"]), SECRET, "HS256")
    identity = TokenVerifier(hmac_secret=SECRET).verify(token)
    assert (identity.user, identity.info, identity.meta, identity.channels) == (
        "alice",
        {"name": "Alice"},
        {"role": 1},
        ("a",),
    )
    assert identity.expires_at > time.time()


@pytest.mark.parametrize("alg", ["HS384", "HS512"])
def test_every_hmac_algorithm_is_accepted_with_the_secret(alg: str) -> None:
    secret = "k" * 64  # RFC 7518 3.2: at least the hash's size
    assert TokenVerifier(hmac_secret=secret).verify(jwt.encode(claims(), secret, alg)).user == "alice"


def test_a_short_hmac_secret_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        TokenVerifier(hmac_secret="short")
    with pytest.raises(ValueError, match="no token key"):
        TokenVerifier()


def test_expired_token_is_token_expired_and_bad_ones_are_invalid() -> None:
    verifier = TokenVerifier(hmac_secret=SECRET)
    expired = refused(verifier, jwt.encode(claims(exp=int(time.time()) - 60), SECRET, "HS256"))
    assert expired.code == RpcCode.TOKEN_EXPIRED and expired.close is not None
    assert expired.close.code == 4502
    for token in ("", None, 42, "not.a.jwt", jwt.encode(claims(), "x" * 32, "HS256")):
        failure = refused(verifier, token)
        assert failure.code == RpcCode.TOKEN_INVALID and failure.close is not None
        assert failure.close.code == 4501 and SECRET not in json.dumps(failure.data)


def test_leeway_accepts_a_token_just_expired() -> None:
    token = jwt.encode(claims(exp=int(time.time()) - 2), SECRET, "HS256")
    assert TokenVerifier(hmac_secret=SECRET).verify(token).user == "alice"


def test_alg_none_is_never_accepted() -> None:
    unsigned = jwt.encode(claims(), None, algorithm="none")  # type: ignore[arg-type]
    assert refused(TokenVerifier(hmac_secret=SECRET), unsigned).code == RpcCode.TOKEN_INVALID


def test_audience_issuer_and_required_exp_are_checked_when_configured() -> None:
    verifier = TokenVerifier(hmac_secret=SECRET, audience="app", issuer="me", require_exp=True)
    good = jwt.encode(claims(aud="app", iss="me"), SECRET, "HS256")
    assert verifier.verify(good).user == "alice"
    for bad in (
        claims(aud="other", iss="me"),
        claims(aud="app", iss="other"),
        {"sub": "alice", "aud": "app", "iss": "me"},  # no exp
    ):
        assert refused(verifier, jwt.encode(bad, SECRET, "HS256")).code == RpcCode.TOKEN_INVALID


def test_sub_is_required_and_must_be_a_string() -> None:
    verifier = TokenVerifier(hmac_secret=SECRET)
    assert refused(verifier, jwt.encode({"exp": int(time.time()) + 60}, SECRET, "HS256"))
    assert "subject" in refused(verifier, jwt.encode(claims(sub=7), SECRET, "HS256")).reason.lower()
    assert verifier.verify(jwt.encode(claims(sub=""), SECRET, "HS256")).user == ""  # anonymous


@pytest.mark.parametrize(
    ("key", "alg"),
    [
        (rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256"),
        (ec.generate_private_key(ec.SECP256R1()), "ES256"),
        (ed25519.Ed25519PrivateKey.generate(), "EdDSA"),
    ],
    ids=["rsa", "ec", "ed25519"],
)
def test_public_key_tokens_verify_and_other_algorithms_do_not(key: Any, alg: str) -> None:
    verifier = TokenVerifier(public_key_pem=pem(key))
    assert verifier.verify(jwt.encode(claims(), key, alg)).user == "alice"
    # The public key used as an HMAC secret (algorithm confusion) is refused.
    confused = hs256_by_hand(claims(), pem(key).encode())  # PyJWT would refuse to sign it
    assert refused(verifier, confused).code == RpcCode.TOKEN_INVALID
    assert alg in verifier.algorithms() and "HS256" not in verifier.algorithms()


def test_jwks_key_is_chosen_by_kid() -> None:
    one = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    two = ec.generate_private_key(ec.SECP256R1())
    keys = []
    for kid, key, alg in (("one", one, "RS256"), ("two", two, "ES256")):
        jwk = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(key.public_key()))
        keys.append({**jwk, "kid": kid, "alg": alg})
    verifier = TokenVerifier(jwks=json.dumps({"keys": keys}))
    assert verifier.verify(jwt.encode(claims(), one, "RS256", headers={"kid": "one"})).user == "alice"
    assert verifier.verify(jwt.encode(claims(), two, "ES256", headers={"kid": "two"})).user == "alice"
    wrong = jwt.encode(claims(), one, "RS256", headers={"kid": "two"})
    assert refused(verifier, wrong).code == RpcCode.TOKEN_INVALID
    unknown = jwt.encode(claims(), one, "RS256", headers={"kid": "three"})
    assert "kid" in refused(verifier, unknown).reason


def test_identity_from_proxy_claims_checks_types() -> None:
    identity = identity_from_claims(
        {"user": "bob", "expire_at": 5, "channels": ["x"]}, user_key="user", exp_key="expire_at"
    )
    assert identity == Identity("bob", None, None, ("x",), 5.0)
    for bad in ({"user": 1}, {"user": "b", "channels": "x"}, {"user": "b", "expire_at": "soon"}):
        with pytest.raises(AuthFailed):
            identity_from_claims(bad, user_key="user", exp_key="expire_at")


def test_malformed_header_is_invalid_not_a_crash() -> None:
    header = base64.urlsafe_b64encode(b"[1,2]").rstrip(b"=").decode()
    assert refused(TokenVerifier(hmac_secret=SECRET), f"{header}.e30.sig").code == RpcCode.TOKEN_INVALID
