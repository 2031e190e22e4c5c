"""The test project with an in-memory layer: one the nodes cannot reach, which the worker refuses."""
from .settings import *  # noqa: F401,F403

CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
