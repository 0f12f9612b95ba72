"""The server under test: launch it (local, srun, ssh) or attach to it, and probe it over HTTP.

- ``launch_plan``: profile -> the exact argv of every process (printable with secrets masked)
- ``supervisor``: start/watch/stop those processes as process groups; attach mode only probes
- ``probe``: /health_generate + /v1/models readiness, /server_info, fingerprint, /flush_cache

Nothing is imported here, so ``agentperf-tui launch-plan`` does not pay for aiohttp.
"""
