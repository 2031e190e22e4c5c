"""CHANNEL_LAYERS from the environment, shared by settings.py and check_updates.py (so both use one layer).

CHANNELS_LAYER                      pubsub (default): channels_redis.pubsub.RedisPubSubChannelLayer
                                    core: channels_redis.core.RedisChannelLayer
CHANNELS_REDIS_URL                  Redis URLs, comma separated, in shard order (default redis://127.0.0.1:6379)
CHANNELS_PREFIX                     prefix of Redis channels and keys (default asgi)
CHANNELS_SYMMETRIC_ENCRYPTION_KEYS  comma separated; passed as symmetric_encryption_keys to a layer that takes
                                    them (core; pubsub too since channels_redis 4.2), otherwise ignored with a
                                    warning printed once
"""
import importlib
import inspect
import os
import sys

BACKENDS = {
    "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
    "core": "channels_redis.core.RedisChannelLayer",
}
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"

_warned = False


def _split(value):
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def backend_class(path):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def takes_encryption_keys(path):
    return "symmetric_encryption_keys" in inspect.signature(backend_class(path).__init__).parameters


def channel_layers_from_environment(environ=None):
    global _warned
    environ = os.environ if environ is None else environ
    kind = (environ.get("CHANNELS_LAYER") or "pubsub").strip().lower()
    if kind not in BACKENDS:
        raise ValueError(f"CHANNELS_LAYER must be one of {', '.join(BACKENDS)}, not {kind!r}")
    backend = BACKENDS[kind]
    config = {
        "hosts": _split(environ.get("CHANNELS_REDIS_URL")) or [DEFAULT_REDIS_URL],
        "prefix": environ.get("CHANNELS_PREFIX") or "asgi",
    }
    if kind == "core":
        # One entry in a process queue (specific.*) serves every member of that process: the nodes give
        # these queues 10,000 entries, and Django's group_send needs the same or it stops at 100.
        config["channel_capacity"] = {"specific.*": 10000}
    keys = _split(environ.get("CHANNELS_SYMMETRIC_ENCRYPTION_KEYS"))
    if keys:
        if takes_encryption_keys(backend):
            config["symmetric_encryption_keys"] = keys
        elif not _warned:
            _warned = True
            print(
                f"warning: CHANNELS_SYMMETRIC_ENCRYPTION_KEYS is ignored: this channels_redis' {kind} layer "
                "does not take symmetric_encryption_keys (the core layer does); messages go unencrypted",
                file=sys.stderr,
                flush=True,
            )
    return {"default": {"BACKEND": backend, "CONFIG": config}}
