"""Workloads for the benchmark: trajectories of agent turns, loaded or generated.

Sources: Artificial Analysis replay manifests and JSONL traces (aa_trace), plain OpenAI-messages
JSONL (openai_jsonl) and a seeded generator calibrated to AA-AgentPerf's published shape
(synthetic). ``load_workload`` picks the right one from a spec; every bad input raises
``WorkloadError`` with a message naming file, line and key.
"""

from agentperf_tui.workload.errors import WorkloadError
from agentperf_tui.workload.loader import load_workload
from agentperf_tui.workload.model import Trajectory, Turn, Workload
from agentperf_tui.workload.synthetic import generate_synthetic

__all__ = ["Trajectory", "Turn", "Workload", "WorkloadError", "generate_synthetic", "load_workload"]
