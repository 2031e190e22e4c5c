"""Settings of the chat example: Django's tutorial settings, Channels as seed 004 sets it up, and a Redis layer
the swift-channels nodes share.

Environment: DJANGO_SECRET_KEY, DJANGO_DEBUG (1), DJANGO_DB_PATH (the SQLite file; default db.sqlite3 beside
manage.py), CHANNELS_LAYER (pubsub, the default, or core), CHANNELS_REDIS_URL (comma separated, in shard order;
default redis://127.0.0.1:6379), CHAT_FAST_PATH (0 turns SWIFT_CHANNELS_FORWARD off), CHAT_WS_URL (the
WebSocket base URL the page connects to; default: the page's own origin, as behind haproxy).
"""
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

# A demo fallback: set DJANGO_SECRET_KEY for anything but a loopback demo.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or "demo-only-insecure-secret-key-for-the-chat-example"
DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "chat",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "chatproj.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "chatproj.wsgi.application"
ASGI_APPLICATION = "chatproj.asgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJANGO_DB_PATH") or BASE_DIR / "db.sqlite3",
        # Two workers and the HTTP server write to one SQLite file: wait for the lock rather than fail.
        "OPTIONS": {"timeout": 20},
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGIN_REDIRECT_URL = "/"

_BACKENDS = {
    "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
    "core": "channels_redis.core.RedisChannelLayer",
}
_layer = (os.environ.get("CHANNELS_LAYER") or "pubsub").strip().lower()
if _layer not in _BACKENDS:
    raise ValueError(f"CHANNELS_LAYER must be pubsub or core, not {_layer!r}")
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": _BACKENDS[_layer],
        "CONFIG": {
            "hosts": [url.strip() for url in os.environ.get("CHANNELS_REDIS_URL", "redis://127.0.0.1:6379").split(",") if url.strip()],
        },
    },
}
if _layer == "core":
    # One entry in a process queue (specific.*) serves every member of that process: the nodes give these
    # queues 10,000 entries, and Django's group_send needs the same or it stops at 100.
    CHANNEL_LAYERS["default"]["CONFIG"]["channel_capacity"] = {"specific.*": 10000}

# The swift-channels fast path: the nodes write chat messages to clients themselves, without a worker round trip.
if os.environ.get("CHAT_FAST_PATH", "1") != "0":
    SWIFT_CHANNELS_FORWARD = {"chat.consumers.ChatConsumer": {"chat.message": ["message"]}}
    # Chat rooms show who is there to clients that connect with ?presence=1.
    SWIFT_CHANNELS_PRESENCE = ["chat.consumers.ChatConsumer"]

CHAT_WS_URL = os.environ.get("CHAT_WS_URL", "").strip()
