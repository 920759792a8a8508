"""Unit tests of channel names and namespaces (rocketws/core/channels.py)."""

from __future__ import annotations

import pytest

from rocketws.config import DEFAULTS
from rocketws.core.channels import (
    ANY_NAMESPACE,
    Namespace,
    Namespaces,
    namespace_of,
    validate_channel,
    validate_namespace_name,
)
from rocketws.core.codes import RpcCode
from rocketws.core.exceptions import InvalidParams, NotAllowed, NotSubscribed, PermissionDenied

LIMIT = DEFAULTS.max_channel_length


@pytest.mark.parametrize(
    ("channel", "namespace"),
    [("chat", ""), ("news:sport", "news"), ("a:b:c", "a"), (":x", ""), ("x:", "x")],
)
def test_channel_namespace_is_the_prefix_before_the_first_colon(channel: str, namespace: str) -> None:
    assert namespace_of(channel) == namespace


def test_channel_validation_takes_the_limit_given() -> None:
    assert validate_channel("abcd", 4) == "abcd"
    with pytest.raises(InvalidParams) as info:
        validate_channel("abcde", 4)
    assert info.value.data == {"param": "channel", "reason": "longer than 4 characters"}


def test_namespaces_lookup_declared_default_and_unknown() -> None:
    news = Namespace("news", allow_send_data=False)
    rules = Namespaces([news], allow_unknown=True)
    assert rules.lookup("news:sport") is news
    assert rules.lookup("chat") == Namespace("")
    assert rules.lookup("other:x") == Namespace("other")
    assert rules.lookup("other:x").allow_send_data == "subscribers"


def test_namespaces_default_namespace_can_be_declared() -> None:
    quiet = Namespace("", allow_send_data=False)
    assert Namespaces([quiet], allow_unknown=False).lookup("lobby") is quiet


def test_namespaces_unknown_refused_names_the_namespace() -> None:
    rules = Namespaces([Namespace("news")], allow_unknown=False)
    assert rules.lookup("lobby") == Namespace("")  # no colon: the default namespace is always known
    with pytest.raises(NotAllowed) as info:
        rules.lookup("x:y")
    assert info.value.code == -32005
    assert info.value.data == {
        "channel": "x:y",
        "namespace": "x",
        "reason": "unknown namespace 'x' (declared: 'news')",
    }
    with pytest.raises(NotAllowed, match="declared: none"):
        Namespaces((), allow_unknown=False).lookup("x:y")


def test_any_namespace_allows_everything() -> None:
    assert ANY_NAMESPACE.lookup("x:y") == Namespace("x")


