"""Profile -> the exact argv of every process to launch (local, srun or ssh), and its printable form.

Placeholders (see agentperf_tui/profile.py) are substituted one argv element at a time; no
command line is ever joined into a shell string and run locally. The one place where quoting
happens is the ssh launcher: ssh itself sends its command to the remote user's shell as one
string, so every remote element is passed through :func:`shlex.quote` first and the remote shell
splits it back into exactly the argv we built (``ssh [ssh_args] NODE -- env K=V ... ARGV``).

srun carries the environment in ``--export=ALL,K=V,...`` (values cannot contain commas; the
profile loader refuses them) and runs the argv directly, without a shell.

Flag spellings follow the SGLang version the workers run (the profile's ``sglang_version``, else
the sglang installed beside this interpreter): where that version has ``--attn-dp-size``, the
deprecated ``--dp N --enable-dp-attention`` pair is written ``--attn-dp-size N`` (SGLang 0.5.23
resolves the old pair to exactly that and plans to remove it after 2026-12-31).

A ``{port}``/``{dcgm_port}`` of 0 means "a free port chosen at launch": the supervisor passes
the chosen ports in; a plan printed without them keeps the placeholder and says so.
"""

from __future__ import annotations

import importlib.metadata
import re
import shlex
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agentperf_tui.profile import PLACEHOLDER_RE, ProcessSpec, Profile

LIST_PLACEHOLDERS = ("prefill_urls", "decode_urls")
# Anywhere in an env var name (HF_TOKEN, NGROK_AUTHTOKEN, PRIVATEKEY, DB_PASS...) - except the
# plural TOKENS: SGLANG_..._NUM_MAX_TOKENS_PER_RANK is a capacity, which the plan must show.
# Masking too much is safe; too little is not.
SECRET_RE = re.compile(r"KEY|TOKEN(?!S)|SECRET|PASSW|(^|_)PASS($|_)", re.IGNORECASE)
# Flags are matched on their last word only: --api-key, --hf-token (not --speculative-num-draft-tokens).
SECRET_FLAG_RE = re.compile(r"(^|[-_])(key|token|secret|password)$", re.IGNORECASE)
MASK = "***"


@dataclass
class LaunchCommand:
    """One process exactly as it will be executed: ``argv[0]`` is the program (python, srun, ssh)."""

    name: str
    role: str
    node: str
    env: dict[str, str]  # added to the supervisor's environment (srun/ssh also carry it in argv)
    argv: list[str]
    launcher: str = "local"
    display_argv: list[str] = field(default_factory=list)  # argv with secrets masked
    display_env: dict[str, str] = field(default_factory=dict)  # env shown before a local argv, masked


def is_secret(name: str) -> bool:
    """An env var name whose value must never be printed (KEY/TOKEN/SECRET/PASSW in it; not TOKENS)."""
    return bool(SECRET_RE.search(name))


def is_secret_flag(flag: str) -> bool:
    """A command-line flag whose value must never be printed (--api-key, --hf-token, ...)."""
    return bool(SECRET_FLAG_RE.search(flag))


def connect_host(host: str) -> str:
    """The address to connect to for a bind address (0.0.0.0 / :: / empty -> loopback)."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::", "[::]") else host


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Replace the known ``{name}`` placeholders present in ``values``; leave anything else as is."""
    return PLACEHOLDER_RE.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def expand_argv(argv: Iterable[str], values: Mapping[str, str], lists: Mapping[str, list[str]]) -> list[str]:
    """Substitute placeholders per element.

    An element that is exactly ``{prefill_urls}``/``{decode_urls}`` becomes one element per URL;
    if the element before it is a flag (``--prefill``), the flag is repeated before each URL
    (sglang_router: ``--prefill URL [BOOTSTRAP_PORT]`` once per worker). Inside a longer element
    the URLs are joined with commas.
    """
    out: list[str] = []
    for element in argv:
        m = PLACEHOLDER_RE.fullmatch(element)
        if m and m.group(1) in lists:
            urls = lists[m.group(1)]
            flag = out[-1] if out and out[-1].startswith("-") else None
            if flag is not None:
                out.pop()
                for url in urls:
                    out += [flag, url]
            else:
                out += urls
            continue
        joined = {k: ",".join(v) for k, v in lists.items()}
        out.append(substitute(element, {**values, **joined}))
    return out


