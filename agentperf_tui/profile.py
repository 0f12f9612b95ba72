"""TOML profile -> frozen dataclasses: what to launch or attach to, the workload, tiers, telemetry, run.

A profile is one TOML file (``profiles/<name>.toml``). Every table and key is checked: a wrong
type, an unknown key (a typo) or a bad value raises :class:`ProfileError` naming the file and the
key, e.g. ``profiles/x.toml: server.processes[1].argv: expected a list of strings``.

Placeholders in ``argv`` elements and telemetry URLs (substituted by server/launch_plan.py, one
argv element at a time, never through a shell):

- ``{python}``       the interpreter running agentperf-tui (local processes)
- ``{host}`` ``{port}``  the server's front door ([server] host/port; port 0 = a free port at launch)
- ``{dcgm_port}``    [server] dcgm_port (0 = a free port at launch)
- ``{model}``        [server] model
- ``{node}``         the process's own ``node``
- ``{prefill_urls}`` ``{decode_urls}``  URLs of the prefill/decode workers that have a ``port``
  (``http://<host or node>:<port>``). As a whole argv element it expands to one element per URL,
  and when the element before it is a flag (``--prefill``) the flag is repeated before each URL,
  because sglang_router takes ``--prefill URL [BOOTSTRAP_PORT]`` once per worker. Inside a
  longer element the URLs are joined with commas.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

PLACEHOLDERS = frozenset(
    {"python", "host", "port", "dcgm_port", "model", "node", "prefill_urls", "decode_urls"}
)
PLACEHOLDER_RE = re.compile(r"\{([a-z_]+)\}")
DEFAULT_MODEL = "deepseek-ai/DeepSeek-V4-Pro"
ROLES = ("server", "prefill", "decode", "router")
LAUNCHERS = ("local", "srun", "ssh")
MODES = ("launch", "attach")
POLICIES = ("exact", "free")
BOUNDARIES = ("gpu", "node", "rack")


#: AA's standard sampling preset (aa-agentperf-local replay/config.py STANDARD_*), sent by default.
STANDARD_SAMPLING = {"temperature": 0.7, "top_p": 0.8, "top_k": 20, "min_p": 0.0}
SAMPLING_PRESETS = ("standard", "custom", "server")

#: Headers the client sets on every request itself (a routing key header may not be one of them).
RESERVED_HEADERS = frozenset({"content-type", "authorization", "x-request-id", "content-length", "host"})
#: Where an attached server's API key is looked for when the profile names no variable, in order.
API_KEY_FALLBACK_ENVS = ("SGLANG_API_KEY", "OPENAI_API_KEY")


def server_root(url: str) -> str:
    """The server's root URL: a trailing slash and an OpenAI-style ``/v1`` suffix removed.

    ``http://host:30000/v1`` (how OpenAI clients, the SGLang cookbook and AIPerf spell a base URL)
    and ``http://host:30000/`` both become ``http://host:30000``; the client adds
    ``/v1/chat/completions`` and the probes ``/health_generate``, ``/metrics``.
    """
    root = url.strip().rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


def attached(profile: Profile, url: str, *, model: str | None = None, api_key_env: str | None = None,
             ready_timeout_s: float | None = None) -> Profile:
    """``profile`` pointed at a server that already runs at ``url``: nothing is launched.

    The profile's workload, tiers, run settings and power boundary are kept; telemetry URLs that
    name a launched process (``{host}``, ``{port}``, ``{dcgm_port}``) are dropped, and SGLang's
    metrics are read from ``url``'s ``/metrics``. Raises ProfileError for a URL that is not http(s).
    """
    where = "--url"
    if not re.match(r"https?://[^/\s]+", url.strip()):
        raise ProfileError(f"{where}: expected an http:// or https:// URL (a server root or its /v1), got {url!r}")
    if api_key_env and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", api_key_env):
        raise ProfileError(f"--api-key-env: expected the NAME of an environment variable holding the key, "
                           f"not the key ({len(api_key_env)} characters given)")
    server = replace(profile.server, mode="attach", url=server_root(url), processes=(),
                     model=model or profile.server.model,
                     api_key_env=profile.server.api_key_env if api_key_env is None else api_key_env,
                     ready_timeout_s=ready_timeout_s or (profile.server.ready_timeout_s
                                                         if profile.server.mode == "attach" else 60.0))
    t = profile.telemetry

    def fixed(urls: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(u for u in urls if "{" not in u)

    telemetry = replace(t, dcgm_urls=fixed(t.dcgm_urls), node_power_urls=fixed(t.node_power_urls),
                        rack_power_urls=fixed(t.rack_power_urls),
                        sglang_metrics_urls=tuple(w for w in t.sglang_metrics_urls if not any("{" in u for u in w)))
    return replace(profile, server=server, telemetry=telemetry)


class ProfileError(ValueError):
    """A profile that cannot be used; the message names the file and the key."""


def profiles_dir() -> Path:
    """The repository's profiles/ folder (next to the agentperf_tui package)."""
    return Path(__file__).resolve().parent.parent / "profiles"


