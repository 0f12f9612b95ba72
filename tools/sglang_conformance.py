#!/usr/bin/env python3
"""Generate the SGLang / router conformance data files by reading the published wheels with ``ast``.

One job: turn a wheel (``sglang``, ``smg`` or ``sglang-router``) into a versioned JSON file under
``agentperf_tui/server/conformance_data/`` that lists the server's command-line flags (and, for
``sglang``, its Prometheus metrics and the DeepSeek-V4 model overrides), so that
:mod:`agentperf_tui.server.conformance` can check a launch argv without SGLang installed.

Nothing from the wheel is imported or executed: its sources are read out of the zip and walked
with ``ast``. Flag definitions written with variables, f-strings, helper functions and loops are
followed by a small static interpreter (module globals, imports inside the wheel, class
attributes, enum members, list/set arithmetic, comprehensions, calls to pure helper functions).
What it cannot follow (a value produced by a Rust extension, an environment variable read at
run time, ...) is left as ``null`` and listed under ``unresolved`` in the output file.

Usage::

    python tools/sglang_conformance.py --wheel /tmp/sglang-wheel \\
        --router-wheel /tmp/smg-wheel --router-wheel /tmp/router-wheel \\
        --out agentperf_tui/server/conformance_data/

The output is deterministic: regenerating from the same wheel gives a byte-identical file.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import hashlib
import json
import math
import operator
import re
import sys
import zipfile
from collections.abc import Callable, Iterable
from email.parser import HeaderParser
from pathlib import Path
from typing import Any

GENERATED_BY = "tools/sglang_conformance.py"
SCHEMA_VERSION = 1

ROUTER_PACKAGES = {"smg": "smg", "sglang-router": "sglang_router"}
METRIC_CTORS = {"Gauge", "Counter", "Histogram", "Summary", "GaugeHistogram"}
# prometheus_client's Histogram.DEFAULT_BUCKETS (without +Inf), used when no buckets= is given.
PROMETHEUS_DEFAULT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0]
NO_VALUE_ACTIONS = {"store_true", "store_false", "store_const", "append_const", "count", "help", "version"}
MATH_FUNCS = {"ceil": math.ceil, "floor": math.floor, "log": math.log, "log2": math.log2, "sqrt": math.sqrt}
SAFE_METHODS = {
    str: {
        "lower",
        "upper",
        "strip",
        "lstrip",
        "rstrip",
        "replace",
        "split",
        "join",
        "startswith",
        "endswith",
        "format",
        "title",
        "removeprefix",
        "removesuffix",
    },
    list: {"append", "extend", "insert", "copy", "index", "count", "remove"},
    dict: {"keys", "values", "items", "get", "copy", "update", "setdefault", "pop"},
    set: {"add", "update", "discard", "union", "copy", "difference", "intersection"},
    frozenset: {"union", "copy", "difference", "intersection"},
    tuple: {"index", "count"},
}


class Unresolved(Exception):
    """A value the static reader cannot compute."""


# --------------------------------------------------------------------------------------------
# Reading a wheel
# --------------------------------------------------------------------------------------------


class Wheel:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
        self.zf = zipfile.ZipFile(path)
        self.names = set(self.zf.namelist())
        meta_name = next(n for n in self.names if n.endswith(".dist-info/METADATA"))
        meta = HeaderParser().parsestr(self.zf.read(meta_name).decode("utf-8", "replace"))
        self.package = str(meta["Name"]).strip().lower().replace("_", "-")
        self.version = str(meta["Version"]).strip()
        self._modules: dict[str, Module | None] = {}

    def console_scripts(self) -> dict[str, str]:
        name = next((n for n in self.names if n.endswith(".dist-info/entry_points.txt")), None)
        out: dict[str, str] = {}
        section = ""
        for line in (self.text(name) or "").splitlines() if name else []:
            line = line.strip()
            if line.startswith("["):
                section = line.strip("[]")
            elif "=" in line and section == "console_scripts":
                key, _, value = line.partition("=")
                out[key.strip()] = value.strip()
        return dict(sorted(out.items()))

    def text(self, relpath: str) -> str | None:
        if relpath not in self.names:
            return None
        return self.zf.read(relpath).decode("utf-8", "replace")

    def module_file(self, modname: str) -> tuple[str, bool] | None:
        base = modname.replace(".", "/")
        if base + ".py" in self.names:
            return base + ".py", False
        if base + "/__init__.py" in self.names:
            return base + "/__init__.py", True
        return None

    def module(self, modname: str) -> Module | None:
        if modname not in self._modules:
            found = self.module_file(modname)
            if found is None:
                self._modules[modname] = None
            else:
                path, is_pkg = found
                src = self.text(path) or ""
                self._modules[modname] = Module(self, modname, path, ast.parse(src, path), is_pkg)
        return self._modules[modname]

    def module_by_path(self, relpath: str) -> Module | None:
        mod = relpath[:-3].replace("/", ".")
        if mod.endswith(".__init__"):
            mod = mod[: -len(".__init__")]
        return self.module(mod)

    def py_files(self) -> list[str]:
        return sorted(n for n in self.names if n.endswith(".py"))


def find_wheels(path_or_dir: Path) -> list[Path]:
    if path_or_dir.is_dir():
        return sorted(path_or_dir.glob("*.whl"))
    return [path_or_dir]


# --------------------------------------------------------------------------------------------
# Values of the static interpreter
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class External:
    """Something outside the wheel (the standard library, torch, a Rust extension)."""

    qualname: str


@dataclasses.dataclass(eq=False)
class ImportRef:
    module: str
    name: str | None  # None: the module itself


@dataclasses.dataclass(eq=False)
class ModuleRef:
    module: Module


@dataclasses.dataclass(eq=False)
class FuncRef:
    module: Module
    node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
    closure: Env | None = None
    owner: ClassRef | None = None

    @property
    def name(self) -> str:
        return getattr(self.node, "name", "<lambda>")


@dataclasses.dataclass(eq=False)
class ClassRef:
    module: Module
    node: ast.ClassDef

    @property
    def name(self) -> str:
        return self.node.name


@dataclasses.dataclass(frozen=True)
class EnumMember:
    cls: str
    name: str
    value: Any


@dataclasses.dataclass(eq=False)
class BoundMethod:
    obj: Any
    name: str


@dataclasses.dataclass(eq=False)
class SelfObj:
    attrs: dict[str, Any] = dataclasses.field(default_factory=dict)


_MISSING = object()


@dataclasses.dataclass(frozen=True)
class Unknown:
    """A name bound to a value that could not be computed; reading it raises Unresolved."""

    reason: str


class Module:
    def __init__(self, wheel: Wheel, name: str, path: str, tree: ast.Module, is_pkg: bool) -> None:
        self.wheel = wheel
        self.name = name
        self.path = path
        self.tree = tree
        self.package = name if is_pkg else name.rpartition(".")[0]
        self.symbols: dict[str, Any] = {}
        self._cache: dict[str, Any] = {}
        self._busy: set[str] = set()
        self._collect(tree.body)

    def _collect(self, body: list[ast.stmt]) -> None:
        for stmt in body:
            if isinstance(stmt, ast.Assign):
                for target in stmt.targets:
                    if isinstance(target, ast.Name):
                        self.symbols[target.id] = stmt.value
            elif (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and stmt.value is not None
            ):
                self.symbols[stmt.target.id] = stmt.value
            elif isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
                self.symbols[stmt.name] = FuncRef(self, stmt)
            elif isinstance(stmt, ast.ClassDef):
                self.symbols[stmt.name] = ClassRef(self, stmt)
            elif isinstance(stmt, ast.ImportFrom):
                base = self.resolve_relative(stmt.module, stmt.level)
                for alias in stmt.names:
                    if alias.name != "*":
                        self.symbols[alias.asname or alias.name] = ImportRef(base, alias.name)
            elif isinstance(stmt, ast.Import):
                for alias in stmt.names:
                    if alias.asname:
                        self.symbols[alias.asname] = ImportRef(alias.name, None)
                    else:
                        top = alias.name.split(".")[0]
                        self.symbols[top] = ImportRef(top, None)
            elif isinstance(stmt, ast.Try):
                self._collect(stmt.body)

    def resolve_relative(self, module: str | None, level: int) -> str:
        if not level:
            return module or ""
        parts = self.package.split(".") if self.package else []
        if level > 1:
            parts = parts[: len(parts) - (level - 1)]
        return ".".join(parts + ([module] if module else []))

    def lookup(self, name: str, interp: Interp) -> Any:
        if name in self._cache:
            return self._cache[name]
        if name not in self.symbols:
            sub = self.wheel.module(f"{self.name}.{name}") if self.package == self.name else None
            if sub is not None:
                return ModuleRef(sub)
            raise Unresolved(f"name {name!r} is not defined in {self.name}")
        if name in self._busy:
            raise Unresolved(f"recursive definition of {self.name}.{name}")
        sym = self.symbols[name]
        self._busy.add(name)
        try:
            if isinstance(sym, ImportRef):
                value = interp.resolve_import(sym)
            elif isinstance(sym, ast.AST):
                value = interp.eval(sym, Env(self))
            else:
                value = sym
        except Unresolved as exc:
            value = Unknown(f"{self.name}.{name}: {exc}")
        finally:
            self._busy.discard(name)
        self._cache[name] = value
        if isinstance(value, Unknown):
            raise Unresolved(value.reason)
        return value


# --------------------------------------------------------------------------------------------
# Scopes
# --------------------------------------------------------------------------------------------


class Env:
    """A scope: local values over a parent scope, over the module globals."""

    def __init__(
        self, module: Module, values: dict[str, Any] | None = None, parent: Env | None = None
    ) -> None:
        self.module = module
        self.values = values if values is not None else {}
        self.parent = parent

    def lookup(self, name: str, interp: Interp) -> Any:
        if name in self.values:
            value = self.values[name]
            if isinstance(value, Unknown):
                raise Unresolved(value.reason)
            return value
        if self.parent is not None:
            return self.parent.lookup(name, interp)
        if name in BUILTINS and name not in self.module.symbols:
            return BUILTINS[name]
        return self.module.lookup(name, interp)

    def self_attr(self, attr: str, interp: Interp) -> Any:
        if self.parent is not None and "self" not in self.values:
            return self.parent.self_attr(attr, interp)
        try:
            obj = self.lookup("self", interp)
        except Unresolved:
            raise Unresolved(f"self.{attr}") from None
        return interp.getattr(obj, attr)

    def child(self, values: dict[str, Any] | None = None) -> Env:
        return Env(self.module, values or {}, self)


@dataclasses.dataclass
class Thunk:
    lineno: int
    value: ast.expr
    conditions: tuple[str, ...]


class LazyFunctionEnv(Env):
    """Names inside one function resolved to their last assignment before a given line.

    Used where every construction site must be visited whatever the branch (metrics, model
    overrides): an ``if x is None: x = [...]`` default reads as the literal it sets.
    """

    def __init__(
        self,
        module: Module,
        func: ast.AST,
        params: dict[str, Any],
        before: int,
        thunks: dict[str, list[Thunk]] | None = None,
    ) -> None:
        super().__init__(module)
        self.func = func
        self.params = params
        self.before = before
        self.thunks = thunks if thunks is not None else collect_thunks(func)

    def at(self, line: int) -> LazyFunctionEnv:
        return LazyFunctionEnv(self.module, self.func, self.params, line, self.thunks)

    def _last(self, key: str) -> Thunk | None:
        best = None
        for th in self.thunks.get(key, ()):
            if th.lineno < self.before and (best is None or th.lineno >= best.lineno):
                best = th
        return best

    def lookup(self, name: str, interp: Interp) -> Any:
        th = self._last(name)
        if th is not None:
            return interp.eval(th.value, self.at(th.lineno))
        if name in self.params:
            value = self.params[name]
            if value is _MISSING:
                raise Unresolved(f"parameter {name!r} has no static value")
            return value
        return super().lookup(name, interp)

    def self_attr(self, attr: str, interp: Interp) -> Any:
        th = self._last("self." + attr)
        if th is None:
            raise Unresolved(f"self.{attr}")
        return interp.eval(th.value, self.at(th.lineno))


def collect_thunks(func: ast.AST) -> dict[str, list[Thunk]]:
    out: dict[str, list[Thunk]] = {}

    def add(target: ast.expr, value: ast.expr, lineno: int, conds: tuple[str, ...]) -> None:
        if isinstance(target, ast.Name):
            out.setdefault(target.id, []).append(Thunk(lineno, value, conds))
        elif (
            isinstance(target, ast.Attribute)
            and isinstance(target.value, ast.Name)
            and target.value.id == "self"
        ):
            out.setdefault("self." + target.attr, []).append(Thunk(lineno, value, conds))

    def walk(body: list[ast.stmt], conds: tuple[str, ...]) -> None:
        for stmt in body:
            if isinstance(stmt, ast.Assign):
                for target in stmt.targets:
                    add(target, stmt.value, stmt.lineno, conds)
            elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
                add(stmt.target, stmt.value, stmt.lineno, conds)
            elif isinstance(stmt, ast.If):
                test = ast.unparse(stmt.test)
                walk(stmt.body, conds + (test,))
                walk(stmt.orelse, conds + (f"not ({test})",))
            elif isinstance(stmt, ast.For | ast.AsyncFor | ast.While):
                walk(stmt.body, conds + ("loop",))
                walk(stmt.orelse, conds)
            elif isinstance(stmt, ast.With | ast.AsyncWith):
                walk(stmt.body, conds)
            elif isinstance(stmt, ast.Try):
                walk(stmt.body, conds)
                for handler in stmt.handlers:
                    walk(handler.body, conds + ("except",))
                walk(stmt.orelse, conds)
                walk(stmt.finalbody, conds)

    body = func.body if isinstance(func.body, list) else []
    walk(body, ())
    return out


class _Return(Exception):
    def __init__(self, value: Any) -> None:
        self.value = value


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


def _enum_members(cls: ClassRef, interp: Interp) -> list[EnumMember]:
    members = []
    env = Env(cls.module)
    for stmt in cls.node.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            name = stmt.targets[0].id
            if name.startswith("_"):
                continue
            try:
                value = interp.eval(stmt.value, env)
            except Unresolved:
                value = None
            members.append(EnumMember(cls.name, name, value))
    return members


def _as_iterable(value: Any, interp: Interp) -> Iterable[Any]:
    if isinstance(value, ClassRef) and interp.is_enum(value):
        return _enum_members(value, interp)
    if isinstance(value, str | list | tuple | set | frozenset | dict | range):
        return value
    if isinstance(value, type({}.keys()) | type({}.values()) | type({}.items())):
        return value
    raise Unresolved(f"cannot iterate over {value!r}")


def _wrap_builtin(fn: Callable[..., Any]) -> Callable[..., Any]:
    def call(interp: Interp, *args: Any, **kwargs: Any) -> Any:
        args = tuple(_as_iterable(a, interp) if isinstance(a, ClassRef) else a for a in args)
        return fn(*args, **kwargs)

    return call


BUILTINS: dict[str, Any] = {
    name: _wrap_builtin(fn)
    for name, fn in {
        "list": list,
        "tuple": tuple,
        "set": set,
        "frozenset": frozenset,
        "sorted": sorted,
        "dict": dict,
        "range": range,
        "len": len,
        "str": str,
        "int": int,
        "float": float,
        "bool": bool,
        "min": min,
        "max": max,
        "sum": sum,
        "abs": abs,
        "any": any,
        "all": all,
        "enumerate": enumerate,
        "zip": zip,
        "reversed": reversed,
        "repr": repr,
        "round": round,
    }.items()
}


# --------------------------------------------------------------------------------------------
# The interpreter
# --------------------------------------------------------------------------------------------


_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}


class Interp:
    def __init__(self, wheel: Wheel) -> None:
        self.wheel = wheel
        self.notes: list[str] = []
        # Calls to wheel functions handled natively, by function name: hook(interp, call, env) -> value.
        self.func_hooks: dict[str, Callable[[Interp, ast.Call, Env], Any]] = {}
        # Server-args field defaults, for get_<namespace>().<field> reads (metric bucket defaults).
        self.field_defaults: dict[str, Any] = {}
        self.dependencies: list[str] = []
        self.depth = 0
        self.steps = 0
        self._class_ns: dict[int, dict[str, Any]] = {}

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    # -- imports and classes ------------------------------------------------------------------

    def resolve_import(self, ref: ImportRef) -> Any:
        if ref.name is None:
            mod = self.wheel.module(ref.module)
            return ModuleRef(mod) if mod is not None else External(ref.module)
        sub = self.wheel.module(f"{ref.module}.{ref.name}")
        if sub is not None:
            return ModuleRef(sub)
        mod = self.wheel.module(ref.module)
        if mod is None:
            return External(f"{ref.module}.{ref.name}")
        return mod.lookup(ref.name, self)

    def class_bases(self, cls: ClassRef) -> list[Any]:
        out = []
        for base in cls.node.bases:
            try:
                out.append(self.eval(base, Env(cls.module)))
            except Unresolved:
                out.append(External(ast.unparse(base)))
        return out

    def is_enum(self, cls: ClassRef) -> bool:
        for base in self.class_bases(cls):
            if isinstance(base, External) and base.qualname.split(".")[-1] in {
                "Enum",
                "IntEnum",
                "StrEnum",
                "Flag",
                "IntFlag",
            }:
                return True
            if isinstance(base, ClassRef) and self.is_enum(base):
                return True
        return False

    def class_namespace(self, cls: ClassRef) -> dict[str, Any]:
        """The class body's names, evaluated in order once (failures kept as Unknown)."""
        key = id(cls.node)
        if key in self._class_ns:
            return self._class_ns[key]
        env = Env(cls.module)
        self._class_ns[key] = env.values
        for stmt in cls.node.body:
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
                env.values[stmt.name] = FuncRef(cls.module, stmt, owner=cls)
                continue
            targets: list[ast.expr] = []
            if isinstance(stmt, ast.Assign):
                targets = stmt.targets
            elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
                targets = [stmt.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    try:
                        env.values[target.id] = self.eval(stmt.value, env)  # type: ignore[arg-type]
                    except Unresolved as exc:
                        env.values[target.id] = Unknown(f"{cls.name}.{target.id}: {exc}")
        return env.values

    def class_attr(self, cls: ClassRef, attr: str) -> Any:
        if self.is_enum(cls):
            for member in _enum_members(cls, self):
                if member.name == attr:
                    return member
        ns = self.class_namespace(cls)
        if attr in ns:
            value = ns[attr]
            if isinstance(value, Unknown):
                raise Unresolved(value.reason)
            return value
        for base in self.class_bases(cls):
            if isinstance(base, ClassRef):
                try:
                    return self.class_attr(base, attr)
                except Unresolved:
                    pass
        raise Unresolved(f"class attribute {cls.name}.{attr}")

    # -- expressions -----------------------------------------------------------------------------

    def eval(self, node: ast.AST, env: Env) -> Any:
        self.steps += 1
        if self.steps > 5_000_000:
            raise Unresolved("evaluation step budget exhausted")
        method = getattr(self, "eval_" + type(node).__name__, None)
        if method is None:
            raise Unresolved(f"unsupported expression {type(node).__name__}: {ast.unparse(node)[:80]}")
        return method(node, env)

    def eval_Constant(self, node: ast.Constant, env: Env) -> Any:
        return node.value

    def _elts(self, elts: list[ast.expr], env: Env) -> list[Any]:
        out: list[Any] = []
        for elt in elts:
            if isinstance(elt, ast.Starred):
                out.extend(_as_iterable(self.eval(elt.value, env), self))
            else:
                out.append(self.eval(elt, env))
        return out

    def eval_List(self, node: ast.List, env: Env) -> Any:
        return self._elts(node.elts, env)

    def eval_Tuple(self, node: ast.Tuple, env: Env) -> Any:
        return tuple(self._elts(node.elts, env))

    def eval_Set(self, node: ast.Set, env: Env) -> Any:
        return set(self._elts(node.elts, env))

    def eval_Dict(self, node: ast.Dict, env: Env) -> Any:
        out: dict[Any, Any] = {}
        for key, value in zip(node.keys, node.values, strict=True):
            if key is None:
                out.update(self.eval(value, env))
            else:
                out[self.eval(key, env)] = self.eval(value, env)
        return out

    def eval_Name(self, node: ast.Name, env: Env) -> Any:
        return env.lookup(node.id, self)

    def eval_Attribute(self, node: ast.Attribute, env: Env) -> Any:
        if isinstance(node.value, ast.Name) and node.value.id == "self":
            return env.self_attr(node.attr, self)
        # get_schedule().x / get_observability().x: the declared default of server flag x.
        if (
            isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Name)
            and node.value.func.id.startswith("get_")
            and not node.value.args
            and node.attr in self.field_defaults
        ):
            self.dependencies.append(node.attr)
            return self.field_defaults[node.attr]
        obj = self.eval(node.value, env)
        return self.getattr(obj, node.attr)

    def getattr(self, obj: Any, attr: str) -> Any:
        if isinstance(obj, ModuleRef):
            return obj.module.lookup(attr, self)
        if isinstance(obj, External):
            if obj.qualname == "os" and attr == "environ":
                self.note("the environment is read as empty (no environment variables set)")
                return {}
            return External(f"{obj.qualname}.{attr}")
        if isinstance(obj, ClassRef):
            return self.class_attr(obj, attr)
        if isinstance(obj, EnumMember):
            if attr == "name":
                return obj.name
            if attr == "value":
                return obj.value
        if isinstance(obj, FuncRef | ClassRef) and attr == "__doc__":
            return ast.get_docstring(obj.node, clean=False) if not isinstance(obj.node, ast.Lambda) else None
        if isinstance(obj, SelfObj):
            if attr in obj.attrs:
                return obj.attrs[attr]
            raise Unresolved(f"self.{attr}")
        if isinstance(obj, Recorder):
            return BoundMethod(obj, attr)
        allowed = SAFE_METHODS.get(type(obj))
        if allowed and attr in allowed:
            return BoundMethod(obj, attr)
        raise Unresolved(f"attribute {attr!r} of {type(obj).__name__}")

    def eval_Subscript(self, node: ast.Subscript, env: Env) -> Any:
        obj = self.eval(node.value, env)
        key = self.eval(node.slice, env)
        if isinstance(obj, External | ClassRef | ModuleRef):
            raise Unresolved(f"subscript of {ast.unparse(node.value)}")
        try:
            return obj[key]
        except (KeyError, IndexError, TypeError) as exc:
            raise Unresolved(f"subscript {ast.unparse(node)}: {exc}") from None

    def eval_Slice(self, node: ast.Slice, env: Env) -> Any:
        def part(x: ast.expr | None) -> Any:
            return None if x is None else self.eval(x, env)

        return slice(part(node.lower), part(node.upper), part(node.step))

    _BINOPS: dict[type, Callable[[Any, Any], Any]] = {
        ast.Add: lambda a, b: a + b,
        ast.Sub: lambda a, b: a - b,
        ast.Mult: lambda a, b: a * b,
        ast.Div: lambda a, b: a / b,
        ast.FloorDiv: lambda a, b: a // b,
        ast.Mod: lambda a, b: a % b,
        ast.Pow: lambda a, b: a**b,
        ast.BitOr: lambda a, b: a | b,
        ast.BitAnd: lambda a, b: a & b,
        ast.LShift: lambda a, b: a << b,
        ast.RShift: lambda a, b: a >> b,
        ast.BitXor: lambda a, b: a ^ b,
    }

    def _plain(self, value: Any, what: ast.AST) -> Any:
        if isinstance(value, External | ClassRef | ModuleRef | FuncRef | BoundMethod | SelfObj):
            raise Unresolved(f"non-static operand {ast.unparse(what)[:80]}")
        return value

    def eval_BinOp(self, node: ast.BinOp, env: Env) -> Any:
        left = self._plain(self.eval(node.left, env), node.left)
        right = self._plain(self.eval(node.right, env), node.right)
        op = self._BINOPS.get(type(node.op))
        if op is None:
            raise Unresolved(f"operator {type(node.op).__name__}")
        try:
            return op(left, right)
        except Exception as exc:  # a type error in the wheel's own expression
            raise Unresolved(f"{ast.unparse(node)[:80]}: {exc}") from None

    def eval_UnaryOp(self, node: ast.UnaryOp, env: Env) -> Any:
        value = self._plain(self.eval(node.operand, env), node.operand)
        if isinstance(node.op, ast.Not):
            return not value
        if isinstance(node.op, ast.USub):
            return -value
        if isinstance(node.op, ast.UAdd):
            return +value
        return ~value

    def eval_BoolOp(self, node: ast.BoolOp, env: Env) -> Any:
        value: Any = None
        for i, part in enumerate(node.values):
            value = self._plain(self.eval(part, env), part)
            last = i == len(node.values) - 1
            if isinstance(node.op, ast.Or) and (value or last):
                return value
            if isinstance(node.op, ast.And) and (not value or last):
                return value
        return value

    def eval_Compare(self, node: ast.Compare, env: Env) -> Any:
        left = self.eval(node.left, env)
        for op, comp in zip(node.ops, node.comparators, strict=True):
            right = self.eval(comp, env)
            if isinstance(op, ast.Is):
                ok = left is right
            elif isinstance(op, ast.IsNot):
                ok = left is not right
            else:
                a, b = self._plain(left, node.left), self._plain(right, comp)
                try:
                    ok = _COMPARE[type(op)](a, b)
                except TypeError as exc:
                    raise Unresolved(f"{ast.unparse(node)[:80]}: {exc}") from None
            if not ok:
                return False
            left = right
        return True

    def eval_IfExp(self, node: ast.IfExp, env: Env) -> Any:
        test = self._plain(self.eval(node.test, env), node.test)
        return self.eval(node.body if test else node.orelse, env)

    def eval_JoinedStr(self, node: ast.JoinedStr, env: Env) -> Any:
        out = []
        for part in node.values:
            if isinstance(part, ast.Constant):
                out.append(str(part.value))
            else:
                out.append(self.eval(part, env))
        return "".join(out)

    def eval_FormattedValue(self, node: ast.FormattedValue, env: Env) -> Any:
        value = self._plain(self.eval(node.value, env), node.value)
        if node.conversion == ord("r"):
            value = repr(value)
        elif node.conversion == ord("s"):
            value = str(value)
        elif node.conversion == ord("a"):
            value = ascii(value)
        spec = self.eval(node.format_spec, env) if node.format_spec is not None else ""
        return format(value, spec)

    def _comprehension(
        self, generators: list[ast.comprehension], env: Env, emit: Callable[[Env], None]
    ) -> None:
        def loop(i: int, scope: Env) -> None:
            if i == len(generators):
                emit(scope)
                return
            gen = generators[i]
            for item in list(_as_iterable(self.eval(gen.iter, scope), self)):
                inner = scope.child()
                self.assign(gen.target, item, inner)
                if all(self.eval(cond, inner) for cond in gen.ifs):
                    loop(i + 1, inner)

        loop(0, env.child())

    def eval_ListComp(self, node: ast.ListComp, env: Env) -> Any:
        out: list[Any] = []
        self._comprehension(node.generators, env, lambda s: out.append(self.eval(node.elt, s)))
        return out

    def eval_GeneratorExp(self, node: ast.GeneratorExp, env: Env) -> Any:
        out: list[Any] = []
        self._comprehension(node.generators, env, lambda s: out.append(self.eval(node.elt, s)))
        return out

    def eval_SetComp(self, node: ast.SetComp, env: Env) -> Any:
        out: set[Any] = set()
        self._comprehension(node.generators, env, lambda s: out.add(self.eval(node.elt, s)))
        return out

    def eval_DictComp(self, node: ast.DictComp, env: Env) -> Any:
        out: dict[Any, Any] = {}

        def emit(s: Env) -> None:
            out[self.eval(node.key, s)] = self.eval(node.value, s)

        self._comprehension(node.generators, env, emit)
        return out

    def eval_Lambda(self, node: ast.Lambda, env: Env) -> Any:
        return FuncRef(env.module, node, closure=env)

    def eval_Call(self, node: ast.Call, env: Env) -> Any:
        func = self.eval(node.func, env)
        if isinstance(func, FuncRef) and func.name in self.func_hooks:
            return self.func_hooks[func.name](self, node, env)
        if isinstance(func, BoundMethod) and isinstance(func.obj, Recorder):
            return func.obj.call(func.name, node, env, self)
        args = self._elts(node.args, env)
        kwargs: dict[str, Any] = {}
        for kw in node.keywords:
            if kw.arg is None:
                kwargs.update(self.eval(kw.value, env))
            else:
                kwargs[kw.arg] = self.eval(kw.value, env)
        return self.call(func, args, kwargs, node)

    def call(self, func: Any, args: list[Any], kwargs: dict[str, Any], node: ast.AST | None = None) -> Any:
        where = ast.unparse(node)[:80] if node is not None else repr(func)
        if callable(func) and not isinstance(func, FuncRef | ClassRef | External | BoundMethod):
            try:
                return func(self, *args, **kwargs)
            except Unresolved:
                raise
            except Exception as exc:
                raise Unresolved(f"{where}: {exc}") from None
        if isinstance(func, BoundMethod):
            try:
                return getattr(func.obj, func.name)(*args, **kwargs)
            except Exception as exc:
                raise Unresolved(f"{where}: {exc}") from None
        if isinstance(func, FuncRef):
            return self.call_function(func, args, kwargs)
        if isinstance(func, External):
            head, _, tail = func.qualname.rpartition(".")
            if head == "math" and tail in MATH_FUNCS:
                return MATH_FUNCS[tail](*args, **kwargs)
            if tail == "field" and head in {"dataclasses", "msgspec"}:
                return field_default_value(self, kwargs)
            if func.qualname == "os.getenv":
                self.note("the environment is read as empty (no environment variables set)")
                return args[1] if len(args) > 1 else kwargs.get("default")
            raise Unresolved(f"call to {func.qualname} (outside the wheel)")
        raise Unresolved(f"call to {where}")

    def call_function(self, func: FuncRef, args: list[Any], kwargs: dict[str, Any]) -> Any:
        if self.depth > 40:
            raise Unresolved("call depth exceeded")
        node = func.node
        env = Env(func.module, {}, func.closure)
        self.bind(node.args, args, kwargs, env, func)
        self.depth += 1
        try:
            if isinstance(node, ast.Lambda):
                return self.eval(node.body, env)
            self.exec_block(node.body, env, tolerant=False)
        except _Return as ret:
            return ret.value
        finally:
            self.depth -= 1
        return None

    def bind(
        self, spec: ast.arguments, args: list[Any], kwargs: dict[str, Any], env: Env, func: FuncRef
    ) -> None:
        positional = list(spec.posonlyargs) + list(spec.args)
        defaults = [None] * (len(positional) - len(spec.defaults)) + list(spec.defaults)
        def_env = Env(func.module, {}, func.closure)
        args = list(args)
        for i, param in enumerate(positional):
            if i < len(args):
                env.values[param.arg] = args[i]
            elif param.arg in kwargs:
                env.values[param.arg] = kwargs.pop(param.arg)
            elif defaults[i] is not None:
                env.values[param.arg] = self.eval(defaults[i], def_env)
            elif param.arg in {"self", "cls"}:
                env.values[param.arg] = SelfObj()
            else:
                raise Unresolved(f"missing argument {param.arg!r} for {func.name}")
        if spec.vararg is not None:
            env.values[spec.vararg.arg] = tuple(args[len(positional) :])
        for param, default in zip(spec.kwonlyargs, spec.kw_defaults, strict=True):
            if param.arg in kwargs:
                env.values[param.arg] = kwargs.pop(param.arg)
            elif default is not None:
                env.values[param.arg] = self.eval(default, def_env)
            else:
                raise Unresolved(f"missing keyword argument {param.arg!r} for {func.name}")
        if spec.kwarg is not None:
            env.values[spec.kwarg.arg] = dict(kwargs)

    # -- statements ------------------------------------------------------------------------------

    def assign(self, target: ast.expr, value: Any, env: Env) -> None:
        if isinstance(target, ast.Name):
            env.values[target.id] = value
        elif isinstance(target, ast.Tuple | ast.List):
            items = list(_as_iterable(value, self))
            if len(items) != len(target.elts):
                raise Unresolved(f"cannot unpack into {ast.unparse(target)}")
            for t, v in zip(target.elts, items, strict=True):
                self.assign(t, v, env)
        elif isinstance(target, ast.Subscript):
            obj = self.eval(target.value, env)
            key = self.eval(target.slice, env)
            try:
                obj[key] = value
            except Exception as exc:
                raise Unresolved(f"item assignment {ast.unparse(target)}: {exc}") from None
        elif isinstance(target, ast.Attribute):
            obj = (
                self.eval(target.value, env)
                if not (isinstance(target.value, ast.Name) and target.value.id == "self")
                else env.lookup("self", self)
            )
            if isinstance(obj, SelfObj):
                obj.attrs[target.attr] = value
            else:
                raise Unresolved(f"attribute assignment {ast.unparse(target)}")
        else:
            raise Unresolved(f"assignment target {ast.unparse(target)}")

    def exec_block(self, body: list[ast.stmt], env: Env, tolerant: bool) -> None:
        for stmt in body:
            try:
                self.exec_stmt(stmt, env, tolerant)
            except Unresolved as exc:
                if not tolerant:
                    raise
                self.note(f"{env.module.path}:{stmt.lineno}: skipped statement ({exc})")

    def exec_stmt(self, stmt: ast.stmt, env: Env, tolerant: bool) -> None:
        self.steps += 1
        if isinstance(stmt, ast.Expr):
            if isinstance(stmt.value, ast.Constant):
                return  # docstring
            self.eval(stmt.value, env)
        elif isinstance(stmt, ast.Assign | ast.AnnAssign):
            if stmt.value is None:
                return
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            try:
                value = self.eval(stmt.value, env)
            except Unresolved as exc:
                if not all(isinstance(t, ast.Name) for t in targets):
                    raise
                # Bind the name to "unknown": a later use fails, a later `if name is None` reads false.
                value = Unknown(f"{env.module.path}:{stmt.lineno}: {exc}")
            for target in targets:
                self.assign(target, value, env)
        elif isinstance(stmt, ast.AugAssign):
            current = self.eval(stmt.target, env)
            value = self.eval(stmt.value, env)
            op = self._BINOPS[type(stmt.op)]
            self.assign(stmt.target, op(current, value), env)
        elif isinstance(stmt, ast.If):
            try:
                test = bool(self._plain(self.eval(stmt.test, env), stmt.test))
            except Unresolved as exc:
                # Not statically known: read as false (the default environment), and say so.
                self.note(
                    f"{env.module.path}:{stmt.lineno}: condition `{ast.unparse(stmt.test)}` is not "
                    f"static ({exc}); read as false"
                )
                test = False
            self.exec_block(stmt.body if test else stmt.orelse, env, tolerant)
        elif isinstance(stmt, ast.For):
            items = list(_as_iterable(self.eval(stmt.iter, env), self))
            for item in items:
                self.assign(stmt.target, item, env)
                try:
                    self.exec_block(stmt.body, env, tolerant)
                except _Break:
                    break
                except _Continue:
                    continue
            else:
                self.exec_block(stmt.orelse, env, tolerant)
        elif isinstance(stmt, ast.Return):
            raise _Return(None if stmt.value is None else self.eval(stmt.value, env))
        elif isinstance(stmt, ast.Break):
            raise _Break()
        elif isinstance(stmt, ast.Continue):
            raise _Continue()
        elif isinstance(stmt, ast.ImportFrom):
            base = env.module.resolve_relative(stmt.module, stmt.level)
            for alias in stmt.names:
                env.values[alias.asname or alias.name] = self.resolve_import(ImportRef(base, alias.name))
        elif isinstance(stmt, ast.Import):
            for alias in stmt.names:
                name = alias.asname or alias.name.split(".")[0]
                env.values[name] = self.resolve_import(ImportRef(alias.name if alias.asname else name, None))
        elif isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
            env.values[stmt.name] = FuncRef(env.module, stmt, closure=env)
        elif isinstance(stmt, ast.Try):
            self.exec_block(stmt.body, env, tolerant)
            self.exec_block(stmt.finalbody, env, tolerant)
        elif isinstance(stmt, ast.With):
            self.exec_block(stmt.body, env, tolerant)
        elif isinstance(stmt, ast.Assert | ast.Pass | ast.Global | ast.Nonlocal | ast.Delete):
            return
        elif isinstance(stmt, ast.Raise):
            raise Unresolved("raise")
        else:
            raise Unresolved(f"unsupported statement {type(stmt).__name__}")


