"""Architecture rules: the engine stays UI-free; no shell strings anywhere."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "agentperf_tui"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_engine_workload_telemetry_and_record_never_import_textual():
    for package in ("engine", "workload", "telemetry", "record", "server", "twin", "report"):
        for path in (PACKAGE / package).rglob("*.py"):
            bad = {m for m in imported_modules(path) if m == "textual" or m.startswith("textual.")}
            assert not bad, f"{path} imports {bad}"


def test_the_dashboard_knows_frames_and_session_calls_not_server_processes():
    for path in (PACKAGE / "tui").rglob("*.py"):
        bad = {m for m in imported_modules(path) if m.startswith("agentperf_tui.server")}
        assert not bad, f"{path} imports {bad}: stop servers through the controller (Session.force_stop)"


def test_importing_the_engine_does_not_load_textual():
    code = ("import sys, agentperf_tui.engine.session, agentperf_tui.headless, agentperf_tui.runner; "
            "print('textual' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_no_shell_true_anywhere():
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "shell":
                assert not (isinstance(node.value, ast.Constant) and node.value.value is True), path
            if isinstance(node, ast.Attribute) and node.attr in ("system", "popen") and \
                    isinstance(node.value, ast.Name) and node.value.id == "os":
                raise AssertionError(f"{path}: os.{node.attr} builds a shell string")


def engine_imports(path: Path) -> set[str]:
    """Engine modules a module imports, anywhere but under ``if TYPE_CHECKING:`` (annotations only)."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    names = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module == "agentperf_tui.engine":
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("agentperf_tui.engine."):
            names.add(node.module.rsplit(".", 1)[1])
        elif isinstance(node, ast.Import):
            names.update(a.name.rsplit(".", 1)[1] for a in node.names if a.name.startswith("agentperf_tui.engine."))
    return names


def test_no_import_cycle_in_the_engine():
    graph = {p.stem: engine_imports(p) for p in (PACKAGE / "engine").glob("*.py")}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle in engine/: " + " -> ".join([*path, node, nxt]))
            if not state.get(nxt):
                visit(nxt, [*path, node])
        state[node] = 2

    for module in sorted(graph):
        if not state.get(module):
            visit(module, [])
    assert graph["session"] >= {"judge", "search_driver", "live_sut", "summary", "frame_builder", "window"} - {"judge"}
    assert "session" not in graph["search_driver"] and "session" not in graph["judge"]
