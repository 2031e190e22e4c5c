"""Real parts for the worker's tests: a redis-server on a free port, a Django project on SQLite."""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
_state = {}


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def pytest_configure(config):
    server = shutil.which("redis-server")
    if server is None:
        raise pytest.UsageError("the worker's tests need redis-server on PATH (apt-get install redis-server)")
    directory = tempfile.mkdtemp(prefix="swift-channels-tests-")
    port = _free_port()
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise pytest.UsageError("redis-server did not start")
            time.sleep(0.05)
    _state.update(process=process, directory=directory)
    os.environ["SWIFT_CHANNELS_TEST_REDIS"] = f"redis://127.0.0.1:{port}"
    os.environ["SWIFT_CHANNELS_TEST_DB"] = os.path.join(directory, "db.sqlite3")
    os.environ["DJANGO_SETTINGS_MODULE"] = "testproject.settings"
    sys.path.insert(0, HERE)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def pytest_unconfigure(config):
    process = _state.get("process")
    if process is not None:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(_state["directory"], ignore_errors=True)


@pytest.fixture
def redis_url():
    return os.environ["SWIFT_CHANNELS_TEST_REDIS"]
