"""Every shipped profile's launch plan, flag by flag, against SGLang's and the router's own parsers.

The data comes from the published wheels (tools/sglang_conformance.py -> conformance_data/):
an unknown or ambiguous flag, a value outside a flag's choices, a deprecated flag or a flag
missing its value in any worker or router argv fails here, before it fails on a rack. The
profiles written by tools/rack_profiles.py must also be exactly what that script writes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agentperf_tui.profile import load_profile, parse_profile
from agentperf_tui.server import conformance
from agentperf_tui.server.launch_plan import build_launch_plan, is_sglang_server

ROOT = Path(__file__).resolve().parent.parent
ROUTERS = {"smg.launch_router": "smg", "sglang_router.launch_router": "sglang-router"}


def server_argv(argv: list[str]) -> list[str]:
    """The process argv without its launcher (srun ... / ssh ... env K=V ...)."""
    for i, a in enumerate(argv):
        if a == "-m" and i > 0:
            return argv[i - 1:]
    return argv


def plan_problems(profile_name_or_text: str, *, text: bool = False) -> list[str]:
    profile = parse_profile(profile_name_or_text, where="inline") if text else load_profile(profile_name_or_text)
    version = profile.server.sglang_version or conformance.available_versions("sglang")[-1]
    problems = []
    for cmd in build_launch_plan(profile, python="python", sglang_version_override=version):
        argv = server_argv(cmd.argv)
        if is_sglang_server(argv):
            data = conformance.load("sglang", version)
        elif len(argv) > 2 and argv[2] in ROUTERS:
            package = ROUTERS[argv[2]]
            data = conformance.load(package, conformance.available_versions(package)[-1])
        else:
            continue  # the twin (its SGLang flags are [twin-sglang]'s to check), fake servers
        problems += [f"{cmd.name}: {p.kind}: {p.message}" for p in conformance.check_argv(argv, data)]
    return problems


def shipped_profiles() -> list[str]:
    return sorted(p.stem for p in (ROOT / "profiles").glob("*.toml"))


@pytest.mark.parametrize("name", shipped_profiles())
def test_conformance_every_shipped_profile_launch_plan(name: str) -> None:
    assert plan_problems(name) == []


def test_conformance_real_profiles_are_checked_not_skipped() -> None:
    """The check above must see SGLang workers and routers in the real profiles (not skip them all)."""
    sglang = routers = 0
    for name in ("h200", "h200-agentx", "gb300-nvl72", "gb300-nvl72-ssh", "gb300-agentx"):
        for cmd in build_launch_plan(load_profile(name), python="python"):
            argv = server_argv(cmd.argv)
            sglang += is_sglang_server(argv)
            routers += len(argv) > 2 and argv[2] in ROUTERS
    assert (sglang, routers) == (1 + 1 + 18 + 18 + 16, 3)


PROFILE = """
[profile]
name = "bad"
[server]
sglang_version = "0.5.23"
[[server.processes]]
name = "srv"
role = "server"
argv = ["python", "-m", "sglang.launch_server", "--model-path", "m", {flags}]
"""


@pytest.mark.parametrize(("flags", "kind"), [
    ('"--tp-sizee", "8"', "unknown_flag"),
    ('"--mem-fraction-statik", "0.88"', "unknown_flag"),
    ('"--disable-cuda-graph"', "deprecated"),
    ('"--load-balance-method", "fastest"', "bad_choice"),
    ('"--max-running-requests"', "missing_value"),
])
def test_conformance_fails_a_profile_with_a_bad_flag(flags: str, kind: str) -> None:
    problems = plan_problems(PROFILE.format(flags=flags), text=True)
    assert len(problems) == 1 and f"srv: {kind}:" in problems[0]


def test_conformance_deprecated_dp_attention_is_respelled_for_0_5_23_and_refused_as_written() -> None:
    written = PROFILE.format(flags='"--tp", "8", "--dp", "8", "--enable-dp-attention"')
    assert plan_problems(written, text=True) == []  # the plan writes --attn-dp-size 8
    data = conformance.load("sglang", "0.5.23")
    raw = ["python", "-m", "sglang.launch_server", "--model-path", "m", "--enable-dp-attention"]
    [problem] = conformance.check_argv(raw, data)
    assert problem.kind == "deprecated" and "--attn-dp-size" in problem.message


def test_rack_profiles_are_what_the_recipe_script_writes() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "rack_profiles.py"), "--check"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
