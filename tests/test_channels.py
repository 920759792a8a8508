"""Unit tests of channel-name validation (rocketws/core/channels.py)."""

from __future__ import annotations

import pytest

from rocketws.core.channels import DEFAULT_MAX_CHANNEL_LENGTH, validate_channel
from rocketws.core.codes import RpcCode
from rocketws.core.exceptions import InvalidParams


def refusal(value: object, max_length: int = DEFAULT_MAX_CHANNEL_LENGTH) -> InvalidParams:
    with pytest.raises(InvalidParams) as info:
        validate_channel(value, max_length)
    assert info.value.code == RpcCode.INVALID_PARAMS
    return info.value


@pytest.mark.parametrize("name", ["c", "chat", "news:sport/2026", "é€😀", " spaced ", "a" * 255])
def test_validate_channel_returns_valid_names_unchanged(name: str) -> None:
    assert validate_channel(name) is name


@pytest.mark.parametrize("value", [None, 1, 1.5, b"chat", ["chat"], {"channel": "c"}, True])
def test_validate_channel_refuses_non_strings(value: object) -> None:
    assert refusal(value).data == {"param": "channel", "reason": "must be a string"}


def test_validate_channel_refuses_empty() -> None:
    assert refusal("").data == {"param": "channel", "reason": "must not be empty"}


def test_validate_channel_default_limit_is_255_characters_not_bytes() -> None:
    assert DEFAULT_MAX_CHANNEL_LENGTH == 255
    assert validate_channel("é" * 255) == "é" * 255  # 510 bytes in UTF-8
    assert refusal("a" * 256).data == {"param": "channel", "reason": "longer than 255 characters"}


@pytest.mark.parametrize("limit", [1, 10, 1000])
def test_validate_channel_honours_max_length_at_its_boundary(limit: int) -> None:
    assert validate_channel("x" * limit, limit) == "x" * limit
    reason = refusal("x" * (limit + 1), limit).data
    assert reason == {"param": "channel", "reason": f"longer than {limit} characters"}


@pytest.mark.parametrize(
    "char", ["\x00", "\t", "\n", "\r", "\x1b", "\x1f", "\x7f", "\x80", "\x85", "\x9f"]
)
def test_validate_channel_refuses_c0_del_and_c1_controls(char: str) -> None:
    for name in (char, f"a{char}", f"{char}b", f"a{char}b"):
        assert refusal(name).data == {"param": "channel", "reason": "contains control characters"}


@pytest.mark.parametrize("char", [" ", "~", "\xa0", "\u2028", "\ufeff"])
def test_validate_channel_accepts_printable_neighbours_of_the_control_ranges(char: str) -> None:
    assert validate_channel(f"a{char}b") == f"a{char}b"


def test_validate_channel_checks_length_before_control_characters() -> None:
    assert refusal("\x00" * 256).data == {"param": "channel", "reason": "longer than 255 characters"}
