"""Connection tokens: JWTs verified with PyJWT (RFC 7519), without I/O.

``TokenVerifier`` holds the configured keys and checks; ``verify(token)`` returns the
token's ``Identity`` or raises ``AuthFailed`` (``INVALID_TOKEN`` / ``TOKEN_EXPIRED``, each
with its JSON-RPC code and close code).  Keys come in as text (the caller reads the PEM
or JWKS file).

Which algorithms a token may use follows from the key that would verify it, never from
the token alone (RFC 8725 section 3.1): an HMAC secret allows HS256/384/512 only, an RSA
public key RS*/PS*, an EC key ES*, an Ed25519/Ed448 key EdDSA; ``none`` is never allowed,
so an RS256 public key can never be used as an HS256 secret.  A JWKS key is chosen by
the token's ``kid`` (the only key when there is one and the token names none).

Claims: ``sub`` (required, a string; ``""`` = anonymous), ``info`` (public JSON for this
connection), ``meta`` (server-only JSON), ``channels`` (a list of channel names to
subscribe at connect), ``exp`` (required when ``require_exp``), ``nbf``/``iat`` (checked
with ``LEEWAY``), ``aud``/``iss`` (checked when configured).

HS256/384/512 tokens in their usual form are checked by ``_hs_claims`` first, with
hashlib (the HMAC of RFC 2104 from two hash states keyed once: ``hmac_keys``), the
constant-time ``hmac.compare_digest`` and orjson: PyJWT's decode costs ~50 µs per token
(a per-character base64 check, stdlib json, the HMAC key re-checked on every call), and
``connect`` must cost less than 60 µs (docs/security.md#token-verification).  It only
ever accepts: a token it does not accept (other header fields, padding, a check failed,
...) goes through PyJWT, which decides and names the reason, so what is accepted and
every refusal are PyJWT's (tests/test_tokens.py holds the two side by side).

PyJWT is imported when a verifier is built, not with this module: its package also
holds a JWKS-over-HTTP client (urllib, so ``socket`` and ``ssl``), which the pure core
must not load (tests/test_core_purity.py); RocketWS reads JWKS from a file only.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from rocketws.core import disconnect
from rocketws.core.codes import RpcCode
from rocketws.core.exceptions import AuthFailed

if TYPE_CHECKING:
    import jwt

LEEWAY = 5.0  # seconds of clock skew allowed on exp, nbf and iat
HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
EC_ALGORITHMS = ("ES256", "ES384", "ES512")
EDDSA_ALGORITHMS = ("EdDSA",)
MIN_HMAC_SECRET = 32  # bytes: RFC 7518 3.2 wants a key at least as long as the hash
HMAC_HASHES = {"HS256": "sha256", "HS384": "sha384", "HS512": "sha512"}  # RFC 7518 3.2


class Identity(NamedTuple):
    """Who a connection is: what a token (or the connect proxy) says.

    ``user`` "" is anonymous; ``expires_at`` is a Unix time, 0 for never.  A NamedTuple
    (one is made per ``connect``): as immutable as a frozen dataclass, at under a third
    of the cost to build.
    """

    user: str = ""
    info: Any = None
    meta: Any = None
    channels: tuple[str, ...] = ()
    expires_at: float = 0.0


ANONYMOUS = Identity()


def invalid(reason: str) -> AuthFailed:
    """The error for a token that is not acceptable (close 4501)."""
    return AuthFailed(RpcCode.TOKEN_INVALID, reason, disconnect.INVALID_TOKEN)


def expired(reason: str = "token expired") -> AuthFailed:
    """The error for a token whose ``exp`` has passed (close 4502)."""
    return AuthFailed(RpcCode.TOKEN_EXPIRED, reason, disconnect.TOKEN_EXPIRED)


def _algorithms_for(key: Any) -> tuple[str, ...]:
    if isinstance(key, rsa.RSAPublicKey):
        return RSA_ALGORITHMS
    if isinstance(key, ec.EllipticCurvePublicKey):
        return EC_ALGORITHMS
    if isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        return EDDSA_ALGORITHMS
    raise ValueError(f"unsupported public key type {type(key).__name__}")


def load_public_key(pem: str) -> tuple[Any, tuple[str, ...]]:
    """A PEM public key and the algorithms it verifies; ValueError if it is not one."""
    key = load_pem_public_key(pem.encode())
    return key, _algorithms_for(key)


def load_jwks(text: str) -> dict[str, jwt.PyJWK]:
    """The keys of a JWKS document (RFC 7517 section 5) by ``kid`` ("" for a key without
    one); ValueError when it is not a JWKS or holds a private or symmetric key."""
    import jwt

    try:
        keys = json.loads(text)["keys"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f'not a JWKS document ({{"keys": [...]}}): {exc}') from None
    out: dict[str, jwt.PyJWK] = {}
    for i, data in enumerate(keys):
        if not isinstance(data, dict) or data.get("kty") == "oct" or "d" in data:
            raise ValueError(f"key {i}: only public RSA, EC or OKP keys belong in the JWKS file")
        try:
            out[str(data.get("kid", ""))] = jwt.PyJWK(data)
        except jwt.PyJWTError as exc:
            raise ValueError(f"key {i}: {exc}") from None
    if not out:
        raise ValueError("the JWKS has no keys")
    return out


class TokenVerifier:
    """Verifies connection tokens against the configured keys and claims checks.

    At least one of ``hmac_secret``, ``public_key_pem``, ``jwks`` must be given.  Raises
    ValueError for an unusable key (the caller reports it as a configuration error).
    ``hmac_fast_path`` False sends every token through PyJWT (the equivalence tests'
    and the benchmark's reference).
    """

    __slots__ = (
        "_jwt",
        "_decoder",
        "_sub_decoder",
        "_secret",
        "_public",
        "_jwks",
        "_checks",
        "_hs_secret",
        "_hs_macs",
        "_hs_header",
        "_required",
        "_sub_required",
        "_audience",
        "_issuer",
    )

    def __init__(
        self,
        *,
        hmac_secret: str | None = None,
        public_key_pem: str | None = None,
        jwks: str | None = None,
        audience: str | None = None,
        issuer: str | None = None,
        require_exp: bool = False,
        hmac_fast_path: bool = True,
    ) -> None:
        import jwt

        self._jwt = jwt
        if not (hmac_secret or public_key_pem or jwks):
            raise ValueError("no token key configured")
        if hmac_secret is not None and len(hmac_secret.encode()) < MIN_HMAC_SECRET:
            raise ValueError(f"the HMAC secret must be at least {MIN_HMAC_SECRET} bytes")
        self._secret: dict[str, jwt.PyJWK] | None = None
        if hmac_secret:
            k = base64.urlsafe_b64encode(hmac_secret.encode()).rstrip(b"=").decode()
            self._secret = {alg: jwt.PyJWK({"kty": "oct", "k": k}, alg) for alg in HMAC_ALGORITHMS}
        self._hs_secret = hmac_secret.encode() if hmac_secret and hmac_fast_path else None
        # The fast path's HMACs keyed once per algorithm (RFC 2104 section 2's two padded
        # keys hashed at start-up); a token costs two hash copies (``hmac_keys``).
        self._hs_macs = (
            {alg: hmac_keys(self._hs_secret, name) for alg, name in HMAC_HASHES.items()}
            if self._hs_secret is not None
            else {}
        )
        # What each header segment allows, decoded once: an issuer sends the same header
        # with every token.  Bounded, and only short segments are kept.
        self._hs_header = functools.lru_cache(maxsize=HEADER_CACHE_SIZE)(_hs_header_alg)
        self._public = load_public_key(public_key_pem) if public_key_pem else None
        self._jwks = load_jwks(jwks) if jwks else None
        required = ["sub", "exp"] if require_exp else ["sub"]
        # One decoder with its options merged once (PyJWT merges per-call options on
        # every decode); the claim checks as keyword arguments, built once.
        self._decoder = jwt.PyJWT({"require": required, "verify_aud": audience is not None})
        self._sub_decoder = jwt.PyJWT({"require": [*required, "channel"], "verify_aud": audience is not None})
        checks: dict[str, Any] = {"leeway": LEEWAY}
        if audience is not None:
            checks["audience"] = audience
        if issuer is not None:
            checks["issuer"] = issuer
        self._checks = checks
        self._required = tuple(required)
        self._sub_required = (*required, "channel")
        self._audience = audience
        self._issuer = issuer

    def algorithms(self) -> tuple[str, ...]:
        """Every algorithm some configured key accepts."""
        algs: list[str] = list(HMAC_ALGORITHMS) if self._secret else []
        if self._public is not None:
            algs += self._public[1]
        if self._jwks is not None:
            algs += sorted({k.algorithm_name for k in self._jwks.values()})
        return tuple(dict.fromkeys(algs))

    def _key_for(self, token: str) -> tuple[Any, list[str]]:
        """The key that may verify ``token`` and the algorithms allowed with it.

        The header is only peeked at to choose a key; PyJWT then checks everything,
        the header's ``alg`` against the chosen key's algorithms included.
        """
        header = _peek_header(token)
        alg = header.get("alg")
        # (an ``alg`` that is no string, a list say, would not even hash: not a key's)
        if self._secret is not None and type(alg) is str and alg in self._secret:
            # A PyJWK per algorithm: its key is prepared once (PyJWT otherwise re-checks
            # that the secret is no PEM or SSH key on every decode, ~20 µs).
            jwk = self._secret[alg]
            return jwk, [jwk.algorithm_name]
        if self._public is not None and alg in self._public[1]:
            return self._public[0], list(self._public[1])
        if self._jwks is not None:
            kid = header.get("kid")
            if kid is None and len(self._jwks) == 1:
                jwk = next(iter(self._jwks.values()))
            else:
                found = self._jwks.get(str(kid)) if kid is not None else None
                if found is None:
                    raise invalid("no key with this token's kid")
                jwk = found
            return jwk.key, [jwk.algorithm_name]
        raise invalid(f"algorithm {alg!r} is not accepted")

    def verify(self, token: Any) -> Identity:
        """The identity ``token`` carries.  Raises AuthFailed (invalid or expired).

        A subscription token (one with a ``channel`` claim) is refused: it grants one
        channel, never a connection."""
        # The fast path first, here rather than through ``_decode``: a call level less
        # on every connect (each costs µs with the cold caches of a new connection).
        claims = None
        if self._hs_secret is not None and type(token) is str:
            claims = self._hs_claims(token, self._required)
        if claims is None:
            claims = self._pyjwt_decode(token, self._decoder, invalid, expired)
        if "channel" in claims:
            raise invalid("a subscription token (with a channel claim) cannot authenticate a connection")
        return identity_from_claims(claims)

    def verify_subscription(self, token: Any, user: str, channel: str) -> Any:
        """Check a subscription token (claims ``sub``, ``channel``, ``exp``, ``info``) for
        ``user`` subscribing to ``channel``; return its ``info``.

        Same keys and checks as connection tokens.  Raises AuthFailed without a close
        (the connection stays open): -32011 invalid (signature, ``sub`` not this
        connection's user, ``channel`` not this channel, ...), -32012 expired.
        """
        claims = self._decode(
            token, self._sub_decoder, self._sub_required, subscription_invalid, subscription_expired
        )
        if claims.get("channel") != channel:
            raise subscription_invalid("the token's channel is not this channel")
        if claims.get("sub") != user:
            raise subscription_invalid("the token's sub is not this connection's user")
        return claims.get("info")

    def _decode(
        self,
        token: Any,
        decoder: Any,
        required: tuple[str, ...],
        bad: Callable[[str], AuthFailed],
        late: Callable[[], AuthFailed],
    ) -> dict[str, Any]:
        if self._hs_secret is not None and isinstance(token, str):
            fast = self._hs_claims(token, required)
            if fast is not None:
                return fast
        return self._pyjwt_decode(token, decoder, bad, late)

    def _pyjwt_decode(
        self, token: Any, decoder: Any, bad: Callable[[str], AuthFailed], late: Callable[[], AuthFailed]
    ) -> dict[str, Any]:
        """PyJWT's decode with the configured checks: it decides and names the reason."""
        if not isinstance(token, str) or not token:
            raise bad("token must be a non-empty string")
        try:
            key, algorithms = self._key_for(token)
        except AuthFailed as exc:
            raise bad(exc.reason) from None
        jwt = self._jwt
        try:
            claims: dict[str, Any] = decoder.decode(token, key, algorithms, **self._checks)
        except jwt.ExpiredSignatureError:
            raise late() from None
        except jwt.PyJWTError as exc:
            raise bad(_reason(exc)) from None
        return claims

    def _hs_claims(self, token: str, required: tuple[str, ...]) -> dict[str, Any] | None:
        """The claims of ``token`` when it is an HS256/384/512 JWS in compact form that
        passes every check PyJWT makes (RFC 7515 7.1, RFC 7519 7.2), else None: then
        PyJWT decides.  Never accepts what PyJWT would refuse; refuses nothing itself.

        Accepted: three unpadded, canonical base64url segments; a header with ``alg``
        HS256/384/512 and at most ``typ`` and a string ``kid`` besides; a signature equal
        (``hmac.compare_digest``) to the HMAC of the first two segments with the secret;
        a JSON-object payload with the required claims non-null; ``iat``/``nbf`` numbers
        not after now + LEEWAY, ``exp`` a number after now - LEEWAY (PyJWT's ``int()``
        of each); ``iss``/``aud`` as configured; ``sub``/``jti`` strings when present.
        """
        if not token.isascii():  # a compact JWS is ASCII (RFC 7515 7.1)
            return None
        raw = token.encode()  # bytes from here on: one copy, no more encoding
        # Three non-empty segments of base64url characters: one C pass each for the
        # characters and the dots (a regular expression costs several times as much
        # with cold caches).
        if raw.translate(None, _JWS_CHARACTERS):
            return None
        parts = raw.split(b".")
        if len(parts) != 3:
            return None
        head, body, signature = parts
        if not (head and body and signature):
            return None
        alg = self._hs_header(head) if len(head) <= HEADER_CACHE_CHARS else _hs_header_alg(head)
        if alg is None:
            return None
        inner_keyed, outer_keyed = self._hs_macs[alg]
        inner = inner_keyed.copy()
        inner.update(raw[: len(raw) - len(signature) - 1])  # the signing input: header "." payload
        outer = outer_keyed.copy()
        outer.update(inner.digest())
        # The signature segment is compared with the canonical base64url of the HMAC: equal
        # exactly when it is canonical and decodes to the HMAC (RFC 7515 2, RFC 4648 5).
        expected = binascii.b2a_base64(outer.digest(), newline=False).rstrip(b"=").translate(_TO_URLSAFE)
        if not hmac.compare_digest(expected, signature):
            return None
        try:
            claims = orjson.loads(_canonical_b64(body))
        except (ValueError, binascii.Error):  # orjson.JSONDecodeError is a ValueError
            return None
        if type(claims) is not dict:
            return None
        # PyJWT's claim checks (``_validate_claims``), at least as strict, each claim
        # tested by name (set operations cost more with the cold caches of a connect).
        for name in required:
            if claims.get(name) is None:
                return None
        now = time.time()
        if "exp" in claims:
            value = claims["exp"]
            if type(value) not in _NUMBERS or int(value) <= now - LEEWAY:  # bool, None: PyJWT
                return None
        for name in _NOT_AFTER_NOW:
            if name in claims:
                value = claims[name]
                if type(value) not in _NUMBERS or int(value) > now + LEEWAY:
                    return None
        if type(claims.get("sub", "")) is not str or type(claims.get("jti", "")) is not str:
            return None
        issuer, audience = self._issuer, self._audience
        if issuer is not None and claims.get("iss") != issuer:
            return None
        if audience is not None:
            aud = claims.get("aud")
            if type(aud) is list:
                if not all(type(a) is str for a in aud) or audience not in aud:
                    return None
            elif not aud or aud != audience:
                return None
        return claims


_FAST_HEADER = frozenset({"alg", "typ", "kid"})  # other header fields go through PyJWT
_NUMBERS = (int, float)  # the time claims' types the fast path takes (bool goes to PyJWT)
_NOT_AFTER_NOW = ("iat", "nbf")  # time claims that must not be after now + LEEWAY
HEADER_CACHE_SIZE = 64  # distinct header segments a verifier remembers
HEADER_CACHE_CHARS = 256  # longer segments are decoded each time, never kept


def hmac_keys(secret: bytes, hash_name: str) -> tuple[Any, Any]:
    """HMAC with ``secret`` (RFC 2104 section 2) prepared: the hash of the padded key
    XOR ipad and of the padded key XOR opad, each to be copied, not changed.

    A message's HMAC is then ``outer.copy()`` updated with the digest of ``inner.copy()``
    updated with the message: what ``hmac.new`` computes (tests/test_tokens.py checks it
    for every algorithm and key length), with hashlib's plain hash objects rather than
    OpenSSL 3's HMAC, whose copy, update and final cost twice as much with cold caches
    (docs/benchmarks.md#connect-with-a-token-issue-10).
    """
    block = hashlib.new(hash_name).block_size
    key = hashlib.new(hash_name, secret).digest() if len(secret) > block else secret  # 2: "K"
    key = key.ljust(block, b"\0")
    return hashlib.new(hash_name, key.translate(_IPAD)), hashlib.new(hash_name, key.translate(_OPAD))


_IPAD = bytes(x ^ 0x36 for x in range(256))  # RFC 2104 section 2
_OPAD = bytes(x ^ 0x5C for x in range(256))


def _hs_header_alg(segment: bytes) -> str | None:
    """The ``alg`` of a header segment the fast path takes, else None (PyJWT decides):
    canonical base64url of a JSON object with ``alg`` HS256/384/512 and at most ``typ``
    and a string ``kid`` besides."""
    try:
        header = orjson.loads(_canonical_b64(segment))
    except (ValueError, binascii.Error):  # orjson.JSONDecodeError is a ValueError
        return None
    if type(header) is not dict or not _FAST_HEADER.issuperset(header):
        return None
    alg = header.get("alg")
    if type(alg) is not str or alg not in HMAC_HASHES or type(header.get("kid", "")) is not str:
        return None
    return alg


def _canonical_b64(segment: bytes) -> bytes:
    """The bytes of an unpadded base64url ``segment`` (RFC 7515 2, RFC 4648 5) of
    base64url characters only (``_hs_claims`` checked them), ValueError unless it is
    canonical: a length that is not 1 mod 4 and zero unused bits in its last character
    (PyJWT refuses the others)."""
    rem = len(segment) % 4
    if rem == 1 or (rem and _B64URL_VALUE[segment[-1]] & _UNUSED_BITS[rem]):
        raise ValueError("non-canonical base64url")
    return binascii.a2b_base64(segment.translate(_FROM_URLSAFE) + _PAD[rem], strict_mode=True)


_B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"  # RFC 4648 5
_JWS_CHARACTERS = (_B64URL + ".").encode()  # what a compact JWS is made of (RFC 7515 7.1)
_B64URL_VALUE = bytes(max(_B64URL.find(chr(b)), 0) for b in range(256))  # byte -> its value
_UNUSED_BITS = {2: 0x0F, 3: 0x03}  # the last character's bits past the data (RFC 4648 3.5)
_PAD = {0: b"", 2: b"==", 3: b"="}
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")  # RFC 4648 5 -> 4, for binascii
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")


def subscription_invalid(reason: str) -> AuthFailed:
    """A subscription token that is not acceptable: -32011, the connection stays open."""
    return AuthFailed(RpcCode.TOKEN_INVALID, reason)


def subscription_expired() -> AuthFailed:
    """A subscription token whose ``exp`` has passed: -32012, the connection stays open."""
    return AuthFailed(RpcCode.TOKEN_EXPIRED, "subscription token expired")


def _peek_header(token: str) -> dict[str, Any]:
    """The unverified JOSE header of a compact JWS (RFC 7515 7.1), for choosing a key."""
    head, dot, _ = token.partition(".")
    try:
        header = orjson.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, binascii.Error):
        header = None
    if not dot or not isinstance(header, dict):
        raise invalid("malformed token: not a JWS header")
    return header


def _reason(exc: Exception) -> str:
    """PyJWT's message, which names the failed check and never holds the token."""
    text = str(exc) or type(exc).__name__
    return text[:200]


def identity_from_claims(
    claims: Mapping[str, Any], *, user_key: str = "sub", exp_key: str = "exp"
) -> Identity:
    """The Identity of verified claims (a token's, or the connect proxy's answer with
    ``user_key="user"``, ``exp_key="expire_at"``).  Raises AuthFailed (invalid) for claims
    of the wrong type."""
    user = claims.get(user_key, "")
    if not isinstance(user, str):
        raise invalid(f"{user_key} must be a string")
    channels = claims.get("channels", ())
    if channels is None:
        channels = ()
    if not isinstance(channels, (list, tuple)) or (
        channels and not all(isinstance(c, str) for c in channels)
    ):
        raise invalid("channels must be a list of channel names")
    exp = claims.get(exp_key, 0) or 0
    if isinstance(exp, bool) or not isinstance(exp, (int, float)) or exp < 0:
        raise invalid(f"{exp_key} must be a Unix time")
    return _new_identity((user, claims.get("info"), claims.get("meta"), tuple(channels), float(exp)))


# ``Identity(...)`` runs the NamedTuple's Python-level ``__new__``: a frame more on every
# connect, a few µs with cold caches; ``tuple.__new__`` makes the same instance in C.
_new_identity = functools.partial(tuple.__new__, Identity)