def field_default_value(interp: Interp, kwargs: dict[str, Any]) -> Any:
    """dataclasses.field / msgspec.field: the default a field gets."""
    if "default" in kwargs:
        return kwargs["default"]
    factory = kwargs.get("default_factory")
    if factory is None:
        raise Unresolved("field() without a default")
    return interp.call(factory, [], {})


# --------------------------------------------------------------------------------------------
# Recording argparse calls
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class FlagRecord:
    names: list[str]
    group: str
    takes_value: bool
    nargs: Any
    choices: list[Any] | None
    default: str | None
    deprecated: bool
    replacement: str | None
    deprecation: str | None
    source: str
    dest: str = ""
    deprecated_choices: dict[str, str | None] | None = None
    required: bool = False

    def to_json(self) -> dict[str, Any]:
        name = next((n for n in self.names if n.startswith("--")), self.names[0])
        return {
            "name": name,
            "dest": self.dest or name.lstrip("-").replace("-", "_"),
            "required": self.required,
            "deprecated_choices": self.deprecated_choices,
            "aliases": [n for n in self.names if n != name],
            "takes_value": self.takes_value,
            "nargs": self.nargs,
            "choices": self.choices,
            "deprecated": self.deprecated,
            "replacement": self.replacement,
            "deprecation": self.deprecation,
            "default": self.default,
            "group": self.group,
            "source": self.source,
        }


