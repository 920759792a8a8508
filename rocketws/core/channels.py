"""Channel names and namespaces: what a valid name is, and which rules apply to it.

A channel ``ns:room`` belongs to namespace ``ns`` (the text before the first ``:``); a
channel without a colon belongs to the default namespace, named ``""``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from rocketws.core.exceptions import InvalidParams, NotAllowed

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
SEPARATOR = ":"


def validate_channel(value: Any, max_length: int) -> str:
    """Return ``value`` if it is a valid channel name.

    A valid name is a non-empty string of at most ``max_length`` characters with no
    control characters (C0, DEL, C1).  Raises InvalidParams (-32602) naming the problem.
    """
    if not isinstance(value, str):
        raise InvalidParams({"param": "channel", "reason": "must be a string"})
    if not value:
        raise InvalidParams({"param": "channel", "reason": "must not be empty"})
    if len(value) > max_length:
        raise InvalidParams({"param": "channel", "reason": f"longer than {max_length} characters"})
    # isprintable() is False for every control character (and a few other characters),
    # so the regular expression runs only for the rare names it cannot clear.
    if not value.isprintable() and _CONTROL.search(value):
        raise InvalidParams({"param": "channel", "reason": "contains control characters"})
    return value


def namespace_of(channel: str) -> str:
    """The namespace name of ``channel``: the text before its first ``:``, else ``""``."""
    name, sep, _ = channel.partition(SEPARATOR)
    return name if sep else ""


@dataclass(frozen=True, slots=True)
class Namespace:
    """The options of one channel namespace; each field's default is the option's default.

    The fields are the keys of a ``CHANNELS["NAMESPACES"]`` entry (rocketws.config reads
    them from here, and the docs table is generated from ``metadata["doc"]``).
    """

    name: str = field(metadata={"doc": 'the prefix before the first ":"; "" is the default namespace'})
    allow_send_data: bool = field(
        default=True, metadata={"doc": "clients may `send_data` on its channels; false: -32005"}
    )


def validate_namespace_name(value: Any) -> str:
    """Return ``value`` if it can name a namespace; ValueError saying why not."""
    if not isinstance(value, str):
        raise ValueError("expected a string")
    if SEPARATOR in value:
        raise ValueError(f"must not contain {SEPARATOR!r}")
    if _CONTROL.search(value):
        raise ValueError("contains control characters")
    return value


class Namespaces:
    """The declared namespaces and the policy for undeclared ones; looks channels up.

    The default namespace ``""`` always exists (declare it to change its options).
    Undeclared namespaces get ``Namespace``'s default options when ``allow_unknown``.
    """

    __slots__ = ("_by_name", "allow_unknown")

    def __init__(self, declared: Iterable[Namespace], *, allow_unknown: bool) -> None:
        self._by_name = {ns.name: ns for ns in declared}
        self._by_name.setdefault("", Namespace(""))
        self.allow_unknown = allow_unknown

    def lookup(self, channel: str) -> Namespace:
        """The namespace of ``channel``.  Raises NotAllowed (-32005) for an unknown one
        when unknown namespaces are not allowed."""
        name = namespace_of(channel)
        found = self._by_name.get(name)
        if found is not None:
            return found
        if not self.allow_unknown:
            raise NotAllowed(
                {
                    "channel": channel,
                    "namespace": name,
                    "reason": f"unknown namespace {name!r} (declared: {self._declared()})",
                }
            )
        return Namespace(name)

    def _declared(self) -> str:
        return ", ".join(repr(n) for n in sorted(self._by_name) if n) or "none"


ANY_NAMESPACE = Namespaces((), allow_unknown=True)
"""No namespace rules: every channel allowed, every option at its default."""