@dataclass(frozen=True)
class Tier:
    """One SLO tier: P25 output speed >= output_tps and P95 TTFT <= ttft_s."""

    name: str
    output_tps: float
    ttft_s: float


# AA-AgentPerf tiers for DeepSeek V4 Pro (REFERENCE §1).
DEFAULT_TIERS = (Tier("tier1", 20.0, 10.0), Tier("tier2", 60.0, 5.0), Tier("tier3", 180.0, 3.0))


@dataclass(frozen=True)
class ProcessSpec:
    """One process to launch: a single server, a prefill/decode worker (or one node-rank of it), a router."""

    name: str
    role: str = "server"
    launcher: str = "local"
    argv: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    node: str = ""
    srun_args: tuple[str, ...] = ()
    ssh_args: tuple[str, ...] = ()
    port: int = 0  # the worker's own HTTP port; 0 = not listed in {prefill_urls}/{decode_urls}
    host: str = ""  # address to reach the worker at; default: node, else [server] host

    @property
    def url_host(self) -> str:
        return self.host or self.node


@dataclass(frozen=True)
class ServerSpec:
    mode: str = "launch"
    url: str = "http://{host}:{port}"
    host: str = "127.0.0.1"
    port: int = 0
    dcgm_port: int = 0
    model: str = DEFAULT_MODEL
    gpus: int = 8
    ready_timeout_s: float = 900.0
    #: The SGLang version the workers run (e.g. "0.5.23"): picks flag spellings in the launch plan
    #: and is what the conformance tests check the argv against. Empty: detected where it can be
    #: (the sglang installed beside this interpreter), else the argv is used as written.
    sglang_version: str = ""
    api_key_env: str = ""
    stop_timeout_s: float = 10.0
    processes: tuple[ProcessSpec, ...] = ()
    #: The header that carries each agent's trajectory instance (one value per conversation) for a
    #: session-affine router: X-Correlation-ID (NVIDIA's agentic recipes' nginx), or e.g.
    #: X-Session-ID (smg --routing-key-headers). Every request also carries X-Request-Id.
    routing_key_header: str = "X-Correlation-ID"


@dataclass(frozen=True)
class WorkloadSpec:
    source: str = "synthetic"
    policy: str = "exact"
    seed: int = 1
    trajectories: int = 64
    salt: bool = True
    #: "standard": AA's preset (temperature 0.7, top_p 0.8, top_k 20, min_p 0; replay/config.py),
    #: any value given below overriding it; "custom": only the values given; "server": none sent
    sampling: str = "standard"
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    reasoning_effort: str = ""  # e.g. "max" (MLPerf's DeepSeek-V4-Pro setting); empty: not sent

    def request_settings(self) -> dict[str, Any]:
        """What goes into every request body beside the messages (recorded in every summary)."""
        if self.sampling == "server":
            return {"reasoning_effort": self.reasoning_effort} if self.reasoning_effort else {}
        values: dict[str, Any] = dict(STANDARD_SAMPLING) if self.sampling == "standard" else {}
        for key in ("temperature", "top_p", "top_k", "min_p"):
            if getattr(self, key) is not None:
                values[key] = getattr(self, key)
        if self.reasoning_effort:
            values["reasoning_effort"] = self.reasoning_effort
        return values