class Recorder:
    """Stands in for an ``argparse.ArgumentParser`` (or one of its groups) and records flags."""

    def __init__(
        self, sink: list[FlagRecord], group: str, group_of_dest: Callable[[str], str] | None = None
    ) -> None:
        self.sink = sink
        self.group = group
        self.group_of_dest = group_of_dest

    def call(self, method: str, node: ast.Call, env: Env, interp: Interp) -> Any:
        if method == "add_argument":
            self.sink.append(record_add_argument(node, env, interp, self))
            return None
        if method == "add_argument_group":
            title = interp.eval(node.args[0], env) if node.args else self.group
            for kw in node.keywords:
                if kw.arg == "title":
                    title = interp.eval(kw.value, env)
            return Recorder(self.sink, str(title))
        if method == "add_mutually_exclusive_group":
            return Recorder(self.sink, self.group)
        if method in {"set_defaults", "add_subparsers", "print_help", "error"}:
            return None
        raise Unresolved(f"parser method {method}")


def stable_repr(value: Any) -> str:
    if isinstance(value, set | frozenset):
        inner = ", ".join(sorted(stable_repr(v) for v in value))
        return f"{type(value).__name__}({{{inner}}})" if value else f"{type(value).__name__}()"
    if isinstance(value, list):
        return "[" + ", ".join(stable_repr(v) for v in value) + "]"
    if isinstance(value, tuple):
        return "(" + ", ".join(stable_repr(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{stable_repr(k)}: {stable_repr(v)}" for k, v in value.items()) + "}"
    if isinstance(value, EnumMember):
        return f"{value.cls}.{value.name}"
    if isinstance(value, External):
        return value.qualname
    if isinstance(value, ClassRef | FuncRef):
        return value.name
    return repr(value)


def json_choice(value: Any) -> Any:
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, EnumMember):
        return value.name
    return stable_repr(value)


