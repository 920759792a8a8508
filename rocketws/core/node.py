"""The Node: the one place that knows both the Hub and the Broker."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from rocketws.brokers.base import Broker, ClientInfo, Control, PresenceStats, Publication
from rocketws.core import disconnect
from rocketws.core.channels import ANY_NAMESPACE, Namespace, Namespaces
from rocketws.core.codes import RpcCode
from rocketws.core.disconnect import Disconnect
from rocketws.core.exceptions import AuthFailed, BrokerUnavailable, LimitExceeded, PermissionDenied, RpcError
from rocketws.core.framing import text_frame
from rocketws.core.hub import Hub
from rocketws.core.jsonrpc import encode_broadcast_push, encode_message_push, encode_subscription_push
from rocketws.core.presence import LocalPresence, encode_join_leave
from rocketws.core.session import Session
from rocketws.core.stats import NodeStats

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


class ChannelProxy(Protocol):
    """Asks the application about one connection's ``subscribe`` or ``send_data`` where the
    namespace says so (``subscribe_proxy``, ``publish_proxy``): the WebSocket connection,
    through ``core.proxy.Proxies``.  Both may block the calling greenlet, never others."""

    def allow_subscribe(self, channel: str) -> None:
        """Returns when the application allows it.  Raises RpcError (its refusal, or a
        proxy failure -32041..-32044)."""

    def allow_publish(self, channel: str, data: Any) -> Any:
        """The data to publish (the application may replace it).  Raises RpcError."""


class Node:
    """Publishes through the broker and delivers what the broker hands back to the hub.

    Every publication, local or remote, reaches subscribers through ``deliver``: the push
    is encoded once by the publisher, framed once per node, and the same bytes are queued
    to every local subscriber.

    ``max_channels_per_connection`` (None: no limit) and ``namespaces`` (the channel
    namespace rules) bound what clients may do; the server passes both from its Config.
    ``deflater`` (None: compression off) compresses a publication once, and only when a
    subscriber reached negotiated permessage-deflate (RFC 7692).

    Channels whose namespace has ``presence`` or ``join_leave`` are tracked in a
    ``LocalPresence`` (see "presence" below); the others cost nothing there.
    ``max_connections_per_user`` (0: no limit) bounds each user's connections on this node
    (``admit_user``).
    ``stats``: where the node counts (a new NodeStats unless given: the Redis message
    source's local node shares the server node's); ``id`` is the broker's node id.
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
        max_connections_per_user: int = 0,
        stats: NodeStats | None = None,
    ) -> None:
        self.hub = hub
        self.broker = broker
        self.id = broker.node_id
        self.api: dict[str, dict[str, Any]] = {}  # endpoint -> OpenRPC document (rpc.discover)
        self.stats = NodeStats(clock()) if stats is None else stats
        self.max_channels_per_connection = max_channels_per_connection
        self.namespaces = namespaces
        self._clock = clock
        self.deflater = deflater
        self._presence = LocalPresence()
        self.max_connections_per_user = max_connections_per_user

    def start(self) -> None:
        self.broker.start(self)

    def close(self) -> None:
        self.broker.close()

    # -- sessions -------------------------------------------------------------------

    def connect(self, session: Session) -> None:
        self.hub.connect(session)

    def disconnect(self, session: Session) -> None:
        """Remove ``session`` and every subscription it held, at once (its ``leave``s
        announced where the namespace says so).  Never blocks."""
        tracked = [ch for ch in session.channels if self._presence.tracks(ch)] if self._presence else ()
        for channel in self.hub.disconnect(session):
            self.broker.unsubscribe(channel)
        for channel in tracked:
            self._left(session.id, channel)

    def identify(self, session: Session, user: str) -> None:
        """Record who ``session`` belongs to ("" = anonymous), for the control commands.

        The connection-authentication flow (``connect`` with a token) calls this once the
        user is known; until then every connection is anonymous.
        """
        self.hub.identify(session, user)

    def admit_user(self, session: Session, user: str) -> None:
        """``identify`` a connection being accepted, unless ``user`` has
        ``max_connections_per_user`` connections on this node already (anonymous ones are
        never limited).

        Raises AuthFailed (-32016, close 4013, reconnect allowed) and changes nothing then.
        Checks and records in one step, so concurrent connects cannot both take the last
        slot; the slot frees when a connection is released (``disconnect``).
        """
        limit = self.max_connections_per_user
        if limit and user and session.user != user and self.hub.user_connections(user) >= limit:
            raise AuthFailed(
                RpcCode.TOO_MANY_CONNECTIONS,
                f"user has {limit} connection(s) on this node already (MAX_CONNECTIONS_PER_USER)",
                disconnect.TOO_MANY_CONNECTIONS,
            )
        self.identify(session, user)

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
        self,
        session: Session,
        channel: str,
        token: Any = None,
        tokens: SubscriptionTokens | None = None,
        proxy: ChannelProxy | None = None,
    ) -> None:
        """A client's ``subscribe`` (idempotent): the namespace's rules, then ``subscribe``.

        ``token``: the subscription token the client sent (None: none), verified by
        ``tokens`` whenever given and required where ``allow_subscribe`` is ``"token"``.
        Where the namespace has ``subscribe_proxy``, ``proxy`` is asked last (None: -32041).
        Raises NotAllowed, PermissionDenied (-32006), AuthFailed (-32011/-32012, the
        connection stays open), LimitExceeded, or the proxy's RpcError.
        """
        namespace = self.namespaces.lookup(channel)
        if channel in session.channels:
            return
        needs_token = namespace.authorize_subscribe(channel, session.user)
        if token is not None:
            if tokens is None:
                reason = "subscription tokens are not accepted: no token key is configured"
                raise AuthFailed(RpcCode.TOKEN_INVALID, reason)
            chan_info = tokens.verify_subscription(token, session.user, channel)
        elif needs_token:
            raise PermissionDenied(
                {
                    "channel": channel,
                    "namespace": namespace.name,
                    "reason": "a subscription token is required in this namespace",
                }
            )
        else:
            chan_info = None
        if namespace.subscribe_proxy:
            if proxy is None:
                raise _no_proxy("subscribe", channel)
            proxy.allow_subscribe(channel)
            if channel in session.channels or session.closed:  # changed while the application answered
                return
        self._subscribe(session, channel, namespace, chan_info)

    def _subscribe(self, session: Session, channel: str, namespace: Namespace, chan_info: Any = None) -> None:
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
            self.broker.subscribe(channel)  # may wait for Redis: the session may be gone since
        if (namespace.presence or namespace.join_leave) and channel in session.channels:
            self._joined(session, channel, namespace, chan_info)

    def unsubscribe(self, session: Session, channel: str) -> None:
        """Unsubscribe (idempotent; its ``leave`` announced where the namespace says so)."""
        if self.hub.unsubscribe(session, channel):
            self.broker.unsubscribe(channel)
        if self._presence:
            self._left(session.id, channel)

    # -- presence and join/leave (namespaces with ``presence`` / ``join_leave``) -------

    def _joined(self, session: Session, channel: str, namespace: Namespace, chan_info: Any) -> None:
        entry = ClientInfo(session.id, session.user, session.info, chan_info)
        self._presence.add(channel, entry, presence=namespace.presence, join_leave=namespace.join_leave)
        if namespace.presence:
            self.broker.presence_update(channel, session.id)
        if namespace.join_leave:  # to the others: the joiner has its subscribe answer
            self.broker.publish_later(
                Publication(channel, encode_join_leave(True, channel, entry), session.id)
            )

    def _left(self, client: str, channel: str) -> None:
        found = self._presence.remove(channel, client)
        if found is None:
            return
        entry, presence, join_leave = found
        if presence:
            self.broker.presence_update(channel, client)
        if join_leave:
            self.broker.publish_later(Publication(channel, encode_join_leave(False, channel, entry), client))

    def presence(self, channel: str, session: Session | None = None) -> dict[str, ClientInfo]:
        """``channel``'s subscribers on every node, for a backend or (``session``) a client.

        Raises NotAllowed (-32005) where the namespace keeps no presence (or, for a
        client, ``allow_presence`` is ``"nobody"``), NotSubscribed / PermissionDenied
        for a client ``allow_presence`` refuses, BrokerUnavailable.
        """
        self._authorize_presence(channel, session)
        return self.broker.presence(channel)

    def presence_stats(self, channel: str, session: Session | None = None) -> PresenceStats:
        """``presence`` counted; the same rules and errors."""
        self._authorize_presence(channel, session)
        return self.broker.presence_stats(channel)

    def _authorize_presence(self, channel: str, session: Session | None) -> None:
        namespace = self.namespaces.lookup(channel)
        if session is None:
            namespace.check_presence(channel)
        else:
            namespace.authorize_presence(channel, session.user, channel in session.channels)

    # -- publishing -----------------------------------------------------------------

    def emit(self, channel: str, data: Any) -> int:
        """Publish ``data`` to ``channel``; return the number of subscribers reached."""
        payload = encode_message_push(channel, data, self._clock())
        return self.broker.publish(Publication(channel, payload))

    def send_data(self, session: Session, channel: str, data: Any, proxy: ChannelProxy | None = None) -> int:
        """Publish from a client to the other subscribers of a channel.

        The namespace's ``allow_send_data`` decides (``Namespace.authorize_send``):
        NotAllowed where nobody may, PermissionDenied where this user may not,
        NotSubscribed where only subscribers may and the sender is not one.  Where the
        namespace has ``publish_proxy``, ``proxy`` is asked then and its data published
        (None: -32041); its refusal is raised as it is.
        """
        namespace = self.namespaces.lookup(channel)
        namespace.authorize_send(channel, session.user, channel in session.channels)
        if namespace.publish_proxy:
            if proxy is None:
                raise _no_proxy("publish", channel)
            data = proxy.allow_publish(channel, data)
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
        connection at its channel limit is skipped and not counted); ``refresh`` moves
        each one's expiry (``_apply_refresh``).  Never blocks.
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
        """``expire_at`` None: the connections never expire; a time already past (0
        included) expires them now: ``refresh_required`` at once, then closed with 4011
        after REFRESH_GRACE unless the client refreshes, as when a token's ``exp`` passes."""
        at = 0.0 if control.expire_at is None else max(float(control.expire_at), self._clock())
        for session in sessions:
            session.expire(at)
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
        if channel is None:
            n = self.hub.broadcast(frame, deflated)
        else:
            n = self.hub.fan_out(channel, frame, publication.skip, deflated)
        self.stats.deliveries += n
        return n

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

    def local_presence(self, channel: str) -> Mapping[str, ClientInfo]:
        return self._presence.clients(channel)

    def presence_channels(self) -> list[str]:
        return self._presence.presence_channels()

    # -- queries --------------------------------------------------------------------

    def available_channels(self) -> list[str]:
        return self.broker.channels()

    def total_subscribers(self, channel: str | None = None) -> int:
        return self.broker.subscribers(channel)

    # -- info (the backend method; docs/operations.md#info) ---------------------------

    def info(self) -> dict[str, Any]:
        """This node's record: id, version, uptime (seconds), connections, users,
        channels, subscriptions and broker state.  Never blocks."""
        from rocketws import __version__  # the package root imports only codes/exceptions

        hub, started = self.hub, self.stats.started
        return {
            "id": self.id,
            "version": __version__,
            "started_at": started,
            "uptime": round(max(0.0, self._clock() - started), 3),
            "connections": hub.connections,
            "users": hub.user_count,
            "channels": hub.channel_count,
            "subscriptions": hub.subscription_count,
            "broker": {"kind": self.broker.kind, "connected": self.broker.stats.connected},
        }

    def cluster_info(self) -> tuple[list[dict[str, Any]], bool]:
        """Every live node's record, this one first (others as of their last heartbeat),
        and whether the others could be read (False: the broker is unreachable)."""
        local = self.info()
        try:
            others = self.broker.nodes_info()
        except BrokerUnavailable:
            return [local], False
        return [local, *sorted((r for r in others if r.get("id") != self.id), key=_by_id)], True


def _by_id(record: dict[str, Any]) -> str:
    return str(record.get("id", ""))


def _no_proxy(what: str, channel: str) -> RpcError:
    return RpcError(
        {"channel": channel, "reason": f"the namespace asks a {what} proxy, and none is reachable here"},
        code=RpcCode.APPLICATION_UNAVAILABLE,
    )


_APPLY: dict[str, Callable[[Node, list[Session], Control], int]] = {
    "disconnect": Node._apply_disconnect,
    "subscribe": Node._apply_subscribe,
    "unsubscribe": Node._apply_unsubscribe,
    "refresh": Node._apply_refresh,
}
