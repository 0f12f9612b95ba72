"""Chooses and runs the loader for a workload spec: synthetic, AA manifest or trace, MLPerf agentic,
AgentX (Weka cc-traces), mooncake trace or OpenAI-messages JSONL, from the file's first record."""

from __future__ import annotations

from pathlib import Path

import orjson

from agentperf_tui.workload.aa_trace import load_manifest, load_trace_workload
from agentperf_tui.workload.agentx_trace import load_agentx
from agentperf_tui.workload.agentx_trace import looks_like as looks_like_agentx
from agentperf_tui.workload.errors import WorkloadError
from agentperf_tui.workload.mlperf_agentic import load_mlperf_agentic
from agentperf_tui.workload.mlperf_agentic import looks_like as looks_like_mlperf
from agentperf_tui.workload.model import Workload
from agentperf_tui.workload.mooncake import load_mooncake
from agentperf_tui.workload.openai_jsonl import load_openai_jsonl
from agentperf_tui.workload.synthetic import generate_synthetic

AA_TRACE_KEYS = ("turn_id", "conversation_id")
MOONCAKE_KEYS = ("input_length", "text_input", "hash_ids", "output_length", "timestamp", "delay", "session_id")


def _first_row(path: Path) -> object:
    """The first non-empty line of a JSONL file, parsed (None for an empty file); metadata rows skipped."""
    try:
        with path.open("rb") as f:
            for lineno, raw in enumerate(f, 1):
                if raw.strip():
                    try:
                        row = orjson.loads(raw)
                    except orjson.JSONDecodeError as exc:
                        raise WorkloadError(f"{path}:{lineno}: invalid JSON: {exc}") from exc
                    if isinstance(row, dict) and row.get("_type") == "dataset_metadata":
                        continue  # MLPerf agentic datasets open with one
                    return row
    except OSError as exc:
        raise WorkloadError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    return None


def load_workload(spec: str | Path | None, *, seed: int = 1, synthetic_count: int = 64) -> Workload:
    """The workload named by ``spec``.

    ``None``, ``""`` or ``"synthetic"``: ``synthetic_count`` generated trajectories from ``seed``
    (``seed`` matters only there; it defaults to 1 so file loads need not pass it).
    A ``.json`` path: an AA manifest (``tasks``) or one AgentX trace (``requests`` + ``block_size``).
    A ``.jsonl`` path, by its first line: MLPerf agentic (``conversation_id`` + ``turn`` + ``role``),
    an AA trace (``turn_id`` or ``conversation_id``), AgentX traces (``requests`` + ``block_size``),
    a mooncake trace (``input_length``, ``hash_ids``, ``output_length``, ...), else OpenAI-messages
    JSONL. Raises WorkloadError for a missing file, an unknown extension or bad content (naming
    file, line and key).
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
        try:
            head = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            head = None  # the manifest loader names the problem
        if looks_like_agentx(head):
            return load_agentx(path)
        return load_manifest(path)
    if suffix != ".jsonl":
        raise WorkloadError(f"{path}: unknown workload format (expected 'synthetic', .json or .jsonl)")
    row = _first_row(path)
    if looks_like_mlperf(row):
        return load_mlperf_agentic(path)
    if isinstance(row, dict) and any(key in row for key in AA_TRACE_KEYS):
        return load_trace_workload(path)
    if looks_like_agentx(row):
        return load_agentx(path)
    if isinstance(row, dict) and any(key in row for key in MOONCAKE_KEYS):
        return load_mooncake(path)
    return load_openai_jsonl(path)