def mask_argv(argv: list[str]) -> list[str]:
    """Mask values of secret-looking flags (``--api-key X``, ``--api-key=X``)."""
    out: list[str] = []
    for i, a in enumerate(argv):
        if i and argv[i - 1].startswith("--") and "=" not in argv[i - 1] and is_secret_flag(argv[i - 1]):
            out.append(MASK)
        elif a.startswith("--") and "=" in a and is_secret_flag(a.split("=", 1)[0]):
            out.append(a.split("=", 1)[0] + "=" + MASK)
        else:
            out.append(a)
    return out


def mask_env(env: Mapping[str, str]) -> dict[str, str]:
    return {k: (MASK if is_secret(k) else v) for k, v in env.items()}


def worker_urls(profile: Profile, role: str, host: str) -> list[str]:
    """URLs of the workers of ``role`` that have a port (a multi-node worker lists only rank 0)."""
    return [
        f"http://{p.url_host or connect_host(host)}:{p.port}"
        for p in profile.processes
        if p.role == role and p.port
    ]


def wrap(proc: ProcessSpec, argv: list[str], env: Mapping[str, str]) -> list[str]:
    """The launcher's argv around the process argv."""
    if proc.launcher == "srun":
        export = ",".join(["ALL", *(f"{k}={v}" for k, v in env.items())])
        return [
            "srun",
            *proc.srun_args,
            f"--nodelist={proc.node}",
            f"--job-name=agentperf-{proc.name}",
            f"--export={export}",
            *argv,
        ]
    if proc.launcher == "ssh":
        # The only quoting in the project: ssh hands its command to the remote shell as a string.
        remote = ["env", *(f"{k}={v}" for k, v in env.items()), *argv]
        return ["ssh", *proc.ssh_args, proc.node, "--", *(shlex.quote(a) for a in remote)]
    return list(argv)


DP_FLAGS = ("--dp", "--dp-size", "--data-parallel-size")


def is_sglang_server(argv: list[str]) -> bool:
    """``python -m sglang.launch_server ...`` or ``sglang serve ...`` (not the twin, not a router)."""
    return "sglang.launch_server" in argv[:4] or (len(argv) > 1 and Path(argv[0]).name == "sglang"
                                                  and argv[1] == "serve")


def attn_dp_spelling(argv: list[str]) -> list[str]:
    """``--dp N ... --enable-dp-attention`` -> ``--attn-dp-size N`` (SGLang's own resolution:
    parallel_hook.handle_deprecated_dp_attention moves N to attn_dp_size and sets dp_size 1)."""
    if "--enable-dp-attention" not in argv:
        return argv
    out = list(argv)
    size = "1"
    for i, arg in enumerate(out):
        if arg in DP_FLAGS and i + 1 < len(out):
            size = out[i + 1]
            del out[i:i + 2]
            break
        if arg.split("=", 1)[0] in DP_FLAGS and "=" in arg:
            size = arg.split("=", 1)[1]
            del out[i]
            break
    i = out.index("--enable-dp-attention")
    out[i:i + 1] = ["--attn-dp-size", size]
    return out


def cuda_graph_spelling(argv: list[str]) -> list[str]:
    """``--cuda-graph-max-bs N`` -> ``--cuda-graph-max-bs-decode N`` (0.5.23 split the flag by phase;
    the short form became an ambiguous prefix that argparse refuses)."""
    return ["--cuda-graph-max-bs-decode" if a == "--cuda-graph-max-bs" else a for a in argv]


def respell(argv: list[str], flags: set[str]) -> list[str]:
    """The recipes' spellings, rewritten to what the SGLang version with option strings ``flags`` takes."""
    if "--attn-dp-size" in flags:
        argv = attn_dp_spelling(argv)
    if "--cuda-graph-max-bs" not in flags and "--cuda-graph-max-bs-decode" in flags:
        argv = cuda_graph_spelling(argv)
    return argv


