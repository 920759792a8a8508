"""Unit tests of channel names and namespaces (rocketws.core.channels)."""

from __future__ import annotations

import pytest

from rocketws.core.channels import (
    ANY_NAMESPACE,
    Namespace,
    Namespaces,
    namespace_of,
    validate_channel,
    validate_namespace_name,
)
from rocketws.core.exceptions import InvalidParams, NotAllowed


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
    assert rules.lookup("other:x").allow_send_data is True


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
        "channel": "x:y", "namespace": "x", "reason": "unknown namespace 'x' (declared: 'news')",
    }
    with pytest.raises(NotAllowed, match="declared: none"):
        Namespaces((), allow_unknown=False).lookup("x:y")


def test_any_namespace_allows_everything() -> None:
    assert ANY_NAMESPACE.lookup("x:y") == Namespace("x")


@pytest.mark.parametrize(("value", "reason"), [(1, "string"), ("a:b", "':'"), ("a\nb", "control")])
def test_namespace_name_validation_says_why(value: object, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        validate_namespace_name(value)
