"""A minimal Django Channels site with the seed article's chat consumer, for benchmarks against swift-channels.

Run: CHANNELS_REDIS_URL=redis://127.0.0.1:6379 uvicorn benchsite:application --port 9001
The consumer is the one from the seed article (004): /ws/chat/<room>/ joins chat_<room>, a frame
{"message": ...} is group-sent as {"type": "chat.message", "message": ...}, members receive {"message": ...}.
The layer is channels_redis' RedisPubSubChannelLayer, or with CHANNELS_LAYER=core its RedisChannelLayer
(Django's default), with CHANNELS_SYMMETRIC_ENCRYPTION_KEYS (comma-separated) as symmetric_encryption_keys.
Both are layers swift-channels speaks (channels-node --layer pubsub|core).
"""
import json
import os

import django
from django.conf import settings


def layer_settings():
    config = {"hosts": os.environ.get("CHANNELS_REDIS_URL", "redis://127.0.0.1:6379").split(",")}
    if os.environ.get("CHANNELS_LAYER", "pubsub") == "core":
        keys = [key for key in os.environ.get("CHANNELS_SYMMETRIC_ENCRYPTION_KEYS", "").split(",") if key]
        if keys:
            config["symmetric_encryption_keys"] = keys
        return {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": config}
    return {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer", "CONFIG": config}


settings.configure(
    DEBUG=False,
    SECRET_KEY="benchmark-only",
    ALLOWED_HOSTS=["*"],
    INSTALLED_APPS=["channels"],
    CHANNEL_LAYERS={"default": layer_settings()},
)
django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import re_path  # noqa: E402


class ChatConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        self.room_name = self.scope["url_route"]["kwargs"]["room_name"]
        self.room_group_name = f"chat_{self.room_name}"
        await self.channel_layer.group_add(self.room_group_name, self.channel_name)
        await self.accept()

    async def disconnect(self, close_code):
        await self.channel_layer.group_discard(self.room_group_name, self.channel_name)

    async def receive(self, text_data):
        message = json.loads(text_data)["message"]
        await self.channel_layer.group_send(self.room_group_name, {"type": "chat.message", "message": message})

    async def chat_message(self, event):
        await self.send(text_data=json.dumps({"message": event["message"]}))


application = ProtocolTypeRouter(
    {"websocket": URLRouter([re_path(r"^ws/chat/(?P<room_name>[^/]+)/$", ChatConsumer.as_asgi())])}
)
