"""`python -m bridge`: run one bridge instance with settings from the environment."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

import uvloop

from bridge.app import serve
from config import SettingsError, load_settings


def main() -> int:
    """Run until SIGINT or SIGTERM, then flush and exit."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # gmqtt logs every connection event at INFO; the source logs what matters itself.
    logging.getLogger("gmqtt").setLevel(logging.WARNING)
    try:
        settings = load_settings(os.environ)
    except SettingsError as exc:
        print(f"fleetbridge bridge: {exc}", file=sys.stderr)
        return 2
    missing = [
        name
        for name, url in (
            ("MQTT", settings.mqtt.url),
            ("REDIS", settings.redis.url),
            ("DATABASE", settings.database.url),
        )
        if not url
    ]
    if missing:
        names = ", ".join(f"FLEETBRIDGE_{name}_URL" for name in missing)
        print(f"fleetbridge bridge: set {names} (or start everything with `fleet up`)", file=sys.stderr)
        return 2

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, stop)

    try:
        uvloop.run(run())
    except KeyboardInterrupt:
        # Ctrl-C before the signal handlers were installed (while starting): a normal stop, not a fault.
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
