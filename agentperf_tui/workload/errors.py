"""The one error type for bad workload input; its message names the file, line and key."""


class WorkloadError(ValueError):
    """A workload file that cannot be used: message like ``traces/x.jsonl:3: missing key 'messages'``."""
