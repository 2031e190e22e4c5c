from django.urls import path

from . import consumers

websocket_urlpatterns = [
    path('ws/chat/<str:room_name>/', consumers.ChatConsumer.as_asgi()),
    path('ws/whoami/', consumers.WhoAmIConsumer.as_asgi()),
    path('ws/notes/', consumers.NotesConsumer.as_asgi()),
]
