"""ASGI entry point: Django for HTTP, the chat consumers for WebSockets (as the Channels tutorial writes it).

Served by uvicorn or Daphne as is; behind swift-channels nodes, `swift-channels-worker chatproj.asgi:application`
runs the "websocket" entry for connections the nodes hold.
"""
import os

from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproj.settings")
# Initialize Django's ASGI application early so that the app registry is populated before importing consumers.
django_asgi_app = get_asgi_application()

from chat.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