def json_choices(value: Any, interp: Interp) -> list[Any]:
    items = list(_as_iterable(value, interp))
    out = [json_choice(v) for v in items]
    if isinstance(value, set | frozenset):
        out.sort(key=lambda v: (type(v).__name__, str(v)))
    return out


def action_traits(action: Any, interp: Interp) -> dict[str, Any]:
    """What argparse does with an ``action=``: its name, whether it takes a value by default, etc."""
    if action is None:
        return {
            "name": "store",
            "nargs": None,
            "takes_value": True,
            "default": _MISSING,
            "boolean_optional": False,
        }
    if isinstance(action, str):
        return {
            "name": action,
            "nargs": None,
            "takes_value": action not in NO_VALUE_ACTIONS,
            "default": False if action == "store_true" else True if action == "store_false" else _MISSING,
            "boolean_optional": False,
        }
    if isinstance(action, External):
        tail = action.qualname.split(".")[-1]
        if tail == "BooleanOptionalAction":
            return {
                "name": tail,
                "nargs": 0,
                "takes_value": False,
                "default": _MISSING,
                "boolean_optional": True,
            }
        return {
            "name": tail,
            "nargs": None,
            "takes_value": True,
            "default": _MISSING,
            "boolean_optional": False,
        }
    if isinstance(action, ClassRef):
        traits = {
            "name": action.name,
            "nargs": None,
            "takes_value": True,
            "default": _MISSING,
            "boolean_optional": False,
            "class": action,
        }
        chain = [action]
        while chain:
            cls = chain.pop(0)
            init = next(
                (s for s in cls.node.body if isinstance(s, ast.FunctionDef) and s.name == "__init__"), None
            )
            if init is not None:
                spec = init.args
                params = list(spec.posonlyargs) + list(spec.args)
                defaults = dict(
                    zip(
                        [p.arg for p in params[len(params) - len(spec.defaults) :]],
                        spec.defaults,
                        strict=True,
                    )
                )
                defaults.update(
                    {
                        p.arg: d
                        for p, d in zip(spec.kwonlyargs, spec.kw_defaults, strict=True)
                        if d is not None
                    }
                )
                env = Env(cls.module)
                if "nargs" in defaults:
                    traits["nargs"] = interp.eval(defaults["nargs"], env)
                if "default" in defaults:
                    traits["default"] = interp.eval(defaults["default"], env)
                break
            chain.extend(b for b in interp.class_bases(cls) if isinstance(b, ClassRef))
        traits["takes_value"] = traits["nargs"] != 0
        return traits
    raise Unresolved(f"action {action!r}")


DEPRECATED_HELP_RE = re.compile(r"^\s*\(?\s*deprecated\b", re.IGNORECASE)
REPLACEMENT_RE = re.compile(r"\buse\s+(--[A-Za-z0-9][\w\-{},=]*(?:\s+<[^>]+>)?)", re.IGNORECASE)


def deprecation_of(
    names: list[str], help_text: str | None, traits: dict[str, Any], kwargs: dict[str, Any]
) -> tuple[bool, str | None, str | None]:
    name = traits["name"]
    if name.startswith("Deprecated"):
        replacement = kwargs.get("new_flag") or kwargs.get("error_message")
        return True, replacement if isinstance(replacement, str) else None, f"action:{name}"
    if help_text and DEPRECATED_HELP_RE.match(help_text):
        m = REPLACEMENT_RE.search(help_text)
        replacement = m.group(1).rstrip(".,;)") if m else None
        return True, replacement, "help-text"
    return False, None, None


