"""A worker process: runs the project's WebSocket application for connections the nodes hold."""
from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import logging
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AsyncIterator, Callable, Deque, Dict, List, Optional, Set

from asgiref.sync import ThreadSensitiveContext
from channels.exceptions import ChannelFull

from .connection import Connection
from .protocol import (
    ACTIONS,
    APPLICATION_CLOSE_TIMEOUT,
    EVENTS,
    HEARTBEAT_INTERVAL,
    NODE_HEARTBEAT,
    NODE_LEASE,
    NODES_GROUP,
    SEND_RETRY_TIME,
    VERSION,
    WORKER_HEARTBEAT,
    WORKER_LEASE,
    WORKERS_GROUP,
    Item,
    Message,
    glob_matches,
)
from .settings import ForwardRules, PresenceClasses

logger = logging.getLogger("swift_channels")

#: Items per message to a node; a burst larger than this goes in several messages, in order.
MAX_ITEMS_PER_MESSAGE = 512
#: Connections remembered after they ended, so that a late event does not start them again.
ENDED_MEMORY = 10_000

Application = Callable[..., Any]


class Outbox:
    """What goes to one node: actions and taken counts gathered while the previous send is in flight, then
    sent as one message. One send at a time per node keeps them in order."""

    def __init__(self, worker: "Worker", node: str):
        self.worker = worker
        self.node = node
        self.items: List[Item] = []
        self.taken: Dict[str, int] = {}
        self.task: Optional["asyncio.Task[None]"] = None

    def add(self, item: Item) -> None:
        self.items.append(item)
        self._schedule()

    def took(self, connection: str, count: int) -> None:
        self.taken[connection] = count
        self._schedule()

    @property
    def idle(self) -> bool:
        return self.task is None and not self.items and not self.taken

    def _schedule(self) -> None:
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        try:
            while self.items or self.taken:
                # Let what the running handlers send in this turn of the loop join the message.
                await asyncio.sleep(0)
                items = self.items[:MAX_ITEMS_PER_MESSAGE]
                del self.items[: len(items)]
                taken, self.taken = self.taken, {}
                message = {"type": ACTIONS, "v": VERSION, "worker": self.worker.channel, "actions": items, "taken": taken}
                if not await self.worker.send_with_retry(self.node, message):
                    # The node is unreachable for that long: its connections cannot go on from here.
                    for name in {item[0] for item in items}:
                        connection = self.worker.connection(name)
                        if connection is not None:
                            connection.node_lost()
        finally:
            self.task = None
            if self.items or self.taken:
                self._schedule()


