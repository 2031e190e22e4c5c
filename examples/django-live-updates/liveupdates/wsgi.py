"""WSGI entry point, for servers without ASGI: the API and page work the same (model changes still reach the
channel layer through async_to_sync)."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "liveupdates.settings")

application = get_wsgi_application()
