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
from hypothesis import event, given, settings
from hypothesis import strategies as st

from rocketws.core.codes import RpcCode
from rocketws.core.exceptions import AuthFailed
from rocketws.core.tokens import HEADER_CACHE_SIZE, Identity, TokenVerifier, hmac_keys, identity_from_claims

SECRET = "s" * 64  # RFC 7518 3.2: at least the largest hash (HS512)


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


# -- the HS* fast path (TokenVerifier._hs_claims) against PyJWT ---------------------------

OTHER_SECRET = "o" * 64


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jws(header: Any, payload: Any, *, key: str = SECRET, alg: str = "sha256", raw: bool = False) -> str:
    """A compact JWS of any header and payload (``raw``: both are bytes already), HMAC-signed
    with ``key`` whatever the header says."""
    head = header if raw else json.dumps(header).encode()
    body = payload if raw else json.dumps(payload).encode()
    signing = b64url(head) + "." + b64url(body)
    return signing + "." + b64url(hmac.new(key.encode(), signing.encode(), alg).digest())


def padded(header: bytes, payload: bytes) -> str:
    """A JWS whose header segment keeps its '=' padding (some issuers send it)."""
    signing = base64.urlsafe_b64encode(header).decode() + "." + b64url(payload)
    assert signing.split(".")[0].endswith("=")
    return signing + "." + b64url(hmac.new(SECRET.encode(), signing.encode(), "sha256").digest())


def full(**extra: Any) -> dict[str, Any]:
    """Claims that pass every configured check of ``pair()``."""
    return {"sub": "alice", "exp": int(time.time()) + 600, "aud": "app", "iss": "issuer", **extra}


def without(name: str) -> dict[str, Any]:
    c = full()
    del c[name]
    return c


def pair(**options: Any) -> tuple[TokenVerifier, TokenVerifier]:
    """(the verifier with its fast path, the same checks through PyJWT only)."""
    kwargs = {"hmac_secret": SECRET, "audience": "app", "issuer": "issuer", "require_exp": True, **options}
    return TokenVerifier(**kwargs), TokenVerifier(**kwargs, hmac_fast_path=False)


def outcome(verifier: TokenVerifier, token: Any) -> tuple[Any, ...]:
    try:
        return ("ok", verifier.verify(token))
    except AuthFailed as exc:
        return ("refused", exc.code, exc.reason, exc.close)


HS256 = {"alg": "HS256", "typ": "JWT"}


def good() -> str:
    return jws(HS256, full())


# The tables are built when a test runs (their times are relative to now), by name.
# Accepted by the fast path alone (PyJWT is not called).
def fast_valid() -> dict[str, Any]:
    now, token = int(time.time()), good()
    return {
        "hs256": token,
        "hs384": jws({"alg": "HS384"}, full(), alg="sha384"),
        "hs512": jws({"alg": "HS512", "typ": "JWT"}, full(), alg="sha512"),
        "pyjwt-made": jwt.encode(
            full(info={"n": [1, 2.5, None]}, meta={"m": True}, channels=["a"]), SECRET, "HS256"
        ),
        "kid": jws({"alg": "HS256", "kid": "k1"}, full()),
        "kid-long": jws({"alg": "HS256", "kid": "k" * 300}, full()),  # a header not cached
        "aud-list": jws(HS256, full(aud=["other", "app"])),
        "iat-nbf-past": jws(HS256, full(iat=now - 60, nbf=now - 60)),
        "iat-nbf-in-leeway": jws(HS256, full(iat=now + 2, nbf=now + 2)),
        "exp-in-leeway": jws(HS256, full(exp=now - 2)),
        "float-times": jws(HS256, full(exp=now + 600.5, iat=now - 1.5)),
        "jti": jws(HS256, full(jti="j")),
        "anonymous": jws(HS256, full(sub="")),
    }