def sglang_version(profile: Profile, python: str = sys.executable) -> str:
    """The SGLang version the profile's workers run: the profile's ``sglang_version``, else the
    sglang installed for this interpreter when the workers run under it, else "" (unknown)."""
    if profile.server.sglang_version:
        return profile.server.sglang_version
    local = [p for p in profile.processes if p.launcher == "local" and is_sglang_server(p.argv)
             and p.argv[:1] == ["{python}"]]  # run by this interpreter: its installed sglang is theirs
    if local and python == sys.executable:
        try:
            return importlib.metadata.version("sglang")
        except importlib.metadata.PackageNotFoundError:
            return ""
    return ""


def sglang_flags(version: str) -> set[str] | None:
    """The option strings that SGLang version accepts (nearest conformance data), or None if unknown."""
    if not version:
        return None
    from agentperf_tui.server import conformance

    data = conformance.load_nearest("sglang", version)
    return conformance.flag_names(data) if data is not None else None


def build_launch_plan(
    profile: Profile,
    *,
    python: str = sys.executable,
    host: str | None = None,
    port: int | None = None,
    dcgm_port: int | None = None,
    sglang_version_override: str | None = None,
) -> list[LaunchCommand]:
    """Every process of the profile as a LaunchCommand, in profile order (workers before the router).

    ``port``/``dcgm_port`` override the profile's; a 0 left unresolved stays ``{port}`` in the plan.
    SGLang workers' flags are spelled for ``sglang_version_override`` or :func:`sglang_version`.
    """
    server = profile.server
    host = server.host if host is None else host
    port = server.port if port is None else port
    dcgm_port = server.dcgm_port if dcgm_port is None else dcgm_port
    common = {"python": python, "host": host, "model": server.model}
    if port:
        common["port"] = str(port)
    if dcgm_port:
        common["dcgm_port"] = str(dcgm_port)
    lists = {
        "prefill_urls": worker_urls(profile, "prefill", host),
        "decode_urls": worker_urls(profile, "decode", host),
    }
    flags = sglang_flags(sglang_version_override or sglang_version(profile, python))
    plan = []
    for proc in profile.processes:
        values = {**common, "node": proc.node or "localhost"}
        argv = expand_argv(proc.argv, values, lists)
        if flags is not None and is_sglang_server(argv):
            argv = respell(argv, flags)
        env = dict(proc.env)
        shown_argv = mask_argv(argv)
        shown_env = mask_env(env)
        plan.append(
            LaunchCommand(
                name=proc.name,
                role=proc.role,
                node=proc.node or "localhost",
                env=env,
                argv=wrap(proc, argv, env),
                launcher=proc.launcher,
                display_argv=wrap(proc, shown_argv, shown_env),
                display_env=shown_env if proc.launcher == "local" else {},
            )
        )
    return plan


def format_launch_plan(commands: Iterable[LaunchCommand]) -> str:
    """Two lines per command: ``# name (role) on node`` and ``K=V ... argv`` shell-quoted, secrets masked.

    The second line is what a person could paste into a shell to run the same thing (with the
    masked secrets filled in); the supervisor never runs it through a shell.
    """
    lines: list[str] = []
    unresolved: set[str] = set()
    for c in commands:
        lines.append(f"# {c.name} ({c.role}) on {c.node}")
        shown = c.display_argv or c.argv
        for a in shown:
            unresolved.update(
                m.group(1) for m in PLACEHOLDER_RE.finditer(a) if m.group(1) in ("port", "dcgm_port")
            )
        prefix = "".join(f"{k}={shlex.quote(v)} " for k, v in c.display_env.items())
        lines.append(prefix + shlex.join(shown))
    if unresolved:
        names = "/".join("{" + n + "}" for n in sorted(unresolved, reverse=True))
        lines.append(f"# {names}: a free port is chosen at launch")
    return "\n".join(lines)
