"""`python -m engine`: run one rules-engine instance with settings from the environment."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

import uvloop

from config import SettingsError, load_settings
from engine.app import serve


def main() -> int:
    """Run until SIGINT or SIGTERM; what is not committed then is redone by the next owner."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings(os.environ)
    except SettingsError as exc:
        print(f"fleetbridge engine: {exc}", file=sys.stderr)
        return 2
    if not settings.database.url:
        print("fleetbridge engine: set FLEETBRIDGE_DATABASE_URL (or start everything with `fleet up`)", file=sys.stderr)
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
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
