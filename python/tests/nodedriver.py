"""A node's side of docs/django-bridge.md, in Python, over a real layer: drives a worker in the tests.

It does what the Swift node does for the worker's view: heartbeats, events with sequence numbers, group calls
carried out for real on its own layer instance (so group_send from the worker reaches its connections), and
forwarding what its connections' channels receive as `layer` events.
"""
import asyncio
from collections import defaultdict

from swift_channels.protocol import ACTIONS, EVENTS, NODE_HEARTBEAT, NODES_GROUP, VERSION, WORKER_HEARTBEAT, WORKERS_GROUP


class DriverConnection:
    def __init__(self, driver, name, worker):
        self.driver = driver
        self.name = name
        self.worker = worker
        self.seq = 0
        self.actions = []
        self.changed = asyncio.Event()
        self.forwarder = None

    async def send(self, kind, body):
        self.seq += 1
        await self.driver.send_events(self.worker, [[self.name, self.seq, kind, body]])

    async def receive_text(self, text):
        await self.send("receive", {"text": text})

    async def action(self, kind, timeout=10.0, start=0):
        """The body of the first action of `kind` (from index `start`), waiting for it."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for seq, found, body in self.actions[start:]:
                if found == kind:
                    return body
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"no {kind!r} action within {timeout} s; got {self.actions}")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    def kinds(self):
        return [kind for _, kind, _ in self.actions]


class NodeDriver:
    def __init__(self, layer, answer_group_calls=True):
        self.layer = layer
        self.answer_group_calls = answer_group_calls
        self.workers = {}
        self.connections = {}
        self.taken = defaultdict(int)
        self.tasks = []

    async def start(self):
        self.channel = await self.layer.new_channel()
        await self.layer.group_add(WORKERS_GROUP, self.channel)
        self.tasks.append(asyncio.ensure_future(self._receive()))

    async def stop(self):
        for connection in self.connections.values():
            if connection.forwarder:
                connection.forwarder.cancel()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, *(c.forwarder for c in self.connections.values() if c.forwarder), return_exceptions=True)
        await self.layer.group_discard(WORKERS_GROUP, self.channel)

    async def heartbeat(self, state="up", history=()):
        await self.layer.group_send(
            NODES_GROUP, {"type": NODE_HEARTBEAT, "v": VERSION, "node": self.channel, "state": state, "lease": 10.0, "history": list(history)}
        )

    async def wait_for_worker(self, timeout=10.0, state="ready"):
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            for name, beat in self.workers.items():
                if beat["state"] == state:
                    return name
            await asyncio.sleep(0.02)
        raise AssertionError(f"no worker {state} within {timeout} s: {self.workers}")

    async def send_events(self, worker, events):
        await self.layer.send(worker, {"type": EVENTS, "v": VERSION, "node": self.channel, "events": events})

    async def connect(self, worker, path, query=b"", headers=(), subprotocols=()):
        name = await self.layer.new_channel()
        connection = self.connections[name] = DriverConnection(self, name, worker)
        connection.forwarder = asyncio.ensure_future(self._forward(connection))
        header_pairs = [[b"host", b"127.0.0.1"], [b"origin", b"http://127.0.0.1:8001"]] + [[n, v] for n, v in headers]
        scope = {
            "type": "websocket",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "scheme": "ws",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query,
            "root_path": "",
            "headers": header_pairs,
            "client": ["127.0.0.1", 50000],
            "server": ["127.0.0.1", 8000],
            "subprotocols": list(subprotocols),
        }
        await connection.send("connect", {"scope": scope})
        return connection

    async def _forward(self, connection):
        while True:
            message = await self.layer.receive(connection.name)
            await connection.send("layer", message)

    async def _receive(self):
        while True:
            message = await self.layer.receive(self.channel)
            if message["type"] == WORKER_HEARTBEAT:
                self.workers[message["worker"]] = message
            elif message["type"] == ACTIONS:
                for name, seq, kind, body in message["actions"]:
                    connection = self.connections.get(name)
                    if connection is None:
                        continue
                    connection.actions.append((seq, kind, body))
                    connection.changed.set()
                    if kind in ("group_add", "group_discard", "group_send") and self.answer_group_calls:
                        if kind == "group_add":
                            await self.layer.group_add(body["group"], name)
                        elif kind == "group_discard":
                            await self.layer.group_discard(body["group"], name)
                        else:
                            await self.layer.group_send(body["group"], dict(body["message"], numbered_by_the_node=True))
                        await self.send_events(message["worker"], [[name, 0, "done", {"action": seq, "error": None}]])
                for name, count in message["taken"].items():
                    self.taken[name] = count