@dataclass(frozen=True)
class TelemetrySpec:
    nvml: bool = True
    dcgm_urls: tuple[str, ...] = ()
    sglang_metrics: bool = True
    #: Every serving process's /metrics, one entry per worker: a URL, or the list of URLs of one
    #: multi-node worker's nodes (rank 0 and rank >= 1 each serve /metrics). Empty: the server's
    #: own base URL + /metrics. An aggregating gateway's /engine_metrics is one entry.
    sglang_metrics_urls: tuple[tuple[str, ...], ...] = ()
    power_boundary: str = "gpu"
    node_power_urls: tuple[str, ...] = ()
    rack_power_urls: tuple[str, ...] = ()
    redfish_user_env: str = ""  # NAMES of environment variables holding BMC credentials
    redfish_password_env: str = ""


@dataclass(frozen=True)
class RunSpec:
    agents: int = 8
    duration_s: float = 60.0
    ramp_s: float = 5.0
    frame_hz: float = 4.0
    request_timeout_s: float = 600.0
    first_byte_timeout_s: float = 300.0
    chunk_timeout_s: float = 60.0


@dataclass(frozen=True)
class TuneKnob:
    """One server setting the operator may change ([tune]): an SGLang flag, the workers it applies
    to (roles) and its candidate values (strings, as they go into argv)."""

    key: str  # as written in [tune]: "max-running-requests" or "decode:max-running-requests"
    flag: str  # "--max-running-requests"
    roles: tuple[str, ...]  # the processes whose argv it edits
    values: tuple[str, ...]


@dataclass(frozen=True)
class Profile:
    path: Path | None
    name: str
    description: str
    server: ServerSpec
    workload: WorkloadSpec
    tiers: tuple[Tier, ...]
    telemetry: TelemetrySpec
    run: RunSpec
    tune: tuple[TuneKnob, ...] = ()

    @property
    def processes(self) -> tuple[ProcessSpec, ...]:
        return self.server.processes

    @property
    def workload_path(self) -> Path | None:
        """The workload file, resolved against the profile's folder; None for synthetic."""
        if self.workload.source in ("", "synthetic"):
            return None
        p = Path(self.workload.source).expanduser()
        if not p.is_absolute() and self.path is not None:
            p = self.path.parent / p
        return p


# --------------------------------------------------------------------------------------------
# Checked reading of one table


class _Table:
    """Typed access to one TOML table; every key read is remembered so leftovers are errors."""

    def __init__(self, where: str, key: str, data: Any):
        self.where, self.key = where, key
        if not isinstance(data, dict):
            raise self.error("", "expected a table")
        self.data: dict[str, Any] = data
        self.seen: set[str] = set()

    def error(self, key: str, message: str) -> ProfileError:
        full = f"{self.key}.{key}" if self.key and key else (self.key or key)
        return ProfileError(f"{self.where}: {full}: {message}")

    def _get(self, key: str, default: Any) -> tuple[bool, Any]:
        self.seen.add(key)
        if key in self.data:
            return True, self.data[key]
        return False, default

    def text(self, key: str, default: str | None = None, choices: tuple[str, ...] = ()) -> str:
        present, v = self._get(key, default)
        if not present and default is None:
            raise self.error(key, "required")
        if not isinstance(v, str):
            raise self.error(key, f"expected a string, got {_tname(v)}")
        if choices and v not in choices:
            raise self.error(key, f"expected one of {', '.join(repr(c) for c in choices)}, got {v!r}")
        return v

    def integer(self, key: str, default: int, minimum: int | None = None) -> int:
        _, v = self._get(key, default)
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.error(key, f"expected an integer, got {_tname(v)}")
        if minimum is not None and v < minimum:
            raise self.error(key, f"expected >= {minimum}, got {v}")
        return v

    def number(self, key: str, default: float, positive: bool = False, non_negative: bool = False) -> float:
        _, v = self._get(key, default)
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise self.error(key, f"expected a number, got {_tname(v)}")
        v = float(v)
        if not math.isfinite(v):
            raise self.error(key, f"expected a finite number, got {v}")
        if positive and v <= 0:
            raise self.error(key, f"expected > 0, got {v:g}")
        if non_negative and v < 0:
            raise self.error(key, f"expected >= 0, got {v:g}")
        return v

    def flag(self, key: str, default: bool) -> bool:
        _, v = self._get(key, default)
        if not isinstance(v, bool):
            raise self.error(key, f"expected true or false, got {_tname(v)}")
        return v

    def strlist(self, key: str) -> tuple[str, ...]:
        _, v = self._get(key, [])
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise self.error(key, "expected a list of strings")
        return tuple(v)

    def strmap(self, key: str) -> dict[str, str]:
        _, v = self._get(key, {})
        if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
            raise self.error(key, 'expected a table of strings (NAME = "value")')
        return dict(v)

    def tables(self, key: str) -> list[Any]:
        _, v = self._get(key, [])
        if not isinstance(v, list):
            raise self.error(key, "expected an array of tables ([[...]])")
        return v

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            prefix = f"{self.key}." if self.key else ""
            names = ", ".join(prefix + k for k in unknown)
            known = ", ".join(sorted(self.seen))
            raise ProfileError(
                f"{self.where}: unknown key{'s' if len(unknown) > 1 else ''} {names} (known: {known})"
            )