def finish_flag(
    names: list[str],
    group: str,
    traits: dict[str, Any],
    kwargs: dict[str, Any],
    help_text: str | None,
    source: str,
    interp: Interp,
) -> FlagRecord:
    if traits.get("boolean_optional"):
        names = names + ["--no-" + n[2:] for n in names if n.startswith("--")]
    nargs = kwargs["nargs"] if "nargs" in kwargs else traits["nargs"]
    takes_value = (
        traits["takes_value"]
        if "nargs" not in kwargs
        else (traits["name"] not in NO_VALUE_ACTIONS and nargs != 0)
    )
    if traits.get("boolean_optional"):
        nargs = None
    choices = kwargs.get("choices")
    if "default" in kwargs:
        default: str | None = stable_repr(kwargs["default"])
    elif traits["default"] is not _MISSING:
        default = stable_repr(traits["default"])
    else:
        default = None
    deprecated, replacement, how = deprecation_of(names, help_text, traits, kwargs)
    return FlagRecord(
        names=names,
        group=group,
        takes_value=bool(takes_value),
        nargs=nargs if takes_value else None,
        choices=json_choices(choices, interp) if choices is not None else None,
        default=default,
        deprecated=deprecated,
        replacement=replacement,
        deprecation=how,
        source=source,
        required=bool(kwargs.get("required")),
    )


def record_add_argument(node: ast.Call, env: Env, interp: Interp, rec: Recorder) -> FlagRecord:
    names = [str(interp.eval(a, env)) for a in node.args]
    kwargs: dict[str, Any] = {}
    for kw in node.keywords:
        if kw.arg in {"type", "metavar"} or kw.arg is None:
            continue
        if kw.arg == "default" and re.search(r"\bos\.(getenv|environ)\b", ast.unparse(kw.value)):
            interp.note(
                f"{env.module.path}:{node.lineno}: {names[0]} default reads the environment "
                f"(`{ast.unparse(kw.value)[:70]}`); recorded as if unset"
            )
        try:
            kwargs[kw.arg] = interp.eval(kw.value, env)
        except Unresolved as exc:
            if kw.arg not in {"help"}:
                interp.note(
                    f"{env.module.path}:{node.lineno}: {names[0]} {kw.arg}= not static "
                    f"(`{ast.unparse(kw.value)[:60]}`: {exc}); recorded as null"
                )
    help_text = kwargs.pop("help", None)
    traits = action_traits(kwargs.pop("action", None), interp)
    group = rec.group
    dest = str(kwargs.get("dest") or next((n for n in names if n.startswith("--")), names[0]).lstrip("-"))
    dest = dest.replace("-", "_")
    if rec.group_of_dest is not None:
        group = rec.group_of_dest(dest) or rec.group
    source = f"{env.module.path}:{node.lineno}"
    flag = finish_flag(
        names, group, traits, kwargs, help_text if isinstance(help_text, str) else None, source, interp
    )
    flag.dest = dest
    return flag


# --------------------------------------------------------------------------------------------
# SGLang: flags declared as annotated struct fields (arg_groups/fields) plus manual add_argument
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class TypeInfo:
    kind: str  # "union", "literal", "list", "bool", "none", "other"
    members: list[TypeInfo] = dataclasses.field(default_factory=list)
    values: list[Any] = dataclasses.field(default_factory=list)


def analyze_type(node: ast.expr, interp: Interp, env: Env) -> TypeInfo:
    if isinstance(node, ast.Constant):
        if node.value is None:
            return TypeInfo("none")
        if isinstance(node.value, str):
            return analyze_type(ast.parse(node.value, mode="eval").body, interp, env)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _union([analyze_type(node.left, interp, env), analyze_type(node.right, interp, env)])
    base, args = node, None
    if isinstance(node, ast.Subscript):
        base = node.value
        args = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
    name = ast.unparse(base).split(".")[-1]
    if name == "Optional" and args:
        return _union([analyze_type(args[0], interp, env), TypeInfo("none")])
    if name == "Union" and args:
        return _union([analyze_type(a, interp, env) for a in args])
    if name == "Literal" and args:
        return TypeInfo("literal", values=[interp.eval(a, env) for a in args])
    if name in {"List", "list"}:
        return TypeInfo("list")
    if name == "bool" and args is None:
        return TypeInfo("bool")
    if name == "None":
        return TypeInfo("none")
    return TypeInfo("other")


def _union(parts: list[TypeInfo]) -> TypeInfo:
    members: list[TypeInfo] = []
    for p in parts:
        members.extend(p.members if p.kind == "union" else [p])
    return TypeInfo("union", members=members)


def _unwrap_optional(t: TypeInfo) -> TypeInfo:
    if t.kind == "union":
        non_none = [m for m in t.members if m.kind != "none"]
        if len(non_none) == 1:
            return non_none[0]
    return t


@dataclasses.dataclass
class FieldInfo:
    name: str
    namespace: str
    default: Any  # _MISSING when none
    default_text: str | None
    cli: bool


def struct_field_default(stmt: ast.AnnAssign, interp: Interp, env: Env) -> tuple[Any, str | None]:
    if stmt.value is None:
        return _MISSING, None
    try:
        return interp.eval(stmt.value, env), None
    except Unresolved as exc:
        interp.note(
            f"{env.module.path}:{stmt.lineno}: default of {ast.unparse(stmt.target)} not static ({exc}); "
            f"recorded as source text"
        )
        return _MISSING, ast.unparse(stmt.value)


def sglang_namespace_classes(wheel: Wheel, interp: Interp) -> list[ClassRef]:
    sa = wheel.module("sglang.srt.server_args")
    if sa is None:
        raise SystemExit("sglang/srt/server_args.py not found in the wheel")
    node = sa.symbols.get("_INPUT_NAMESPACES")
    if not isinstance(node, ast.List):
        raise SystemExit("server_args._INPUT_NAMESPACES is not a literal list; the layout changed")
    classes = [interp.eval(elt, Env(sa)) for elt in node.elts]
    if not all(isinstance(c, ClassRef) for c in classes):
        raise SystemExit("an _INPUT_NAMESPACES entry is not a class in the wheel")
    return classes


def sglang_fields(
    wheel: Wheel, interp: Interp
) -> tuple[list[tuple[ClassRef, ast.AnnAssign]], dict[str, FieldInfo]]:
    entries: list[tuple[ClassRef, ast.AnnAssign]] = []
    info: dict[str, FieldInfo] = {}
    for cls in sglang_namespace_classes(wheel, interp):
        try:
            ns = str(interp.class_attr(cls, "_NS_PATH"))
        except Unresolved:
            ns = cls.name
        env = Env(cls.module)
        for stmt in cls.node.body:
            if not isinstance(stmt, ast.AnnAssign) or not isinstance(stmt.target, ast.Name):
                continue
            if ast.unparse(stmt.annotation).startswith(("ClassVar", "typing.ClassVar")):
                continue
            default, text = struct_field_default(stmt, interp, env)
            info[stmt.target.id] = FieldInfo(stmt.target.id, ns, default, text, cli=False)
            entries.append((cls, stmt))
    return entries, info


def _arg_meta(annotation: ast.expr) -> tuple[ast.expr, ast.expr | None] | None:
    """(type node, Arg(...) call or help constant) of ``A[T, ...]``; None if not Annotated."""
    if not isinstance(annotation, ast.Subscript):
        return None
    if ast.unparse(annotation.value).split(".")[-1] not in {"A", "Annotated"}:
        return None
    if not isinstance(annotation.slice, ast.Tuple) or len(annotation.slice.elts) < 2:
        return None
    tp, *meta = annotation.slice.elts
    for m in meta:
        if isinstance(m, ast.Call) and ast.unparse(m.func).split(".")[-1] == "Arg":
            return tp, m
        if isinstance(m, ast.Constant | ast.JoinedStr):
            return tp, m
    return tp, None


def emulate_add_cli_args_from_dataclass(
    wheel: Wheel,
    interp: Interp,
    sink: list[FlagRecord],
    fields: dict[str, FieldInfo],
    entries: list[tuple[ClassRef, ast.AnnAssign]],
) -> int:
    """Mirror of sglang.srt.arg_groups.arg_utils.add_cli_args_from_dataclass, read from the AST."""
    count = 0
    for cls, stmt in entries:
        name = stmt.target.id  # type: ignore[union-attr]
        env = Env(cls.module)
        meta = _arg_meta(stmt.annotation)
        if meta is None or meta[1] is None:
            continue
        tp_node, arg_node = meta
        kwargs: dict[str, Any] = {}
        if isinstance(arg_node, ast.Call):
            for kw in arg_node.keywords:
                if kw.arg in {"type_parser", "fallback", "resolvable"}:
                    kwargs[kw.arg] = ast.unparse(kw.value) if kw.arg == "type_parser" else True
                    continue
                try:
                    kwargs[kw.arg] = interp.eval(kw.value, env)
                except Unresolved as exc:
                    interp.note(
                        f"{cls.module.path}:{kw.value.lineno}: --{name.replace('_', '-')} Arg({kw.arg}=) "
                        f"not static (`{ast.unparse(kw.value)[:60]}`: {exc}); recorded as null"
                    )
                    kwargs[kw.arg] = None
        else:
            try:
                kwargs["help"] = interp.eval(arg_node, env)
            except Unresolved:
                kwargs["help"] = None
        if kwargs.get("no_cli"):
            continue
        fields[name].cli = True
        count += 1
        cli_name = kwargs.get("cli_name") or "--" + name.replace("_", "-")
        names = [cli_name] + list(kwargs.get("aliases") or [])
        info = fields[name]
        has_default = info.default is not _MISSING or info.default_text is not None
        add: dict[str, Any] = {}
        if has_default:
            add["default"] = info.default if info.default is not _MISSING else _SourceText(info.default_text)
        help_text = kwargs.get("help") if isinstance(kwargs.get("help"), str) else None
        source = f"{cls.module.path}:{stmt.lineno}"
        if kwargs.get("action") is not None:
            traits = action_traits(kwargs["action"], interp)
            add.update(kwargs.get("action_kwargs") or {})
            add.pop("type", None)
            sink.append(finish_flag(names, info.namespace, traits, add, help_text, source, interp))
            sink[-1].dest = name
            continue
        t = _unwrap_optional(analyze_type(tp_node, interp, env))
        store = action_traits(None, interp)
        if t.kind == "literal":
            add["choices"] = kwargs.get("choices") or t.values
        elif t.kind == "list" and not kwargs.get("type_parser"):
            add["nargs"] = kwargs.get("nargs") or "+"
            if kwargs.get("choices"):
                add["choices"] = kwargs["choices"]
        elif t.kind == "bool":
            sink.append(
                finish_flag(
                    names, info.namespace, action_traits("store_true", interp), add, help_text, source, interp
                )
            )
            sink[-1].dest = name
            continue
        else:
            if kwargs.get("choices"):
                add["choices"] = kwargs["choices"]
            if kwargs.get("nargs"):
                add["nargs"] = kwargs["nargs"]
            # arg_utils: required when declared so, or when the field has no default.
            if kwargs.get("required") is True or (kwargs.get("required") is None and not has_default):
                add["required"] = True
        sink.append(finish_flag(names, info.namespace, store, add, help_text, source, interp))
        sink[-1].dest = name
    return count


class _SourceText(str):
    """A default that could not be evaluated, kept as its source text."""

    def __repr__(self) -> str:
        return str(self)


