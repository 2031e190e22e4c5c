"""swift-channels for Django: the nodes hold a Channels project's WebSockets, workers run its consumers.

``swift-channels-worker chatproj.asgi:application`` (or ``python -m swift_channels``) in the project's directory;
``channels-node --django-path /ws/`` in front. The contract between them is docs/django-bridge.md.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