def _tname(v: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }.get(type(v), type(v).__name__)


def _check_placeholders(
    t: _Table, key: str, values: tuple[str, ...] | list[str], allowed=PLACEHOLDERS
) -> None:
    for i, value in enumerate(values):
        for m in PLACEHOLDER_RE.finditer(value):
            if m.group(1) not in allowed:
                raise t.error(
                    f"{key}[{i}]" if len(values) > 1 or key.endswith("argv") else key,
                    f"unknown placeholder {m.group(0)} (known: "
                    + ", ".join("{" + p + "}" for p in sorted(allowed))
                    + ")",
                )


# --------------------------------------------------------------------------------------------
# Sections


def _process(where: str, index: int, data: Any, names: set[str]) -> ProcessSpec:
    t = _Table(where, f"server.processes[{index}]", data)
    name = t.text("name")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise t.error(
            "name", f"expected letters, digits, '.', '_' or '-' (it names the log file), got {name!r}"
        )
    if name in names:
        raise t.error("name", f"duplicate process name {name!r}")
    names.add(name)
    role = t.text("role", "server", ROLES)
    launcher = t.text("launcher", "local", LAUNCHERS)
    argv = t.strlist("argv")
    if not argv:
        raise t.error("argv", "expected a non-empty list of strings")
    _check_placeholders(t, "argv", argv)
    env = t.strmap("env")
    for k in env:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
            raise t.error(f"env.{k}", "not a valid environment variable name")
        if launcher == "srun" and "," in env[k]:
            raise t.error(f"env.{k}", "srun --export cannot carry a value containing ','")
    node = t.text("node", "")
    srun_args = t.strlist("srun_args")
    ssh_args = t.strlist("ssh_args")
    port = t.integer("port", 0, minimum=0)
    host = t.text("host", "")
    t.finish()
    if launcher in ("srun", "ssh") and not node:
        raise t.error("node", f"required with launcher = {launcher!r}")
    if srun_args and launcher != "srun":
        raise t.error("srun_args", f"only used with launcher = 'srun' (this process uses {launcher!r})")
    if ssh_args and launcher != "ssh":
        raise t.error("ssh_args", f"only used with launcher = 'ssh' (this process uses {launcher!r})")
    if port > 65535:
        raise t.error("port", f"expected a TCP port (<= 65535), got {port}")
    return ProcessSpec(
        name=name,
        role=role,
        launcher=launcher,
        argv=argv,
        env=env,
        node=node,
        srun_args=srun_args,
        ssh_args=ssh_args,
        port=port,
        host=host,
    )