class Worker:
    """Serves the ``websocket`` application of a project for the nodes, over the project's channel layer.

    Heartbeats to ``swift_channels.workers`` tell the nodes it is there (and when it drains); events come on
    its own channel, actions go to each node's channel. See docs/django-bridge.md for the whole contract.
    """

    def __init__(
        self,
        application: Application,
        layer: Any,
        *,
        forward: Optional[ForwardRules] = None,
        presence: Optional[PresenceClasses] = None,
        threads: int = 1,
        drain_time: float = 30.0,
    ):
        self.application = application
        self.layer = layer
        self.forward = forward or ForwardRules([])
        self.presence = presence or PresenceClasses(())
        self.drain_time = drain_time
        self.channel = ""
        self.state = "starting"
        self.stats: Dict[str, int] = collections.Counter()
        self._connections: Dict[str, Connection] = {}
        self._ended: Deque[str] = collections.deque(maxlen=ENDED_MEMORY)
        self._ended_set: Set[str] = set()
        self._outboxes: Dict[str, Outbox] = {}
        self._nodes: Dict[str, float] = {}
        #: Each node's history patterns (from its heartbeats): group_send into those goes through the node.
        self._history: Dict[str, List[str]] = {}
        self._stop = asyncio.Event()
        self._tasks: List["asyncio.Task[None]"] = []
        self._executors = self._make_executors(threads)
        self._next_executor = 0

    # Public

    @property
    def connections(self) -> int:
        return len(self._connections)

    def connection(self, name: str) -> Optional[Connection]:
        """The bridged connection with this channel name, if this worker serves it."""
        return self._connections.get(name)

    def request_stop(self) -> None:
        """SIGTERM: drain, then return from :meth:`run`."""
        self._stop.set()

    async def start(self) -> None:
        """Joins the layer: its own channel, the nodes' group; starts heartbeats."""
        self.channel = await self.layer.new_channel()
        await self.layer.group_add(NODES_GROUP, self.channel)
        self.state = "ready"
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._receive_loop(), name="swift_channels receive"),
            loop.create_task(self._heartbeat_loop(), name="swift_channels heartbeat"),
            loop.create_task(self._housekeeping_loop(), name="swift_channels housekeeping"),
        ]

    async def run(self) -> None:
        """Serves until :meth:`request_stop`, then drains and says goodbye."""
        if self.state == "starting":
            await self.start()
        await self._stop.wait()
        await self.drain()

    async def drain(self) -> None:
        """Finishes each connection's current events, closes them with 1012, and stops."""
        self.state = "draining"
        logger.info("draining %d connections (at most %.0f s)", len(self._connections), self.drain_time)
        await self._heartbeat()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.drain_time
        for connection in list(self._connections.values()):
            connection.drain()
        while self._connections and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for connection in list(self._connections.values()):
            connection.end(1012, "worker restarting")
            if connection.task is None:
                self.forget(connection)
        grace = loop.time() + 2.0
        while self._connections and loop.time() < grace:
            await asyncio.sleep(0.02)
        for connection in list(self._connections.values()):
            if connection.task is not None:
                connection.task.cancel()
        # What the connections said last reaches their nodes before the worker goes.
        while any(not outbox.idle for outbox in self._outboxes.values()) and loop.time() < grace + 5.0:
            await asyncio.sleep(0.02)
        self.state = "gone"
        await self._heartbeat()
        for task in self._tasks:
            task.cancel()
        # Let them end (the pub/sub layer unsubscribes a cancelled receive) before the loop closes.
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.layer.group_discard(NODES_GROUP, self.channel)
        for executor in self._executors:
            executor.shutdown(wait=False)
        logger.info("stopped: %s", dict(self.stats))

    # Connections

    def outbox(self, node: str) -> Outbox:
        outbox = self._outboxes.get(node)
        if outbox is None:
            outbox = self._outboxes[node] = Outbox(self, node)
        return outbox

    def forget(self, connection: Connection) -> None:
        """The connection's application returned."""
        if self._connections.get(connection.name) is connection:
            del self._connections[connection.name]
            if len(self._ended) == self._ended.maxlen:
                self._ended_set.discard(self._ended[0])
            self._ended.append(connection.name)
            self._ended_set.add(connection.name)

    def thread_context(self) -> Any:
        """The thread sync code of a connection runs in: one of `--threads` single-thread executors, the
        same for the connection's life (Django's database connections are per thread)."""
        if not self._executors:
            return _nothing()
        executor = self._executors[self._next_executor % len(self._executors)]
        self._next_executor += 1
        return ThreadSensitiveContext(executor=executor)  # type: ignore[call-arg]

    @staticmethod
    def _make_executors(threads: int) -> List[ThreadPoolExecutor]:
        if threads < 1:
            raise ValueError("--threads must be at least 1")
        if threads == 1:
            # asgiref's one thread-sensitive thread, as under Daphne.
            return []
        if "executor" not in inspect.signature(ThreadSensitiveContext.__init__).parameters:
            logger.warning("this asgiref cannot pin executors (ThreadSensitiveContext(executor=...)); sync code runs in one thread")
            return []
        return [ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"swift-channels-{n}") for n in range(threads)]

    # The layer

    async def send_with_retry(self, channel: str, message: Message) -> bool:
        """Sends, retrying with back-off while the layer is full or unreachable, for ``SEND_RETRY_TIME``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SEND_RETRY_TIME
        delay = 0.02
        while True:
            try:
                await self.layer.send(channel, message)
                return True
            except asyncio.CancelledError:
                raise
            except ChannelFull:
                self.stats["sends_full"] += 1
                why = "the channel is full"
            except Exception as error:
                self.stats["send_errors"] += 1
                why = f"{type(error).__name__}: {error}"
            if loop.time() + delay > deadline:
                logger.error("could not send to %s for %.0f s (%s); giving up its connections", channel, SEND_RETRY_TIME, why)
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _receive_loop(self) -> None:
        failures = 0
        while True:
            try:
                message = await self.layer.receive(self.channel)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as error:
                failures += 1
                if failures == 1 or failures % 30 == 0:
                    logger.warning("cannot receive from the channel layer (%s); retrying", error)
                await asyncio.sleep(min(0.1 * failures, 1.0))
                continue
            try:
                self._dispatch(message)
            except Exception:
                logger.exception("dropped a message the worker could not read: %r", message.get("type"))

    def _dispatch(self, message: Message) -> None:
        kind = message.get("type")
        now = asyncio.get_running_loop().time()
        if kind == EVENTS:
            node = message["node"]
            self._nodes[node] = now
            for name, seq, event, body in message.get("events") or []:
                self._event(node, name, int(seq), event, body)
        elif kind == NODE_HEARTBEAT:
            node = message.get("node")
            if not node:
                return
            if message.get("state") == "gone":
                self._node_lost(node)
            else:
                self._nodes[node] = now
                self._history[node] = [p for p in message.get("history") or [] if isinstance(p, str)]
        elif kind != WORKER_HEARTBEAT:
            logger.warning("ignored a message of type %r on the worker's channel", kind)

    def _event(self, node: str, name: str, seq: int, kind: str, body: Any) -> None:
        connection = self._connections.get(name)
        if kind == "done":
            if connection is not None:
                connection.done(int(body.get("action") or 0), body.get("error"))
            return
        if connection is None:
            if name in self._ended_set:
                return
            if kind == "connect" and self.state != "ready":
                # Draining: the node gives the connection to another worker.
                self.outbox(node).add([name, 1, "reject", {"reason": f"worker {self.state}"}])
                self.stats["rejected"] += 1
                return
            connection = self._connections[name] = Connection(self, node, name)
            self.stats["connections"] += 1
        self.stats["events"] += 1
        connection.deliver(seq, kind, body)

    def keeps_history(self, node: str, group: str) -> bool:
        """Whether `node` keeps a history for `group` (its `--history` patterns, as its heartbeats say)."""
        return any(glob_matches(pattern, group) for pattern in self._history.get(node, ()))

    def _node_lost(self, node: str) -> None:
        self._nodes.pop(node, None)
        self._history.pop(node, None)
        lost = [connection for connection in self._connections.values() if connection.node == node]
        if lost:
            logger.warning("node %s is gone: ending its %d connections", node, len(lost))
        for connection in lost:
            connection.node_lost()

    # Timers

    async def _heartbeat(self) -> None:
        message = {
            "type": WORKER_HEARTBEAT,
            "v": VERSION,
            "worker": self.channel,
            "state": self.state,
            "connections": len(self._connections),
            "lease": WORKER_LEASE,
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
        try:
            await self.layer.group_send(WORKERS_GROUP, message)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self.stats["heartbeat_errors"] += 1
            if self.stats["heartbeat_errors"] % 30 == 1:
                logger.warning("cannot send the heartbeat (%s); retrying", error)

    async def _heartbeat_loop(self) -> None:
        beats = 0
        while True:
            await self._heartbeat()
            beats += 1
            if beats % 60 == 0:
                # The core layer forgets members after its group_expiry; joining again is harmless.
                with contextlib.suppress(Exception):
                    await self.layer.group_add(NODES_GROUP, self.channel)
            await asyncio.sleep(HEARTBEAT_INTERVAL)

    async def _housekeeping_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(0.25)
            now = loop.time()
            for node, heard in list(self._nodes.items()):
                if now - heard > NODE_LEASE:
                    self._node_lost(node)
            for connection in list(self._connections.values()):
                if connection.hole_expired(now):
                    if connection.started:
                        connection.give_up("events lost on the way (the channel layer lost messages)")
                    else:
                        self.forget(connection)
                elif (
                    connection.disconnected_at is not None
                    and connection.task is not None
                    and not connection.task.done()
                    and now - connection.disconnected_at > APPLICATION_CLOSE_TIMEOUT
                ):
                    logger.warning("%s did not return %.0f s after websocket.disconnect: cancelled", connection.name, APPLICATION_CLOSE_TIMEOUT)
                    connection.task.cancel()


@contextlib.asynccontextmanager
async def _nothing() -> AsyncIterator[None]:
    yield
