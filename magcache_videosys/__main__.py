"""``python -m magcache_videosys``: the schedule, sweep, calibrate and ratios commands."""

import sys

from .cli import main

sys.exit(main())
