"""Server settings an operator changes ([tune] knobs): read from and written into a profile's argv.

A knob is an SGLang flag on the worker processes of some roles (profile.py's ``TuneKnob``).
``current_values`` reads what a profile launches with, ``with_changes`` gives the profile
that launches with other values (argv lists edited element by element, never a shell string),
``write_tuned_profile`` saves it as TOML beside the original (never over it), and ``parse_vary``
/ ``grid`` turn ``sweep --vary KNOB=V1,V2`` into the configurations a sweep runs.

Which settings SGLang 0.5.23 changes at run time without a restart: ``POST /set_internal_state``
(sglang/srt/managers/scheduler_components/internal_state.py, ``InternalState._update_handlers``)
accepts only ``pp_max_micro_batch_size``, ``speculative_accept_threshold_single``,
``speculative_accept_threshold_acc`` and the DSpark budget keys; every setting the Tune panel
usually changes (max running requests, chunked prefill, memory fraction, draft tokens, stream
interval, schedule policy, DP attention size) needs a relaunch. ``RUNTIME_SETTABLE`` maps the
flags that qualify to their server-args key; those are applied live.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from agentperf_tui.profile import Profile, ProfileError, TuneKnob

#: flag -> the ``server_args`` key ``/set_internal_state`` accepts for it (SGLang 0.5.23)
RUNTIME_SETTABLE = {
    "--pp-max-micro-batch-size": "pp_max_micro_batch_size",
    "--speculative-accept-threshold-single": "speculative_accept_threshold_single",
    "--speculative-accept-threshold-acc": "speculative_accept_threshold_acc",
}
DEFAULT = "default"  # a knob whose flag the profile does not pass: SGLang's own default applies


def knobs(profile: Profile) -> tuple[TuneKnob, ...]:
    """The knobs that can be changed: none when the profile attaches (nothing to relaunch)."""
    return profile.tune if profile.server.mode == "launch" else ()


def knob(profile: Profile, key: str) -> TuneKnob:
    for k in profile.tune:
        if key in (k.key, k.flag.removeprefix("--"), k.flag):
            return k
    known = ", ".join(k.key for k in profile.tune) or "none ([tune] is empty)"
    raise ProfileError(f"{profile.name}: no [tune] knob {key!r} (known: {known})")


def _flag_value(argv: tuple[str, ...] | list[str], flag: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def _set_flag(argv: tuple[str, ...], flag: str, value: str) -> tuple[str, ...]:
    """argv with ``flag`` set to ``value`` (replaced in place, else appended); DEFAULT removes it."""
    out = list(argv)
    if value == DEFAULT:
        for i, arg in enumerate(out):
            if arg == flag and i + 1 < len(out):
                return tuple(out[:i] + out[i + 2:])
            if arg.startswith(flag + "="):
                return tuple(out[:i] + out[i + 1:])
        return tuple(out)
    for i, arg in enumerate(out):
        if arg == flag and i + 1 < len(out):
            out[i + 1] = value
            return tuple(out)
        if arg.startswith(flag + "="):
            out[i] = f"{flag}={value}"
            return tuple(out)
    return (*out, flag, value)


def current_values(profile: Profile) -> dict[str, str]:
    """knob key -> the value the profile launches with (the first matching process's; DEFAULT if unset)."""
    values = {}
    for k in profile.tune:
        found = [_flag_value(p.argv, k.flag) for p in profile.processes if p.role in k.roles]
        values[k.key] = next((v for v in found if v is not None), DEFAULT)
    return values


def with_changes(profile: Profile, changes: dict[str, str]) -> Profile:
    """The profile launching with ``changes`` (knob key -> value) applied to its workers' argv
    (``DEFAULT`` leaves the flag out, so SGLang's own default applies)."""
    processes = list(profile.processes)
    for key, value in changes.items():
        k = knob(profile, key)
        processes = [replace(p, argv=_set_flag(p.argv, k.flag, str(value))) if p.role in k.roles else p
                     for p in processes]
    return replace(profile, server=replace(profile.server, processes=tuple(processes)))


def runtime_only(profile: Profile, changes: dict[str, str]) -> bool:
    """Whether every change can be made on the running server (no relaunch)."""
    return bool(changes) and all(knob(profile, key).flag in RUNTIME_SETTABLE for key in changes)


def runtime_args(profile: Profile, changes: dict[str, str]) -> dict[str, Any]:
    """The ``/set_internal_state`` body's ``server_args`` for runtime-settable changes."""
    out: dict[str, Any] = {}
    for key, value in changes.items():
        name = RUNTIME_SETTABLE[knob(profile, key).flag]
        out[name] = _number(value)
    return out


def _number(value: str) -> Any:
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def describe(changes: dict[str, str], before: dict[str, str] | None = None) -> str:
    """``max-running-requests 256 -> 32, stream-interval 1 -> 50`` (or ``k=v`` without a before)."""
    if not changes:
        return "as the profile launches"
    if before is None:
        return ", ".join(f"{k}={v}" for k, v in changes.items())
    return ", ".join(f"{k} {before.get(k, DEFAULT)} -> {v}" for k, v in changes.items())


def parse_vary(profile: Profile, items: list[str]) -> list[tuple[str, tuple[str, ...]]]:
    """``["max-running-requests=16,32,256", ...]`` -> [(knob key, values)], each knob of [tune] or a
    flag SGLang accepts (a knob the profile does not list is checked the same way)."""
    out = []
    for item in items:
        key, sep, raw = item.partition("=")
        values = tuple(v.strip() for v in raw.split(",") if v.strip())
        if not sep or not key or not values:
            raise ProfileError(f"--vary {item!r}: expected KNOB=V1,V2,... (e.g. max-running-requests=16,32,256)")
        try:
            k = knob(profile, key.strip())
        except ProfileError:
            k = _ad_hoc_knob(profile, key.strip(), values)
        out.append((k.key, values))
    return out


def _ad_hoc_knob(profile: Profile, key: str, values: tuple[str, ...]) -> TuneKnob:
    """A --vary knob the profile's [tune] does not list: checked as [tune] would check it."""
    from agentperf_tui.profile import _tune

    (made,) = _tune(f"--vary {key}", {key: list(values)}, profile.server)
    return made


def with_knobs(profile: Profile, extra: list[TuneKnob]) -> Profile:
    """The profile with ad-hoc knobs (from --vary) added to its [tune]."""
    have = {k.key for k in profile.tune}
    return replace(profile, tune=profile.tune + tuple(k for k in extra if k.key not in have))


def grid(vary: list[tuple[str, tuple[str, ...]]]) -> list[dict[str, str]]:
    """Every combination of the varied values, in the order given (first knob slowest)."""
    keys = [k for k, _ in vary]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(v for _, v in vary))]


