"""The WebSocket channel, as Medplum speaks it (@medplum/core's SubscriptionManager):
a client binds a socket to subscriptions with binding tokens (`bind-with-token`,
`unbind-from-token`), pings (`pong`), and gets a `handshake` Bundle per bind, `heartbeat`s,
and an `event-notification` Bundle per matching change.

Each worker process holds its own sockets; every worker tails the change feed, so a
change written anywhere reaches a socket held anywhere. Whether the subscriber may read
the changed job is checked at each delivery with the binding's Grant."""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from ..observability.metrics import Metrics
from ..storage.base import Change
from .binding import Binding, BindingTokens, InvalidBinding
from .subscriptions import ActiveSubscription, Subscriptions, notification_bundle, status_bundle

log = logging.getLogger("fhir_server.notifications")
PATH = "/ws/subscriptions-r4"
CHANNEL = "websocket"
# Notifications waiting to be sent on one socket: a client this far behind is dropped (it
# re-reads what it missed), so a slow reader holds no memory and no one else's delivery.
MAX_QUEUED = 1000
MAX_MESSAGE_BYTES = 64 * 1024
# WebSocket close codes (RFC 6455 §7.4.1).
GOING_AWAY = 1001
POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013


class Session:
    """One socket: its bindings (subscription id -> Binding) and its outgoing queue."""

    def __init__(self, socket: WebSocket) -> None:
        self.socket = socket
        self.bindings: dict[str, Binding] = {}
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(MAX_QUEUED)

    def send(self, message: dict[str, Any]) -> bool:
        """Queue a message; False when the client is too far behind."""
        try:
            self.queue.put_nowait(orjson.dumps(message))
        except asyncio.QueueFull:
            return False
        return True


