"""`python -m firmware_sim`: the simulator's command line, with defaults from the environment's settings."""

from __future__ import annotations

import os
import sys

from config.settings import SettingsError, load_settings
from firmware_sim.cli import SimTarget, main

if __name__ == "__main__":
    try:
        settings = load_settings(os.environ)
    except SettingsError as exc:
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(2)
    target = SimTarget(settings.mqtt.url) if settings.mqtt.url else None
    sys.exit(main(sys.argv[1:], defaults=settings.sim, target=target))
