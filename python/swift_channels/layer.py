"""The channel layer a worker's consumers see: the project's own, with bridged channels served by the node."""
from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING, Any, Optional

from .protocol import Message, require_valid_group_name

if TYPE_CHECKING:
    from .connection import Connection
    from .worker import Worker

#: The connection whose application instance is running in this task (and the tasks it starts).
current_connection: "contextvars.ContextVar[Optional[Connection]]" = contextvars.ContextVar(
    "swift_channels_connection", default=None
)


class BridgeLayer:
    """Wraps the alias's real layer in the worker process.

    A bridged consumer's channel is the node's: ``new_channel()`` in its application instance returns the
    connection's channel name; ``receive`` on it takes the layer messages the node forwarded; ``group_add``
    and ``group_discard`` on it become instructions the node carries out (and confirms) with its engine. No
    worker consumes or subscribes to a connection's channel or its groups. Everything else (``send``,
    ``group_send``, other channels, ``flush``, attributes) is the real layer's.
    """

    def __init__(self, real: Any, worker: "Worker"):
        self.real = real
        self._worker = worker

    @property
    def extensions(self) -> Any:
        return getattr(self.real, "extensions", ["groups", "flush"])

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    async def new_channel(self, *args: Any, **kwargs: Any) -> str:
        connection = current_connection.get()
        if connection is not None and not connection.channel_claimed:
            # The first channel an application instance asks for is its consumer's: the node's.
            connection.channel_claimed = True
            return connection.name
        return await self.real.new_channel(*args, **kwargs)

    async def receive(self, channel: str) -> Message:
        connection = self._worker.connection(channel)
        if connection is not None:
            return await connection.layer_receive()
        return await self.real.receive(channel)

    async def send(self, channel: str, message: Message) -> None:
        await self.real.send(channel, message)

    async def group_add(self, group: str, channel: str) -> None:
        connection = self._worker.connection(channel)
        if connection is None:
            return await self.real.group_add(group, channel)
        await connection.group_call("group_add", require_valid_group_name(group))

    async def group_discard(self, group: str, channel: str) -> None:
        connection = self._worker.connection(channel)
        if connection is None:
            return await self.real.group_discard(group, channel)
        await connection.group_call("group_discard", require_valid_group_name(group))

    async def group_send(self, group: str, message: Message) -> None:
        connection = current_connection.get()
        if connection is not None and not connection.disconnected and self._worker.keeps_history(connection.node, group):
            # A history group: the node's engine publishes it, numbered in the group's history, so that clients
            # recover it (channels_redis' own PUBLISH would bypass the history).
            await connection.group_call("group_send", require_valid_group_name(group), message)
            return
        await self.real.group_send(group, message)

    async def flush(self) -> None:
        await self.real.flush()

    def __repr__(self) -> str:
        return f"<BridgeLayer over {self.real!r}>"
