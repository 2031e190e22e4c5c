import os

from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.core.asgi import get_asgi_application
from django.urls import path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")
django_asgi_app = get_asgi_application()

from . import consumers  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(
                URLRouter(
                    [
                        path("ws/chat/<str:room>/", consumers.ChatConsumer.as_asgi()),
                        path("ws/scope/<str:name>/", consumers.ScopeConsumer.as_asgi()),
                        path("ws/thread/", consumers.ThreadConsumer.as_asgi()),
                        path("ws/deny/", consumers.DenyConsumer.as_asgi()),
                        path("ws/raise/", consumers.RaiseConsumer.as_asgi()),
                        path("ws/slow/", consumers.SlowGoodbyeConsumer.as_asgi()),
                    ]
                )
            )
        ),
    }
)
