"""`python -m api`: serve the API with settings from `FLEETBRIDGE_*` environment variables."""

from __future__ import annotations

import logging
import os
import sys

from api.server import serve
from config import SettingsError, load_settings


def main() -> int:
    """Load settings from the environment and serve; exit 2 with the reason when they are invalid."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings(os.environ)
    except SettingsError as exc:
        logging.getLogger("api").error("invalid settings: %s", exc)
        return 2
    try:
        serve(settings)
    except SettingsError as exc:  # e.g. a token secret too short to sign with
        logging.getLogger("api").error("invalid settings: %s", exc)
        return 2
    except KeyboardInterrupt:
        # uvicorn shuts down gracefully on Ctrl-C, then re-raises the signal: that is a normal exit.
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
