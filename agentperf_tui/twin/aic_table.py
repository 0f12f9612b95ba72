"""Optional cost-model data source: step-time tables from NVIDIA AIConfigurator (AIC).

Its one job: turn AIConfigurator's per-step estimates for DeepSeek V4 Pro on SGLang into a small
grid the twin can interpolate at run time -- decode step latency over (global batch x context)
and prefill latency over (new tokens x cached prefix tokens) -- and keep that grid on disk as JSON,
so that only building a table needs AIConfigurator (``pip install -e '.[aic]'``, ~850 MB);
reading one needs nothing beyond this module and orjson.

How the table is built (AIC 0.12, offline, packaged perf database; see ``build_table``):

* model and database are assembled the way ``aiconfigurator cli estimate`` does it (static path),
  then AIC's per-step engine functions are called directly: ``estimate_decode_step_breakdown_with_rust``
  (one decode step of ``gen_tokens`` requests at sequence position ``isl + osl//2 + 1`` = context)
  and ``estimate_static_latency_breakdown_with_rust(..., "static_ctx")`` (prefill of ``isl - prefix``
  new tokens on top of ``prefix`` cached ones);
* SGLang parallelism maps onto AIC's: ``--tp 8`` = AIC tp 8 / MoE TP 8; ``--tp 8 --dp 8 --ep 8
  --enable-dp-attention`` = AIC tp 1 / attention DP 8 / MoE EP 8. With DP attention AIC's batch is
  per DP rank, so a table point at global batch B is AIC's step at B / dp requests per rank, and
  a prefill point of N new tokens is one request of N / dp tokens on every rank;
* where the packaged data cannot describe the deployment, the table says what was substituted
  and why (``StepTable.substitutions``): on ``h200`` the checkpoint's W4A16-MXFP4 experts have no
  silicon MoE rows, so the database runs in HYBRID mode (that op transferred from other quant
  profiles); on ``gb300-nvl72`` the MegaMoE module table is only filed under an older SGLang
  collection, so a systems tree that links it into the current one is built in the cache dir.
"""

from __future__ import annotations

import bisect
import contextlib
import copy
import hashlib
import importlib
import importlib.metadata
import importlib.resources
import itertools
import logging
import math
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import orjson

INSTALL_HINT = "pip install -e '.[aic]'"
MODEL_PATH = "deepseek-ai/DeepSeek-V4-Pro"
BACKEND = "sglang"
TABLE_FORMAT = 1  # bump when the JSON layout or the way tables are built changes
ROLES = ("decode", "prefill", "both")
AIC_SYSTEMS: dict[str, str] = {"h200": "h200_sxm", "gb300-nvl72": "gb300"}
MEGAMOE_TABLE = "dsv4_megamoe_module_perf"
MIN_STEP_S = 1e-6  # floor of every answer: a step never takes zero time


class AICUnavailable(ImportError):
    """AIConfigurator is not installed in this environment (it is an optional extra)."""


class AICBuildError(RuntimeError):
    """AIConfigurator is installed but could not estimate the requested deployment."""


