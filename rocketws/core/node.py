"""The Node: the one place that knows both the Hub and the Broker."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from rocketws.brokers.base import Broker, Control, Publication
from rocketws.core.channels import ANY_NAMESPACE, Namespace, Namespaces
from rocketws.core.codes import RpcCode
from rocketws.core.disconnect import Disconnect
from rocketws.core.exceptions import AuthFailed, LimitExceeded, PermissionDenied, RpcError
from rocketws.core.framing import text_frame
from rocketws.core.hub import Hub
from rocketws.core.jsonrpc import encode_broadcast_push, encode_message_push, encode_subscription_push
from rocketws.core.session import Session

logger = logging.getLogger(__name__)


class FrameDeflater(Protocol):
    """Compresses a message for connections with permessage-deflate (``core.deflate``)."""

    def frame(self, payload: bytes, plain: bytes) -> bytes:
        """The frame carrying ``payload`` compressed, or ``plain`` (its uncompressed
        frame) when compressing does not pay; must not depend on any connection."""


class SubscriptionTokens(Protocol):
    """Verifies subscription tokens (``core.tokens.TokenVerifier``)."""

    def verify_subscription(self, token: Any, user: str, channel: str) -> Any:
        """The token's ``info``.  Raises AuthFailed (-32011/-32012, no close)."""