def write_tuned_profile(profile: Profile, changes: dict[str, str], directory: Path | None = None) -> Path:
    """Save the profile with ``changes`` as ``<name>-tuned-N.toml`` beside the original, never over
    a file; the TOML is the original's (read again from disk) with the changed argv values."""
    import tomllib

    import tomli_w

    if profile.path is None:
        raise ProfileError(f"{profile.name}: the profile has no file to save a tuned copy beside")
    data = tomllib.loads(Path(profile.path).read_text(encoding="utf-8"))
    tuned = with_changes(profile, changes)
    for raw, proc in zip(data.get("server", {}).get("processes", []), tuned.processes, strict=True):
        raw["argv"] = list(proc.argv)
    folder = directory or Path(profile.path).parent
    n = 1
    while (path := folder / f"{profile.name}-tuned-{n}.toml").exists():
        n += 1
    before = current_values(profile)
    name = path.stem
    data.setdefault("profile", {})["name"] = name
    data["profile"]["description"] = (f"{profile.name} with {describe(changes, before)}"
                                      f" (saved from the Tune panel)")
    header = (f"# Written by agentperf-tui on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} from "
              f"{profile.path.name}: {describe(changes, before)}.\n"
              "# Comments of the original are not carried over; the settings are.\n\n")
    path.write_text(header + tomli_w.dumps(data), encoding="utf-8")
    return path
