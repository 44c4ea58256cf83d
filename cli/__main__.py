"""`fleet` / `python -m cli`: the one place the command line reads the environment."""

from __future__ import annotations

import os
import sys

from cli.main import run


def main() -> int:
    """Entry point of the `fleet` console script."""
    return run(sys.argv[1:], dict(os.environ))


if __name__ == "__main__":
    sys.exit(main())
