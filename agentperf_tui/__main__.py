"""``python -m agentperf_tui``: the same as the ``agentperf-tui`` command."""

import sys

from agentperf_tui.cli import main

sys.exit(main())