def _server(where: str, data: Any) -> ServerSpec:
    t = _Table(where, "server", data)
    mode = t.text("mode", "launch", MODES)
    url = t.text("url", "" if mode == "attach" else "http://{host}:{port}")
    host = t.text("host", "127.0.0.1")
    port = t.integer("port", 0, minimum=0)
    dcgm_port = t.integer("dcgm_port", 0, minimum=0)
    model = t.text("model", DEFAULT_MODEL)
    gpus = t.integer("gpus", 8, minimum=1)
    ready_timeout_s = t.number("ready_timeout_s", 900.0, positive=True)
    api_key_env = t.text("api_key_env", "")
    stop_timeout_s = t.number("stop_timeout_s", 10.0, positive=True)
    sglang_version = t.text("sglang_version", "")
    routing_key_header = t.text("routing_key_header", "X-Correlation-ID")
    raw_processes = t.tables("processes")
    t.finish()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]*", routing_key_header):
        raise t.error("routing_key_header", f"expected an HTTP header name such as 'X-Session-ID', got "
                                            f"{routing_key_header!r}")
    if routing_key_header.lower() in RESERVED_HEADERS:
        raise t.error("routing_key_header", f"{routing_key_header!r} is set by the client itself; pick another")
    if sglang_version and not re.fullmatch(r"\d+\.\d+(\.\d+)?([.\w-]*)", sglang_version):
        raise t.error("sglang_version", f"expected a version such as '0.5.23', got {sglang_version!r}")
    if api_key_env and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", api_key_env):
        raise t.error(
            "api_key_env", "expected the NAME of an environment variable holding the key, not the key"
        )
    for key, value in (("port", port), ("dcgm_port", dcgm_port)):
        if value > 65535:
            raise t.error(key, f"expected a TCP port (<= 65535), got {value}")
    if mode == "attach":
        if not url:
            raise t.error("url", "required with mode = 'attach'")
        if raw_processes:
            raise t.error("processes", "mode = 'attach' launches nothing; remove [[server.processes]]")
    if not re.match(r"https?://", url) and url:
        raise t.error("url", f"expected an http:// or https:// URL, got {url!r}")
    url = server_root(url)
    _check_placeholders(t, "url", [url], {"host", "port", "dcgm_port"})
    names: set[str] = set()
    processes = tuple(_process(where, i, p, names) for i, p in enumerate(raw_processes))
    if mode == "launch":
        if not processes:
            raise t.error("processes", "mode = 'launch' needs at least one [[server.processes]]")
        fronts = [p for p in processes if p.role in ("server", "router")]
        if not fronts:
            raise t.error("processes", "needs a process with role = 'server' or 'router' (the front door)")
    return ServerSpec(
        mode=mode,
        url=url,
        host=host,
        port=port,
        dcgm_port=dcgm_port,
        model=model,
        gpus=gpus,
        ready_timeout_s=ready_timeout_s,
        sglang_version=sglang_version,
        api_key_env=api_key_env,
        stop_timeout_s=stop_timeout_s,
        processes=processes,
        routing_key_header=routing_key_header,
    )


def _workload(where: str, data: Any) -> WorkloadSpec:
    t = _Table(where, "workload", data)

    def optional(key: str, kind: str) -> Any:
        if key not in t.data:
            t.seen.add(key)
            return None
        if kind == "int":
            value = t.integer(key, 0, minimum=1)
        else:
            value = t.number(key, 0.0, non_negative=True)
        if key in ("top_p", "min_p") and value > 1:
            raise t.error(key, f"expected a value in 0..1, got {value:g}")
        if key == "top_p" and value == 0:
            raise t.error(key, "expected > 0")
        return value

    w = WorkloadSpec(
        source=t.text("source", "synthetic"),
        policy=t.text("policy", "exact", POLICIES),
        seed=t.integer("seed", 1),
        trajectories=t.integer("trajectories", 64, minimum=1),
        salt=t.flag("salt", True),
        sampling=t.text("sampling", "standard", SAMPLING_PRESETS),
        temperature=optional("temperature", "float"),
        top_p=optional("top_p", "float"),
        top_k=optional("top_k", "int"),
        min_p=optional("min_p", "float"),
        reasoning_effort=t.text("reasoning_effort", ""),
    )
    t.finish()
    if not w.source:
        raise t.error("source", "expected 'synthetic' or a path")
    return w


def _tiers(where: str, data: Any) -> tuple[Tier, ...]:
    if not isinstance(data, list):
        raise ProfileError(f"{where}: tiers: expected an array of tables ([[tiers]])")
    if not data:
        return DEFAULT_TIERS
    tiers = []
    seen: set[str] = set()
    for i, raw in enumerate(data):
        t = _Table(where, f"tiers[{i}]", raw)
        tier = Tier(
            t.text("name"), t.number("output_tps", 0.0, positive=True), t.number("ttft_s", 0.0, positive=True)
        )
        t.finish()
        if tier.name in seen:
            raise t.error("name", f"duplicate tier name {tier.name!r}")
        seen.add(tier.name)
        tiers.append(tier)
    return tuple(tiers)


