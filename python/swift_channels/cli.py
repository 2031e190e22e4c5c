"""``swift-channels-worker`` (and ``python -m swift_channels``): serve a project's WebSocket consumers for the nodes."""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import List, Optional

from . import __version__
from .bootstrap import BridgeSetupError, install, load_application, project_layer
from .settings import BridgeSettingsError, ForwardRules, PresenceClasses
from .worker import Worker

DESCRIPTION = """\
Runs the "websocket" application of a Django Channels project for swift-channels nodes started with
--django-path: the nodes hold the sockets and the groups, this process runs the project's middleware,
routers and consumers, unchanged. Run it in the project's directory; it uses the project's
CHANNEL_LAYERS (a channels_redis layer the nodes share). Several workers, on several machines, share the
connections. SIGTERM drains: the current events of each connection finish, then its client is closed with
1012 and reconnects to another worker."""


def parser() -> argparse.ArgumentParser:
    arguments = argparse.ArgumentParser(prog="swift-channels-worker", description=DESCRIPTION)
    arguments.add_argument("application", help="the project's ASGI application, module:attribute (e.g. chatproj.asgi:application)")
    arguments.add_argument("--layer-alias", default="default", help="the CHANNEL_LAYERS alias to use (default: default)")
    arguments.add_argument("--threads", type=int, default=1, help="threads for sync consumers; each connection keeps one (default: 1)")
    arguments.add_argument("--drain-time", type=float, default=30.0, help="seconds SIGTERM may take to finish the connections' events (default: 30)")
    arguments.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"], help="(default: info)")
    arguments.add_argument("--version", action="version", version=f"swift-channels {__version__}")
    return arguments


def main(argv: Optional[List[str]] = None) -> int:
    options = parser().parse_args(argv)
    logging.basicConfig(level=options.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if options.threads < 1:
        print("swift-channels-worker: --threads must be at least 1", file=sys.stderr)
        return 2
    try:
        application = load_application(options.application)
        from django.conf import settings

        layer = project_layer(options.layer_alias)
        forward = ForwardRules.from_setting(getattr(settings, "SWIFT_CHANNELS_FORWARD", None))
        presence = PresenceClasses.from_setting(getattr(settings, "SWIFT_CHANNELS_PRESENCE", None))
    except (BridgeSetupError, BridgeSettingsError) as error:
        print(f"swift-channels-worker: {error}", file=sys.stderr)
        return 2
    worker = Worker(application, layer, forward=forward, presence=presence, threads=options.threads, drain_time=options.drain_time)
    install(options.layer_alias, worker)
    try:
        asyncio.run(_serve(worker, options.application))
    except KeyboardInterrupt:
        return 130
    return 0


async def _serve(worker: Worker, application: str) -> None:
    loop = asyncio.get_running_loop()
    signals = {signal.SIGTERM, signal.SIGINT}
    # A parent may have started us with these blocked (the mask is inherited): SIGTERM must drain.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)
    for signum in signals:
        loop.add_signal_handler(signum, worker.request_stop)
    await worker.start()
    layer = type(worker.layer)
    print(
        f"swift-channels-worker: serving {application} as {worker.channel} on {layer.__module__}.{layer.__name__}",
        flush=True,
    )
    await worker.run()


if __name__ == "__main__":
    sys.exit(main())