def sglang_flags(
    wheel: Wheel, interp: Interp
) -> tuple[list[FlagRecord], dict[str, FieldInfo], dict[str, int]]:
    entries, fields = sglang_fields(wheel, interp)
    interp.field_defaults = {n: f.default for n, f in fields.items() if f.default is not _MISSING}
    sink: list[FlagRecord] = []
    stats = {"annotated_cli_fields": 0}

    def hook_from_dataclass(ip: Interp, node: ast.Call, env: Env) -> None:
        stats["annotated_cli_fields"] += emulate_add_cli_args_from_dataclass(wheel, ip, sink, fields, entries)

    def hook_declared_default(ip: Interp, node: ast.Call, env: Env) -> Any:
        name = ip.eval(node.args[0], env)
        if name not in fields or fields[name].default is _MISSING:
            raise Unresolved(f"_declared_default({name!r})")
        return fields[name].default

    interp.func_hooks["add_cli_args_from_dataclass"] = hook_from_dataclass
    interp.func_hooks["_declared_default"] = hook_declared_default
    sa = wheel.module("sglang.srt.server_args")
    assert sa is not None
    # ServerArgs is rebuilt with msgspec.defstruct at the bottom of the module; read the class statement.
    cls = next(s for s in sa.tree.body if isinstance(s, ast.ClassDef) and s.name == "ServerArgs")
    add_cli = next(s for s in cls.body if isinstance(s, ast.FunctionDef) and s.name == "add_cli_args")

    def group_of_dest(dest: str) -> str:
        return fields[dest].namespace if dest in fields else "server_args"

    parser = Recorder(sink, "server_args", group_of_dest)
    env = Env(sa, {add_cli.args.args[0].arg: parser})
    interp.exec_block(add_cli.body, env, tolerant=True)
    stats["manual_add_argument_calls"] = sum(
        1
        for n in ast.walk(add_cli)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "add_argument"
    )
    return sink, fields, stats


def deprecated_choice_values(wheel: Wheel) -> tuple[dict[str, dict[str, str]], dict[str, str | None]]:
    """Deprecated *values* of flags.

    Two markers SGLang uses: a ``{old: new}`` dict consulted by ``handle_deprecated_args`` (``if
    cfg.<field> in DICT`` or a loop over field names), and a ``# Deprecated alias for "x"`` comment on
    an entry of a choices list in ``arg_groups/choices.py``. Returns ({field: {old: new}}, {old: new}).
    """
    by_field: dict[str, dict[str, str]] = {}
    for path in wheel.py_files():
        if not path.startswith("sglang/srt/arg_groups/"):
            continue
        src = wheel.text(path) or ""
        if "def handle_deprecated_args" not in src:
            continue
        tree = ast.parse(src, path)
        for func in ast.walk(tree):
            if not (isinstance(func, ast.FunctionDef) and func.name == "handle_deprecated_args"):
                continue
            dicts: dict[str, dict[str, str]] = {}
            for node in ast.walk(func):
                if (
                    isinstance(node, ast.Assign)
                    and len(node.targets) == 1
                    and isinstance(node.targets[0], ast.Name)
                    and isinstance(node.value, ast.Dict)
                ):
                    try:
                        value = ast.literal_eval(node.value)
                    except ValueError:
                        continue
                    if all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
                        dicts[node.targets[0].id] = value
            loops: dict[str, list[str]] = {}  # name bound by getattr(server_args, attr) -> fields
            for node in ast.walk(func):
                if isinstance(node, ast.For) and isinstance(node.target, ast.Name):
                    try:
                        attrs = ast.literal_eval(node.iter)
                    except ValueError:
                        continue
                    for inner in ast.walk(node):
                        if (
                            isinstance(inner, ast.Assign)
                            and isinstance(inner.targets[0], ast.Name)
                            and isinstance(inner.value, ast.Call)
                            and _callee_name(inner.value) == "getattr"
                            and len(inner.value.args) >= 2
                            and isinstance(inner.value.args[1], ast.Name)
                            and inner.value.args[1].id == node.target.id
                        ):
                            loops[inner.targets[0].id] = [str(a) for a in attrs]
            for node in ast.walk(func):
                if not (
                    isinstance(node, ast.Compare)
                    and len(node.ops) == 1
                    and isinstance(node.ops[0], ast.In)
                    and isinstance(node.comparators[0], ast.Name)
                    and node.comparators[0].id in dicts
                ):
                    continue
                table = dicts[node.comparators[0].id]
                left = node.left
                fields = []
                if isinstance(left, ast.Attribute):
                    fields = [left.attr]
                elif isinstance(left, ast.Name) and left.id in loops:
                    fields = loops[left.id]
                for f in fields:
                    by_field.setdefault(f, {}).update(table)
    by_value: dict[str, str | None] = {}
    src = wheel.text("sglang/srt/arg_groups/choices.py") or ""
    for line in src.splitlines():
        m = re.match(r'\s*"([^"]+)",\s*#\s*Deprecated alias for "([^"]+)"', line)
        if m:
            by_value[m.group(1)] = m.group(2)
    return by_field, by_value


def apply_deprecated_choices(records: list[FlagRecord], wheel: Wheel) -> None:
    by_field, by_value = deprecated_choice_values(wheel)
    for rec in records:
        table: dict[str, str | None] = dict(by_field.get(rec.dest, {}))
        if rec.choices:
            table.update({v: r for v, r in by_value.items() if v in rec.choices})
        if table:
            rec.deprecated_choices = dict(sorted(table.items()))


# --------------------------------------------------------------------------------------------
# Routers (smg, sglang-router): RouterArgs.add_cli_args, as launch_router calls it
# --------------------------------------------------------------------------------------------


def router_flags(wheel: Wheel, interp: Interp, top: str) -> tuple[list[FlagRecord], dict[str, int]]:
    mod = wheel.module(f"{top}.router_args")
    if mod is None:
        raise SystemExit(f"{top}/router_args.py not found in the wheel")
    cls = mod.symbols.get("RouterArgs")
    if not isinstance(cls, ClassRef):
        raise SystemExit("RouterArgs class not found")
    add_cli = interp.class_attr(cls, "add_cli_args")
    launcher = wheel.text(f"{top}/launch_router.py") or ""
    call = re.search(r"RouterArgs\.add_cli_args\((.*?)\)", launcher)
    kwargs: dict[str, Any] = {"use_router_prefix": False, "exclude_host_port": False}
    if call:
        for key, val in re.findall(r"(\w+)\s*=\s*(True|False)", call.group(1)):
            kwargs[key] = val == "True"
    sink: list[FlagRecord] = []
    parser = Recorder(sink, "options")
    env = Env(mod, {}, None)
    interp.bind(add_cli.node.args, [parser], dict(kwargs), env, add_cli)
    interp.exec_block(add_cli.node.body, env, tolerant=True)
    stats = {
        "add_argument_calls": sum(
            1
            for n in ast.walk(add_cli.node)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "add_argument"
        ),
        "launcher_kwargs": kwargs,
    }
    return sink, stats


def help_flag() -> dict[str, Any]:
    return {
        "name": "--help",
        "dest": "help",
        "required": False,
        "deprecated_choices": None,
        "aliases": ["-h"],
        "takes_value": False,
        "nargs": None,
        "choices": None,
        "deprecated": False,
        "replacement": None,
        "deprecation": None,
        "default": None,
        "group": "argparse",
        "source": "argparse (add_help=True)",
    }


# --------------------------------------------------------------------------------------------
# Prometheus metrics
# --------------------------------------------------------------------------------------------


def _enclosing_functions(tree: ast.Module) -> list[tuple[str, ast.AST, ClassRef | None]]:
    out: list[tuple[str, ast.AST, Any]] = [("<module>", tree, None)]

    def visit(node: ast.AST, prefix: str, cls: ast.ClassDef | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                out.append((prefix + child.name, child, child))
                visit(child, prefix + child.name + ".", child)
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                out.append((prefix + child.name, child, cls))
                visit(child, prefix + child.name + ".", cls)
            else:
                visit(child, prefix, cls)

    visit(tree, "", None)
    return out


def _direct_calls(func: ast.AST) -> list[ast.Call]:
    """Calls inside a function body, not inside nested functions/classes."""
    calls: list[ast.Call] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
                continue
            if isinstance(child, ast.Call):
                calls.append(child)
            visit(child)

    visit(func)
    return calls


def _callee_name(call: ast.Call) -> str:
    f = call.func
    if isinstance(f, ast.Name):
        return f.id
    if isinstance(f, ast.Attribute):
        return f.attr
    return ""


def _kw(call: ast.Call, name: str, position: int | None) -> ast.expr | None:
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    if position is not None and len(call.args) > position:
        return call.args[position]
    return None


@dataclasses.dataclass
class LabelSet:
    always: list[str]
    conditional: list[str]
    dynamic: list[str]
    sources: list[str]


def label_keys_in(func: ast.AST, module: Module, interp: Interp, var: str = "labels") -> LabelSet | None:
    """Keys of the ``labels`` dict a function builds: literal keys, keys set under a condition,
    and what is merged in at run time (``labels.update(...)``, keys set in a loop)."""
    always: list[str] = []
    conditional: list[str] = []
    dynamic: list[str] = []
    found = False
    body = func.body if isinstance(getattr(func, "body", None), list) else []

    def take_dict(d: ast.Dict, into: list[str]) -> None:
        for k in d.keys:
            if isinstance(k, ast.Constant) and isinstance(k.value, str) and k.value not in into:
                into.append(k.value)

    base_depth = 0

    def walk(stmts: list[ast.stmt], depth: int, in_loop: str) -> None:
        nonlocal found, base_depth
        for s in stmts:
            if isinstance(s, ast.Assign | ast.AnnAssign):
                targets = s.targets if isinstance(s, ast.Assign) else [s.target]
                for t in targets:
                    if isinstance(t, ast.Name) and t.id == var and s.value is not None:
                        if isinstance(s.value, ast.Dict):
                            found, base_depth = True, depth
                            take_dict(s.value, always)
                        elif isinstance(s.value, ast.Call):
                            sub = _resolve_label_helper(s.value, module, interp)
                            if sub is not None:
                                found, base_depth = True, depth
                                always.extend(k for k in sub.always if k not in always)
                                conditional.extend(k for k in sub.conditional if k not in conditional)
                                dynamic.extend(k for k in sub.dynamic if k not in dynamic)
                    elif isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name) and t.value.id == var:
                        if isinstance(t.slice, ast.Constant) and not in_loop:
                            key = t.slice.value
                            if key not in always and key not in conditional:
                                (conditional if depth > base_depth else always).append(key)
                        else:
                            dynamic.append(f"keys from `{in_loop or ast.unparse(t.slice)}`")
            elif isinstance(s, ast.Expr) and isinstance(s.value, ast.Call):
                c = s.value
                if (
                    isinstance(c.func, ast.Attribute)
                    and isinstance(c.func.value, ast.Name)
                    and c.func.value.id == var
                    and c.func.attr == "update"
                    and c.args
                ):
                    dynamic.append(f"keys of `{ast.unparse(c.args[0])}`")
            elif isinstance(s, ast.Return) and isinstance(s.value, ast.Dict) and var == "labels":
                found, base_depth = True, depth
                take_dict(s.value, always)
            if isinstance(s, ast.If):
                walk(s.body, depth + 1, in_loop)
                walk(s.orelse, depth + 1, in_loop)
            elif isinstance(s, ast.For):
                walk(s.body, depth + 1, ast.unparse(s.iter))
            elif isinstance(s, ast.While):
                walk(s.body, depth + 1, "while loop")
            elif isinstance(s, ast.With | ast.Try):
                walk(s.body, depth, in_loop)

    walk(body, 0, "")
    if not found:
        return None
    return LabelSet(always, [k for k in conditional if k not in always], dynamic, [])


