"""The console script's refusals: each says what to fix and exits 2."""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def worker(*arguments, settings="testproject.settings"):
    environment = dict(os.environ, DJANGO_SETTINGS_MODULE=settings)
    return subprocess.run(
        [sys.executable, "-m", "swift_channels", *arguments], cwd=HERE, env=environment, capture_output=True, text=True, timeout=60
    )


def test_an_unknown_layer_alias_is_refused():
    result = worker("--layer-alias", "nope", "testproject.asgi:application")
    assert result.returncode == 2
    assert "CHANNEL_LAYERS has no 'nope'" in result.stderr


def test_an_application_that_cannot_be_imported_is_refused():
    result = worker("nowhere.asgi:application")
    assert result.returncode == 2
    assert "cannot import 'nowhere.asgi'" in result.stderr
    assert worker("testproject.asgi:missing").stderr.strip().endswith("has no attribute 'missing'")


def test_a_layer_the_nodes_cannot_share_is_refused():
    result = worker("testproject.asgi:application", settings="testproject.memory_settings")
    assert result.returncode == 2
    assert "channels.layers.InMemoryChannelLayer" in result.stderr and "channels_redis" in result.stderr


def test_threads_must_be_positive():
    result = worker("--threads", "0", "testproject.asgi:application")
    assert result.returncode == 2 and "--threads must be at least 1" in result.stderr
