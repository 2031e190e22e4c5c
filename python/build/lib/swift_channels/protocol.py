"""The wire between nodes and workers (docs/django-bridge.md): names, message types and timings."""
from __future__ import annotations

import re
from typing import Any, Dict, List

#: The contract's version, field ``v`` of every message.
VERSION = 1

#: Nodes are members; workers group-send their heartbeats here.
WORKERS_GROUP = "swift_channels.workers"
#: Workers are members; nodes group-send their heartbeats here.
NODES_GROUP = "swift_channels.nodes"

WORKER_HEARTBEAT = "swift_channels.worker"
NODE_HEARTBEAT = "swift_channels.node"
EVENTS = "swift_channels.events"
ACTIONS = "swift_channels.actions"

#: Seconds between heartbeats, and how long each side is believed alive without one.
HEARTBEAT_INTERVAL = 1.0
WORKER_LEASE = 3.0
NODE_LEASE = 10.0
#: Seconds a ``group_add``/``group_discard`` waits for the node's ``done``.
GROUP_CALL_TIMEOUT = 10.0
#: Seconds a hole in a connection's sequence may stay open before the connection is given up.
GAP_TIMEOUT = 5.0
#: Seconds a failing send is retried before the connections it carried are given up.
SEND_RETRY_TIME = 10.0
#: Seconds an application has to return after ``websocket.disconnect`` before it is cancelled (Daphne's default).
APPLICATION_CLOSE_TIMEOUT = 10.0

#: Close code for connections whose worker stops (Service Restart: reconnect).
WORKER_RESTART = 1012

# Channels' own name rules (channels/layers.py), so a bad group name fails here as it would there.
_GROUP_NAME = re.compile(r"^[a-zA-Z\d\-_.]+$")
_NAME_ERROR = (
    "{} name must be a valid unicode string with length < 100 containing only ASCII alphanumerics, "
    "hyphens, underscores, or periods."
)

Item = List[Any]
Message = Dict[str, Any]


def require_valid_group_name(name: object) -> str:
    """Raises Channels' ``TypeError`` for a name Channels would refuse."""
    if not isinstance(name, str) or len(name) >= 100 or not _GROUP_NAME.match(name):
        raise TypeError(_NAME_ERROR.format("Group"))
    return name


def glob_matches(pattern: str, name: str) -> bool:
    """The nodes' patterns: `*` any run of characters, `?` one, everything else itself (no `[...]`)."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, name, re.DOTALL) is not None


def handler_name(message_type: str) -> str:
    """The consumer method a message type calls (``chat.message`` -> ``chat_message``), as Channels names it."""
    return message_type.replace(".", "_")