@dataclass(frozen=True, slots=True)
class TableGrid:
    """The points a table is evaluated at. Batches are global requests in the engine."""

    decode_batches: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
    decode_contexts: tuple[int, ...] = (1024, 4096, 8192, 16384, 32768, 65536, 131072, 262144, 524288, 1048576)
    prefill_new_tokens: tuple[int, ...] = (128, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
    prefill_cached_tokens: tuple[int, ...] = (0, 8192, 32768, 65536, 131072, 262144)

    def as_dict(self) -> dict[str, list[int]]:
        return {f.name: list(getattr(self, f.name)) for f in fields(self)}


DEFAULT_GRID = TableGrid()


@dataclass(frozen=True, slots=True)
class StepTable:
    """Step latencies from AIConfigurator on a grid, with what they were computed for.

    ``decode_ms[c][b]`` is one decode step (verifying ``nextn + 1`` tokens per request) of
    ``decode_batches[b]`` requests at context ``decode_contexts[c]``; ``prefill_ms[k][n]`` is one
    prefill step computing ``prefill_new_tokens[n]`` uncached tokens on top of
    ``prefill_cached_tokens[k]`` cached ones. Either grid is empty when the table's role does
    not need it. Metadata fields describe the AIC configuration behind the numbers.
    """

    decode_batches: tuple[float, ...] = ()
    decode_contexts: tuple[float, ...] = ()
    decode_ms: tuple[tuple[float, ...], ...] = ()
    prefill_new_tokens: tuple[float, ...] = ()
    prefill_cached_tokens: tuple[float, ...] = ()
    prefill_ms: tuple[tuple[float, ...], ...] = ()
    hardware: str = ""  # the twin's name: h200 | gb300-nvl72
    role: str = "decode"  # decode | prefill | both
    system: str = ""  # AIC system name: h200_sxm | gb300
    backend: str = BACKEND
    backend_version: str = ""  # version of the AIC perf database used
    aic_version: str = ""  # aiconfigurator[/aiconfigurator-core] package version
    model: str = MODEL_PATH
    nextn: int = 0  # MTP draft depth AIC modelled (nextn + 1 tokens verified per request)
    moe_backend: str = ""  # megamoe | fused
    database_mode: str = ""  # SILICON | HYBRID | EMPIRICAL
    parallel: dict[str, Any] = field(default_factory=dict, hash=False)
    quant: dict[str, str] = field(default_factory=dict, hash=False)
    substitutions: tuple[str, ...] = ()  # what stands in for missing data, and why
    op_sources: dict[str, str] = field(default_factory=dict, hash=False)  # AIC op -> data source(s)
    warnings: tuple[str, ...] = ()  # AIC log warnings seen while building
    build_args: dict[str, Any] = field(default_factory=dict, hash=False)
    build_s: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "substitutions", tuple(self.substitutions))
        object.__setattr__(self, "warnings", tuple(self.warnings))
        _check_grid("decode", self.decode_batches, self.decode_contexts, self.decode_ms, outer_log_offset=0.0)
        _check_grid("prefill", self.prefill_new_tokens, self.prefill_cached_tokens, self.prefill_ms,
                    outer_log_offset=1.0)
        if not self.decode_ms and not self.prefill_ms:
            raise ValueError("StepTable needs a decode or a prefill grid")

    # -- lookups ------------------------------------------------------------------------------
    @property
    def has_decode(self) -> bool:
        return bool(self.decode_ms)

    @property
    def has_prefill(self) -> bool:
        return bool(self.prefill_ms)

    def decode_s(self, batch: float, context: float) -> float:
        """Seconds of one decode step of ``batch`` requests (global) at ``context`` tokens each.

        Bilinear in (log batch, log context) inside the grid. Context is clamped to the grid;
        batch is clamped below the first point (with DP attention a smaller batch still costs a
        step of one request on the busiest rank) and extended linearly beyond the last one with
        the last segment's slope (never decreasing).
        """
        if not self.decode_ms:
            raise ValueError(f"this AIC table (role {self.role!r}) has no decode grid")
        ms = _interp_2d(self.decode_contexts, self.decode_batches, self.decode_ms, context, batch, 0.0)
        return max(MIN_STEP_S, ms * 1e-3)

    def prefill_s(self, new_tokens: float, cached_tokens: float) -> float:
        """Seconds of one prefill step computing ``new_tokens`` on top of ``cached_tokens``.

        Bilinear in (log new tokens, log(cached + 1)); cached tokens are clamped to the grid, new
        tokens clamped below the first point and extended linearly beyond the last one.
        """
        if not self.prefill_ms:
            raise ValueError(f"this AIC table (role {self.role!r}) has no prefill grid")
        ms = _interp_2d(self.prefill_cached_tokens, self.prefill_new_tokens, self.prefill_ms,
                        cached_tokens, new_tokens, 1.0)
        return max(MIN_STEP_S, ms * 1e-3)

    def describe(self) -> str:
        """One line naming the configuration the numbers come from."""
        p = self.parallel
        par = (f"tp{p.get('aic_tp_size')} dp{p.get('aic_attention_dp_size')} "
               f"moe_tp{p.get('aic_moe_tp_size')} moe_ep{p.get('aic_moe_ep_size')}")
        return (f"AIC {self.aic_version} {self.system}/{self.backend} {self.backend_version} {par} "
                f"moe={self.quant.get('moe', '?')} ({self.moe_backend}) db={self.database_mode} "
                f"nextn={self.nextn} role={self.role}")

    # -- JSON ---------------------------------------------------------------------------------
    def to_json(self) -> bytes:
        doc: dict[str, Any] = {"format": TABLE_FORMAT}
        for f in fields(self):
            doc[f.name] = getattr(self, f.name)
        return orjson.dumps(doc, option=orjson.OPT_INDENT_2)

    @classmethod
    def from_json(cls, data: bytes | str) -> StepTable:
        doc = orjson.loads(data)
        if not isinstance(doc, dict) or doc.get("format") != TABLE_FORMAT:
            raise ValueError(f"not an AIC step table of format {TABLE_FORMAT}")
        known = {f.name for f in fields(cls)}
        kw: dict[str, Any] = {k: v for k, v in doc.items() if k in known}
        for name in ("decode_batches", "decode_contexts", "prefill_new_tokens", "prefill_cached_tokens",
                     "substitutions", "warnings"):
            kw[name] = tuple(kw.get(name, ()))
        for name in ("decode_ms", "prefill_ms"):
            kw[name] = tuple(tuple(row) for row in kw.get(name, ()))
        return cls(**kw)