def _metrics_urls(t: _Table) -> tuple[tuple[str, ...], ...]:
    """``sglang_metrics_urls``: each entry a URL (one worker) or a list of URLs (one worker's nodes)."""
    _, raw = t._get("sglang_metrics_urls", [])
    if not isinstance(raw, list):
        raise t.error("sglang_metrics_urls", "expected a list of URLs (or of lists of URLs, one list per worker)")
    out = []
    for i, entry in enumerate(raw):
        urls = [entry] if isinstance(entry, str) else entry
        if not isinstance(urls, list) or not urls or not all(isinstance(u, str) and u for u in urls):
            raise t.error(f"sglang_metrics_urls[{i}]", "expected a URL or a non-empty list of URLs")
        for u in urls:
            if not u.startswith(("http://", "https://", "{")):
                raise t.error(f"sglang_metrics_urls[{i}]", f"{u!r} is not an http(s) URL")
        out.append(tuple(urls))
    return tuple(out)


def _telemetry(where: str, data: Any) -> TelemetrySpec:
    t = _Table(where, "telemetry", data)
    spec = TelemetrySpec(
        nvml=t.flag("nvml", True),
        dcgm_urls=t.strlist("dcgm_urls"),
        sglang_metrics=t.flag("sglang_metrics", True),
        sglang_metrics_urls=_metrics_urls(t),
        power_boundary=t.text("power_boundary", "gpu", BOUNDARIES),
        node_power_urls=t.strlist("node_power_urls"),
        rack_power_urls=t.strlist("rack_power_urls"),
        redfish_user_env=t.text("redfish_user_env", ""),
        redfish_password_env=t.text("redfish_password_env", ""),
    )
    t.finish()
    for key in ("dcgm_urls", "node_power_urls", "rack_power_urls"):
        _check_placeholders(t, key, getattr(spec, key), {"host", "port", "dcgm_port"})
    for i, urls in enumerate(spec.sglang_metrics_urls):
        _check_placeholders(t, f"sglang_metrics_urls[{i}]", urls, {"host", "port", "dcgm_port"})
    if spec.sglang_metrics_urls and not spec.sglang_metrics:
        raise t.error("sglang_metrics_urls", "given with sglang_metrics = false: remove one of them")
    for key in ("redfish_user_env", "redfish_password_env"):
        value = getattr(spec, key)
        if value and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            raise t.error(key, "expected the NAME of an environment variable holding the credential, not the value")
    if bool(spec.redfish_user_env) != bool(spec.redfish_password_env):
        raise t.error("redfish_password_env" if spec.redfish_user_env else "redfish_user_env",
                      "name both redfish_user_env and redfish_password_env, or neither")
    needed = {"node": "node_power_urls", "rack": "rack_power_urls"}.get(spec.power_boundary)
    if needed and not getattr(spec, needed):
        raise t.error(needed, f"required with power_boundary = {spec.power_boundary!r}: the {spec.power_boundary} "
                              "boundary is measured (a Redfish BMC or rack manager), never relabelled GPU power")
    return spec


def _run(where: str, data: Any) -> RunSpec:
    t = _Table(where, "run", data)
    spec = RunSpec(
        agents=t.integer("agents", 8, minimum=1),
        duration_s=t.number("duration_s", 60.0, positive=True),
        ramp_s=t.number("ramp_s", 5.0, non_negative=True),
        frame_hz=t.number("frame_hz", 4.0, positive=True),
        request_timeout_s=t.number("request_timeout_s", 600.0, positive=True),
        first_byte_timeout_s=t.number("first_byte_timeout_s", 300.0, positive=True),
        chunk_timeout_s=t.number("chunk_timeout_s", 60.0, positive=True),
    )
    t.finish()
    return spec


# --------------------------------------------------------------------------------------------
# Public API


def resolve_profile_path(path_or_name: str | Path) -> Path:
    """A bare name ("twin-h200") means profiles/<name>.toml; anything else is a path."""
    p = Path(path_or_name).expanduser()
    text = str(path_or_name)
    if p.suffix != ".toml" and "/" not in text and "\\" not in text:
        candidate = profiles_dir() / f"{text}.toml"
        if candidate.is_file() or not p.exists():
            return candidate
    return p


def _display(path: Path) -> str:
    """The path as written in messages: relative to the repository when inside it."""
    try:
        return str(path.resolve().relative_to(profiles_dir().parent))
    except ValueError:
        return str(path)


