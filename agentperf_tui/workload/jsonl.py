"""Reading JSON-lines workload files: one object per line, every problem named by file and line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from agentperf_tui.workload.errors import WorkloadError


def json_lines(path: Path, name: str | None = None) -> Iterator[tuple[int, str, Any]]:
    """(line number, "file:line", parsed value) for every non-blank line; WorkloadError for an
    unreadable file or a line that is not JSON. ``name`` is how the file is named in messages."""
    name = name or str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WorkloadError(f"{name}: cannot read: {exc.strerror or exc}") from exc
    for lineno, raw in enumerate(data.splitlines(), 1):
        if not raw.strip():
            continue
        where = f"{name}:{lineno}"
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise WorkloadError(f"{where}: invalid JSON: {exc}") from exc
        yield lineno, where, value


def json_objects(path: Path, name: str | None = None) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """As :func:`json_lines`, every line a JSON object (anything else is a WorkloadError)."""
    for lineno, where, value in json_lines(path, name):
        if not isinstance(value, dict):
            raise WorkloadError(f"{where}: expected one JSON object per line, got {type(value).__name__}")
        yield lineno, where, value


def shared_prefix(a: tuple[dict[str, Any], ...] | list[dict[str, Any]],
                  b: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> int:
    """How many leading messages two calls have in common (Turn.previous_prefix)."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
