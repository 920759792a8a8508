"""Disconnect values and the reconnect range rule (rocketws/core/disconnect.py)."""

from __future__ import annotations

import pytest

from rocketws.core import disconnect
from rocketws.core.codes import CloseCode
from rocketws.core.disconnect import Disconnect, reconnect_allowed


@pytest.mark.parametrize(
    ("code", "allowed"),
    [
        (4000, True),
        (4008, True),
        (4499, True),
        (4500, False),
        (4999, False),
        (1000, False),
        (1001, True),
        (1002, False),
        (1003, False),
        (1006, True),
        (1007, False),
        (1009, False),
        (1011, True),
        (3000, True),
    ],
)
def test_reconnect_follows_the_range_rule(code: int, allowed: bool) -> None:
    assert reconnect_allowed(code) is allowed


def test_a_disconnect_that_breaks_the_range_rule_is_refused() -> None:
    with pytest.raises(ValueError, match="4500"):
        Disconnect(4500, "banned", reconnect=True)
    with pytest.raises(ValueError, match="4100"):
        Disconnect(4100, "later", reconnect=False)


def test_for_code_takes_reconnect_from_the_rule() -> None:
    assert Disconnect.for_code(4501, "token rejected") == Disconnect(4501, "token rejected", False)


def test_server_disconnects_carry_their_wire_codes() -> None:
    assert disconnect.SHUTDOWN.code == CloseCode.GOING_AWAY and disconnect.SHUTDOWN.reconnect
    assert disconnect.SLOW_CONSUMER.code == CloseCode.SLOW_CONSUMER and disconnect.SLOW_CONSUMER.reconnect
    assert disconnect.INTERNAL_ERROR.code == CloseCode.INTERNAL_ERROR
    assert str(disconnect.SLOW_CONSUMER) == "4008 slow consumer"
    for value in disconnect.ALL:
        assert len(value.reason.encode()) <= 123  # fits a close frame (RFC 6455 5.5)