def parse_profile(text: str, *, path: Path | None = None, where: str | None = None) -> Profile:
    """Parse profile TOML text (``path`` resolves a relative workload; ``where`` names it in errors)."""
    where = where or (str(path) if path else "<profile>")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # message carries "(at line N, column M)"
        raise ProfileError(f"{where}: invalid TOML: {exc}") from exc
    top = _Table(where, "", data)
    info = _Table(where, "profile", top._get("profile", {})[1])
    default_name = path.stem if path else "profile"
    name = info.text("name", default_name)
    description = info.text("description", "")
    info.finish()
    if "\n" in description:
        raise info.error("description", "expected one line")
    server = _server(where, top._get("server", {})[1])
    workload = _workload(where, top._get("workload", {})[1])
    tiers = _tiers(where, top._get("tiers", [])[1])
    telemetry = _telemetry(where, top._get("telemetry", {})[1])
    run = _run(where, top._get("run", {})[1])
    tune = _tune(where, top._get("tune", {})[1], server)
    top.finish()
    return Profile(
        path=path,
        name=name,
        description=description,
        server=server,
        workload=workload,
        tiers=tiers,
        telemetry=telemetry,
        run=run,
        tune=tune,
    )


WORKER_ROLES = ("server", "prefill", "decode")  # the SGLang processes a knob edits (routers have their own flags)


def _tune(where: str, data: Any, server: ServerSpec) -> tuple[TuneKnob, ...]:
    """[tune]: ``[ROLE:]FLAG = [candidate values]``, each FLAG one SGLang 0.5.23 accepts with a value."""
    from agentperf_tui.server.conformance import load_nearest

    t = _Table(where, "tune", data)
    version = server.sglang_version or "0.5.23"
    flags = load_nearest("sglang", version)
    knobs = []
    for key, raw in data.items():
        t.seen.add(key)
        role_part, _, flag_part = key.rpartition(":")
        roles = (role_part,) if role_part else WORKER_ROLES
        if role_part and role_part not in WORKER_ROLES:
            raise t.error(key, f"unknown role {role_part!r} (one of {', '.join(WORKER_ROLES)})")
        flag_name = "--" + flag_part.removeprefix("--")
        if not isinstance(raw, list) or not raw or not all(
                isinstance(v, str | int | float) and not isinstance(v, bool) for v in raw):
            raise t.error(key, "expected a non-empty list of candidate values (numbers or strings)")
        values = tuple(str(v) for v in raw)
        if len(set(values)) != len(values):
            raise t.error(key, "lists a value twice")
        if flags is not None:
            flag = flags.flag(flag_name)
            if flag is None:
                raise t.error(key, f"{flag_name} is not a flag SGLang {flags.version} accepts")
            if not flag.takes_value:
                raise t.error(key, f"{flag_name} takes no value in SGLang {flags.version}; it cannot be tuned")
            if flag.choices is not None:
                bad = [v for v in values if v not in {str(c) for c in flag.choices}]
                if bad:
                    raise t.error(key, f"{', '.join(bad)}: not among {flag_name}'s choices in SGLang "
                                       f"{flags.version} ({', '.join(str(c) for c in flag.choices)})")
        if server.mode == "launch" and not any(p.role in roles for p in server.processes):
            raise t.error(key, f"no [[server.processes]] with role {' or '.join(roles)} to apply it to")
        knobs.append(TuneKnob(key=key, flag=flag_name, roles=roles, values=values))
    if knobs and server.mode == "attach":
        raise t.error("", "mode = 'attach' launches nothing, so nothing can be relaunched with a new setting")
    return tuple(knobs)


def load_profile(path_or_name: str | Path) -> Profile:
    """Load and check a profile by name (profiles/<name>.toml) or path; raises ProfileError."""
    path = resolve_profile_path(path_or_name)
    where = _display(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        available = ", ".join(n for n, _, _ in list_profiles(profiles_dir())) or "none"
        raise ProfileError(f"{where}: no such profile (available: {available})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{where}: cannot read: {exc}") from exc
    return parse_profile(text, path=path.resolve(), where=where)


def list_profiles(directory: str | Path | None = None) -> list[tuple[str, str, Path]]:
    """(name, description, path) of every *.toml in ``directory``, sorted by file name.

    A file that does not parse is listed with its error as the description, so a typo is seen.
    """
    d = Path(directory) if directory is not None else profiles_dir()
    out: list[tuple[str, str, Path]] = []
    for p in sorted(d.glob("*.toml")):
        try:
            prof = load_profile(p)
            out.append((p.stem, prof.description, p))
        except ProfileError as exc:
            out.append((p.stem, f"(invalid: {exc})", p))
    return out
