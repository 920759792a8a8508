"""Channel names: what a valid name is, checked in one place."""

from __future__ import annotations

import re
from typing import Any

from rocketws.core.exceptions import InvalidParams

DEFAULT_MAX_CHANNEL_LENGTH = 255
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def validate_channel(value: Any, max_length: int = DEFAULT_MAX_CHANNEL_LENGTH) -> str:
    """Return ``value`` if it is a valid channel name.

    A valid name is a non-empty string of at most ``max_length`` characters with no
    control characters (C0, DEL, C1).  Raises InvalidParams (-32602) naming the problem.
    """
    if not isinstance(value, str):
        raise InvalidParams({"param": "channel", "reason": "must be a string"})
    if not value:
        raise InvalidParams({"param": "channel", "reason": "must not be empty"})
    if len(value) > max_length:
        raise InvalidParams(
            {"param": "channel", "reason": f"longer than {max_length} characters"}
        )
    # isprintable() is False for every control character (and a few other characters),
    # so the regular expression runs only for the rare names it cannot clear.
    if not value.isprintable() and _CONTROL.search(value):
        raise InvalidParams({"param": "channel", "reason": "contains control characters"})
    return value