def _resolve_label_helper(call: ast.Call, module: Module, interp: Interp) -> LabelSet | None:
    try:
        func = interp.eval(call.func, Env(module))
    except Unresolved:
        return None
    if not isinstance(func, FuncRef) or isinstance(func.node, ast.Lambda):
        return None
    # A helper that builds the dict in a local, or returns a dict literal.
    for var in ("labels",):
        got = label_keys_in(func.node, func.module, interp, var)
        if got is not None:
            return got
    ret = [s for s in ast.walk(func.node) if isinstance(s, ast.Return) and isinstance(s.value, ast.Dict)]
    if ret:
        keys = [k.value for k in ret[0].value.keys if isinstance(k, ast.Constant)]  # type: ignore[union-attr]
        return LabelSet(keys, [], [], [])
    return None


def collector_label_sets(
    wheel: Wheel, interp: Interp, classes: dict[str, tuple[Module, ast.ClassDef]]
) -> dict[str, LabelSet]:
    """For each collector class taking ``labels``, the label keys its callers build."""
    out: dict[str, LabelSet] = {}
    texts = {p: wheel.text(p) or "" for p in wheel.py_files() if p.startswith("sglang/") and "/test" not in p}
    for cname, (_cmod, _cnode) in sorted(classes.items()):
        merged: LabelSet | None = None
        for path, src in texts.items():
            if cname not in src:
                continue
            mod = wheel.module_by_path(path)
            if mod is None:
                continue
            for qual, func, owner in _enclosing_functions(mod.tree):
                if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                names = {n.id for n in ast.walk(func) if isinstance(n, ast.Name)}
                in_own_class = owner is not None and owner.name == cname and "cls" in names
                if cname not in names and not in_own_class:
                    continue
                if qual.split(".")[0] == cname and not in_own_class:
                    continue
                got = label_keys_in(func, mod, interp)
                if got is None:
                    continue
                got.sources.append(f"{path}:{qual}")
                if merged is None:
                    merged = got
                else:
                    merged.always = [k for k in merged.always if k in got.always]
                    merged.conditional.extend(
                        k
                        for k in got.always + got.conditional
                        if k not in merged.always and k not in merged.conditional
                    )
                    merged.dynamic.extend(k for k in got.dynamic if k not in merged.dynamic)
                    merged.sources.extend(got.sources)
        if merged is not None:
            merged.sources.sort()
            out[cname] = merged
    return out


def sglang_metrics(wheel: Wheel, interp: Interp) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    files = [
        p
        for p in wheel.py_files()
        if p.startswith("sglang/") and not re.search(r"(^|/)(tests?|test_[^/]*\.py)(/|$)", p)
    ]
    candidates: list[tuple[str, Module]] = []
    for path in files:
        src = wheel.text(path) or ""
        if "sglang:" in src and any(c + "(" in src for c in METRIC_CTORS):
            mod = wheel.module_by_path(path)
            if mod is not None:
                candidates.append((path, mod))
    # Collector classes: classes whose __init__ takes `labels` and that construct metrics.
    collectors: dict[str, tuple[Module, ast.ClassDef]] = {}
    for _path, mod in candidates:
        for node in ast.walk(mod.tree):
            if isinstance(node, ast.ClassDef):
                init = next(
                    (s for s in node.body if isinstance(s, ast.FunctionDef) and s.name == "__init__"), None
                )
                if init is not None and any(a.arg == "labels" for a in init.args.args + init.args.kwonlyargs):
                    if any(_callee_name(c) in METRIC_CTORS for c in _direct_calls(init)):
                        collectors[node.name] = (mod, node)
    label_sets = collector_label_sets(wheel, interp, collectors)
    metrics: list[dict[str, Any]] = []
    for path, mod in candidates:
        for qual, func, owner in _enclosing_functions(mod.tree):
            calls = [c for c in _direct_calls(func) if _callee_name(c) in METRIC_CTORS]
            if not calls:
                continue
            params: dict[str, Any] = {}
            base: str | None = None
            if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                spec = func.args
                positional = list(spec.posonlyargs) + list(spec.args)
                defaults = [None] * (len(positional) - len(spec.defaults)) + list(spec.defaults)
                pairs = list(zip(positional, defaults, strict=True)) + list(
                    zip(spec.kwonlyargs, spec.kw_defaults, strict=True)
                )
                for param, default in pairs:
                    value: Any = _MISSING
                    if default is not None:
                        try:
                            value = interp.eval(default, Env(mod))
                        except Unresolved:
                            value = _MISSING
                    params[param.arg] = value
                cls_name = owner.name if owner is not None else None
                if "labels" in params and cls_name in label_sets:
                    params["labels"] = {k: "" for k in label_sets[cls_name].always}
                    base = cls_name
            env = LazyFunctionEnv(mod, func, params, 0)
            for call in calls:
                m = metric_from_call(call, env.at(call.lineno), interp, path, qual, base)
                if m is not None:
                    metrics.append(m)
    metrics.sort(key=lambda m: (m["name"], m["source"], m["function"]))
    sets = {
        name: {
            "always": ls.always,
            "conditional": ls.conditional,
            "runtime": ls.dynamic,
            "built_in": ls.sources,
        }
        for name, ls in sorted(label_sets.items())
    }
    return metrics, sets


def metric_from_call(
    call: ast.Call, env: Env, interp: Interp, path: str, qual: str, base: str | None
) -> dict[str, Any] | None:
    ctor = _callee_name(call)
    name_node = _kw(call, "name", 0)
    if name_node is None:
        return None
    try:
        name = interp.eval(name_node, env)
    except Unresolved:
        if "sglang:" in ast.unparse(name_node):
            interp.note(f"{path}:{call.lineno}: metric name `{ast.unparse(name_node)}` not static")
        return None
    if not isinstance(name, str) or not name.startswith("sglang:"):
        return None
    mtype = {"GaugeHistogram": "gauge"}.get(ctor, ctor.lower())
    notes: list[str] = []
    labels: list[str] | None
    label_node = _kw(call, "labelnames", 2)
    if label_node is None:
        labels = []
    else:
        try:
            value = interp.eval(label_node, env)
            items = list(_as_iterable(value, interp))
            labels = sorted(items) if isinstance(value, set | frozenset) else [str(x) for x in items]
        except Unresolved as exc:
            labels = None
            notes.append(f"labels not static: `{ast.unparse(label_node)}` ({exc})")
    if ctor == "GaugeHistogram" and labels is not None:
        labels = labels + ["gt", "le"]
    buckets: list[float] | None = None
    if ctor in {"Histogram", "GaugeHistogram"}:
        bnode = _kw(
            call,
            "bucket_bounds" if ctor == "GaugeHistogram" else "buckets",
            3 if ctor == "GaugeHistogram" else 8,
        )
        if bnode is None:
            buckets = list(PROMETHEUS_DEFAULT_BUCKETS)
            notes.append("prometheus_client default buckets")
        else:
            interp.dependencies = []
            try:
                raw = list(_as_iterable(interp.eval(bnode, env), interp))
                buckets = [float(b) if isinstance(b, float) else b for b in raw]
                if interp.dependencies:
                    flags = ", ".join("--" + d.replace("_", "-") for d in dict.fromkeys(interp.dependencies))
                    notes.append(f"buckets computed from the defaults of {flags}")
                if isinstance(bnode, ast.Name):
                    notes.append(f"buckets from `{bnode.id}` (its default value)")
            except Unresolved as exc:
                notes.append(f"buckets not static: `{ast.unparse(bnode)[:80]}` ({exc})")
    entry = {
        "name": name,
        "type": mtype,
        "labels": labels,
        "buckets": buckets,
        "source": path,
        "function": qual,
        "line": call.lineno,
        "base_labels": base,
        "notes": notes or None,
    }
    if ctor == "GaugeHistogram":
        entry["notes"] = (notes or []) + ["GaugeHistogram: one gauge series per (gt, le] bucket"]
    return entry


# --------------------------------------------------------------------------------------------
# Model overrides (DeepSeek-V4)
# --------------------------------------------------------------------------------------------


DSV4_SOURCES = [
    ("sglang/srt/arg_groups/deepseek_v4_hook.py", None, "model"),
    ("sglang/srt/arg_groups/model_overrides/deepseek_v4.py", None, "model"),
    ("sglang/srt/arg_groups/overrides.py", "_deepseek_v4_kv_cache_dtype", "model"),
    ("sglang/srt/arg_groups/memory_hook.py", "handle_gpu_memory_settings", "generic"),
]


def _value_text(node: ast.expr) -> tuple[str, bool]:
    try:
        return repr(ast.literal_eval(node)), False
    except (ValueError, SyntaxError, TypeError):
        return ast.unparse(node), True


def _aliases(func: ast.AST) -> dict[str, str]:
    """Local names assigned exactly once from a plain expression (for readable field paths)."""
    seen: dict[str, list[ast.expr]] = {}
    for node in ast.walk(func):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            seen.setdefault(node.targets[0].id, []).append(node.value)
    out = {}
    for name, values in seen.items():
        value = values[0]
        if (
            len(values) == 1
            and isinstance(value, ast.Call)
            and ast.unparse(value.func) == "copy.deepcopy"
            and value.args
        ):
            value = value.args[0]
        if len(values) == 1 and isinstance(value, ast.Attribute):
            out[name] = ast.unparse(value)
    return out


def _field_path(target: ast.expr, aliases: dict[str, str]) -> str:
    text = ast.unparse(target)
    for _ in range(5):
        head, dot, rest = text.partition(".")
        if head in aliases:
            text = aliases[head] + dot + rest
        else:
            break
    return re.sub(r"^(cfg|server_args|view)\.", "", text)


