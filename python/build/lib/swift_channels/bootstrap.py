"""Loading a project's ASGI application and putting the bridge's layer in place of its own."""
from __future__ import annotations

import importlib
import os
import sys
from typing import Any, Callable, Optional

from .layer import BridgeLayer, current_connection


class BridgeSetupError(RuntimeError):
    """The worker cannot start: the message says what to fix."""


def load_application(spec: str) -> Callable[..., Any]:
    """Imports ``module:attribute`` (``chatproj.asgi:application``) from the current directory, as uvicorn
    and Daphne do; the module sets ``DJANGO_SETTINGS_MODULE`` and sets Django up."""
    module_name, _, attribute = spec.partition(":")
    if not module_name:
        raise BridgeSetupError(f"{spec!r} is not module:attribute, e.g. chatproj.asgi:application")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise BridgeSetupError(f"cannot import {module_name!r} ({error}); run the worker in the project's directory") from error
    target: Any = module
    for part in (attribute or "application").split("."):
        if not hasattr(target, part):
            raise BridgeSetupError(f"{module_name!r} has no attribute {attribute or 'application'!r}")
        target = getattr(target, part)
    import django
    from django.apps import apps

    if not apps.ready:
        # A module that builds its router without get_asgi_application(): set Django up as it would.
        django.setup(set_prefix=False)
    return target


def project_layer(alias: str) -> Any:
    """The project's layer for ``alias``; it must be a channels_redis layer the nodes share."""
    from channels.layers import channel_layers
    from django.conf import settings

    if alias not in getattr(settings, "CHANNEL_LAYERS", {}):
        raise BridgeSetupError(f"CHANNEL_LAYERS has no {alias!r}: the worker talks to the nodes through the project's Redis layer")
    layer = channel_layers[alias]
    if isinstance(layer, BridgeLayer):
        return layer.real
    from channels_redis.core import RedisChannelLayer
    from channels_redis.pubsub import RedisPubSubChannelLayer

    if not isinstance(layer, (RedisChannelLayer, RedisPubSubChannelLayer)):
        raise BridgeSetupError(
            f"CHANNEL_LAYERS[{alias!r}] is {type(layer).__module__}.{type(layer).__name__}: the nodes reach workers through "
            "channels_redis (channels_redis.core.RedisChannelLayer or channels_redis.pubsub.RedisPubSubChannelLayer)"
        )
    return layer


def install(alias: str, worker: Any) -> BridgeLayer:
    """Puts a :class:`BridgeLayer` over the alias's layer in this process and notes each connection's
    consumer class (for ``SWIFT_CHANNELS_FORWARD``)."""
    from channels.layers import channel_layers

    bridge = BridgeLayer(worker.layer, worker)
    channel_layers.set(alias, bridge)
    _note_consumer_classes()
    return bridge


_patched: Optional[Callable[..., Any]] = None


def _note_consumer_classes() -> None:
    """Wraps ``AsyncConsumer.__call__`` (once) so that a connection learns which consumer serves it.

    The class decides the connection's forward rules; Channels creates the instance deep inside the
    project's routers, and every Channels consumer (sync ones too) starts in this method.
    """
    global _patched
    from channels.consumer import AsyncConsumer

    if _patched is not None:
        return
    original = AsyncConsumer.__call__

    async def __call__(self: Any, scope: Any, receive: Any, send: Any) -> Any:
        connection = current_connection.get()
        if connection is not None and connection.consumer_class is None:
            connection.consumer_class = type(self)
            connection.consumer_scope = scope
        return await original(self, scope, receive, send)

    __call__.__wrapped__ = original  # type: ignore[attr-defined]
    AsyncConsumer.__call__ = __call__  # type: ignore[method-assign]
    _patched = original
