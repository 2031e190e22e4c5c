"""One bridged WebSocket: the application instance a worker runs for a connection a node holds."""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

from .layer import current_connection
from .protocol import GAP_TIMEOUT, GROUP_CALL_TIMEOUT, WORKER_RESTART, Message

if TYPE_CHECKING:
    from .worker import Worker

logger = logging.getLogger("swift_channels")

# Queued behind a connection's events when its worker drains: the application gets `websocket.disconnect`
# once it has taken everything before it.
_DRAIN: Message = {"type": "swift_channels.drain"}


def asgi_scope(wire: Dict[str, Any]) -> Dict[str, Any]:
    """The ASGI scope from the node's: byte pairs and addresses as tuples, as uvicorn gives them."""
    scope = dict(wire)
    scope["headers"] = [(bytes(name), bytes(value)) for name, value in wire.get("headers") or []]
    for key in ("client", "server"):
        if wire.get(key) is not None:
            scope[key] = tuple(wire[key])
    scope["subprotocols"] = list(wire.get("subprotocols") or [])
    return scope


class Connection:
    """The worker's side of one connection: the events the node sends it, in order, and what its application
    answers, as actions to the node.

    The node numbers the connection's events 1, 2, 3...; they are applied in that order whatever order the
    layer delivered them in. The application takes them itself, one at a time (``receive`` for the ASGI
    events, the layer's ``receive(self.channel_name)`` for layer messages); each one taken is counted back to
    the node (``taken``), which keeps at most a window of events in flight.
    """

    def __init__(self, worker: "Worker", node: str, name: str):
        self.worker = worker
        self.node = node
        self.name = name
        self.channel_claimed = False
        #: The class of the consumer serving it, once its application instance reached one.
        self.consumer_class: Optional[type] = None
        #: The scope that consumer got (after the project's middleware: `user`, `session`, `url_route`).
        self.consumer_scope: Optional[Dict[str, Any]] = None
        self.task: Optional["asyncio.Task[None]"] = None
        self.started = False
        self.accepted = False
        #: A close was sent to the node (or it closed): frames sent after it go nowhere.
        self.closed = False
        #: The application was told the connection ended: group calls no longer reach the node.
        self.disconnected = False
        self.disconnected_at: Optional[float] = None
        self.draining = False
        self._app_queue: "asyncio.Queue[Message]" = asyncio.Queue()
        self._layer_queue: "asyncio.Queue[Message]" = asyncio.Queue()
        self._next_event = 1
        self._early: Dict[int, Tuple[str, Any]] = {}
        self.hole_since: Optional[float] = None
        self._action_seq = 0
        self._taken = 0
        self._calls: Dict[int, "asyncio.Future[Optional[str]]"] = {}

    # Events from the node

    def deliver(self, seq: int, kind: str, body: Any) -> None:
        """Applies event `seq`, or holds it until the ones before it came."""
        if seq < self._next_event or seq in self._early:
            return
        if seq > self._next_event:
            self._early[seq] = (kind, body)
            if self.hole_since is None:
                self.hole_since = asyncio.get_running_loop().time()
            return
        self._apply(kind, body)
        self._next_event += 1
        while self._next_event in self._early:
            self._apply(*self._early.pop(self._next_event))
            self._next_event += 1
        self.hole_since = asyncio.get_running_loop().time() if self._early else None

    def _apply(self, kind: str, body: Any) -> None:
        if self.closed and kind != "disconnect":
            # The worker ended this connection already (drain, a lost event): nothing takes it any more.
            self.worker.stats["events_after_close"] += 1
            self._took()
            return
        if kind == "connect":
            self._start(asgi_scope(body["scope"]))
            self._app_queue.put_nowait({"type": "websocket.connect"})
        elif kind == "receive":
            event: Message = {"type": "websocket.receive"}
            if body.get("text") is not None:
                event["text"] = body["text"]
            else:
                event["bytes"] = bytes(body.get("bytes") or b"")
            self._app_queue.put_nowait(event)
        elif kind == "layer":
            self._layer_queue.put_nowait(body)
        elif kind == "disconnect":
            if self.disconnected:
                self._took()
                return
            self._disconnected()
            self._app_queue.put_nowait({"type": "websocket.disconnect", "code": int(body.get("code") or 1000)})
        else:
            logger.warning("ignored an event of unknown kind %r for %s", kind, self.name)
            self._took()

    def done(self, action: int, error: Optional[str]) -> None:
        """The node carried out group call `action`."""
        future = self._calls.get(action)
        if future is not None and not future.done():
            future.set_result(error)

    # The application

    def _start(self, scope: Dict[str, Any]) -> None:
        if self.started:
            return
        self.started = True
        self.task = asyncio.get_running_loop().create_task(self._run(scope), name=f"swift_channels {self.name}")

    async def _run(self, scope: Dict[str, Any]) -> None:
        current_connection.set(self)
        error: Optional[str] = None
        try:
            async with self.worker.thread_context():
                await self.worker.application(scope, self.receive, self.send)
        except asyncio.CancelledError:
            error = "cancelled: the application did not return after websocket.disconnect"
        except Exception as exc:
            logger.exception("the application raised on %s (%s)", scope.get("path"), self.name)
            error = f"{type(exc).__name__}: {exc}"
        finally:
            if not self.disconnected:
                self._act("end", {"error": error})
            self.worker.forget(self)

    async def receive(self) -> Message:
        """ASGI `receive`."""
        while True:
            event = await self._app_queue.get()
            if event is not _DRAIN:
                self._took()
                return event
            if not self._app_queue.empty():
                # Events came after the drain started: they are this connection's current ones too.
                self._app_queue.put_nowait(_DRAIN)
                continue
            # Layer messages already here are handled first (the consumer takes them concurrently).
            while not self._layer_queue.empty() and not self.disconnected:
                await asyncio.sleep(0.005)
            if not self._app_queue.empty():
                self._app_queue.put_nowait(_DRAIN)
                continue
            self.end(WORKER_RESTART, "worker restarting")
            return {"type": "websocket.disconnect", "code": WORKER_RESTART}

    async def send(self, message: Message) -> None:
        """ASGI `send`."""
        kind = message.get("type")
        if kind == "websocket.accept":
            if self.accepted:
                raise RuntimeError("websocket.accept sent twice")
            if self.closed:
                return
            self.accepted = True
            headers = [[bytes(name), bytes(value)] for name, value in message.get("headers") or []]
            self._act(
                "accept",
                {
                    "subprotocol": message.get("subprotocol"),
                    "headers": headers,
                    "forward": self.worker.forward.for_consumer(self.consumer_class),
                },
            )
        elif kind == "websocket.send":
            if self.closed or self.disconnected:
                return
            if not self.accepted:
                raise ValueError("Socket has not been accepted, so cannot send over it")
            if message.get("text") is not None:
                self._act("send", {"text": message["text"]})
            elif message.get("bytes") is not None:
                self._act("send", {"bytes": bytes(message["bytes"])})
            else:
                raise ValueError("websocket.send needs text or bytes")
        elif kind == "websocket.close":
            if self.closed or self.disconnected:
                return
            self.closed = True
            self._act("close", {"code": int(message.get("code") or 1000), "reason": str(message.get("reason") or "")})
        else:
            raise ValueError(f"unsupported ASGI message {kind!r} for a bridged WebSocket")

    async def layer_receive(self) -> Message:
        """The next layer message the node forwarded to this connection's channel."""
        message = await self._layer_queue.get()
        self._took()
        return message

    async def group_call(self, kind: str, group: str, message: Optional[Message] = None) -> None:
        """`group_add`/`group_discard` of this connection's channel, or a `group_send` into a history group,
        carried out by the node."""
        if self.disconnected:
            if kind == "group_send" and message is not None:
                await self.worker.layer.group_send(group, message)
            # The node leaves every group of a connection that ended; nothing to ask.
            return
        body: Dict[str, Any] = {"group": group}
        if message is not None:
            body["message"] = message
        if kind == "group_add" and self.worker.presence.applies_to(self.consumer_class):
            body["presence"] = {"user": self._username()}
        seq = self._act(kind, body)
        future: "asyncio.Future[Optional[str]]" = asyncio.get_running_loop().create_future()
        self._calls[seq] = future
        try:
            error = await asyncio.wait_for(future, GROUP_CALL_TIMEOUT)
        except asyncio.TimeoutError:
            raise TimeoutError(
                f"the node did not confirm {kind}({group!r}) within {GROUP_CALL_TIMEOUT:.0f} s; is it running?"
            ) from None
        finally:
            self._calls.pop(seq, None)
        if error:
            raise RuntimeError(f"the node could not {kind.replace('_', ' ')} {group!r}: {error}")

    def _username(self) -> Optional[str]:
        user = (self.consumer_scope or {}).get("user")
        try:
            if user is not None and user.is_authenticated:
                return str(user.get_username())
        except Exception:  # a lazy user nobody resolved: no name rather than a database call here
            return None
        return None

    # Ending

    def drain(self) -> None:
        """The worker stops: end after the events already here."""
        if self.draining or self.disconnected:
            return
        self.draining = True
        self._app_queue.put_nowait(_DRAIN)

    def end(self, code: int, reason: str) -> None:
        """Closes the connection from this side (the node closes the socket) and tells the application."""
        if not self.closed:
            self.closed = True
            self._act("close", {"code": code, "reason": reason})
        if not self.disconnected:
            self._disconnected()

    def node_lost(self) -> None:
        """The node stopped answering: the application hears a disconnect (1006), the node nothing."""
        if self.disconnected:
            return
        self.closed = True
        self._disconnected()
        self._app_queue.put_nowait({"type": "websocket.disconnect", "code": 1006})

    def give_up(self, why: str) -> None:
        """Events were lost (a hole that did not fill): close 1012 so that the client reconnects."""
        logger.warning("giving up %s: %s", self.name, why)
        was_disconnected = self.disconnected
        self.end(WORKER_RESTART, why[:100])
        if not was_disconnected:
            self._app_queue.put_nowait({"type": "websocket.disconnect", "code": WORKER_RESTART})

    def _disconnected(self) -> None:
        self.disconnected = True
        self.disconnected_at = asyncio.get_running_loop().time()
        for future in self._calls.values():
            if not future.done():
                future.set_result(None)

    def hole_expired(self, now: float) -> bool:
        return self.hole_since is not None and now - self.hole_since > GAP_TIMEOUT

    # To the node

    def _act(self, kind: str, body: Any) -> int:
        self._action_seq += 1
        self.worker.outbox(self.node).add([self.name, self._action_seq, kind, body])
        return self._action_seq

    def _took(self) -> None:
        self._taken += 1
        self.worker.outbox(self.node).took(self.name, self._taken)
