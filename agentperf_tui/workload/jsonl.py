"""Reading JSON-lines workload files: one object per line, every problem named by file and line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from agentperf_tui.workload.errors import WorkloadError


def json_objects(path: Path) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """(line number, "file:line", object) for every non-blank line; WorkloadError on anything else."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WorkloadError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    for lineno, raw in enumerate(data.splitlines(), 1):
        if not raw.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            row = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise WorkloadError(f"{where}: invalid JSON: {exc}") from exc
        if not isinstance(row, dict):
            raise WorkloadError(f"{where}: expected one JSON object per line")
        yield lineno, where, row


def shared_prefix(a: tuple[dict[str, Any], ...] | list[dict[str, Any]],
                  b: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> int:
    """How many leading messages two calls have in common (Turn.previous_prefix)."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