def _check_grid(name: str, xs: Sequence[float], ys: Sequence[float], values: Sequence[Sequence[float]],
                outer_log_offset: float) -> None:
    """Rows follow ``ys`` (outer axis), columns ``xs``; both axes strictly increasing, log-able."""
    if not values and not xs and not ys:
        return
    if not xs or not ys or len(values) != len(ys) or any(len(row) != len(xs) for row in values):
        raise ValueError(f"{name} grid: {len(ys)} x {len(xs)} axes do not match the values' shape")
    for axis, offset in ((xs, 0.0), (ys, outer_log_offset)):
        if axis[0] + offset <= 0 or any(b <= a for a, b in itertools.pairwise(axis)):
            raise ValueError(f"{name} grid: axis {list(axis)} must be increasing and > {-offset:g}")
    if any(not (math.isfinite(v) and v > 0) for row in values for v in row):
        raise ValueError(f"{name} grid: step times must be finite and > 0")


def _interp_1d(xs: Sequence[float], ys: Sequence[float], x: float) -> float:
    """Log-x interpolation; clamp below the grid, last-segment linear (slope >= 0) above it."""
    if len(xs) == 1 or x <= xs[0]:
        return ys[0]
    last = len(xs) - 1
    if x >= xs[last]:
        slope = max(0.0, (ys[last] - ys[last - 1]) / (xs[last] - xs[last - 1]))
        return ys[last] + slope * (x - xs[last])
    i = bisect.bisect_right(xs, x) - 1
    w = (math.log(x) - math.log(xs[i])) / (math.log(xs[i + 1]) - math.log(xs[i]))
    return ys[i] + w * (ys[i + 1] - ys[i])


def _interp_2d(outer: Sequence[float], inner: Sequence[float], rows: Sequence[Sequence[float]],
               at_outer: float, at_inner: float, outer_log_offset: float) -> float:
    """Interpolate along ``inner`` in the two bracketing rows, then in log(outer + offset) between them.

    ``outer`` is clamped to the grid at both ends.
    """
    n = len(outer)
    if n == 1 or at_outer <= outer[0]:
        return _interp_1d(inner, rows[0], at_inner)
    if at_outer >= outer[n - 1]:
        return _interp_1d(inner, rows[n - 1], at_inner)
    j = bisect.bisect_right(outer, at_outer) - 1
    lo, hi = math.log(outer[j] + outer_log_offset), math.log(outer[j + 1] + outer_log_offset)
    w = (math.log(at_outer + outer_log_offset) - lo) / (hi - lo)
    a = _interp_1d(inner, rows[j], at_inner)
    b = _interp_1d(inner, rows[j + 1], at_inner)
    return a + w * (b - a)


# -- parallelism -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AICParallel:
    """AIC's parallel widths for one SGLang engine (``tp_size * attention_dp_size == moe_tp * moe_ep``)."""

    tp_size: int
    attention_dp_size: int
    moe_tp_size: int
    moe_ep_size: int

    @property
    def gpus(self) -> int:
        return self.tp_size * self.attention_dp_size


