"""ASGI entry point (uvicorn liveupdates.asgi:application): HTTP only.

The WebSockets (/ws/updates/<model>/) are served by the swift-channels nodes, not here; `run` starts uvicorn
with --ws none, so a WebSocket request reaching Django is a plain 404.
"""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "liveupdates.settings")

application = get_asgi_application()
