"""Command line: ``agentperf-tui run | search | replay | twin | profiles | launch-plan | report``.

Each sub-command parses its own flags and hands over to the package that does the work; this
module holds no logic of its own beyond choosing headless vs dashboard.
"""

from __future__ import annotations

import argparse
import sys

from agentperf_tui import __version__


def _twin(argv: list[str]) -> int:
    from agentperf_tui.twin.__main__ import main as twin_main

    return twin_main(argv)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentperf-tui",
        description="How many AI agents can this machine serve, and at what power? (AA-AgentPerf style)",
    )
    parser.add_argument("--version", action="version", version=f"agentperf-tui {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("twin", help="start the digital twin of SGLang serving DeepSeek V4 Pro (SGLang flags)",
                   add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "twin":
        return _twin(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
