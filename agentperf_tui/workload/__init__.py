"""Workloads: trajectories of agent turns from AA traces, OpenAI-messages JSONL or a generator."""

from agentperf_tui.workload.errors import WorkloadError
from agentperf_tui.workload.loader import load_workload
from agentperf_tui.workload.model import Trajectory, Turn, Workload
from agentperf_tui.workload.synthetic import generate_synthetic

__all__ = ["Trajectory", "Turn", "Workload", "WorkloadError", "generate_synthetic", "load_workload"]