def overrides_in_function(func: ast.FunctionDef, path: str) -> list[dict[str, Any]]:
    sets: list[dict[str, Any]] = []
    aliases = _aliases(func)
    returned = {
        n.value.id for n in ast.walk(func) if isinstance(n, ast.Return) and isinstance(n.value, ast.Name)
    }
    constants: dict[str, list[tuple[str, tuple[str, ...], int]]] = {}

    def value_options(node: ast.expr, conds: tuple[str, ...]) -> list[tuple[str, bool, tuple[str, ...]]]:
        if isinstance(node, ast.Name) and node.id in constants:
            return [(v, False, tuple(dict.fromkeys(conds + c))) for v, c, _line in constants[node.id]]
        text, computed = _value_text(node)
        return [(text, computed, conds)]

    def add(field: str, node: ast.expr, conds: tuple[str, ...], line: int, how: str) -> None:
        for text, computed, when in value_options(node, conds):
            sets.append(
                {
                    "field": field,
                    "value": text,
                    "computed": computed,
                    "when": list(when),
                    "line": line,
                    "via": how,
                }
            )

    def walk(body: list[ast.stmt], conds: tuple[str, ...]) -> None:
        extra: tuple[str, ...] = ()
        for s in body:
            c = conds + extra
            if isinstance(s, ast.If):
                test = ast.unparse(s.test)
                walk(s.body, c + (test,))
                walk(s.orelse, c + (f"not ({test})",))
                if not s.orelse and s.body and isinstance(s.body[-1], ast.Return | ast.Raise):
                    extra = extra + (f"not ({test})",)
                continue
            if isinstance(s, ast.For | ast.With | ast.Try):
                walk(s.body, c)
                continue
            if isinstance(s, ast.Assign | ast.AnnAssign):
                targets = s.targets if isinstance(s, ast.Assign) else [s.target]
                for t in targets:
                    if isinstance(t, ast.Name) and s.value is not None:
                        if isinstance(s.value, ast.Constant):
                            constants.setdefault(t.id, []).append((repr(s.value.value), c, s.lineno))
                        if t.id in returned and isinstance(s.value, ast.Dict):
                            for k, v in zip(s.value.keys, s.value.values, strict=True):
                                if isinstance(k, ast.Constant):
                                    add(str(k.value), v, c, s.lineno, "returned dict")
                    elif (
                        isinstance(t, ast.Subscript)
                        and isinstance(t.value, ast.Name)
                        and t.value.id in returned
                    ):
                        if isinstance(t.slice, ast.Constant) and s.value is not None:
                            add(str(t.slice.value), s.value, c, s.lineno, "returned dict")
                    elif isinstance(t, ast.Attribute) and s.value is not None:
                        add(_field_path(t, aliases), s.value, c, s.lineno, "attribute")
            if isinstance(s, ast.Return) and isinstance(s.value, ast.Dict):
                for k, v in zip(s.value.keys, s.value.values, strict=True):
                    if isinstance(k, ast.Constant):
                        add(str(k.value), v, c, s.lineno, "returned dict")
            for node in ast.walk(s):
                if isinstance(node, ast.Call) and _callee_name(node) == "declare_resolution":
                    for kw in node.keywords:
                        if kw.arg:
                            add(kw.arg, kw.value, c, node.lineno, "declare_resolution")

    walk(func.body, ())
    return sets


def call_sites(wheel: Wheel, func_name: str) -> list[dict[str, Any]]:
    out = []
    for path in wheel.py_files():
        if not path.startswith("sglang/srt/arg_groups/"):
            continue
        src = wheel.text(path) or ""
        if func_name not in src:
            continue
        tree = ast.parse(src, path)
        for qual, func, _owner in _enclosing_functions(tree):
            if not isinstance(func, ast.FunctionDef):
                continue

            def walk(
                body: list[ast.stmt], conds: tuple[str, ...], qual: str = qual, path: str = path
            ) -> None:
                for s in body:
                    if isinstance(s, ast.If):
                        test = ast.unparse(s.test)
                        walk(s.body, conds + (test,))
                        walk(s.orelse, conds + (f"not ({test})",))
                        continue
                    if isinstance(s, ast.FunctionDef | ast.ClassDef):
                        continue
                    for node in ast.walk(s):
                        if not isinstance(node, ast.Call):
                            continue
                        direct = _callee_name(node) == func_name and not isinstance(node.func, ast.Attribute)
                        passed = any(isinstance(a, ast.Name) and a.id == func_name for a in node.args)
                        if direct or passed:
                            out.append(
                                {
                                    "file": path,
                                    "function": qual,
                                    "line": node.lineno,
                                    "when": list(conds),
                                    "via": None if direct else _callee_name(node),
                                }
                            )

            walk(func.body, ())
    return sorted(out, key=lambda x: (x["file"], x["line"]))


def resolution_pipeline_order(wheel: Wheel) -> list[str]:
    mod = wheel.module("sglang.srt.arg_groups.pipeline")
    if mod is None:
        return []
    func = next(
        (s for s in mod.tree.body if isinstance(s, ast.FunctionDef) and s.name == "run_resolution_pipeline"),
        None,
    )
    if func is None:
        return []
    order = []
    for node in ast.walk(func):
        if isinstance(node, ast.Call) and _callee_name(node) in {"run_hook", "run_post_process_pass"}:
            args = node.args[:1] if _callee_name(node) == "run_hook" else node.args[1:2]
            if args and isinstance(args[0], ast.Name):
                order.append((node.lineno, args[0].id))
    return [name for _line, name in sorted(order)]


def dsv4_overrides(wheel: Wheel) -> dict[str, Any]:
    order = resolution_pipeline_order(wheel)
    entries = []
    for path, only, scope in DSV4_SOURCES:
        src = wheel.text(path)
        if src is None:
            continue
        tree = ast.parse(src, path)
        for stmt in tree.body:
            if not isinstance(stmt, ast.FunctionDef) or (only and stmt.name != only):
                continue
            sets = overrides_in_function(stmt, path)
            if not sets:
                continue
            registered = [ast.unparse(d) for d in stmt.decorator_list]
            sites = call_sites(wheel, stmt.name)
            if any(r.startswith("_register_for(") for r in registered):
                # Registered overrides are collected by the registry, from handle_model_specific_adjustments.
                sites += [
                    dict(site, via="registry (_register_for)")
                    for site in call_sites(wheel, "collect_model_override_declarations")
                ]
            pipeline_step = None
            frontier, seen = [stmt.name], set()
            for _hop in range(4):  # follow callers up to the pipeline's run_hook list
                hit = next((n for n in frontier if n in order), None)
                if hit is not None:
                    pipeline_step = {"hook": hit, "index": order.index(hit)}
                    break
                seen.update(frontier)
                frontier = [
                    s["function"].split(".")[-1]
                    for n in frontier
                    for s in (sites if n == stmt.name else call_sites(wheel, n))
                ]
                frontier = [n for n in dict.fromkeys(frontier) if n not in seen]
            entries.append(
                {
                    "source": path,
                    "function": stmt.name,
                    "scope": scope,
                    "doc": (ast.get_docstring(stmt) or "").split("\n")[0] or None,
                    "registered_by": registered or None,
                    "called_from": sites,
                    "pipeline_step": pipeline_step,
                    "sets": sets,
                }
            )
    return {
        "DeepseekV4ForCausalLM": entries,
        "resolution_pipeline": order,
        "note": (
            "Entries with scope 'generic' are not DeepSeek-V4 specific but decide its defaults "
            "(chunked-prefill-size and the decode CUDA-graph max batch size by GPU memory); "
            "'pipeline_step' is the position of the hook in run_resolution_pipeline."
        ),
    }


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def flags_json(records: list[FlagRecord], interp: Interp) -> list[dict[str, Any]]:
    by_name: dict[str, dict[str, Any]] = {}
    for rec in records:
        entry = rec.to_json()
        if entry["name"] in by_name:
            interp.note(
                f"flag {entry['name']} registered twice ({by_name[entry['name']]['source']}, "
                f"{entry['source']}); the later registration is kept"
            )
        by_name[entry["name"]] = entry
    if "--help" not in by_name:
        by_name["--help"] = help_flag()
    return [by_name[n] for n in sorted(by_name)]


def generate(wheel_path: Path) -> tuple[str, dict[str, Any]]:
    wheel = Wheel(wheel_path)
    interp = Interp(wheel)
    data: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "package": wheel.package,
        "version": wheel.version,
        "source_wheel": {"file": wheel_path.name, "sha256": wheel.sha256},
        "generated_by": GENERATED_BY,
    }
    if wheel.package == "sglang":
        records, fields, stats = sglang_flags(wheel, interp)
        apply_deprecated_choices(records, wheel)
        data["entrypoints"] = {
            "modules": ["sglang.launch_server"],
            "console_scripts": wheel.console_scripts(),
            "subcommands": {
                "serve": {
                    "parser": "sglang.cli.serve",
                    "positional_model_path": True,
                    "extra_flags": [{"name": "--model-type", "takes_value": True}],
                }
            },
        }
        data["flags"] = flags_json(records, interp)
        metrics, label_sets = sglang_metrics(wheel, interp)
        data["metrics"] = metrics
        data["metric_label_sets"] = label_sets
        data["model_overrides"] = dsv4_overrides(wheel)
        stats["flags"] = len(data["flags"])
        stats["metrics"] = len(metrics)
        stats["metric_names"] = len({m["name"] for m in metrics})
        stats["no_cli_fields"] = sum(1 for f in fields.values() if not f.cli)
    elif wheel.package in ROUTER_PACKAGES:
        top = ROUTER_PACKAGES[wheel.package]
        records, stats = router_flags(wheel, interp, top)
        data["entrypoints"] = {
            "modules": [f"{top}.launch_router"],
            "console_scripts": wheel.console_scripts(),
            "subcommands": {"launch": {"parser": f"{top}.launch_router.parse_router_args"}},
        }
        data["flags"] = flags_json(records, interp)
        stats["flags"] = len(data["flags"])
    else:
        raise SystemExit(f"{wheel_path.name}: package {wheel.package!r} is not sglang, smg or sglang-router")
    data["extraction_stats"] = stats
    data["unresolved"] = sorted(interp.notes)
    return f"{wheel.package}-{wheel.version}.json", data


def dump(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument(
        "--wheel",
        type=Path,
        action="append",
        default=[],
        help="an sglang wheel, or a directory holding it (repeatable)",
    )
    ap.add_argument(
        "--router-wheel",
        type=Path,
        action="append",
        default=[],
        help="an smg or sglang-router wheel, or a directory holding it (repeatable)",
    )
    ap.add_argument("--out", type=Path, required=True, help="output directory for the JSON files")
    ap.add_argument("--check", action="store_true", help="do not write; exit 1 if a file would change")
    args = ap.parse_args(argv)
    wheels = [w for p in args.wheel + args.router_wheel for w in find_wheels(p)]
    if not wheels:
        ap.error("no wheel given (--wheel / --router-wheel)")
    args.out.mkdir(parents=True, exist_ok=True)
    changed = 0
    for path in wheels:
        filename, data = generate(path)
        text = dump(data)
        target = args.out / filename
        old = target.read_text() if target.exists() else None
        stats = data["extraction_stats"]
        print(
            f"{filename}: {stats.get('flags')} flags"
            + (f", {stats.get('metrics')} metrics" if "metrics" in stats else "")
            + f", {len(data['unresolved'])} unresolved notes",
            file=sys.stderr,
        )
        if old != text:
            changed += 1
            if not args.check:
                target.write_text(text)
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    raise SystemExit(main())
