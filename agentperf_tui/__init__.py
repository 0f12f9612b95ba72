"""agentperf-tui: how many AI agents a GPU rack serves within each SLO tier, and at what power."""

__version__ = "0.1.0"
