#!/usr/bin/env python3
"""RocketWS management script: ``manage.py --help``."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rocketws.process.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
