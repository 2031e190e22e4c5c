import asyncio
import json
import threading

from channels.generic.websocket import AsyncWebsocketConsumer, WebsocketConsumer


class ChatConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        self.group = "chat_" + self.scope["url_route"]["kwargs"]["room"]
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        await self.channel_layer.group_send(self.group, {"type": "chat.message", "message": json.loads(text_data)["message"]})

    async def chat_message(self, event):
        await self.send(text_data=json.dumps({"message": event["message"]}))

    async def chat_shout(self, event):
        await self.send(text_data=json.dumps({"shout": event["message"].upper()}))


class ScopeConsumer(AsyncWebsocketConsumer):
    """Answers what it sees of the scope, and echoes frames (text and bytes)."""

    async def connect(self):
        await self.accept(subprotocol=(self.scope["subprotocols"] or [None])[0], headers=[(b"x-bridge", b"yes")])
        user = self.scope["user"]
        await self.send(
            text_data=json.dumps(
                {
                    "path": self.scope["path"],
                    "raw_path": self.scope["raw_path"].decode(),
                    "query_string": self.scope["query_string"].decode(),
                    "cookie": dict(self.scope["headers"]).get(b"cookie", b"").decode(),
                    "client": list(self.scope["client"]),
                    "subprotocols": self.scope["subprotocols"],
                    "kwargs": self.scope["url_route"]["kwargs"],
                    "user": user.username,
                    "channel": self.channel_name,
                }
            )
        )

    async def receive(self, text_data=None, bytes_data=None):
        if bytes_data is not None:
            await self.send(bytes_data=bytes_data[::-1])
        elif text_data == "close":
            await self.close(code=4321, reason="asked to")
        elif text_data == "raise":
            raise RuntimeError("the consumer failed")
        elif text_data.startswith("slow:"):
            # A consumer slower than its client: the node's window fills and events wait there.
            await asyncio.sleep(0.002)
            await self.send(text_data=text_data)
        else:
            await self.send(text_data=text_data)


class ThreadConsumer(WebsocketConsumer):
    def receive(self, text_data=None, bytes_data=None):
        self.send(text_data=threading.current_thread().name)


class DenyConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        await self.close()


class RaiseConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        raise ValueError("refused by code")


class SlowGoodbyeConsumer(AsyncWebsocketConsumer):
    """Takes a second to say goodbye: keeps a draining worker busy."""

    async def disconnect(self, code):
        await asyncio.sleep(1.5)
