"""Settings of the live-updates example, from the environment.

The WebSockets are not Django's: swift-channels nodes serve /ws/updates/<model>/ and share the groups with this
project through Redis. Django only sends: a model change becomes a group_send on the channel layer below.

DJANGO_SECRET_KEY, DJANGO_DEBUG (1 turns it on), DJANGO_ALLOWED_HOSTS (comma separated, added to the loopback
names), DJANGO_DB_PATH (the SQLite file; default db.sqlite3 beside manage.py), CHANNELS_WS_URL (the WebSocket
base URL the page connects to; default ws://<the page's host>:8000, the cluster's haproxy) and the channel
layer's settings (see channel_layers.py).
"""
import os
from pathlib import Path

from .channel_layers import channel_layers_from_environment

BASE_DIR = Path(__file__).resolve().parent.parent


def _flag(name):
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


# A demo fallback: set DJANGO_SECRET_KEY for anything but a loopback demo.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or "demo-only-insecure-secret-key-for-the-live-updates-example"
DEBUG = _flag("DJANGO_DEBUG")
ALLOWED_HOSTS = ["127.0.0.1", "localhost"] + [
    host.strip() for host in os.environ.get("DJANGO_ALLOWED_HOSTS", "").split(",") if host.strip()
]

# No admin, sessions or auth: the API is open (a demo), the page is one template.
INSTALLED_APPS = [
    "rest_framework",
    "items",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "liveupdates.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    },
]

WSGI_APPLICATION = "liveupdates.wsgi.application"
ASGI_APPLICATION = "liveupdates.asgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJANGO_DB_PATH") or BASE_DIR / "db.sqlite3",
    }
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REST_FRAMEWORK = {
    # A demo: no authentication and anyone may write. Without SessionAuthentication DRF enforces no CSRF check
    # (its views are csrf_exempt; only SessionAuthentication checks the token), so the page's fetch() calls send
    # no token. An application with session logins keeps SessionAuthentication and sends the csrftoken cookie
    # back as the X-CSRFToken header.
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
}

CHANNEL_LAYERS = channel_layers_from_environment()

# The base URL of the WebSocket the page opens; empty: ws://<the page's hostname>:8000.
CHANNELS_WS_URL = os.environ.get("CHANNELS_WS_URL", "").strip()

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"items": {"handlers": ["console"], "level": "INFO", "propagate": False}},
}
