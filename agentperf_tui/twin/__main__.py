"""Entry point of the twin: ``python -m agentperf_tui.twin [SGLang flags] --hardware h200|gb300-nvl72``."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from aiohttp import web

from agentperf_tui.twin.aic_table import AICBuildError, AICUnavailable
from agentperf_tui.twin.config import TwinConfigError, parse_twin_args
from agentperf_tui.twin.server import TwinServer

log = logging.getLogger("agentperf_tui.twin")


async def serve(argv: list[str] | None) -> int:
    config = parse_twin_args(argv)
    args = config.args
    server = TwinServer(config)
    if config.unknown_args:
        log.warning("Ignoring SGLang flags the twin does not model: %s", " ".join(config.unknown_args))
    runner = web.AppRunner(server.app(), access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, args.host, args.port, backlog=4096).start()
    dcgm_runner = None
    if args.dcgm_port:
        dcgm_runner = web.AppRunner(server.dcgm_app(), access_log=None, handle_signals=False)
        await dcgm_runner.setup()
        await web.TCPSite(dcgm_runner, args.host, args.dcgm_port).start()
    log.info(
        "twin of %s on %s: %d GPUs, engines mixed=%d prefill=%d decode=%d, KV pool %d tokens",
        server.model_name, config.hardware.name, config.total_gpus, config.mixed_engines,
        config.prefill_engines, config.decode_engines, server.cluster.kv_capacity_tokens,
    )
    for (role, gpus), table in sorted(server.step_tables.items()):
        log.info("step times for %s engines of %d GPUs from %s", role, gpus, table.describe())
    log.info("Uvicorn running on http://%s:%d (twin; dcgm-exporter on port %s)", args.host, args.port,
             args.dcgm_port or "off")
    log.info("The server is fired up and ready to roll!")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("Shutting down the twin")
    await runner.cleanup()
    if dcgm_runner:
        await dcgm_runner.cleanup()
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="[%(asctime)s] %(message)s", datefmt="%Y-%m-%d %H:%M:%S")
    try:
        return asyncio.run(serve(argv))
    except (TwinConfigError, AICUnavailable, AICBuildError) as exc:
        print(f"agentperf-tui twin: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"agentperf-tui twin: error: cannot listen: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
