"""Chooses the loader for a workload spec: synthetic, AA manifest, AA trace or OpenAI JSONL."""

from __future__ import annotations

from pathlib import Path

import orjson

from agentperf_tui.workload.aa_trace import load_manifest, load_trace
from agentperf_tui.workload.errors import WorkloadError
from agentperf_tui.workload.model import Workload
from agentperf_tui.workload.openai_jsonl import load_openai_jsonl
from agentperf_tui.workload.synthetic import generate_synthetic


def load_workload(spec: str | Path | None, *, seed: int = 1, synthetic_count: int = 64) -> Workload:
    """``None``/"synthetic" -> generated; ``.json`` -> AA manifest; ``.jsonl`` -> AA trace or OpenAI."""
    if spec is None or str(spec) in ("", "synthetic"):
        return generate_synthetic(synthetic_count, seed)
    path = Path(spec)
    if not path.exists():
        raise WorkloadError(f"{path}: workload file not found")
    if path.suffix == ".json":
        return load_manifest(path)
    with path.open("rb") as f:
        first = f.readline()
    try:
        row = orjson.loads(first) if first.strip() else None
    except orjson.JSONDecodeError as exc:
        raise WorkloadError(f"{path}:1: invalid JSON: {exc}") from exc
    if isinstance(row, dict) and ("turn_id" in row or "conversation_id" in row):
        trajectories, warnings = load_trace(path)
        return Workload(path.stem, tuple(trajectories), tuple(warnings))
    return load_openai_jsonl(path)
