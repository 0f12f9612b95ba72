"""Profiles: the shipped ones load, bare names resolve, and every mistake names the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentperf_tui.profile import (
    DEFAULT_TIERS,
    Profile,
    ProfileError,
    list_profiles,
    load_profile,
    parse_profile,
    profiles_dir,
)

SHIPPED = ["twin-h200", "twin-gb300-nvl72", "h200", "gb300-nvl72", "gb300-nvl72-ssh", "attach-example"]

MINIMAL = """
[profile]
name = "mini"
description = "one line"

[server]
[[server.processes]]
name = "srv"
argv = ["{python}", "-m", "x", "--port", "{port}"]
"""


def write(tmp_path: Path, text: str, name: str = "x.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profile_loads_by_bare_name(name: str) -> None:
    profile = load_profile(name)
    assert isinstance(profile, Profile)
    assert profile.path == (profiles_dir() / f"{name}.toml").resolve()
    assert profile.name == name
    assert profile.description and "\n" not in profile.description


def test_list_profiles_has_every_shipped_profile_with_description() -> None:
    rows = {name: (desc, path) for name, desc, path in list_profiles(profiles_dir())}
    assert set(SHIPPED) <= set(rows)
    assert all(not desc.startswith("(invalid") for desc, _ in rows.values())


def test_list_profiles_shows_an_invalid_file_instead_of_hiding_it(tmp_path: Path) -> None:
    write(tmp_path, MINIMAL, "good.toml")
    write(tmp_path, "[server\n", "bad.toml")
    rows = {name: desc for name, desc, _ in list_profiles(tmp_path)}
    assert rows["good"] == "one line"
    assert rows["bad"].startswith("(invalid:")


def test_load_by_path_and_defaults(tmp_path: Path) -> None:
    profile = load_profile(write(tmp_path, MINIMAL))
    s = profile.server
    assert (s.mode, s.url, s.host, s.port, s.dcgm_port) == (
        "launch",
        "http://{host}:{port}",
        "127.0.0.1",
        0,
        0,
    )
    assert (
        s.model == "deepseek-ai/DeepSeek-V4-Pro" and s.ready_timeout_s == 900.0 and s.stop_timeout_s == 10.0
    )
    assert profile.processes[0].argv == ("{python}", "-m", "x", "--port", "{port}")
    assert profile.processes[0].role == "server" and profile.processes[0].launcher == "local"
    assert profile.tiers == DEFAULT_TIERS
    assert [(t.name, t.output_tps, t.ttft_s) for t in DEFAULT_TIERS] == [
        ("tier1", 20.0, 10.0),
        ("tier2", 60.0, 5.0),
        ("tier3", 180.0, 3.0),
    ]
    assert profile.workload.source == "synthetic" and profile.workload.policy == "exact"
    assert (profile.workload.seed, profile.workload.trajectories, profile.workload.salt) == (1, 64, True)
    assert profile.telemetry.power_boundary == "gpu" and profile.telemetry.nvml is True
    r = profile.run
    assert (r.agents, r.duration_s, r.ramp_s, r.frame_hz) == (8, 60.0, 5.0, 4.0)
    assert (r.request_timeout_s, r.first_byte_timeout_s, r.chunk_timeout_s) == (600.0, 300.0, 60.0)


def test_profile_is_frozen(tmp_path: Path) -> None:
    profile = load_profile(write(tmp_path, MINIMAL))
    with pytest.raises(AttributeError):
        profile.name = "other"  # type: ignore[misc]


def test_relative_workload_resolves_against_profile_dir(tmp_path: Path) -> None:
    profile = load_profile(write(tmp_path, MINIMAL + '\n[workload]\nsource = "traces/a.jsonl"\n'))
    assert profile.workload_path == tmp_path.resolve() / "traces" / "a.jsonl"


def test_custom_tiers_replace_defaults(tmp_path: Path) -> None:
    text = MINIMAL + '\n[[tiers]]\nname = "fast"\noutput_tps = 100\nttft_s = 2.5\n'
    assert [(t.name, t.output_tps, t.ttft_s) for t in load_profile(write(tmp_path, text)).tiers] == [
        ("fast", 100.0, 2.5)
    ]


def test_bad_toml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[profile]\nname = "a"\ndescription = \n')
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: invalid TOML")
    assert "line 3" in msg


def test_wrong_type_names_file_and_key(tmp_path: Path) -> None:
    text = MINIMAL + '\n[[server.processes]]\nname = "two"\nargv = "python -m x"\n'
    path = write(tmp_path, text)
    with pytest.raises(
        ProfileError, match=r"^.*x\.toml: server\.processes\[1\]\.argv: expected a list of strings$"
    ):
        load_profile(path)


def test_error_shows_profile_path_relative_to_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the message format of the brief: "profiles/x.toml: server.processes[1].argv: ..."
    import agentperf_tui.profile as profile_module

    (tmp_path / "profiles").mkdir()
    write(tmp_path / "profiles", MINIMAL + '\n[[server.processes]]\nname = "two"\nargv = [1]\n')
    monkeypatch.setattr(profile_module, "profiles_dir", lambda: tmp_path / "profiles")
    with pytest.raises(ProfileError) as err:
        load_profile("x")
    assert str(err.value) == "profiles/x.toml: server.processes[1].argv: expected a list of strings"


@pytest.mark.parametrize(
    ("snippet", "key", "message"),
    [
        ('[run]\nagents = "8"\n', "run.agents", "expected an integer"),
        ("[run]\nagents = 0\n", "run.agents", "expected >= 1"),
        ("[run]\nduration_s = -1\n", "run.duration_s", "expected > 0"),
        ("[telemetry]\nnvml = 1\n", "telemetry.nvml", "expected true or false"),
        (
            '[telemetry]\npower_boundary = "wall"\n',
            "telemetry.power_boundary",
            "expected one of 'gpu', 'node', 'rack'",
        ),
        ('[workload]\npolicy = "loose"\n', "workload.policy", "expected one of"),
        ('[[tiers]]\nname = "t"\noutput_tps = 0\nttft_s = 1\n', "tiers[0].output_tps", "expected > 0"),
        ('[telemetry]\ndcgm_urls = "http://x"\n', "telemetry.dcgm_urls", "expected a list of strings"),
        ('[telemetry]\npower_boundary = "node"\n', "telemetry.node_power_urls", "required with power_boundary = 'node'"),
        ('[telemetry]\npower_boundary = "rack"\n', "telemetry.rack_power_urls", "required with power_boundary = 'rack'"),
        ('[telemetry]\nredfish_user_env = "admin:secret"\nredfish_password_env = "P"\n',
         "telemetry.redfish_user_env", "expected the NAME of an environment variable"),
        ('[telemetry]\nsglang_metrics_urls = [[]]\n', "telemetry.sglang_metrics_urls[0]",
         "expected a URL or a non-empty list of URLs"),
        ('[telemetry]\nsglang_metrics_urls = ["tray01:30001/metrics"]\n', "telemetry.sglang_metrics_urls[0]",
         "'tray01:30001/metrics' is not an http(s) URL"),
        ('[telemetry]\nsglang_metrics = false\nsglang_metrics_urls = ["http://a/metrics"]\n',
         "telemetry.sglang_metrics_urls", "given with sglang_metrics = false"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, snippet: str, key: str, message: str) -> None:
    with pytest.raises(ProfileError) as err:
        load_profile(write(tmp_path, MINIMAL + "\n" + snippet))
    assert f"x.toml: {key}: {message}" in str(err.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MINIMAL + "\n[run]\nagnets = 3\n", "unknown key run.agnets"),
        (
            MINIMAL.replace('name = "srv"', 'name = "srv"\nlauncer = "srun"'),
            "unknown key server.processes[0].launcer",
        ),
        (MINIMAL + "\n[extra]\na = 1\n", "unknown key extra"),
        (MINIMAL.replace("[server]", '[server]\nmodle = "m"'), "unknown key server.modle"),
    ],
)
def test_unknown_keys_are_errors_naming_them(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ProfileError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        load_profile(write(tmp_path, text))


def test_attach_requires_url_and_no_processes(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"server\.url: required with mode = 'attach'"):
        load_profile(write(tmp_path, '[server]\nmode = "attach"\n'))
    with pytest.raises(ProfileError, match=r"server\.processes: mode = 'attach' launches nothing"):
        load_profile(
            write(tmp_path, MINIMAL.replace("[server]", '[server]\nmode = "attach"\nurl = "http://h:1"'))
        )


def test_launch_requires_a_front_process(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"server\.processes: mode = 'launch' needs"):
        load_profile(write(tmp_path, "[server]\n"))
    with pytest.raises(ProfileError, match="front door"):
        load_profile(write(tmp_path, MINIMAL.replace('name = "srv"', 'name = "srv"\nrole = "prefill"')))


def test_unknown_placeholder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(
        ProfileError, match=r"server\.processes\[0\]\.argv\[4\]: unknown placeholder \{prot\}"
    ):
        load_profile(write(tmp_path, MINIMAL.replace('"{port}"]', '"{prot}"]')))


def test_json_braces_in_argv_are_not_placeholders(tmp_path: Path) -> None:
    text = MINIMAL.replace('"{port}"]', '"{port}", "--json-model-override-args", \'{"a": 1}\']')
    assert load_profile(write(tmp_path, text)).processes[0].argv[-1] == '{"a": 1}'


def test_api_key_env_must_be_a_variable_name(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"server\.api_key_env: expected the NAME"):
        load_profile(write(tmp_path, MINIMAL.replace("[server]", '[server]\napi_key_env = "sk-abc123!"')))


def test_remote_launcher_needs_node_and_srun_env_has_no_commas(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"server\.processes\[0\]\.node: required with launcher = 'srun'"):
        load_profile(write(tmp_path, MINIMAL.replace('name = "srv"', 'name = "srv"\nlauncher = "srun"')))
    text = MINIMAL.replace(
        'name = "srv"', 'name = "srv"\nlauncher = "srun"\nnode = "n1"\nenv = { A = "x,y" }'
    )
    with pytest.raises(ProfileError, match=r"server\.processes\[0\]\.env\.A: srun --export cannot carry"):
        load_profile(write(tmp_path, text))


def test_duplicate_process_names_rejected(tmp_path: Path) -> None:
    text = MINIMAL + '\n[[server.processes]]\nname = "srv"\nargv = ["x"]\n'
    with pytest.raises(ProfileError, match=r"server\.processes\[1\]\.name: duplicate process name 'srv'"):
        load_profile(write(tmp_path, text))


def test_missing_profile_lists_available() -> None:
    with pytest.raises(
        ProfileError, match=r"no-such-profile\.toml: no such profile \(available: .*twin-h200"
    ):
        load_profile("no-such-profile")


def test_parse_profile_from_text() -> None:
    profile = parse_profile(MINIMAL, where="inline")
    assert profile.path is None and profile.name == "mini"


def test_gb300_split_uses_all_72_gpus_on_18_distinct_trays() -> None:
    for name in ("gb300-nvl72", "gb300-nvl72-ssh"):
        profile = load_profile(name)
        assert profile.server.gpus == 72
        workers = [p for p in profile.processes if p.role in ("prefill", "decode")]
        nodes = [p.node for p in workers]
        assert sorted(nodes) == [f"tray{i:02d}" for i in range(1, 19)]  # one process per tray, 4 GPUs each
        prefill = [p for p in workers if p.role == "prefill"]
        decode_rank0 = [p for p in workers if p.role == "decode" and p.port]
        assert len(prefill) == 8 and all(
            "--tp" in p.argv and p.argv[p.argv.index("--tp") + 1] == "4" for p in prefill
        )
        assert len(decode_rank0) == 5
        ports = [p.port for p in prefill + decode_rank0]
        assert len(set(ports)) == len(ports)
        for p in workers:
            assert p.env["NCCL_MNNVL_ENABLE"] == "1" and p.env["MC_FORCE_MNNVL"] == "1"
            assert p.env["NCCL_CUMEM_ENABLE"] == "1" and p.env["SGLANG_MOONCAKE_CUSTOM_MEM_POOL"] == "True"
            assert "SGLANG_ENABLE_SPEC_V2" not in p.env  # SGLang 0.5.23 no longer reads it
            if p.role == "decode":
                a = p.argv
                assert a[a.index("--nnodes") + 1] == "2"
                assert a[a.index("--tp") + 1] == "8"
        # both ranks of a decode worker agree on --dist-init-addr (rank 0's tray)
        by_addr: dict[str, list[str]] = {}
        for p in workers:
            if p.role == "decode":
                by_addr.setdefault(p.argv[p.argv.index("--dist-init-addr") + 1], []).append(
                    p.argv[p.argv.index("--node-rank") + 1]
                )
        assert len(by_addr) == 5 and all(sorted(r) == ["0", "1"] for r in by_addr.values())
        assert len(profile.telemetry.dcgm_urls) == 18
        # every worker's metrics: 8 prefill + 5 decode workers, each decode worker's two node-ranks
        urls = profile.telemetry.sglang_metrics_urls
        assert [len(u) for u in urls] == [1] * 8 + [2] * 5
        assert sorted(u.split("//")[1].split(":")[0] for w in urls for u in w) == sorted(nodes)


def test_metrics_urls_one_entry_per_worker(tmp_path: Path) -> None:
    text = MINIMAL + ('\n[telemetry]\nsglang_metrics_urls = ["http://tray01:30001/metrics", '
                      '["http://tray09:30011/metrics", "http://tray10:30011/metrics"]]\n')
    profile = load_profile(write(tmp_path, text))
    assert profile.telemetry.sglang_metrics_urls == (
        ("http://tray01:30001/metrics",), ("http://tray09:30011/metrics", "http://tray10:30011/metrics"))