class WebSocketChannel:
    """The sockets of this process, and the channel that delivers to them."""

    def __init__(
        self,
        subscriptions: Subscriptions,
        tokens: BindingTokens,
        *,
        max_sockets: int,
        heartbeat: float,
        metrics: Metrics | None = None,
        on_session_end: Callable[[WebSocket, float, int], None] | None = None,
    ) -> None:
        self.subscriptions = subscriptions
        self.tokens = tokens
        self.max_sockets = max_sockets
        self.heartbeat = heartbeat
        self.metrics = metrics
        self.sessions: set[Session] = set()
        self.by_subscription: dict[str, set[Session]] = {}
        self.closing = False
        self._on_session_end = on_session_end
        subscriptions.channels[CHANNEL] = self
        subscriptions.listeners.append(self._subscription_changed)

    # -- delivery (the feed's side) --

    async def deliver(self, subscription: ActiveSubscription, change: Change) -> None:
        for session in list(self.by_subscription.get(subscription.id, ())):
            binding = session.bindings.get(subscription.id)
            if binding is None:
                continue
            if binding.grant.expired():
                # The access token behind the binding has expired: the binding ends.
                self._unbind(session, subscription.id)
                self._failed("expired")
                continue
            if binding.owner != subscription.owner or not binding.grant.can_read(change):
                self._failed("forbidden")
                continue
            if session.send(notification_bundle(subscription, change, binding.base)):
                if self.metrics is not None:
                    self.metrics.deliveries.labels(CHANNEL).inc()
            else:
                self._failed("backlog")
                session.queue = asyncio.Queue(1)  # drop what waits; close it
                session.queue.put_nowait(None)

    async def _subscription_changed(self, subscription_id: str, active: Any) -> None:
        """A subscription ended (deleted, off) or changed owner: its sockets are unbound."""
        for session in list(self.by_subscription.get(subscription_id, ())):
            binding = session.bindings.get(subscription_id)
            if active is None or (binding is not None and binding.owner != active.owner):
                self._unbind(session, subscription_id)

    def _failed(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.delivery_failures.labels(CHANNEL, reason).inc()

    def _unbind(self, session: Session, subscription_id: str) -> None:
        session.bindings.pop(subscription_id, None)
        bound = self.by_subscription.get(subscription_id)
        if bound is not None:
            bound.discard(session)
            if not bound:
                del self.by_subscription[subscription_id]

    # -- the socket (the client's side) --

    async def serve(self, socket: WebSocket) -> None:
        await socket.accept()
        if self.closing or len(self.sessions) >= self.max_sockets:
            # Accepted to say why: the client sees the close code and reason, not a bare 403.
            reason = f"this server process holds {self.max_sockets} sockets; retry later"
            await socket.close(TRY_AGAIN_LATER, reason)
            self._failed("socket-limit")
            return
        session = Session(socket)
        self.sessions.add(session)
        self._count()
        started = time.monotonic()
        code = 1000
        sender = asyncio.create_task(self._send_loop(session))
        try:
            code = await self._receive_loop(session)
        finally:
            for subscription_id in list(session.bindings):
                self._unbind(session, subscription_id)
            self.sessions.discard(session)
            self._count()
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            if socket.application_state == WebSocketState.CONNECTED:
                with contextlib.suppress(Exception):
                    await socket.close(code)
            if self._on_session_end is not None:
                self._on_session_end(socket, time.monotonic() - started, code)

    async def _receive_loop(self, session: Session) -> int:
        while True:
            try:
                text = await session.socket.receive_text()
            except WebSocketDisconnect as gone:
                return gone.code
            except RuntimeError:  # closed by the sender (backlog) or at shutdown
                return GOING_AWAY
            if len(text) > MAX_MESSAGE_BYTES:
                return POLICY_VIOLATION
            try:
                message = orjson.loads(text)
            except orjson.JSONDecodeError:
                session.send(_error("The message is not JSON"))
                continue
            if not isinstance(message, dict):
                session.send(_error("A message is a JSON object with a type"))
                continue
            await self._handle(session, message)

    async def _handle(self, session: Session, message: dict[str, Any]) -> None:
        kind = message.get("type")
        payload: dict[str, Any] = message.get("payload") or {}
        if not isinstance(payload, dict):
            payload = {}
        if kind == "ping":
            session.send({"type": "pong"})
        elif kind == "bind-with-token":
            await self._bind(session, payload.get("token"))
        elif kind == "unbind-from-token":
            try:
                binding = self.tokens.verify(payload.get("token"))
            except InvalidBinding:
                return  # nothing bound with it
            self._unbind(session, binding.subscription_id)
        else:
            session.send(_error(f"Unknown message type {kind!r}"))

    async def _bind(self, session: Session, token: object) -> None:
        try:
            binding = self.tokens.verify(token)
        except InvalidBinding as exc:
            session.send(_error(str(exc)))
            return
        subscription = await self.subscriptions.current(binding.subscription_id)
        if subscription is None or subscription.owner != binding.owner:
            session.send(_error(f"Subscription/{binding.subscription_id} is not active"))
            return
        if subscription.channel_type != CHANNEL:
            session.send(_error(f"Subscription/{subscription.id} is not a websocket one"))
            return
        session.bindings[subscription.id] = binding
        self.by_subscription.setdefault(subscription.id, set()).add(session)
        session.send(status_bundle(subscription.id, "handshake"))

    async def _send_loop(self, session: Session) -> None:
        heartbeat_due = time.monotonic() + self.heartbeat
        while True:
            timeout = max(0.0, heartbeat_due - time.monotonic())
            try:
                async with asyncio.timeout(timeout):
                    message = await session.queue.get()
            except TimeoutError:
                heartbeat_due = time.monotonic() + self.heartbeat
                for subscription_id in list(session.bindings):
                    session.send(status_bundle(subscription_id, "heartbeat"))
                continue
            if message is None:  # too far behind, or the server is stopping
                await session.socket.close(TRY_AGAIN_LATER if not self.closing else GOING_AWAY)
                return
            try:
                await session.socket.send_text(message.decode())
            except Exception:  # the client went away; the receiver sees it too
                return

    async def close_all(self) -> None:
        """At shutdown: every socket closed with 1001 (going away); clients reconnect."""
        self.closing = True
        for session in list(self.sessions):
            with contextlib.suppress(Exception):
                await session.socket.close(GOING_AWAY, "server shutting down")

    def _count(self) -> None:
        if self.metrics is not None:
            self.metrics.websockets.set(len(self.sessions))


def _error(message: str) -> dict[str, Any]:
    """An OperationOutcome, as Medplum's server answers a bad message."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "invalid", "details": {"text": message}}],
    }