class Node:
    """Publishes through the broker and delivers what the broker hands back to the hub.

    Every publication, local or remote, reaches subscribers through ``deliver``: the push
    is encoded once by the publisher, framed once per node, and the same bytes are queued
    to every local subscriber.

    ``max_channels_per_connection`` (None: no limit) and ``namespaces`` (the channel
    namespace rules) bound what clients may do; the server passes both from its Config.
    ``deflater`` (None: compression off) compresses a publication once, and only when a
    subscriber reached negotiated permessage-deflate (RFC 7692).
    """

    def __init__(
        self,
        hub: Hub,
        broker: Broker,
        *,
        max_channels_per_connection: int | None = None,
        namespaces: Namespaces = ANY_NAMESPACE,
        clock: Callable[[], float] = time.time,
        deflater: FrameDeflater | None = None,
    ) -> None:
        self.hub = hub
        self.broker = broker
        self.max_channels_per_connection = max_channels_per_connection
        self.namespaces = namespaces
        self._clock = clock
        self.deflater = deflater

    def start(self) -> None:
        self.broker.start(self)

    def close(self) -> None:
        self.broker.close()

    # -- sessions -------------------------------------------------------------------

    def connect(self, session: Session) -> None:
        self.hub.connect(session)

    def disconnect(self, session: Session) -> None:
        """Remove ``session`` and every subscription it held, at once."""
        for channel in self.hub.disconnect(session):
            self.broker.unsubscribe(channel)

    def identify(self, session: Session, user: str) -> None:
        """Record who ``session`` belongs to ("" = anonymous), for the control commands.

        The connection-authentication flow (``connect`` with a token) calls this once the
        user is known; until then every connection is anonymous.
        """
        self.hub.identify(session, user)

    def subscribe(self, session: Session, channel: str) -> None:
        """Subscribe (idempotent), as the server decides (a token's ``channels``, a
        backend's ``subscribe``): the namespace's permission rules do not apply, its
        name and size rules do.

        Raises NotAllowed for a channel in an unknown namespace (when those are refused)
        or not matching its ``channel_regex``, LimitExceeded past the per-connection
        limit or the namespace's ``max_subscribers``.
        """
        namespace = self.namespaces.lookup(channel)
        if channel in session.channels:
            return
        namespace.check_name(channel)
        self._subscribe(session, channel, namespace)

    def subscribe_client(
        self, session: Session, channel: str, token: Any = None, tokens: SubscriptionTokens | None = None
    ) -> None:
        """A client's ``subscribe`` (idempotent): the namespace's rules, then ``subscribe``.

        ``token``: the subscription token the client sent (None: none), verified by
        ``tokens`` whenever given and required where ``allow_subscribe`` is ``"token"``.
        Raises NotAllowed, PermissionDenied (-32006), AuthFailed (-32011/-32012, the
        connection stays open), LimitExceeded.
        """
        namespace = self.namespaces.lookup(channel)
        if channel in session.channels:
            return
        needs_token = namespace.authorize_subscribe(channel, session.user)
        if token is not None:
            if tokens is None:
                reason = "subscription tokens are not accepted: no token key is configured"
                raise AuthFailed(RpcCode.TOKEN_INVALID, reason)
            tokens.verify_subscription(token, session.user, channel)
        elif needs_token:
            raise PermissionDenied(
                {
                    "channel": channel,
                    "namespace": namespace.name,
                    "reason": "a subscription token is required in this namespace",
                }
            )
        self._subscribe(session, channel, namespace)

    def _subscribe(self, session: Session, channel: str, namespace: Namespace) -> None:
        limit = self.max_channels_per_connection
        if limit is not None and len(session.channels) >= limit:
            raise LimitExceeded(
                {
                    "limit": "max_channels_per_connection",
                    "max": limit,
                    "reason": "too many channels on this connection",
                }
            )
        most = namespace.max_subscribers
        if most and self.hub.count(channel) >= most:
            raise LimitExceeded(
                {
                    "limit": "max_subscribers",
                    "max": most,
                    "channel": channel,
                    "reason": f"the channel has {most} subscribers on this node already",
                }
            )
        if self.hub.subscribe(session, channel):
            self.broker.subscribe(channel)

    def unsubscribe(self, session: Session, channel: str) -> None:
        """Unsubscribe (idempotent)."""
        if self.hub.unsubscribe(session, channel):
            self.broker.unsubscribe(channel)

    # -- publishing -----------------------------------------------------------------

    def emit(self, channel: str, data: Any) -> int:
        """Publish ``data`` to ``channel``; return the number of subscribers reached."""
        payload = encode_message_push(channel, data, self._clock())
        return self.broker.publish(Publication(channel, payload))

    def send_data(self, session: Session, channel: str, data: Any) -> int:
        """Publish from a client to the other subscribers of a channel.

        The namespace's ``allow_send_data`` decides (``Namespace.authorize_send``):
        NotAllowed where nobody may, PermissionDenied where this user may not,
        NotSubscribed where only subscribers may and the sender is not one.
        """
        self.namespaces.lookup(channel).authorize_send(channel, session.user, channel in session.channels)
        payload = encode_message_push(channel, data, self._clock())
        return self.broker.publish(Publication(channel, payload, skip=session.id))

    def notify_all(self, data: Any) -> int:
        """Push ``data`` once to every open connection; return how many were reached."""
        payload = encode_broadcast_push(data, self._clock())
        return self.broker.publish(Publication(None, payload))

    def control(self, control: Control) -> int:
        """Apply ``control`` to the user's connections on every node; return how many.

        The count is the sum the broker gathers (a lower bound on Redis when a node does
        not answer in time).  Raises BrokerUnavailable.  ``control`` must be validated.
        """
        return self.broker.control(control)

    # -- BrokerHandler --------------------------------------------------------------

    def apply_control(self, control: Control) -> int:
        """Apply ``control`` to this node's connections of its user; return how many.

        ``disconnect`` closes each one through its transport (close code and reason);
        ``subscribe``/``unsubscribe`` change its subscriptions and push it a
        ``subscribed``/``unsubscribed`` notification when that changed anything (a
        connection at its channel limit is skipped and not counted); ``refresh`` records
        ``expire_at`` on each.  Never blocks.
        """
        sessions = [s for s in self.hub.user_sessions(control.user) if not s.closed]
        if not sessions:
            return 0
        return _APPLY[control.action](self, sessions, control)

    def _apply_disconnect(self, sessions: list[Session], control: Control) -> int:
        why = Disconnect.for_code(control.code, control.reason)
        for session in sessions:
            session.disconnect(why)
        return len(sessions)

    def _apply_refresh(self, sessions: list[Session], control: Control) -> int:
        for session in sessions:
            session.expire_at = control.expire_at
        return len(sessions)

    def _apply_subscribe(self, sessions: list[Session], control: Control) -> int:
        channel, reached, changed = control.channel, 0, []
        for session in sessions:
            if channel in session.channels:
                reached += 1
                continue
            try:
                self.subscribe(session, channel)
            except RpcError as exc:  # over the channel limit (or a namespace rule)
                logger.info("server-side subscribe of %s to %r skipped: %s", session.id, channel, exc.data)
                continue
            reached += 1
            changed.append(session)
        self._tell(changed, True, channel)
        return reached

    def _apply_unsubscribe(self, sessions: list[Session], control: Control) -> int:
        channel = control.channel
        changed = [s for s in sessions if channel in s.channels]
        for session in changed:
            self.unsubscribe(session, channel)
        self._tell(changed, False, channel)
        return len(sessions)

    def _tell(self, sessions: list[Session], subscribed: bool, channel: str) -> None:
        if sessions:
            frame = text_frame(encode_subscription_push(subscribed, channel))
            for session in sessions:
                session.push(frame)

    def deliver(self, publication: Publication) -> int:
        channel, payload = publication.channel, publication.payload
        if channel is not None and not self.hub.count(channel):
            return 0  # no local subscriber: no frame to build (common with many nodes)
        frame = text_frame(payload)
        deflater = self.deflater
        deflated = None if deflater is None else lambda: deflater.frame(payload, frame)
        namespaces = self.namespaces
        delay = namespaces.delay_of(channel) if namespaces.delays else 0.0
        if channel is None:
            return self.hub.broadcast(frame, deflated, delay)
        return self.hub.fan_out(channel, frame, publication.skip, deflated, delay)

    def reply_frame(self, session: Session, payload: bytes) -> bytes:
        """The frame of a reply to ``session`` (compressed if it negotiated that)."""
        frame = text_frame(payload)
        if session.deflate and self.deflater is not None:
            return self.deflater.frame(payload, frame)
        return frame

    def local_channels(self) -> dict[str, int]:
        return self.hub.channels()

    def local_subscribers(self, channel: str | None = None) -> int:
        if channel is None:
            return self.hub.connections
        return self.hub.count(channel)

    # -- queries --------------------------------------------------------------------

    def available_channels(self) -> list[str]:
        return self.broker.channels()

    def total_subscribers(self, channel: str | None = None) -> int:
        return self.broker.subscribers(channel)


_APPLY: dict[str, Callable[[Node, list[Session], Control], int]] = {
    "disconnect": Node._apply_disconnect,
    "subscribe": Node._apply_subscribe,
    "unsubscribe": Node._apply_unsubscribe,
    "refresh": Node._apply_refresh,
}