# Accepted, through PyJWT (a form the fast path leaves to it).
def slow_valid() -> dict[str, Any]:
    return {
        "other-header-field": jws({"alg": "HS256", "cty": "x"}, full()),
        "padded-header": padded(b'{"alg": "HS256"}', json.dumps(full()).encode()),
        "bool-iat": jws(HS256, full(iat=True)),
        "payload-utf16": jws(json.dumps(HS256).encode(), json.dumps(full()).encode("utf-16"), raw=True),
        "payload-big-int": jws(HS256, full(info=2**70)),
        "payload-nan": jws(
            json.dumps(HS256).encode(), json.dumps(full(info=1.5)).replace("1.5", "NaN").encode(), raw=True
        ),
    }


def invalid() -> dict[str, Any]:
    now, token = int(time.time()), good()
    return {
        "wrong-secret": jws(HS256, full(), key=OTHER_SECRET),
        "expired": jws(HS256, full(exp=now - 60)),
        "exp-bool": jws(HS256, full(exp=True)),
        "exp-null": jws(HS256, full(exp=None)),
        "exp-string": jws(HS256, full(exp="soon")),
        "exp-missing": jws(HS256, without("exp")),
        "nbf-future": jws(HS256, full(nbf=now + 600)),
        "iat-future": jws(HS256, full(iat=now + 600)),
        "iat-string": jws(HS256, full(iat="x")),
        "aud-wrong": jws(HS256, full(aud="elsewhere")),
        "aud-missing": jws(HS256, without("aud")),
        "aud-empty": jws(HS256, full(aud="")),
        "aud-list-without": jws(HS256, full(aud=["x", "y"])),
        "aud-list-not-strings": jws(HS256, full(aud=["app", 1])),
        "aud-object": jws(HS256, full(aud={"app": 1})),
        "iss-wrong": jws(HS256, full(iss="mallory")),
        "iss-missing": jws(HS256, without("iss")),
        "iss-number": jws(HS256, full(iss=1)),
        "sub-missing": jws(HS256, without("sub")),
        "sub-null": jws(HS256, full(sub=None)),
        "sub-number": jws(HS256, full(sub=7)),
        "jti-number": jws(HS256, full(jti=7)),
        "channel-claim": jws(HS256, full(channel="chat:a")),
        "channels-not-list": jws(HS256, full(channels="a")),
        "alg-none": b64url(b'{"alg":"none"}') + "." + b64url(json.dumps(full()).encode()) + ".",
        "alg-none-signed": jws({"alg": "none"}, full()),
        "alg-rs256-hmac-signed": jws({"alg": "RS256"}, full()),
        "alg-mismatch": jws(HS256, full(), alg="sha512"),
        "alg-missing": jws({"typ": "JWT"}, full()),
        "alg-lowercase": jws({"alg": "hs256"}, full()),
        "alg-list": jws({"alg": ["HS256"]}, full()),
        "alg-object": jws({"alg": {"HS256": 1}}, full()),
        "kid-number": jws({"alg": "HS256", "kid": 1}, full()),
        "crit": jws({"alg": "HS256", "crit": ["exp"]}, full()),
        "b64-false": jws({"alg": "HS256", "b64": False, "crit": ["b64"]}, full()),
        "header-list": jws(["HS256"], full()),
        "header-not-json": jws(b"{alg", json.dumps(full()).encode(), raw=True),
        "payload-list": jws(HS256, [full()]),
        "payload-not-json": jws(json.dumps(HS256).encode(), b"{sub", raw=True),
        "signature-non-canonical": token[:-1] + chr(ord(token[-1]) ^ 1),
        "signature-std-alphabet": token.replace("-", "+").replace("_", "/")
        if "-" in token or "_" in token
        else token + "+",
        "signature-missing": token.rsplit(".", 1)[0] + ".",
        "two-segments": token.rsplit(".", 1)[0],
        "four-segments": token + ".e30",
        "non-ascii": token[:-2] + "é" + token[-1],
        "spaces": " " + token,
        "empty": "",
        "not-a-string": 12,
    }


