"""The search report as an operator hands it on: a title block that says what, on what, how, when and
on how much data (unknown where unknown), and charts that say the same and mark each tier's answer."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from agentperf_tui import cli
from agentperf_tui.engine.search_driver import SearchDriver, SearchSettings
from agentperf_tui.engine.slo import AA_DSV4_PRO_TIERS
from agentperf_tui.engine.synthetic_sut import GroundTruth, SyntheticSUT
from agentperf_tui.record.reader import SessionReader
from agentperf_tui.record.writer import SessionRecorder
from agentperf_tui.report.search_report import charts, markdown, title_block

from .tui_frames import make_frame

TWIN = {"profile": "twin-h200", "twin": True,
        "server": {"url": "http://127.0.0.1:30000", "version": "twin-0.1.0", "fingerprint": "dd95be0c807c"}}


@pytest.fixture(scope="module")
def searched() -> dict:
    """A real search (the synthetic ground truth: 1 agent reaches only ~150 tok/s, so tier3 is 0),
    capped at 64 agents: the data ends at 64."""
    sut = SyntheticSUT(GroundTruth(capacity=40, speed_1=150.0), AA_DSV4_PRO_TIERS, seed=1)
    driver = SearchDriver(sut, SearchSettings.for_mode("quick", max_agents=64), gpus=8)
    asyncio.run(driver.run())
    return driver.report(power_boundary="gpu", extra=TWIN)


def _record(directory: Path, report: dict, gpu_model: str = "NVIDIA H200") -> None:
    rec = SessionRecorder(directory, {"profile": "twin-h200", "gpus": 8, "agents": 8})
    frame = make_frame(4)
    if gpu_model is not None:
        frame = dataclasses.replace(frame, power=dataclasses.replace(frame.power, gpu_model=gpu_model))
    rec.on_frame(frame)
    rec.write_summary({"tool": "agentperf-tui", "profile": "twin-h200", "search": report})
    rec.close()


def test_report_session_title_block_says_twin_hardware_mode_date_boundary_and_samples(searched, tmp_path, capsys):
    session = tmp_path / "session"
    session.mkdir()
    _record(session, searched)
    assert cli.main(["report", str(session)]) == 0
    assert "report.md" in capsys.readouterr().out
    text = (session / "report.md").read_text()
    head = text.splitlines()[:10]
    created = SessionReader(session).header["created_unix"]
    date = datetime.fromtimestamp(created, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    assert head[0] == "# Agent capacity: twin-h200 (digital twin)"
    assert "- **Profile:** twin-h200" in head
    assert "- **Hardware:** 8 x NVIDIA H200 (simulated)" in head
    assert any(line.startswith("- **Numbers from:** **digital twin**") and "twin-0.1.0" in line
               and "dd95be0c807c" in line for line in head)
    assert any(line.startswith("- **Mode:** **quick**") and "ESTIMATE" in line for line in head)
    assert f"- **Run date (UTC):** {date}" in head
    assert any(line.startswith("- **Power boundary:** gpu") for line in head)
    samples = next(line for line in head if line.startswith("- **Sample per tier answer:**"))
    tiers = {t["name"]: t for t in searched["tiers"]}
    for name in ("tier1", "tier2"):
        t = tiers[name]
        phase = searched["phases"][t["answer_phase"] - 1]
        assert (f"{name} {t['sample']['finished']:,} finished requests in {t['sample']['duration_s']:.0f} s "
                f"(phase {t['answer_phase']}, {phase['agents']} agents)") in samples
    assert tiers["tier3"]["max_agents"] == 0
    assert "tier3 none: 0 agents (even 1 agent fails)" in samples
    saved = orjson.loads((session / "report.json").read_bytes())
    assert saved["run"] == {"source": "recording", "started_utc": date, "gpu_model": "NVIDIA H200"}


def test_a_real_server_and_certify_or_custom_modes_are_named_as_such(searched):
    real = {**searched, "twin": False, "profile": "h200", "mode": "certify", "base_mode": "certify",
            "server": {"url": "http://gpu-node:30000", "version": "0.5.23", "fingerprint": "abc123"}}
    head = "\n".join(title_block(real))
    assert "(digital twin)" not in head and "simulated" not in head
    assert "- **Numbers from:** **real server** 0.5.23, fingerprint abc123" in head
    assert "**certify** - AA-AgentPerf's rules" in head
    assert "8 GPUs, kind unknown" in head and "- **Run date (UTC):** unknown" in head
    custom = "\n".join(title_block({**real, "mode": "custom", "base_mode": "quick"}))
    assert "**custom** (rules changed from quick; an ESTIMATE" in custom


def test_an_old_recording_without_the_new_fields_still_reports_and_says_unknown(searched, tmp_path):
    old = {k: v for k, v in searched.items() if k not in ("profile", "twin", "server", "context")}
    old["tiers"] = [{k: v for k, v in t.items() if k not in ("sample", "answer_phase", "why_zero")}
                    for t in searched["tiers"]]
    session = tmp_path / "old"
    session.mkdir()
    _record(session, old, gpu_model="")  # frames from before the GPU model was recorded
    assert cli.main(["report", str(session)]) == 0
    head = (session / "report.md").read_text().splitlines()[:10]
    assert head[0] == "# Agent capacity: unknown"
    assert "- **Hardware:** 8 GPUs, kind unknown" in head
    assert any("unknown whether real or twin (server unknown, fingerprint unknown)" in line for line in head)
    assert any("tier1 unknown (recorded before samples were kept)" in line for line in head)
    for name in ("speed_vs_agents.svg", "ttft_vs_agents.svg", "power_vs_agents.svg"):
        assert "profile unknown" in (session / name).read_text()


def _svg(text: str) -> ET.Element:
    return ET.fromstring(text)


def _x_ticks(root: ET.Element) -> dict[float, float]:
    """x tick label -> its x position (x ticks are the numeric labels centred under the axis)."""
    ns = "{http://www.w3.org/2000/svg}"
    return {float(t.text): float(t.get("x")) for t in root.iter(f"{ns}text")
            if t.get("text-anchor") == "middle" and t.text and re.fullmatch(r"[\d.]+", t.text)}


def test_charts_carry_profile_date_and_twin_and_mark_each_tiers_answer(searched):
    report = {**searched, "run": {"started_utc": "2026-11-24 09:30:00 UTC"}}
    out = charts(report)
    ns = "{http://www.w3.org/2000/svg}"
    largest = max(p["agents"] for p in report["phases"] if p["valid"])
    assert largest == 64
    for name, svg in out.items():
        root = _svg(svg)
        title = root.find(f"{ns}title").text
        assert "twin-h200" in title and "2026-11-24" in title and "(digital twin)" in title, (name, title)
        ticks = _x_ticks(root)
        assert max(ticks) == 70.0, (name, sorted(ticks))  # round, just past 64 - not 100
        labels = [t.text for t in root.iter(f"{ns}text")]
        if name == "power_vs_agents.svg":
            assert "measured average power" in labels
            continue
        measured = "measured P25 speed" if name.startswith("speed") else "measured P95 TTFT"
        assert measured in labels
        unit = "tok/s" if name.startswith("speed") else "s"
        for t in report["tiers"]:
            limit = t["output_tps"] if unit == "tok/s" else t["ttft_s"]
            assert f"{t['name']} limit {limit:g} {unit}" in labels  # a limit, not a series
            assert f"{t['name']} max {t['max_agents']}" in labels
        markers = [line for line in root.iter(f"{ns}line") if line.get("stroke-dasharray") == "2,3"]
        assert len(markers) == len(report["tiers"])
        scale = (ticks[70.0] - ticks[0.0]) / 70.0
        for line, t in zip(markers, report["tiers"], strict=True):  # vertical, at the answer
            assert line.get("x1") == line.get("x2")
            assert float(line.get("x1")) == pytest.approx(ticks[0.0] + scale * t["max_agents"], abs=0.1)
        dashed = [line for line in root.iter(f"{ns}line") if line.get("stroke-dasharray") == "6,4"]
        assert len(dashed) == 2 * len(report["tiers"])  # each limit drawn, and its legend sample


def test_markdown_of_a_stored_report_without_run_facts_says_date_unknown(searched):
    text = markdown(searched)
    assert "- **Run date (UTC):** unknown" in text.splitlines()[:10]
    assert "date unknown" in charts(searched)["speed_vs_agents.svg"]


def test_a_report_written_beside_another_profiles_recording_takes_no_facts_from_it(searched, tmp_path):
    from agentperf_tui.report.search_report import write_report

    session = tmp_path / "other"
    session.mkdir()
    _record(session, searched)  # twin-h200's recording
    write_report({**searched, "profile": "h200", "twin": False}, session)
    saved = orjson.loads((session / "report.json").read_bytes())
    assert "run" not in saved
    assert "- **Run date (UTC):** unknown" in (session / "report.md").read_text()