def aic_parallel(tp: int, dp_attention: bool, ep: int, dp: int | None = None) -> AICParallel:
    """Map SGLang ``--tp/--dp/--ep [--enable-dp-attention]`` onto AIC's widths.

    With DP attention the engine's ``tp`` GPUs form ``dp`` attention replicas of ``tp / dp``
    GPUs each (``dp`` defaults to ``tp``); MoE always spans all ``tp`` GPUs as ``ep``-way expert
    parallel times ``tp / ep``-way tensor parallel.
    """
    if tp < 1 or ep < 1:
        raise ValueError(f"tp {tp} and ep {ep} must be >= 1")
    if tp % ep:
        raise ValueError(f"ep {ep} must divide tp {tp}")
    attn_dp = (dp or tp) if dp_attention else 1
    if attn_dp < 1 or tp % attn_dp:
        raise ValueError(f"dp {attn_dp} must divide tp {tp}")
    return AICParallel(tp // attn_dp, attn_dp, tp // ep, ep)


# -- cache -------------------------------------------------------------------------------------
def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/agentperf-tui/aic`` (``~/.cache/agentperf-tui/aic`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "agentperf-tui" / "aic"


def installed_aic_version() -> str | None:
    """Version tag of the installed aiconfigurator packages, without importing them (None: absent)."""
    try:
        aic = importlib.metadata.version("aiconfigurator")
    except importlib.metadata.PackageNotFoundError:
        return None
    try:
        core = importlib.metadata.version("aiconfigurator-core")
    except importlib.metadata.PackageNotFoundError:
        core = aic
    return aic if core == aic else f"{aic}+core{core}"


def table_build_args(hardware: str, *, tp: int, dp_attention: bool, ep: int, nextn: int = 0,
                     role: str = "decode", dp: int | None = None, moe_backend: str | None = None,
                     database_mode: str | None = None, moe_quant_mode: str | None = None,
                     grid: TableGrid = DEFAULT_GRID) -> dict[str, Any]:
    """Every argument that changes a table's numbers, as a JSON-ready dict (the cache key)."""
    return {"format": TABLE_FORMAT, "hardware": hardware, "tp": tp, "dp_attention": bool(dp_attention),
            "ep": ep, "nextn": nextn, "role": role, "dp": dp, "moe_backend": moe_backend,
            "database_mode": database_mode, "moe_quant_mode": moe_quant_mode, "grid": grid.as_dict()}


def _args_hash(build_args: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(build_args, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def _read_cached(path: Path, build_args: dict[str, Any]) -> StepTable | None:
    try:
        table = StepTable.from_json(path.read_bytes())
    except (OSError, ValueError, TypeError):
        return None
    return table if table.build_args == build_args else None


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_or_build(hardware: str, *, tp: int, dp_attention: bool, ep: int, nextn: int = 0,
                  role: str = "decode", dp: int | None = None, moe_backend: str | None = None,
                  database_mode: str | None = None, moe_quant_mode: str | None = None,
                  grid: TableGrid = DEFAULT_GRID, cache_dir: Path | None = None) -> StepTable:
    """The cached table for these arguments, building (and caching) it when there is none.

    Files are ``<hardware>-<role>-<hash of the arguments>-aic<version>.json`` under
    ``cache_dir`` (default ``default_cache_dir()``), written atomically. When AIConfigurator is
    not installed, the newest table built for the same arguments by any AIC version is used;
    if there is none, ``AICUnavailable`` is raised.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    args = table_build_args(hardware, tp=tp, dp_attention=dp_attention, ep=ep, nextn=nextn, role=role, dp=dp,
                            moe_backend=moe_backend, database_mode=database_mode,
                            moe_quant_mode=moe_quant_mode, grid=grid)
    stem = f"{hardware}-{role}-{_args_hash(args)}-aic"
    version = installed_aic_version()
    if version is not None:
        candidates = [cache / f"{stem}{version}.json"]
    else:
        candidates = sorted(cache.glob(f"{stem}*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in candidates:
        if path.is_file() and (table := _read_cached(path, args)) is not None:
            return table
    table = build_table(hardware, tp=tp, dp_attention=dp_attention, ep=ep, nextn=nextn, role=role, dp=dp,
                        moe_backend=moe_backend, database_mode=database_mode,
                        moe_quant_mode=moe_quant_mode, grid=grid, cache_dir=cache)
    _write_atomic(cache / f"{stem}{version or table.aic_version or 'unknown'}.json", table.to_json())
    return table


# -- building with AIConfigurator ---------------------------------------------------------------
def _import_aic() -> dict[str, Any]:
    """The AIC entry points ``build_table`` uses; ``AICUnavailable`` when the extra is missing."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model config ships inside aiconfigurator_core
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        importlib.import_module("aiconfigurator")
        importlib.import_module("aiconfigurator_core")
        builders = importlib.import_module("aiconfigurator.sdk.config_builders")
        models = importlib.import_module("aiconfigurator.sdk.models")
        perf_database = importlib.import_module("aiconfigurator.sdk.perf_database")
        config = importlib.import_module("aiconfigurator.sdk.config")
        comm = importlib.import_module("aiconfigurator.sdk.moe_comm_resolver")
        engine = importlib.import_module("aiconfigurator_core.sdk.rust_engine_step")
    except ImportError as exc:
        raise AICUnavailable(
            f"AIConfigurator is not installed ({exc}); building AIC step tables needs the optional "
            f"extra: {INSTALL_HINT}") from exc
    return {
        "build_model_config": builders.build_model_config,
        "apply_nextn": builders.apply_nextn,
        "get_model": models.get_model,
        "resolve_context_fmha_by_data": models.resolve_context_fmha_by_data,
        "resolve_dsv4_moe_arch": models.resolve_dsv4_moe_arch,
        "resolve_nvfp4_for_system": models.resolve_nvfp4_for_system,
        "get_database_view": perf_database.get_database_view,
        "get_latest_database_version": perf_database.get_latest_database_version,
        "RuntimeConfig": config.RuntimeConfig,
        "resolve_model_config_moe_comm": comm.resolve_model_config_moe_comm,
        "decode_step": engine.estimate_decode_step_breakdown_with_rust,
        "static_breakdown": engine.estimate_static_latency_breakdown_with_rust,
    }


class _WarningCollector(logging.Handler):
    """Keeps AIC's log warnings (deduplicated) for the table's metadata instead of stderr."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            text = record.getMessage().strip()[:400]
            if text and text not in self.messages:
                self.messages.append(text)


@contextlib.contextmanager
def _collect_aic_warnings() -> Iterator[list[str]]:
    collector = _WarningCollector()
    loggers = [logging.getLogger(name) for name in ("aiconfigurator", "aiconfigurator_core")]
    saved = [(lg.propagate, lg.level) for lg in loggers]
    for lg in loggers:
        lg.addHandler(collector)
        lg.propagate = False
        if lg.level == logging.NOTSET or lg.level > logging.WARNING:
            lg.setLevel(logging.WARNING)
    try:
        yield collector.messages
    finally:
        for lg, (propagate, level) in zip(loggers, saved, strict=True):
            lg.removeHandler(collector)
            lg.propagate = propagate
            lg.setLevel(level)


def _version_key(name: str) -> tuple[int, ...]:
    parts = []
    for piece in name.replace("-", ".").split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def _overlay_tree(src: Path, dst: Path, replaced: Sequence[str]) -> None:
    """Mirror ``src`` into ``dst`` with symlinks, descending (as real dirs) only along ``replaced``."""
    dst.mkdir(parents=True)
    for entry in sorted(src.iterdir()):
        if replaced and entry.name == replaced[0]:
            if len(replaced) > 1:
                _overlay_tree(entry, dst / entry.name, replaced[1:])
            continue  # the last part is the caller's to fill
        (dst / entry.name).symlink_to(entry.resolve())


def megamoe_systems_root(aic: dict[str, Any], system: str, cache_dir: Path) -> tuple[Path | None, str]:
    """A systems tree in which AIC finds the DeepSeek-V4 MegaMoE module table for ``system``.

    AIC 0.12 ships ``dsv4_megamoe_module_perf.parquet`` for gb300 only under the SGLang 0.5.10
    MoE collection, which the current database (0.5.14) does not reach ("DSv4 MegaMoE module data
    not loaded: perf file not found"). The tree built here (once, under ``cache_dir``) mirrors the
    installed package's systems directory with symlinks and links that table into the current
    version's MoE collection, listing it in that collection's metadata; no number is changed and
    nothing is written into the package. Returns ``(None, reason)`` when the stock data has it.
    """
    import yaml  # a dependency of aiconfigurator

    stock = Path(os.fspath(importlib.resources.files("aiconfigurator_core") / "systems"))
    version = aic["get_latest_database_version"](system=system, backend=BACKEND)
    spec = yaml.safe_load((stock / f"{system}.yaml").read_text())
    data_dir = Path(spec["data_dir"])
    moe_root = stock / data_dir / "moe" / BACKEND
    table_file = f"{MEGAMOE_TABLE}.parquet"
    if (moe_root / version / table_file).exists():
        return None, f"stock {system}/{BACKEND} {version} database has the MegaMoE table"
    donors = sorted((d for d in moe_root.iterdir() if (d / table_file).is_file()),
                    key=lambda d: _version_key(d.name), reverse=True)
    if not donors:
        raise AICBuildError(f"no {table_file} for {system}/{BACKEND} in {moe_root}")
    donor = donors[0]
    key = hashlib.sha256(f"{stock.resolve()}|{system}|{version}|{donor.name}|{installed_aic_version()}"
                         .encode()).hexdigest()[:12]
    root = cache_dir / f"systems-megamoe-{system}-{key}"
    reason = (f"MegaMoE module table linked from the {system} {BACKEND} {donor.name} MoE collection into "
              f"{version} (stock {version} lacks it; systems tree {root})")
    if (root / data_dir / "moe" / BACKEND / version / table_file).exists():
        return root, reason
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f".tmp-systems-megamoe-{key}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        parts = (*data_dir.parts, "moe", BACKEND, version)
        _overlay_tree(stock, tmp, parts)
        target = tmp.joinpath(*parts)
        target.mkdir()
        for entry in sorted((moe_root / version).iterdir()):
            if entry.name != "collection_meta.yaml":
                (target / entry.name).symlink_to(entry.resolve())
        (target / table_file).symlink_to((donor / table_file).resolve())
        meta = yaml.safe_load((moe_root / version / "collection_meta.yaml").read_text())
        meta.setdefault("tables", {})[MEGAMOE_TABLE] = {"status": "complete"}
        (target / "collection_meta.yaml").write_text(
            f"# agentperf-tui: {MEGAMOE_TABLE} linked from {BACKEND} {donor.name} (see aic_table.py)\n"
            + yaml.safe_dump(meta, sort_keys=False))
        try:
            os.rename(tmp, root)
        except OSError:  # another process won the race, or a stale tree is in the way
            if not (root / data_dir / "moe" / BACKEND / version / table_file).exists():
                shutil.rmtree(root, ignore_errors=True)
                os.rename(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root, reason


def _build_model(aic: dict[str, Any], system: str, par: AICParallel, *, nextn: int, role: str,
                 moe_backend: str, database_mode: str, moe_quant_mode: str | None,
                 systems_root: Path | None, notes: list[str]) -> tuple[Any, Any]:
    """AIC model + database as ``cli estimate``'s static path builds them (plus MegaMoE)."""
    extra: dict[str, Any] = {"systems_paths": os.fspath(systems_root)} if systems_root else {}
    version = aic["get_latest_database_version"](system=system, backend=BACKEND, **extra)
    if version is None:
        raise AICBuildError(f"AIC has no {BACKEND} perf database for system {system!r}")
    db = aic["get_database_view"](system, BACKEND, version, allow_missing_data=database_mode != "SILICON",
                                  database_mode=database_mode, **extra)
    mc = aic["build_model_config"](par.tp_size, 1, par.attention_dp_size, par.moe_tp_size, par.moe_ep_size,
                                   None, None, None, moe_quant_mode, None)
    aic["apply_nextn"](mc, nextn)
    megamoe = moe_backend == "megamoe"
    if megamoe:
        mc.moe_backend = "megamoe"
    context_role = role != "decode"
    if not megamoe:  # MegaMoE fuses dispatch + experts + combine: no all-to-all to resolve
        phases = ("context",) if role == "prefill" else ("context", "generation")
        trial = copy.deepcopy(mc)  # a failed resolution leaves half-resolved quant modes behind
        try:
            aic["resolve_model_config_moe_comm"](trial, model_path=MODEL_PATH, backend_name=BACKEND, database=db,
                                                 required_phases=phases, fmha_quant_mode_explicit=False,
                                                 kvcache_quant_mode_explicit=False)
            mc = trial
        except Exception as exc:  # AIC raises PerfDataNotAvailableError here (cross-node EP)
            notes.append("MoE all-to-all resolution skipped, as `cli estimate --estimate-mode agg` does: "
                         + str(exc).splitlines()[0][:300])
    if mc.moe_comm_backend is None:
        aic["resolve_context_fmha_by_data"](mc, MODEL_PATH, db, BACKEND, is_context_role=context_role)
    aic["resolve_dsv4_moe_arch"](mc, MODEL_PATH, system_name=system, backend_name=BACKEND,
                                 moe_backend="megamoe" if megamoe else None)
    aic["resolve_nvfp4_for_system"](mc, system, MODEL_PATH, backend_name=BACKEND)
    return aic["get_model"](MODEL_PATH, mc, BACKEND), db


def _decode_ms(aic: dict[str, Any], model: Any, db: Any, per_rank_batch: int, context: int,
               sources: dict[str, set[str]]) -> float:
    latency, _energy, per_op, per_src, _fb = aic["decode_step"](
        model, db, gen_tokens=per_rank_batch, isl=max(1, context - 1), osl=1)
    for op, src in per_src.items():
        if per_op.get(op):
            sources.setdefault(op, set()).add(str(src))
    return float(latency)


def _prefill_ms(aic: dict[str, Any], model: Any, db: Any, per_rank_new: int, cached: int,
                sources: dict[str, set[str]]) -> float:
    rc = aic["RuntimeConfig"](batch_size=1, isl=per_rank_new + cached, osl=1, prefix=cached)
    ctx_lat, _gen_lat, _ctx_en, _gen_en, ctx_src, _gen_src, _fb = aic["static_breakdown"](
        model, db, rc, "static_ctx", 32, 1.0)
    for op, src in ctx_src.items():
        if ctx_lat.get(op):
            sources.setdefault(op, set()).add(str(src))
    return float(sum(ctx_lat.values()))


def build_table(hardware: str, *, tp: int, dp_attention: bool, ep: int, nextn: int = 0,
                role: str = "decode", dp: int | None = None, moe_backend: str | None = None,
                database_mode: str | None = None, moe_quant_mode: str | None = None,
                grid: TableGrid = DEFAULT_GRID, cache_dir: Path | None = None) -> StepTable:
    """Evaluate AIConfigurator for one SGLang engine of ``hardware`` over ``grid``.

    ``tp/dp_attention/ep[/dp]`` are SGLang's flags for the engine (``dp`` defaults to ``tp``
    with DP attention); ``nextn`` is the MTP draft depth (EAGLE ``--speculative-num-steps``);
    ``role`` picks the grids (``both`` for an aggregated engine). Defaults per hardware, each
    recorded in ``substitutions`` when it departs from the real deployment:

    * ``h200``: fused MoE with the checkpoint's W4A16-MXFP4 experts, ``database_mode`` HYBRID
      (the MoE op is transferred; every other op stays silicon). Passing ``moe_quant_mode=
      "fp8_block"`` instead gives an all-silicon table with FP8 experts (1.9x the expert bytes).
    * ``gb300-nvl72``: MegaMoE (``--moe-a2a-backend megamoe``) with its table linked in by
      ``megamoe_systems_root``; if that fails, the default fused MoE on the stock database.

    ``cache_dir`` holds the MegaMoE systems tree. Raises ``AICUnavailable`` without the extra.
    """
    if hardware not in AIC_SYSTEMS:
        raise ValueError(f"hardware {hardware!r}: AIC tables exist for {', '.join(AIC_SYSTEMS)}")
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {ROLES}")
    if nextn < 0:
        raise ValueError("nextn must be >= 0")
    par = aic_parallel(tp, dp_attention, ep, dp)
    aic = _import_aic()
    started = time.perf_counter()
    system = AIC_SYSTEMS[hardware]
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    notes: list[str] = []
    mode = (database_mode or ("HYBRID" if hardware == "h200" and moe_quant_mode is None else "SILICON")).upper()
    if database_mode is None and mode == "HYBRID":
        notes.append("database_mode HYBRID: h200_sxm/sglang has no silicon MoE rows for V4-Pro's W4A16-MXFP4 "
                     "experts (SILICON fails with 'MoE data missing'), so that op is transferred from other "
                     "quant profiles (source 'empirical'); the other ops stay silicon")
    if moe_quant_mode:
        notes.append(f"MoE quant mode forced to {moe_quant_mode} (the checkpoint's experts are MXFP4)")
    auto_moe = moe_backend is None
    backend_choice = moe_backend or ("megamoe" if hardware == "gb300-nvl72" else "fused")
    if backend_choice not in ("megamoe", "fused"):
        raise ValueError(f"moe_backend {moe_backend!r} must be 'megamoe' or 'fused'")
    decode_batches = [b for b in grid.decode_batches if b >= par.attention_dp_size
                      and b % par.attention_dp_size == 0] if role != "prefill" else []
    if role != "prefill" and not decode_batches:
        raise ValueError(f"grid has no decode batch that is a multiple of the {par.attention_dp_size} DP ranks")
    if role != "prefill" and par.attention_dp_size > 1:
        notes.append(f"decode batches are global: AIC ran batch/{par.attention_dp_size} requests per DP rank; "
                     f"batches below {par.attention_dp_size} are not representable and take the "
                     f"{par.attention_dp_size}-request step")
    if role != "decode" and par.attention_dp_size > 1:
        notes.append(f"prefill new tokens are the engine's total: one request of new/{par.attention_dp_size} "
                     "tokens on each DP rank (AIC assumes balanced ranks)")

    with _collect_aic_warnings() as warnings:
        model = db = None
        if backend_choice == "megamoe":
            try:
                root, reason = megamoe_systems_root(aic, system, cache)
                model, db = _build_model(aic, system, par, nextn=nextn, role=role, moe_backend="megamoe",
                                         database_mode=mode, moe_quant_mode=moe_quant_mode,
                                         systems_root=root, notes=notes)
                probe = {}
                if role != "prefill":
                    _decode_ms(aic, model, db, 1, 8192, probe)
                else:
                    _prefill_ms(aic, model, db, 1024, 0, probe)
                if root is not None:
                    notes.append(reason)
            except Exception as exc:
                if not auto_moe:
                    raise AICBuildError(f"AIC MegaMoE build for {system} failed: {exc}") from exc
                notes.append(f"MegaMoE unavailable ({type(exc).__name__}: {str(exc).splitlines()[0][:300]}); "
                             "fell back to SGLang's default fused MoE on the stock database")
                backend_choice, model, db = "fused", None, None
        if model is None:
            try:
                model, db = _build_model(aic, system, par, nextn=nextn, role=role, moe_backend="fused",
                                         database_mode=mode, moe_quant_mode=moe_quant_mode,
                                         systems_root=None, notes=notes)
            except Exception as exc:
                raise AICBuildError(f"AIC could not model {hardware} {par}: {exc}") from exc
        sources: dict[str, set[str]] = {}
        try:
            decode_rows = tuple(
                tuple(_decode_ms(aic, model, db, b // par.attention_dp_size, c, sources) for b in decode_batches)
                for c in grid.decode_contexts) if decode_batches else ()
            prefill_rows = tuple(
                tuple(_prefill_ms(aic, model, db, max(1, round(n / par.attention_dp_size)), k, sources)
                      for n in grid.prefill_new_tokens)
                for k in grid.prefill_cached_tokens) if role != "decode" else ()
        except Exception as exc:
            raise AICBuildError(f"AIC step estimate failed for {hardware} {par}: {exc}") from exc

    cfg = model.config
    quant = {name: str(getattr(cfg, f"{name}_quant_mode", "")).split(".")[-1]
             for name in ("gemm", "moe", "kvcache", "fmha", "comm")}
    parallel = {"tp": tp, "dp_attention": bool(dp_attention), "dp": par.attention_dp_size, "ep": ep,
                "gpus": par.gpus, "aic_tp_size": cfg.tp_size, "aic_attention_dp_size": cfg.attention_dp_size,
                "aic_moe_tp_size": cfg.moe_tp_size, "aic_moe_ep_size": cfg.moe_ep_size}
    return StepTable(
        decode_batches=tuple(decode_batches) if decode_rows else (),
        decode_contexts=tuple(grid.decode_contexts) if decode_rows else (),
        decode_ms=decode_rows,
        prefill_new_tokens=tuple(grid.prefill_new_tokens) if prefill_rows else (),
        prefill_cached_tokens=tuple(grid.prefill_cached_tokens) if prefill_rows else (),
        prefill_ms=prefill_rows,
        hardware=hardware, role=role, system=system, backend=BACKEND,
        backend_version=str(getattr(db, "version", "")), aic_version=installed_aic_version() or "",
        model=MODEL_PATH, nextn=int(getattr(cfg, "nextn", nextn) or 0), moe_backend=backend_choice,
        database_mode=mode, parallel=parallel, quant=quant, substitutions=tuple(notes),
        op_sources={op: "+".join(sorted(s)) for op, s in sorted(sources.items())},
        warnings=tuple(warnings),
        build_args=table_build_args(hardware, tp=tp, dp_attention=dp_attention, ep=ep, nextn=nextn, role=role,
                                    dp=dp, moe_backend=moe_backend, database_mode=database_mode,
                                    moe_quant_mode=moe_quant_mode, grid=grid),
        build_s=round(time.perf_counter() - started, 3),
    )