@pytest.mark.parametrize("name", sorted(fast_valid()))
def test_fast_path_accepts_alone_exactly_what_pyjwt_accepts(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, reference = pair()
    expected = outcome(reference, fast_valid()[name])
    assert expected[0] == "ok"
    decoded: list[str] = []
    real = jwt.PyJWT.decode

    def counted(*args: Any, **kwargs: Any) -> Any:
        decoded.append(name)
        return real(*args, **kwargs)

    monkeypatch.setattr(jwt.PyJWT, "decode", counted)
    assert outcome(fast, fast_valid()[name]) == expected
    assert decoded == []  # the fast path decided


@pytest.mark.parametrize("name", sorted(slow_valid()))
def test_fast_path_leaves_unusual_valid_tokens_to_pyjwt(name: str) -> None:
    fast, reference = pair()
    expected = outcome(reference, slow_valid()[name])
    assert expected[0] == "ok"
    assert outcome(fast, slow_valid()[name]) == expected


@pytest.mark.parametrize("name", sorted(invalid()))
def test_fast_path_refuses_what_pyjwt_refuses_with_its_reason(name: str) -> None:
    fast, reference = pair()
    expected = outcome(reference, invalid()[name])
    assert expected[0] == "refused"
    assert outcome(fast, invalid()[name]) == expected


def _resigned(head: str, body: str) -> str:
    """A JWS of the segments exactly as given, HMAC-signed with SECRET."""
    signing = head + "." + body
    return signing + "." + b64url(hmac.new(SECRET.encode(), signing.encode(), "sha256").digest())


@pytest.mark.parametrize(
    "where, char", [(w, c) for w in ("header", "payload") for c in ("+", "/", "=", " ", "\n", "*")]
)
def test_fast_path_leaves_segments_with_other_characters_to_pyjwt(where: str, char: str) -> None:
    # A segment with a character outside base64url (RFC 4648 5), correctly signed: the fast
    # path decides nothing, and the outcome is PyJWT's, whatever it is.
    fast, reference = pair()
    head, body, _ = good().split(".")
    if where == "header":
        head = head[:4] + char + head[4:]
    else:
        body = body[:4] + char + body[4:]
    token = _resigned(head, body)
    assert fast._hs_claims(token, ("sub", "exp")) is None
    assert outcome(fast, token) == outcome(reference, token)


def test_fast_path_without_audience_or_issuer_accepts_what_pyjwt_does() -> None:
    fast, reference = pair(audience=None, issuer=None, require_exp=False)
    for token in (good(), jws(HS256, {"sub": "bob"}), jws(HS256, {"sub": "bob", "aud": 3, "iss": 4})):
        assert outcome(fast, token) == outcome(reference, token)
        assert outcome(fast, token)[0] == "ok"


def test_fast_path_subscription_tokens_match_pyjwt() -> None:
    fast, reference = pair()
    for token in (jws(HS256, full(channel="chat:a")), jws(HS256, full()), jws(HS256, full(channel="chat:b"))):
        results: list[tuple[Any, ...]] = []
        for verifier in (fast, reference):
            try:
                results.append(("ok", verifier.verify_subscription(token, "alice", "chat:a")))
            except AuthFailed as exc:
                results.append(("refused", exc.code, exc.reason))
        assert results[0] == results[1]


@pytest.mark.parametrize("hash_name", ["sha256", "sha384", "sha512"])
@pytest.mark.parametrize("key_length", [32, 63, 64, 65, 127, 128, 129, 300])
def test_hmac_keys_compute_what_hmac_new_computes(hash_name: str, key_length: int) -> None:
    key = bytes(range(256))[:key_length] if key_length <= 256 else b"k" * key_length
    inner_keyed, outer_keyed = hmac_keys(key, hash_name)
    for message in (b"", b"a.b", b"x" * 1000):
        inner = inner_keyed.copy()
        inner.update(message)
        outer = outer_keyed.copy()
        outer.update(inner.digest())
        assert outer.digest() == hmac.new(key, message, hash_name).digest()


def test_fast_path_header_cache_keeps_every_outcome() -> None:
    """One verifier sees the same header segments again and again (its cache of them in
    use): every outcome stays PyJWT's, token after token."""
    fast, reference = pair()
    now = int(time.time())
    tokens = [
        good(),
        jws(HS256, full(), key=OTHER_SECRET),
        jws(HS256, full(exp=now - 60)),
        jws({"alg": "HS256", "kid": "k1"}, full(sub="bob")),
        jws({"alg": "none"}, full()),
        jws({"alg": "HS256", "kid": "k1"}, full(aud="elsewhere")),
        jws(HS256, full(), alg="sha512"),
        good(),
    ]
    for _ in range(2):
        for token in tokens:
            assert outcome(fast, token) == outcome(reference, token)
    assert outcome(fast, good())[0] == "ok"


def test_fast_path_header_cache_is_bounded() -> None:
    fast, reference = pair()
    for i in range(HEADER_CACHE_SIZE * 3):
        token = jws({"alg": "HS256", "kid": f"key-{i}"}, full())
        assert outcome(fast, token) == outcome(reference, token)
    long = jws({"alg": "HS256", "kid": "k" * 300}, full())
    before = fast._hs_header.cache_info()
    assert outcome(fast, long) == outcome(reference, long)
    after = fast._hs_header.cache_info()
    assert after.currsize == before.currsize == HEADER_CACHE_SIZE
    assert (after.hits, after.misses) == (before.hits, before.misses)  # never looked up


# Times relative to when each example is made, at least 1 s away from the 5 s leeway's edges.
_TIMES = st.sampled_from([-3600, -7, -3, 3, 7, 3600, 0.5]).map(lambda offset: int(time.time()) + offset) | (
    st.sampled_from([None, True, "x"])
)
_VALUES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.text(max_size=4)
    | st.lists(st.text(max_size=3), max_size=3)
)
_CLAIM_VALUES = {
    "sub": st.sampled_from(["alice", ""]) | _VALUES,
    "exp": _TIMES,
    "nbf": _TIMES,
    "iat": _TIMES,
    "aud": st.sampled_from(["app", "x", ["app"], ["x", "app"], [], ["app", 1]]) | _VALUES,
    "iss": st.sampled_from(["issuer", "x"]) | _VALUES,
    "jti": _VALUES,
    "info": _VALUES,
    "channels": st.sampled_from([["a"], []]) | _VALUES,
    "channel": _VALUES,
}
# full() with up to two claims changed and at most one dropped: about half are accepted.
_CLAIMS = st.builds(
    lambda changes, drop: {k: v for k, v in {**full(), **dict(changes)}.items() if k not in drop},
    st.lists(
        st.sampled_from(sorted(_CLAIM_VALUES)).flatmap(lambda k: st.tuples(st.just(k), _CLAIM_VALUES[k])),
        max_size=2,
    ),
    st.sets(st.sampled_from(["sub", "exp", "aud", "iss"]), max_size=1) | st.just(set()),
)
_HEADERS = st.builds(
    lambda alg, extra: {"alg": alg, **extra},
    st.sampled_from(["HS256", "HS256", "HS384", "HS512", "none", "RS256", "hs256"]),
    st.sampled_from(
        [{}, {}, {"typ": "JWT"}, {"kid": "k"}, {"typ": 1}, {"kid": 1}, {"crit": ["b64"]}, {"zip": "DEF"}]
    ),
)


@settings(max_examples=400, deadline=None)
@given(
    header=_HEADERS,
    payload=_CLAIMS,
    key=st.sampled_from([SECRET, SECRET, SECRET, OTHER_SECRET]),
    alg=st.sampled_from([None, None, None, None, "sha256", "sha512"]),
)
def test_fast_path_and_pyjwt_agree_on_generated_tokens(
    header: dict[str, Any], payload: dict[str, Any], key: str, alg: str | None
) -> None:
    fast, reference = pair()
    signed_with = alg or {"HS384": "sha384", "HS512": "sha512"}.get(header["alg"], "sha256")
    token = jws(header, payload, key=key, alg=signed_with)
    expected = outcome(reference, token)
    assert outcome(fast, token) == expected
    event(f"{expected[0]}")
