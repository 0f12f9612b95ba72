"""Check a server launch argv against the flags one SGLang / router version defines.

One job: read the versioned conformance data files (``conformance_data/<package>-<version>.json``,
generated from the published wheels by ``tools/sglang_conformance.py``) and say what in a launch
argv that version would reject or warn about: an unknown (or ambiguously abbreviated) flag, a
value outside a flag's choices, a deprecated flag or value, a flag missing its value. It needs
neither SGLang nor the router installed, and uses only the standard library.

The parse follows argparse as SGLang and the router configure it (``allow_abbrev`` on, no
positional arguments except the model path of ``sglang serve``): ``--flag=value``, flags that take
no value, ``nargs`` of ``?``/``*``/``+``/N, a unique prefix standing for the whole flag, and a value
that looks like a negative number is a value. A value starting with ``{`` is an unsubstituted
profile placeholder: it counts as a value and is not checked against the choices.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

DATA_PACKAGE = "agentperf_tui.server"
DATA_DIR = "conformance_data"

# Modules and console-script subcommands after which the server's own arguments start.
_SUBCOMMANDS = {"serve", "launch", "server"}
_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")

PROBLEM_KINDS = ("unknown_flag", "bad_choice", "deprecated", "missing_value", "unexpected_value")


@dataclass(frozen=True)
class Flag:
    name: str
    aliases: tuple[str, ...]
    takes_value: bool
    nargs: str | int | None
    choices: tuple[Any, ...] | None
    deprecated: bool
    replacement: str | None
    default: str | None
    group: str
    deprecated_choices: dict[str, str | None] = field(default_factory=dict, hash=False, compare=False)

    @property
    def spellings(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


@dataclass(frozen=True)
class Problem:
    kind: str  # one of PROBLEM_KINDS
    flag: str
    message: str


@dataclass
class ConformanceData:
    package: str
    version: str
    flags: dict[str, Flag]  # canonical name -> flag
    by_spelling: dict[str, Flag]  # every option string (name and aliases) -> flag
    metrics: list[dict[str, Any]]
    model_overrides: dict[str, Any]
    entrypoints: dict[str, Any]
    raw: dict[str, Any]

    def flag(self, spelling: str) -> Flag | None:
        return self.by_spelling.get(spelling)


def _data_dir() -> Any:
    return resources.files(DATA_PACKAGE).joinpath(DATA_DIR)


def _version_key(version: str) -> tuple[Any, ...]:
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[.\-+]", version))


def available_versions(package: str) -> list[str]:
    """Versions of ``package`` that have a data file, oldest first."""
    prefix = f"{package}-"
    out = []
    for entry in _data_dir().iterdir():
        name = entry.name
        if name.startswith(prefix) and name.endswith(".json"):
            version = name[len(prefix) : -len(".json")]
            if version[:1].isdigit():  # "sglang-" must not pick up "sglang-router-..."
                out.append(version)
    return sorted(out, key=_version_key)


def from_dict(raw: dict[str, Any]) -> ConformanceData:
    flags: dict[str, Flag] = {}
    by_spelling: dict[str, Flag] = {}
    for f in raw["flags"]:
        flag = Flag(
            name=f["name"],
            aliases=tuple(f.get("aliases") or ()),
            takes_value=bool(f["takes_value"]),
            nargs=f.get("nargs"),
            choices=tuple(f["choices"]) if f.get("choices") is not None else None,
            deprecated=bool(f.get("deprecated")),
            replacement=f.get("replacement"),
            default=f.get("default"),
            group=f.get("group") or "",
            deprecated_choices=dict(f.get("deprecated_choices") or {}),
        )
        flags[flag.name] = flag
        for spelling in flag.spellings:
            by_spelling[spelling] = flag
    # Launcher-level flags (e.g. `sglang serve --model-type`) are checked like the server's own.
    for sub in (raw.get("entrypoints") or {}).get("subcommands", {}).values():
        for extra in sub.get("extra_flags", ()):
            flag = Flag(
                extra["name"], (), bool(extra.get("takes_value")), None, None, False, None, None, "launcher"
            )
            flags.setdefault(flag.name, flag)
            by_spelling.setdefault(flag.name, flag)
    return ConformanceData(
        package=raw["package"],
        version=raw["version"],
        flags=flags,
        by_spelling=by_spelling,
        metrics=list(raw.get("metrics") or []),
        model_overrides=dict(raw.get("model_overrides") or {}),
        entrypoints=dict(raw.get("entrypoints") or {}),
        raw=raw,
    )


def load(package: str, version: str) -> ConformanceData:
    """The data file for ``package`` (``sglang``, ``smg``, ``sglang-router``) at ``version``."""
    entry = _data_dir().joinpath(f"{package}-{version}.json")
    if not entry.is_file():
        have = ", ".join(available_versions(package)) or "none"
        raise LookupError(f"no conformance data for {package} {version} (available: {have})")
    raw = json.loads(entry.read_text(encoding="utf-8"))
    if raw.get("package") != package or raw.get("version") != version:
        raise ValueError(f"{entry.name} claims {raw.get('package')} {raw.get('version')}")
    return from_dict(raw)


@functools.lru_cache(maxsize=16)
def load_cached(package: str, version: str) -> ConformanceData:
    """:func:`load`, read once per process (the launch plan asks on every build)."""
    return load(package, version)


def load_nearest(package: str, version: str) -> ConformanceData | None:
    """The data for ``version``, else for the newest version before it that has a file, else None.

    (Flags only get added or deprecated between neighbouring releases far more often than they
    vanish, so the nearest older file is the best guess for spellings; the conformance tests
    always use an exact file.)
    """
    versions = available_versions(package)
    if version in versions:
        return load_cached(package, version)
    older = [v for v in versions if _version_key(v) < _version_key(version)]
    return load_cached(package, older[-1]) if older else None


def flag_names(data: ConformanceData) -> set[str]:
    """Every option string the version accepts spelled out (names and aliases)."""
    return set(data.by_spelling)


def metric_names(data: ConformanceData) -> set[str]:
    """Every Prometheus metric name the version defines (as passed to prometheus_client)."""
    return {m["name"] for m in data.metrics}


def sample_names(data: ConformanceData) -> set[str]:
    """Names as they appear on /metrics: counters gain ``_total``, histograms ``_bucket``/``_sum``/``_count``."""
    out: set[str] = set()
    for m in data.metrics:
        name, kind = m["name"], m["type"]
        if kind == "counter":
            base = name[: -len("_total")] if name.endswith("_total") else name
            out.update({base + "_total", base + "_created"})
        elif kind == "histogram":
            out.update({name + "_bucket", name + "_sum", name + "_count", name + "_created"})
        elif kind == "summary":
            out.update({name, name + "_sum", name + "_count", name + "_created"})
        else:
            out.add(name)
    return out


# ------------------------------------------------------------------------------------------------
# argv checking
# ------------------------------------------------------------------------------------------------


def _server_args_start(argv: Sequence[str]) -> tuple[int, str | None]:
    """Index where the server's own arguments begin, and the subcommand if there was one.

    ``python3 -m sglang.launch_server ...``, ``{python} -m smg.launch_router ...``,
    ``sglang serve ...``, ``smg launch ...``, ``python -m smg launch ...``, or bare flags.
    """
    if "-m" in argv:
        i = list(argv).index("-m") + 2  # past `-m MODULE`
        if i < len(argv) and argv[i] in _SUBCOMMANDS:
            return i + 1, argv[i]
        return min(i, len(argv)), None
    for i, tok in enumerate(argv):
        if tok in _SUBCOMMANDS and i > 0:
            return i + 1, tok
        if tok.startswith("--"):
            return i, None
    return len(argv), None


def _is_option(tok: str) -> bool:
    return tok.startswith("-") and tok != "-" and not _NEGATIVE_NUMBER.match(tok)


def _resolve(spelling: str, data: ConformanceData) -> tuple[Flag | None, str | None]:
    """(flag, None) for an exact or unique-prefix spelling, else (None, reason)."""
    flag = data.by_spelling.get(spelling)
    if flag is not None:
        return flag, None
    if spelling.startswith("--") and len(spelling) > 2:
        matches = sorted(s for s in data.by_spelling if s.startswith(spelling))
        targets = {data.by_spelling[s].name for s in matches}
        if len(targets) == 1:
            return data.by_spelling[matches[0]], None
        if len(targets) > 1:
            shown = ", ".join(sorted(targets)[:6]) + (", ..." if len(targets) > 6 else "")
            return None, f"ambiguous abbreviation: it could be any of {shown}"
    close = difflib.get_close_matches(spelling, list(data.by_spelling), n=3, cutoff=0.75)
    if close:
        return None, "did you mean " + " or ".join(close) + "?"
    return None, None


def _check_values(flag: Flag, spelled: str, values: Iterable[str], data: ConformanceData) -> list[Problem]:
    problems = []
    for value in values:
        if value.startswith("{"):
            continue  # an unsubstituted placeholder
        if flag.deprecated_choices and value in flag.deprecated_choices:
            new = flag.deprecated_choices[value]
            problems.append(
                Problem(
                    "deprecated",
                    flag.name,
                    f"{spelled} {value}: the value {value!r} is deprecated in {data.package} {data.version}"
                    + (f"; use {flag.name} {new}" if new else ""),
                )
            )
        if flag.choices is not None and value not in {str(c) for c in flag.choices}:
            allowed = ", ".join(str(c) for c in flag.choices)
            problems.append(
                Problem(
                    "bad_choice",
                    flag.name,
                    f"{spelled} {value}: not one of the choices {data.package} {data.version} allows: {allowed}",
                )
            )
    return problems


def check_argv(argv: Sequence[str], data: ConformanceData) -> list[Problem]:
    """Problems, in argv order, that ``data``'s version would report for this launch argv."""
    start, subcommand = _server_args_start(argv)
    args = list(argv[start:])
    problems: list[Problem] = []
    positional_ok = bool(
        subcommand
        and (data.entrypoints.get("subcommands", {}).get(subcommand, {}).get("positional_model_path"))
    )
    i = 0
    while i < len(args):
        tok = args[i]
        i += 1
        if not _is_option(tok):
            if positional_ok and i == 1:
                continue  # `sglang serve MODEL ...`
            problems.append(
                Problem(
                    "unknown_flag",
                    tok,
                    f"unexpected positional argument {tok!r}: {data.package} {data.version} takes none here",
                )
            )
            continue
        spelled, eq, inline = tok.partition("=")
        flag, reason = _resolve(spelled, data)
        if flag is None:
            problems.append(
                Problem(
                    "unknown_flag",
                    spelled,
                    f"{spelled} is not a {data.package} {data.version} flag"
                    + (f" ({reason})" if reason else ""),
                )
            )
            # Skip what looks like its value(s), so one typo is reported once.
            while i < len(args) and not _is_option(args[i]):
                i += 1
            continue
        if flag.deprecated:
            problems.append(
                Problem(
                    "deprecated",
                    flag.name,
                    f"{spelled} is deprecated in {data.package} {data.version}"
                    + (f"; use {flag.replacement} instead" if flag.replacement else ""),
                )
            )
        if not flag.takes_value:
            if eq:
                problems.append(
                    Problem(
                        "unexpected_value", flag.name, f"{spelled} takes no value (got {spelled}={inline})"
                    )
                )
            continue
        if eq:
            values = [inline]
            if flag.nargs not in (None, "?", "*", "+", 1):
                problems.append(
                    Problem(
                        "missing_value",
                        flag.name,
                        f"{spelled} takes {flag.nargs} values; --flag=value gives one",
                    )
                )
        else:
            values = []
            if isinstance(flag.nargs, int):
                want_min = want_max = flag.nargs
            elif flag.nargs == "?":
                want_min, want_max = 0, 1
            elif flag.nargs == "*":
                want_min, want_max = 0, len(args)
            elif flag.nargs == "+":
                want_min, want_max = 1, len(args)
            else:
                want_min = want_max = 1
            while i < len(args) and len(values) < want_max and not _is_option(args[i]):
                values.append(args[i])
                i += 1
            if len(values) < want_min:
                need = "a value" if want_min == 1 else f"{want_min} values"
                problems.append(
                    Problem("missing_value", flag.name, f"{spelled} needs {need} (nargs={flag.nargs!r})")
                )
        problems.extend(_check_values(flag, spelled, values, data))
    return problems
