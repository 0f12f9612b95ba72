"""Chooses and runs the loader for a workload spec: synthetic, AA manifest, AA trace or OpenAI JSONL."""

from __future__ import annotations

from pathlib import Path

import orjson

from agentperf_tui.workload.aa_trace import load_manifest, load_trace_workload
from agentperf_tui.workload.errors import WorkloadError
from agentperf_tui.workload.model import Workload
from agentperf_tui.workload.openai_jsonl import load_openai_jsonl
from agentperf_tui.workload.synthetic import generate_synthetic

AA_TRACE_KEYS = ("turn_id", "conversation_id")


def _first_row(path: Path) -> object:
    """The first non-empty line of a JSONL file, parsed (None for an empty file)."""
    try:
        with path.open("rb") as f:
            for lineno, raw in enumerate(f, 1):
                if raw.strip():
                    try:
                        return orjson.loads(raw)
                    except orjson.JSONDecodeError as exc:
                        raise WorkloadError(f"{path}:{lineno}: invalid JSON: {exc}") from exc
    except OSError as exc:
        raise WorkloadError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    return None


def load_workload(spec: str | Path | None, *, seed: int = 1, synthetic_count: int = 64) -> Workload:
    """The workload named by ``spec``.

    ``None``, ``""`` or ``"synthetic"``: ``synthetic_count`` generated trajectories from ``seed``
    (``seed`` matters only there; it defaults to 1 so file loads need not pass it).
    A ``.json`` path: an AA manifest. A ``.jsonl`` path: an AA trace file if its first line has
    ``turn_id`` or ``conversation_id``, else OpenAI-messages JSONL. Raises WorkloadError for a
    missing file, an unknown extension or bad content (naming file, line and key).
    """
    if spec is None or str(spec) in ("", "synthetic"):
        return generate_synthetic(synthetic_count, seed)
    path = Path(spec)
    if not path.exists():
        raise WorkloadError(f"{path}: workload file not found")
    if not path.is_file():
        raise WorkloadError(f"{path}: not a file (expected a .json manifest or a .jsonl trace)")
    suffix = path.suffix.lower()
    if suffix == ".json":
        return load_manifest(path)
    if suffix != ".jsonl":
        raise WorkloadError(f"{path}: unknown workload format (expected 'synthetic', .json or .jsonl)")
    row = _first_row(path)
    if isinstance(row, dict) and any(key in row for key in AA_TRACE_KEYS):
        return load_trace_workload(path)
    return load_openai_jsonl(path)
