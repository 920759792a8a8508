"""The Node: the one place that knows both the Hub and the Broker."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from rocketws.brokers.base import (
    Broker,
    ClientInfo,
    Control,
    Emit,
    Position,
    PresenceStats,
    Publication,
    Published,
    Stream,
)
from rocketws.core import disconnect, streams
from rocketws.core.channels import ANY_NAMESPACE, Namespace, Namespaces
from rocketws.core.codes import RpcCode
from rocketws.core.disconnect import INSUFFICIENT_STATE, Disconnect
from rocketws.core.exceptions import (
    AuthFailed,
    BrokerUnavailable,
    InvalidParams,
    LimitExceeded,
    NotAllowed,
    PermissionDenied,
    RpcError,
)
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
        history: streams.HistorySettings = streams.HISTORY_SETTINGS,
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
        # -- history (issue 11): see the "history and recovery" block below --
        self.history_settings = history
        self._pending: dict[str, list[list[tuple[int, str, bytes]]]] = {}  # channel -> live buffers
        self._marks: dict[str, dict[str, Position]] = {}  # channel -> session id -> joined at
        self._tops: dict[str, Position] = {}  # channel -> last publication delivered here
        self.gaps = 0  # gaps seen in history channels (subscribers told to recover)

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
        if self._marks:
            for channel in session.channels:
                self._forget_mark(channel, session.id)
        for channel in self.hub.disconnect(session):
            self._release(channel)
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
        self,
        session: Session,
        channel: str,
        token: Any = None,
        tokens: SubscriptionTokens | None = None,
        proxy: ChannelProxy | None = None,
        recover: Position | None = None,
    ) -> dict[str, Any]:
        """A client's ``subscribe`` (idempotent): the namespace's rules, then ``subscribe``.

        ``token``: the subscription token the client sent (None: none), verified by
        ``tokens`` whenever given and required where ``allow_subscribe`` is ``"token"``.
        Where the namespace has ``subscribe_proxy``, ``proxy`` is asked last (None: -32041).
        ``recover``: the client's last position in the channel's stream (see
        ``_join_stream``).  Returns what the answer adds to ``{channel, subscribed}``:
        nothing on a channel without history, else ``epoch`` and ``offset`` (and with
        ``recover``: ``recovered`` and ``publications``).
        Raises NotAllowed (also ``recover`` on a channel without history),
        PermissionDenied (-32006), AuthFailed (-32011/-32012, the connection stays
        open), LimitExceeded, BrokerUnavailable (nothing subscribed), or the proxy's
        RpcError.
        """
        namespace = self.namespaces.lookup(channel)
        stream = _stream_of(namespace)
        if recover is not None and stream is None:
            raise NotAllowed(
                {
                    "channel": channel,
                    "namespace": namespace.name,
                    "reason": "recover needs history: set history_size and history_ttl on the namespace",
                }
            )
        if channel in session.channels:
            return self._already_subscribed(channel, stream, recover)
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
            if session.closed:  # changed while the application answered
                return {}
            if channel in session.channels:
                return self._already_subscribed(channel, stream, recover)
        if stream is None:
            self._subscribe(session, channel, namespace, chan_info)
            return {}
        self._check_limits(session, channel, namespace)
        return self._join_stream(session, channel, namespace, recover, chan_info)

    def _subscribe(self, session: Session, channel: str, namespace: Namespace, chan_info: Any = None) -> None:
        self._check_limits(session, channel, namespace)
        if self.hub.subscribe(session, channel):
            self.broker.subscribe(channel)  # may wait for Redis: the session may be gone since
        if (namespace.presence or namespace.join_leave) and channel in session.channels:
            self._joined(session, channel, namespace, chan_info)

    def _check_limits(self, session: Session, channel: str, namespace: Namespace) -> None:
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

    def unsubscribe(self, session: Session, channel: str) -> None:
        """Unsubscribe (idempotent; its ``leave`` announced where the namespace says so)."""
        if self._marks:
            self._forget_mark(channel, session.id)
        if self.hub.unsubscribe(session, channel):
            self._release(channel)
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
        return self.publish(channel, data).delivered

    def publish(self, channel: str, data: Any, idempotency_key: str | None = None) -> Published:
        """Publish ``data`` to ``channel``: the count reached and, on a channel with
        history, its offset and epoch.  ``idempotency_key``: see ``broker.Emit``.

        Raises BrokerUnavailable (then it was not published, or a retry with the same
        key does not publish it twice).
        """
        payload = encode_message_push(channel, data, self._clock())
        stream = self._channel_stream(channel)
        if stream is None and idempotency_key is None:  # the plain path, as before history
            return Published(self.broker.publish(Publication(channel, payload)))
        answer = self.broker.publish_many([Emit(Publication(channel, payload), stream, idempotency_key)])[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def publish_many(self, emits: list[tuple[str, Any, str | None]]) -> list[Published | Exception]:
        """``publish`` for each (channel, data, idempotency key), in order, through one
        ``broker.publish_many`` (one Redis round trip); each answer or its error."""
        now = self._clock()
        batch = [
            Emit(
                Publication(channel, encode_message_push(channel, data, now)),
                self._channel_stream(channel),
                key,
            )
            for channel, data, key in emits
        ]
        return self.broker.publish_many(batch)

    def send_data(self, session: Session, channel: str, data: Any, proxy: ChannelProxy | None = None) -> int:
        """``send``; return the number of other subscribers reached."""
        return self.send(session, channel, data, proxy).delivered

    def send(self, session: Session, channel: str, data: Any, proxy: ChannelProxy | None = None) -> Published:
        """Publish from a client to the other subscribers of a channel: the count reached
        (and on a channel with history its offset and epoch).

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
        publication = Publication(channel, encode_message_push(channel, data, self._clock()), skip=session.id)
        stream = _stream_of(namespace)
        if stream is None:
            return Published(self.broker.publish(publication))
        answer = self.broker.publish_many([Emit(publication, stream)])[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

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
        if publication.offset and channel is not None:
            return self._deliver_positioned(publication, channel)
        if channel is not None and not self.hub.count(channel):
            return 0  # no local subscriber: no frame to build (common with many nodes)
        frame = text_frame(payload)
        deflater = self.deflater
        deflated = None if deflater is None else lambda: deflater.frame(payload, frame)
        namespaces = self.namespaces
        delay = namespaces.delay_of(channel) if namespaces.delays else 0.0
        if channel is None:
            n = self.hub.broadcast(frame, deflated, delay)
        else:
            n = self.hub.fan_out(channel, frame, publication.skip, deflated, delay)
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

    # -- history and recovery (issue 11; docs/protocol.md#history-and-recovery) -----------

    def _channel_stream(self, channel: str) -> Stream | None:
        try:
            namespace = self.namespaces.lookup(channel)
        except NotAllowed:
            return None  # an unknown namespace: nobody can subscribe, nothing to keep
        return _stream_of(namespace)

    def history(
        self, channel: str, since: Position | None, limit: int | None, reverse: bool
    ) -> dict[str, Any]:
        """``{channel, epoch, offset, publications}`` of ``channel``'s stream.

        ``limit`` None: HISTORY_LIMIT; above HISTORY_MAX_LIMIT: InvalidParams.  Raises
        NotAllowed when the channel's namespace keeps no history, BrokerUnavailable.
        """
        settings = self.history_settings
        if limit is None:
            limit = settings.default_limit
        if limit > settings.max_limit:
            raise InvalidParams(
                {"param": "limit", "reason": f"at most {settings.max_limit} (HISTORY_MAX_LIMIT)"}
            )
        namespace = self.namespaces.lookup(channel)
        if _stream_of(namespace) is None:
            raise NotAllowed(
                {"channel": channel, "namespace": namespace.name, "reason": "this namespace keeps no history"}
            )
        read = self.broker.history(channel, since, limit, reverse)
        return {
            "channel": channel,
            "epoch": read.epoch,
            "offset": read.offset,
            "publications": [streams.publication_fragment(p) for _, p in read.publications],
        }

    def _already_subscribed(
        self, channel: str, stream: Stream | None, recover: Position | None
    ) -> dict[str, Any]:
        """The answer to a ``subscribe`` on a channel this session is in: its live
        publications flow already, so a ``recover`` cannot be answered exactly."""
        if stream is None:
            return {}
        read = self.broker.history(channel, None, 0)
        answer: dict[str, Any] = {"epoch": read.epoch, "offset": read.offset}
        if recover is not None:
            answer.update(recovered=False, publications=[])
        return answer

    def _join_stream(
        self,
        session: Session,
        channel: str,
        namespace: Namespace,
        recover: Position | None,
        chan_info: Any = None,
    ) -> dict[str, Any]:
        """Subscribe ``session`` to a channel with history, exactly (docs/protocol.md#recovery).

        The broker subscription comes first and every live publication of the channel
        is buffered meanwhile; then the stream is read (after ``recover``, or only its
        top); the buffer and the read are merged by offset (``streams.recover``); then
        the session joins the hub, with a mark at the position answered so a live
        publication the read covered already (a node may get it after the read's
        answer) is not pushed to it again; last its ``join`` is announced (presence and
        join/leave pushes carry no offset: they are never kept in the stream).
        """
        buffer: list[tuple[int, str, bytes]] = []
        self._pending.setdefault(channel, []).append(buffer)
        joined = False
        try:
            if not self.hub.count(channel):
                self.broker.subscribe(channel)
            if not self.broker.confirmed(channel):
                raise BrokerUnavailable(
                    {"channel": channel, "reason": "the broker has not confirmed the channel's subscription"}
                )
            cap = self.history_settings.recovery_max
            read = self.broker.history(channel, recover, 0 if recover is None else cap + 1)
            if session.closed:
                return {}
            if recover is None:
                offset, epoch = read.offset, read.epoch
                for pub_offset, pub_epoch, _ in buffer:
                    if pub_epoch != epoch or pub_offset > offset:
                        offset, epoch = pub_offset, pub_epoch
                answer: dict[str, Any] = {"epoch": epoch, "offset": offset}
            else:
                result = streams.recover(recover, read.publications, read.offset, read.epoch, buffer, cap)
                offset, epoch = result.offset, result.epoch
                answer = {
                    "recovered": result.recovered,
                    "epoch": epoch,
                    "offset": offset,
                    "publications": [streams.publication_fragment(p) for _, p in result.publications],
                }
            self.hub.subscribe(session, channel)
            joined = True
            self._marks.setdefault(channel, {})[session.id] = Position(offset, epoch)
            if namespace.presence or namespace.join_leave:
                self._joined(session, channel, namespace, chan_info)
            return answer
        finally:
            buffers = self._pending[channel]
            buffers.remove(buffer)
            if not buffers:
                del self._pending[channel]
            if not joined and not self.hub.count(channel):
                self._release(channel)

    def _release(self, channel: str) -> None:
        """The channel has no local subscriber left: unsubscribe the broker, unless a
        recovery on it is still in flight (it subscribed the broker and will decide)."""
        self._tops.pop(channel, None)
        self._marks.pop(channel, None)
        if channel not in self._pending:
            self.broker.unsubscribe(channel)

    def _forget_mark(self, channel: str, session_id: str) -> None:
        marks = self._marks.get(channel)
        if marks is not None:
            marks.pop(session_id, None)
            if not marks:
                del self._marks[channel]

    def _deliver_positioned(self, publication: Publication, channel: str) -> int:
        """Deliver a publication of a channel with history: feed pending recoveries, drop
        a duplicate, tell the subscribers to recover after a gap, skip marked sessions."""
        offset, epoch = publication.offset, publication.epoch
        pending = self._pending.get(channel)
        if pending is not None:
            for buffer in pending:
                buffer.append((offset, epoch, publication.payload))
        if not self.hub.count(channel):
            return 0
        last = self._tops.get(channel)
        self._tops[channel] = Position(offset, epoch)
        if last is not None and last.epoch == epoch:
            if offset <= last.offset:
                self._tops[channel] = last
                return 0  # delivered already (a broker redelivery)
            if offset > last.offset + 1:
                return self._gap(channel, last, publication)
        elif last is not None:
            return self._gap(channel, last, publication)
        marks = self._marks.get(channel)
        skip: set[str] = set()
        if marks:
            for session_id, mark in list(marks.items()):
                if mark.epoch == epoch and offset <= mark.offset:
                    skip.add(session_id)
                else:
                    del marks[session_id]  # past its mark: an ordinary subscriber from now on
            if not marks:
                del self._marks[channel]
        if publication.skip is not None:
            skip.add(publication.skip)
        payload = publication.payload
        frame = text_frame(payload)
        deflater = self.deflater
        deflated = None if deflater is None else lambda: deflater.frame(payload, frame)
        if len(skip) <= 1:
            n = self.hub.fan_out(channel, frame, next(iter(skip), None), deflated)
        else:
            n = self.hub.fan_out_except(channel, frame, skip, deflated)
        self.stats.deliveries += n
        return n

    def _gap(self, channel: str, last: Position, publication: Publication) -> int:
        """Publications between ``last`` and ``publication`` never reached this node:
        its subscribers cannot know what they missed, so each is closed with 4014
        (reconnect, then ``subscribe`` with ``recover``)."""
        self.gaps += 1
        sessions = self.hub.subscribers(channel)
        logger.warning(
            "channel %r: this node missed publications (had %s, got %d in epoch %s); "
            "closing its %d subscriber(s) with %d so they recover",
            channel,
            last,
            publication.offset,
            publication.epoch,
            len(sessions),
            INSUFFICIENT_STATE.code,
        )
        for session in sessions:
            session.disconnect(INSUFFICIENT_STATE)
        return 0


def _by_id(record: dict[str, Any]) -> str:
    return str(record.get("id", ""))


def _no_proxy(what: str, channel: str) -> RpcError:
    return RpcError(
        {"channel": channel, "reason": f"the namespace asks a {what} proxy, and none is reachable here"},
        code=RpcCode.APPLICATION_UNAVAILABLE,
    )


def _stream_of(namespace: Namespace) -> Stream | None:
    """The namespace's history options, or None when it keeps none."""
    if namespace.history_size > 0 and namespace.history_ttl > 0:
        return Stream(namespace.history_size, namespace.history_ttl)
    return None


_APPLY: dict[str, Callable[[Node, list[Session], Control], int]] = {
    "disconnect": Node._apply_disconnect,
    "subscribe": Node._apply_subscribe,
    "unsubscribe": Node._apply_unsubscribe,
    "refresh": Node._apply_refresh,
}
