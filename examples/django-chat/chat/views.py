from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST


def index(request):
    """The chat page: whoever is logged in, and a room to talk in."""
    return render(request, "chat/index.html", {"ws_url": settings.CHAT_WS_URL})


def live(request):
    """The chat room on the nodes' browser client (/channels.js): reconnects, recovers missed messages, presence."""
    return render(request, "chat/live.html")


@csrf_exempt  # a demo endpoint for scripts; a real one would require a login and its CSRF token
@require_POST
def announce(request, room_name):
    """A view's group_send: every client in the room gets the message, wherever its socket is."""
    message = request.POST.get("message", "")
    async_to_sync(get_channel_layer().group_send)(f"chat_{room_name}", {"type": "chat_message", "message": message})
    return JsonResponse({"sent": message, "group": f"chat_{room_name}"})
