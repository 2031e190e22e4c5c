import json
import threading

from asgiref.sync import async_to_sync
from channels.generic.websocket import AsyncWebsocketConsumer, JsonWebsocketConsumer

from .models import Note


class ChatConsumer(AsyncWebsocketConsumer):
    """The chat consumer of seed 004, as the article writes it."""

    async def connect(self):
        self.room_name = self.scope['url_route']['kwargs']['room_name']
        self.room_group_name = f'chat_{self.room_name}'

        # Join the chat group
        await self.channel_layer.group_add(
            self.room_group_name,
            self.channel_name
        )

        await self.accept()

    async def disconnect(self, close_code):
        # Leave the chat group
        await self.channel_layer.group_discard(
            self.room_group_name,
            self.channel_name
        )

    async def receive(self, text_data):
        # A message from the client
        text_data_json = json.loads(text_data)
        message = text_data_json['message']

        # Send it to the chat group
        await self.channel_layer.group_send(
            self.room_group_name,
            {
                'type': 'chat_message',
                'message': message
            }
        )

    async def chat_message(self, event):
        # A message from the chat group
        message = event['message']

        # Send it to the client
        await self.send(text_data=json.dumps({
            'message': message
        }))


class WhoAmIConsumer(AsyncWebsocketConsumer):
    """Answers with the user Django's session cookie logged in (AuthMiddlewareStack), "" when anonymous."""

    async def connect(self):
        await self.accept()
        await self.send(text_data=json.dumps({"username": self.scope["user"].username}))


class NotesConsumer(JsonWebsocketConsumer):
    """A sync consumer writing to the database: {"text": ...} saves a Note and tells every notes client."""

    groups = ["notes"]

    def connect(self):
        self.accept()

    def receive_json(self, content):
        user = self.scope["user"]
        note = Note.objects.create(text=str(content.get("text", ""))[:200], author=user if user.is_authenticated else None)
        async_to_sync(self.channel_layer.group_send)(
            "notes", {"type": "notes.saved", "pk": note.pk, "text": note.text, "count": Note.objects.count()}
        )

    def notes_saved(self, event):
        # A handler with code (not forwarded): it runs in this worker's thread for the connection.
        self.send_json({"saved": event["pk"], "text": event["text"], "count": event["count"], "thread": threading.current_thread().name})
