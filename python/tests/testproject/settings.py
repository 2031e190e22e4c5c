"""A small real Django project for the worker's tests; conftest.py sets the database path and Redis URL."""
import os

SECRET_KEY = "tests-only-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "channels",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["SWIFT_CHANNELS_TEST_DB"], "OPTIONS": {"timeout": 20}}}
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [os.environ["SWIFT_CHANNELS_TEST_REDIS"]]},
    }
}
SWIFT_CHANNELS_FORWARD = {"testproject.consumers.ChatConsumer": {"chat.message": ["message"]}}
