"""Channel names and namespaces: what a valid name is, and which rules apply to it.

A channel ``ns:room`` belongs to namespace ``ns`` (the text before the first ``:``); a
channel without a colon belongs to the default namespace, named ``""``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from typing import Any

from rocketws.core.exceptions import InvalidParams, NotAllowed, NotSubscribed, PermissionDenied

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
SEPARATOR = ":"
Parse = Callable[[Any], Any]


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


SUBSCRIBE_POLICIES = ("any", "authenticated", "token")
SEND_POLICIES = ("subscribers", "authenticated", "nobody")
USER_BOUNDARY = "#"  # `chat#alice,bob`: only users alice and bob may subscribe (Centrifugo's rule)
USER_SEPARATOR = ","
NOT_IMPLEMENTED = "not implemented yet: refused at start if set to a non-default value"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _choice(option: str, choices: tuple[str, ...], *, boolean: tuple[str, str] | None = None) -> Parse:
    """A parser of one of ``choices``; ``boolean``: what true and false stand for."""

    def parse(value: Any) -> str:
        if isinstance(value, str) and value in choices:
            return value
        if boolean is not None:
            text = value.strip().lower() if isinstance(value, str) else value
            if value is True or text in _TRUE:
                return boolean[0]
            if value is False or text in _FALSE:
                return boolean[1]
        shown = ", ".join(f'"{c}"' for c in choices)
        raise ValueError(f"expected one of {shown}" + (" (or true/false)" if boolean else ""))

    return parse


def _regex(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError("expected a regular expression (a string)")
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None
    return value


@dataclass(frozen=True, slots=True)
class Namespace:
    """The options of one channel namespace; each field's default is the option's default.

    The fields are the keys of a ``NAMESPACES`` entry (rocketws.config reads them from
    here, and the docs table is generated from ``metadata["doc"]``); a field with
    ``metadata["parse"]`` is parsed by it (ValueError saying why), one with
    ``metadata["placeholder"]`` is declared for the history issue and refused at start
    when set to a non-default value.  Every option's default leaves the namespace open,
    as RocketWS 0.2 was.  ``allow_send_data`` also takes true/false (subscribers/nobody).
    ``channel_regex`` is compiled once, here.
    """

    name: str = field(metadata={"doc": 'the prefix before the first ":"; "" is the default namespace'})
    allow_subscribe: str = field(
        default="any",
        metadata={
            "doc": '`"any"`: every connection may `subscribe`; `"authenticated"`: connections with a '
            'user only; `"token"`: only with a subscription token for the channel (`subscribe '
            "{channel, token}`); refused: -32006",
            "parse": _choice("allow_subscribe", SUBSCRIBE_POLICIES),
        },
    )
    allow_send_data: str | bool = field(  # a bool is normalised to its name on creation
        default="subscribers",
        metadata={
            "doc": '`"subscribers"` (or true): a connection subscribed to the channel may `send_data`; '
            '`"authenticated"`: any connection with a user (and, on a `#` channel, listed there); '
            '`"nobody"` (or false): only backends publish, -32005',
            "parse": _choice("allow_send_data", SEND_POLICIES, boolean=("subscribers", "nobody")),
        },
    )
    allow_user_limited_channels: bool = field(
        default=False,
        metadata={
            "doc": "true: a channel `ns:name#alice,bob` may be subscribed (and, with `allow_send_data: "
            '"authenticated"`, written) only by the users listed after `#` (anonymous: never), '
            "-32006; false: `#` is an ordinary character (Centrifugo's option of the same name)"
        },
    )
    allow_anonymous: bool = field(
        default=True,
        metadata={"doc": "false: anonymous connections (no user) may not `subscribe` here, -32006"},
    )
    channel_regex: str | None = field(
        default=None,
        metadata={
            "doc": "a regular expression the part after `ns:` must match in full (compiled once at "
            "start); else -32005",
            "parse": _regex,
        },
    )
    max_subscribers: int = field(
        default=0,
        metadata={
            "doc": "subscribers per channel **on each node** (not cluster-wide); a `subscribe` beyond "
            "it: -32003; 0 = no limit"
        },
    )
    history_size: int = field(
        default=0,
        metadata={
            "doc": "publications kept per channel; with `history_ttl` (both > 0) each channel is a stream: "
            "pushes carry `offset` and `epoch`, `history` and `subscribe {recover}` work "
            "([protocol.md](protocol.md#history-and-recovery)); 0 = no history"
        },
    )
    history_ttl: float = field(
        default=0.0,
        metadata={"doc": "seconds a channel's history is kept after its last publication; 0 = no history"},
    )
    presence: bool = field(default=False, metadata={"doc": NOT_IMPLEMENTED, "placeholder": True})
    join_leave: bool = field(default=False, metadata={"doc": NOT_IMPLEMENTED, "placeholder": True})
    _pattern: re.Pattern[str] | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        """Normalises the aliases, checks the choices and compiles ``channel_regex``;
        ValueError naming the option."""
        for option in ("allow_subscribe", "allow_send_data", "channel_regex"):
            parse = _FIELDS[option].metadata["parse"]
            try:
                object.__setattr__(self, option, parse(getattr(self, option)))
            except ValueError as exc:
                raise ValueError(f"{option}: {exc}") from None
        if self.channel_regex is not None:
            object.__setattr__(self, "_pattern", re.compile(self.channel_regex))

    def authorize_subscribe(self, channel: str, user: str) -> bool:
        """Check a client's ``subscribe`` against this namespace's rules (the channel's
        namespace must be this one); return whether a subscription token is required.

        Raises NotAllowed (-32005) when the name does not match ``channel_regex``,
        PermissionDenied (-32006) when ``user`` may not subscribe here (``allow_anonymous``,
        ``allow_subscribe: "authenticated"``, a ``#`` channel that does not list the user).
        """
        self.check_name(channel)
        if not user:
            if not self.allow_anonymous:
                raise self._denied(channel, "anonymous connections may not subscribe here")
            if self.allow_subscribe == "authenticated":
                raise self._denied(channel, "only authenticated connections may subscribe here")
        if self.allow_user_limited_channels:
            check_channel_user(channel, user)
        return self.allow_subscribe == "token"

    def authorize_send(self, channel: str, user: str, subscribed: bool) -> None:
        """Check a client's ``send_data``.  Raises NotAllowed (-32005) where nobody may,
        PermissionDenied (-32006) where ``user`` may not, NotSubscribed (-32001) where
        only subscribers may and the sender is not one."""
        policy = self.allow_send_data
        if policy == "subscribers":
            if not subscribed:
                raise NotSubscribed({"channel": channel, "reason": "subscribe to the channel first"})
        elif policy == "nobody":
            raise NotAllowed(
                {
                    "channel": channel,
                    "namespace": self.name,
                    "reason": f"send_data is disabled in namespace {self.name!r}",
                }
            )
        elif not user:
            raise self._denied(channel, "only authenticated connections may send_data here")
        elif self.allow_user_limited_channels:
            check_channel_user(channel, user)

    def check_name(self, channel: str) -> None:
        """Raises NotAllowed (-32005) when ``channel`` does not match ``channel_regex``."""
        pattern = self._pattern
        if pattern is not None:
            rest = channel.partition(SEPARATOR)[2] if self.name else channel
            if pattern.fullmatch(rest) is None:
                raise NotAllowed(
                    {
                        "channel": channel,
                        "namespace": self.name,
                        "reason": f"the channel name does not match namespace {self.name!r}'s channel_regex",
                    }
                )

    def _denied(self, channel: str, reason: str) -> PermissionDenied:
        return PermissionDenied({"channel": channel, "namespace": self.name, "reason": reason})


_FIELDS = {f.name: f for f in fields(Namespace) if f.init}
OPTIONS: dict[str, Any] = dict(_FIELDS)
"""Option name -> its dataclass field (``metadata``: ``doc``, maybe ``parse``, ``placeholder``)."""


def channel_users(channel: str) -> frozenset[str] | None:
    """The users a ``#`` channel is limited to (``chat#alice,bob``), or None for others."""
    _, boundary, users = channel.partition(USER_BOUNDARY)
    if not boundary:
        return None
    return frozenset(u for u in users.split(USER_SEPARATOR) if u)


def check_channel_user(channel: str, user: str) -> None:
    """Raises PermissionDenied (-32006) when ``channel`` is a ``#`` channel and ``user``
    (anonymous: never) is not listed in it."""
    if USER_BOUNDARY in channel:
        users = channel_users(channel)
        if not user or users is None or user not in users:
            raise PermissionDenied(
                {
                    "channel": channel,
                    "namespace": namespace_of(channel),
                    "reason": "this channel is limited to the users listed after '#'",
                }
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