@pytest.mark.parametrize(("value", "reason"), [(1, "string"), ("a:b", "':'"), ("a\nb", "control")])
def test_namespace_name_validation_says_why(value: object, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        validate_namespace_name(value)


def refusal(value: object, max_length: int = LIMIT) -> InvalidParams:
    with pytest.raises(InvalidParams) as info:
        validate_channel(value, max_length)
    assert info.value.code == RpcCode.INVALID_PARAMS
    return info.value


@pytest.mark.parametrize("name", ["c", "chat", "news:sport/2026", "é€😀", " spaced ", "a" * 255])
def test_validate_channel_returns_valid_names_unchanged(name: str) -> None:
    assert validate_channel(name, LIMIT) is name


@pytest.mark.parametrize("value", [None, 1, 1.5, b"chat", ["chat"], {"channel": "c"}, True])
def test_validate_channel_refuses_non_strings(value: object) -> None:
    assert refusal(value).data == {"param": "channel", "reason": "must be a string"}


def test_validate_channel_refuses_empty() -> None:
    assert refusal("").data == {"param": "channel", "reason": "must not be empty"}


def test_validate_channel_default_limit_is_255_characters_not_bytes() -> None:
    assert LIMIT == 255
    assert validate_channel("é" * 255, LIMIT) == "é" * 255  # 510 bytes in UTF-8
    assert refusal("a" * 256).data == {"param": "channel", "reason": "longer than 255 characters"}


@pytest.mark.parametrize("limit", [1, 10, 1000])
def test_validate_channel_honours_max_length_at_its_boundary(limit: int) -> None:
    assert validate_channel("x" * limit, limit) == "x" * limit
    reason = refusal("x" * (limit + 1), limit).data
    assert reason == {"param": "channel", "reason": f"longer than {limit} characters"}


@pytest.mark.parametrize("char", ["\x00", "\t", "\n", "\r", "\x1b", "\x1f", "\x7f", "\x80", "\x85", "\x9f"])
def test_validate_channel_refuses_c0_del_and_c1_controls(char: str) -> None:
    for name in (char, f"a{char}", f"{char}b", f"a{char}b"):
        assert refusal(name).data == {"param": "channel", "reason": "contains control characters"}


@pytest.mark.parametrize("char", [" ", "~", "\xa0", "\u2028", "\ufeff"])
def test_validate_channel_accepts_printable_neighbours_of_the_control_ranges(char: str) -> None:
    assert validate_channel(f"a{char}b", LIMIT) == f"a{char}b"


def test_validate_channel_checks_length_before_control_characters() -> None:
    assert refusal("\x00" * 256).data == {"param": "channel", "reason": "longer than 255 characters"}


# -- presence options (issue 11) -------------------------------------------------------


def test_namespace_allow_presence_takes_the_policies_and_true_false() -> None:
    assert Namespace("p").allow_presence == "subscribers"
    assert Namespace("p", allow_presence=True).allow_presence == "subscribers"
    assert Namespace("p", allow_presence=False).allow_presence == "nobody"
    assert Namespace("p", allow_presence="authenticated").allow_presence == "authenticated"
    with pytest.raises(ValueError, match="allow_presence: expected one of"):
        Namespace("p", allow_presence="maybe")


def test_namespace_authorize_presence_by_policy() -> None:
    off = Namespace("off")
    with pytest.raises(NotAllowed, match="presence is not enabled"):
        off.authorize_presence("off:x", "alice", True)
    with pytest.raises(NotAllowed):
        off.check_presence("off:x")
    subscribers = Namespace("s", presence=True)
    subscribers.authorize_presence("s:x", "", True)  # anonymous subscribers may
    with pytest.raises(NotSubscribed):
        subscribers.authorize_presence("s:x", "alice", False)
    users = Namespace("u", presence=True, allow_presence="authenticated", allow_user_limited_channels=True)
    users.authorize_presence("u:x", "alice", False)
    with pytest.raises(PermissionDenied, match="authenticated"):
        users.authorize_presence("u:x", "", True)
    with pytest.raises(PermissionDenied):
        users.authorize_presence("u:x#bob", "alice", False)  # not listed after '#'
    backends = Namespace("b", presence=True, allow_presence="nobody")
    with pytest.raises(NotAllowed, match="backends only"):
        backends.authorize_presence("b:x", "alice", True)
    backends.check_presence("b:x")


# -- write_delay -------------------------------------------------------------------------


def test_namespace_write_delay_parsed_and_bounded() -> None:
    assert Namespace("a", write_delay="0.005").write_delay == 0.005  # type: ignore[arg-type]
    assert Namespace("a").write_delay is None
    for bad in (-0.001, 1.5, "soon", True):
        with pytest.raises(ValueError, match="write_delay"):
            Namespace("a", write_delay=bad)  # type: ignore[arg-type]


def test_namespaces_delay_of_falls_back_to_the_global_delay() -> None:
    ns = Namespaces(
        [Namespace("x", write_delay=0.02), Namespace("z", write_delay=0)],
        allow_unknown=True,
        write_delay=0.001,
    )
    assert ns.delays
    assert [ns.delay_of(c) for c in ("x:1", "z:1", "y:1", "plain", None)] == [0.02, 0.0, 0.001, 0.001, 0.001]
    off = Namespaces([Namespace("x")], allow_unknown=True)
    assert not off.delays and off.delay_of("x:1") == 0.0
    assert Namespaces([Namespace("x", write_delay=0.005)], allow_unknown=False).delays
